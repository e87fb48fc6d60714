"""The one rule for lab names (``nslab up --name``, kept labs, ``Lab(name=...)``):
safe as a file name, a shell word and a command-line argument. A module of its
own: the CLI checks a name before it imports anything that builds labs."""
from __future__ import annotations

import re

from ..errors import LabError

LAB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
LAB_NAME_RULE = "1-63 characters: letters, digits, '_', '.', '-', starting with a letter or digit"


def check_name(name: str) -> str:
    """``name`` if it follows the lab-name rule, else a one-line LabError."""
    if not isinstance(name, str) or not LAB_NAME.match(name):
        shown = (repr(name) if len(str(name)) <= 40
                 else f"{str(name)[:20]!r}... ({len(name)} characters)")
        raise LabError(f"bad lab name {shown}: {LAB_NAME_RULE}")
    return name
