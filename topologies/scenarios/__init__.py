"""The named scenario topologies (one module each, beside ``bpf/<name>.c`` and
``labtests/test_<name>.py``), their knobs, and the known kernel bugs they meet.
"""
from .. import lazy

__getattr__, __dir__, __all__ = lazy.exports(__name__, {
    "catalog": ["TOPOLOGIES", "load", "config_for", "parse_settings"],
    "knobs": ["KnobConfig"],
}, submodules=["known_bugs"])
