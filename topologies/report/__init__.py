"""What runs leave for people: scenario rows and tables, failure artifacts, and
descriptions of running labs read back from the kernel.
"""
from .. import lazy

__getattr__, __dir__, __all__ = lazy.exports(__name__, {
    "rows": ["Row"],
    "describe": [("describe_lab", "describe"), ("render_lab", "render")],
}, submodules=["artifacts", "rows"])
