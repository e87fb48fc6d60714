"""A cleanup stack in the spirit of kselftests' ``defer()``.

Every object the lab creates registers its undo right after creation; the
stack unwinds in reverse order, keeps going when one undo fails, and reports
the failures at the end.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

log = logging.getLogger(__name__)


class Deferred:
    """One registered undo; ``cancel()`` when the object was removed by hand."""

    def __init__(self, stack: "CleanupStack", fn: Callable[..., Any], args, kwargs, what: str):
        self._stack = stack
        self.fn, self.args, self.kwargs, self.what = fn, args, kwargs, what

    def cancel(self) -> None:
        self._stack.discard(self)

    def run_now(self) -> None:
        """Undo immediately and drop from the stack."""
        self.cancel()
        self.fn(*self.args, **self.kwargs)


class CleanupStack:
    def __init__(self) -> None:
        self._items: list[Deferred] = []

    def defer(self, fn: Callable[..., Any], *args, what: str = "", **kwargs) -> Deferred:
        item = Deferred(self, fn, args, kwargs, what or getattr(fn, "__qualname__", repr(fn)))
        self._items.append(item)
        return item

    def discard(self, item: Deferred) -> None:
        if item in self._items:
            self._items.remove(item)

    def __len__(self) -> int:
        return len(self._items)

    def unwind(self) -> list[str]:
        """Run every undo, newest first; return one line per failure."""
        failures = []
        while self._items:
            item = self._items.pop()
            try:
                item.fn(*item.args, **item.kwargs)
            except Exception as exc:  # keep unwinding: a leak is worse than a noisy log
                failures.append(f"{item.what}: {exc}")
                log.warning("cleanup of %s failed: %s", item.what, exc)
        return failures
