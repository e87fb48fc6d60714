"""Where nslab's own files are: the project root of this checkout, its BPF
sources and its test suite."""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE.parent
BPF_SOURCES = PROJECT_ROOT / "bpf"
SUITE = PROJECT_ROOT / "labtests"
