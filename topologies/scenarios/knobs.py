"""A scenario's knobs as a frozen dataclass with validated values.

    @dataclass(frozen=True)
    class Config(KnobConfig):
        KNOBS = {"variant": ("fixed", "prefix")}
        variant: str = "fixed"

The values are readable test-id words: ``config.id`` is ``"fixed"``.
"""
from __future__ import annotations

from typing import ClassVar


class KnobConfig:
    KNOBS: ClassVar[dict[str, tuple]]

    def __post_init__(self):
        for knob, value in self.knobs().items():
            if value not in self.KNOBS[knob]:
                raise ValueError(f"{knob}={value!r}: one of {', '.join(self.KNOBS[knob])}")

    def knobs(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in self.KNOBS}

    @property
    def id(self) -> str:
        return "-".join(self.knobs().values())
