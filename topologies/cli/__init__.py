"""The ``nslab`` command: run, up/ls/exec/capture/down, sweep, doctor, matrix, bisect.
Each subcommand is a module with ``register(subparsers)``; ``main`` parses and dispatches.
"""
from .main import build_parser, main

__all__ = ["main", "build_parser"]
