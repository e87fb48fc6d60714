"""Kernel release strings as comparable versions, stable branches included."""
from __future__ import annotations

import os
import re
from typing import Iterable, Optional

Version = tuple[int, int, int]


def parse(release: str) -> Version:
    """``6.1.0-56-amd64`` → (6, 1, 0); ``6.18.44-fc`` → (6, 18, 44)."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not match:
        raise ValueError(f"not a kernel release: {release!r}")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def running() -> str:
    return os.uname().release


def is_fixed(release: str, fixed_in: Iterable[str]) -> Optional[bool]:
    """Whether a fix listed by version (mainline first release plus stable
    backports, e.g. ``("5.7", "5.4.41", "4.19.123")``) is in ``release``.

    A release on a stable branch with a backport is fixed from that backport
    on; otherwise from the mainline release (listed first). With no
    fix listed the answer is None: unknown, still open.
    """
    fixes = [parse(v) for v in fixed_in]
    if not fixes:
        return None
    ver = parse(release)
    same_branch = [f for f in fixes if f[:2] == ver[:2]]
    if same_branch:
        return ver >= min(same_branch)
    return ver >= fixes[0]
