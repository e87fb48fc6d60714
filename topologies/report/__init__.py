"""What runs leave for people: scenario rows and tables, failure artifacts, and
descriptions of running labs read back from the kernel.
"""
from . import artifacts, rows
from .describe import describe as describe_lab
from .describe import render as render_lab
from .rows import Row

__all__ = ["Row", "rows", "artifacts", "describe_lab", "render_lab"]
