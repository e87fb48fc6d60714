"""Bytecode written once, before the processes that would each compile it again.

An editable install is not byte-compiled (pip compiles only what it copies), and
pytest rewrites test modules and the plugin's modules into bytecode of its own.
Where nothing may write ``__pycache__`` -- a VM guest reading the host's
read-only root, or a machine with PYTHONDONTWRITEBYTECODE=1, as many CI images
set -- every Python process would compile nslab again: minutes per boot under
TCG, and on the host 17 s of CPU per run of the suite from a fresh clone (119 s
instead of 102 s, measured on 2 cores). One compile pass and one
``--collect-only`` run write exactly the files later processes look for.

    python -m topologies.bytecode [PYTEST SELECTION ...]    # default: labtests
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

from .paths import PROJECT_ROOT

SOURCES = ("topologies", "labtests", "conftest.py")


def warm(pytest_argv: list[str]) -> tuple[str, int]:
    """Compile nslab's modules and collect ``pytest_argv`` with bytecode writing on.
    Returns pytest's last line and the number of tests it collected."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    present = [s for s in SOURCES if (PROJECT_ROOT / s).exists()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *present],
                   cwd=PROJECT_ROOT, env=env, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", *pytest_argv, "-n", "0"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    last = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    counted = re.match(r"(\d+)(?:/\d+)? tests? collected", last)
    return last, int(counted[1]) if counted else 0


def main(argv: list[str]) -> int:
    last, tests = warm(argv or ["labtests"])
    print(f"bytecode warmed: {last}")
    return 0 if tests else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
