"""What a pytest selection needs: its test files (with the conftest files above
them) and the optional plugins none of them uses, which a nested pytest (``nslab
run``, a VM guest) is then started without."""
from __future__ import annotations

import re
from pathlib import Path

from .paths import PROJECT_ROOT


# Plugins a session loads only when a selected test file imports their module at
# module level: the hypothesis plugin imports hypothesis in every pytest process
# (half a second here; under TCG in a guest more than many a test). A file that
# imports hypothesis inside a test (a @given made in the test's body) needs no
# plugin: its property tests are not pytest items of their own.
# pytest's unittest plugin imports unittest (a third of a second in a guest) for
# the unittest.TestCase classes a file may hold, which import unittest themselves.
OPTIONAL_PLUGINS = {"hypothesispytest": "hypothesis", "unittest": "unittest"}


def selected_files(pytest_argv: list[str], root: Path = PROJECT_ROOT) -> list[Path]:
    """The test files a pytest selection names (directories walked), with the
    conftest files above them; the whole suite when it names none."""
    paths = [root / a.split("::", 1)[0] for a in pytest_argv
             if not a.startswith("-") and (root / a.split("::", 1)[0]).exists()]
    files: set[Path] = set()
    for path in paths or [root / "labtests"]:
        files.update(path.rglob("*.py") if path.is_dir() else [path])
        for parent in path.resolve().parents:
            if (parent / "conftest.py").is_file():
                files.add(parent / "conftest.py")
            if parent == root.resolve():
                break
    return sorted(files)


def unused_plugins(pytest_argv: list[str], root: Path = PROJECT_ROOT) -> list[str]:
    """``-p no:<plugin>`` for each optional plugin no selected file imports at module level."""
    texts = [f.read_text(errors="replace") for f in selected_files(pytest_argv, root)]
    return [arg for plugin, module in OPTIONAL_PLUGINS.items()
            if not any(re.search(rf"^(import|from) {module}\b", t, re.M) for t in texts)
            for arg in ("-p", f"no:{plugin}")]
