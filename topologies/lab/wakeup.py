"""A descriptor ``select`` waits on beside a socket, so that a thread serving or
capturing sleeps until traffic or its stop — never a polling interval that every
stop would wait out."""
from __future__ import annotations

import os


class Wakeup:
    """``set()`` makes ``fileno()`` readable, for good."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()

    def fileno(self) -> int:
        return self._read

    def set(self) -> None:
        os.write(self._write, b"!")

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)
