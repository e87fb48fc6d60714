"""Where nslab's own files are: its BPF sources and its scenario suites, in a
checkout (``bpf/``, ``labtests/`` beside the package) or, installed from a
wheel, bundled inside the package (``topologies/bundled/``)."""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE.parent
BUNDLED = PACKAGE / "bundled"
# A checkout: this repository's own pyproject and sources beside the package.
IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "bpf").is_dir()
BPF_SOURCES = PROJECT_ROOT / "bpf" if IN_CHECKOUT else BUNDLED / "bpf"
SUITE = PROJECT_ROOT / "labtests" if IN_CHECKOUT else BUNDLED / "labtests"
