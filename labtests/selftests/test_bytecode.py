"""Bytecode warmed once (topologies/bytecode.py) for processes that may not write it."""
import importlib.util
from pathlib import Path

from topologies import bytecode
from topologies.paths import PROJECT_ROOT


def test_warming_writes_the_bytecode_processes_that_may_not_write_it_read(monkeypatch):
    """Plain bytecode for the library, pytest's rewritten bytecode for the tests,
    even under PYTHONDONTWRITEBYTECODE (as a VM guest and many CI images run)."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    suite = PROJECT_ROOT / "labtests" / "selftests"
    plain = Path(importlib.util.cache_from_source(str(PROJECT_ROOT / "topologies" / "paths.py")))
    rewritten = "__pycache__/test_ktap.*-pytest-*.pyc"
    for stale in [plain, *suite.glob(rewritten)]:
        stale.unlink(missing_ok=True)
    last, tests = bytecode.warm([str(suite / "test_ktap.py")])
    assert tests > 0, last
    assert plain.exists()
    assert list(suite.glob(rewritten))
