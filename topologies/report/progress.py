"""A live progress line for a long run, read from pytest's verbose output: done of
total, failures so far, elapsed time and an estimate of what is left.

On a terminal it is one line rewritten in place; where the output is a log (CI)
it is a plain line every ``PLAIN_EVERY`` seconds, and every failure at once.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

from ..kernels.vm import COLLECTED, RESULT_WORD, collected_count

PLAIN_EVERY = 15.0                      # s between lines in a log
BAD = ("FAILED", "ERROR", "XPASS")


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


class Progress:
    def __init__(self, out: TextIO = sys.stderr, *, label: str = "",
                 tty: Optional[bool] = None, clock: Callable[[], float] = time.monotonic):
        self.out, self.label, self.clock = out, label, clock
        self.tty = out.isatty() if tty is None else tty
        self.started = self.last = clock()
        self.total: Optional[int] = None
        self.done = self.failed = 0
        self.shown = False

    def feed(self, text: str) -> None:
        """One line of pytest's output."""
        match = COLLECTED.search(text)
        if match and self.total is None:
            self.total = collected_count(match)
        word = RESULT_WORD.search(text)
        if not (word and "::" in text and "%]" in text):   # a result line, not the summary
            return
        self.done += 1
        if word[1] in BAD:
            self.failed += 1
            self._emit(f"{word[1]} {text.split(word[1], 1)[1].strip()[:200]}", always=True)
        self._emit(self.line())

    def line(self) -> str:
        elapsed = self.clock() - self.started
        eta = ""
        if self.total and self.done:
            eta = f", about {_clock(elapsed / self.done * (self.total - self.done))} left"
        return (f"{self.label}{self.done}/{self.total or '?'} tests, {self.failed} failed, "
                f"{_clock(elapsed)} elapsed{eta}")

    def _emit(self, text: str, always: bool = False) -> None:
        now = self.clock()
        if self.tty:     # the line is rewritten; a failure is written above it, to stay
            self.out.write("\r\033[K" + text + ("\n" if always else ""))
            self.shown = not always
        elif always or now - self.last >= PLAIN_EVERY:
            self.out.write(text + "\n")
            self.last = now
        self.out.flush()

    def close(self) -> None:
        if self.tty and self.shown:
            self.out.write("\n")
        elif not self.tty:
            self.out.write(self.line() + "\n")
        self.out.flush()
