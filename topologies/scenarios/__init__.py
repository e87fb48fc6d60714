"""The named scenario topologies (one module each, beside ``bpf/<name>.c`` and
``labtests/test_<name>.py``), their knobs, and the known kernel bugs they meet.
"""
from . import known_bugs
from .catalog import TOPOLOGIES, config_for, load, parse_settings
from .knobs import KnobConfig

__all__ = ["TOPOLOGIES", "load", "config_for", "parse_settings", "KnobConfig", "known_bugs"]
