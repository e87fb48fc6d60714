"""How fast this host runs Python right now: a fixed pure-Python workload (a
ones'-complement sum, word by word, over a fixed buffer), best of three, in CPU
seconds. This machine's speed drifts by 10-30% within a day; the benchmarks print
this beside their figures so runs from different hours can be compared.

    .venv/bin/python benchmarks/host_speed.py
"""
from __future__ import annotations

import time

BUFFER = bytes(range(256)) * 2048     # 512 KiB


def _workload() -> int:
    total = 0
    for _ in range(10):
        for i in range(0, len(BUFFER), 2):
            total += (BUFFER[i] << 8) | BUFFER[i + 1]
            total = (total & 0xFFFF) + (total >> 16)
    return total


def reference(runs: int = 3) -> float:
    """CPU seconds of the workload, the best of ``runs``."""
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        _workload()
        best = min(best, time.process_time() - started)
    return best


def line() -> str:
    return f"host speed: reference workload {reference():.3f} s of CPU (lower is faster)"


if __name__ == "__main__":
    print(line())
