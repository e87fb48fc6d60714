"""Errors the lab raises: one line each, so the CLI can print them as they are."""
from __future__ import annotations


class LabError(Exception):
    """A lab operation failed; the message is one line meant for a person."""


class Unsupported(LabError):
    """The running kernel or machine lacks a feature; tests turn this into a skip.

    The message names the feature precisely (e.g. ``CONFIG_NETKIT``) so a skip
    is never mistaken for a pass.
    """
