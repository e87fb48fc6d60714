"""The kernel-tree bisection scripts' argument handling (their real run, a build and a
bisection over built kernels, is measured once and written up in the README: hours,
not a test). Wrong use is one line and exit 2 — 255 while a bisection is in progress,
so that ``git bisect run`` stops instead of marking a commit bad — and nothing is left
behind."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from topologies.paths import PROJECT_ROOT

BISECT_RUN = PROJECT_ROOT / "ci" / "git-bisect-run.sh"
MAKE_TREE = PROJECT_ROOT / "ci" / "bisect-demo" / "make-tree.sh"
BUILD_KERNEL = PROJECT_ROOT / "ci" / "build-kernel.sh"
TEST_ID = ("labtests/test_vxlan_overlay.py::test_checksums_on_the_wire"
           "[noudpcsum-vxtx_on-ultx_on-masq_random_fully-none]")

pytestmark = pytest.mark.skipif(not (PROJECT_ROOT / "ci").is_dir(),
                                reason="the ci/ scripts are not installed with the wheel")


def run(script: Path, *args: str, cwd: Path, env: dict | None = None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(["bash", str(script), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def git(tree: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tree,
                   check=True, capture_output=True)


@pytest.fixture
def kernel_tree(tmp_path) -> Path:
    """Enough of a kernel tree for the script to accept it (nothing builds in it)."""
    tree = tmp_path / "linux"
    (tree / "arch" / "x86").mkdir(parents=True)
    (tree / "Makefile").write_text("all:\n\tfalse\n")
    (tree / "Kconfig").write_text("")
    return tree


def one_error_line(result, code: int, words: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("git-bisect-run: "), result.stderr
    assert words in lines[0]


@pytest.mark.parametrize("args, env, words", [
    ((), {}, "usage"),
    (("",), {}, "usage"),
    ((TEST_ID, "extra"), {}, "usage"),
    (("labtests/test_vxlan_overlay.py",), {}, "is not a test id"),
    (("labtests/test_nothing.py::test_x",), {}, "no test file labtests/test_nothing.py"),
    (("labtests/test_vxlan_overlay.py::test_no_such_test",), {}, "collects no such test"),
    ((TEST_ID,), {"NSLAB_BUILD_JOBS": "many"}, "NSLAB_BUILD_JOBS=many"),
    ((TEST_ID,), {"NSLAB_BISECT_TIMEOUT": "0"}, "NSLAB_BISECT_TIMEOUT=0"),
    ((TEST_ID,), {"NSLAB_KERNEL_CONFIG": "ci/no-such.config"}, "no file"),
    ((TEST_ID,), {"NSLAB_KERNEL_CONFIG": ":"}, "names no fragment"),
], ids=["no-id", "empty-id", "two-ids", "not-an-id", "no-file", "not-collected", "jobs",
        "timeout", "fragment", "no-fragment"])
def test_wrong_use_is_one_line_and_exit_2(kernel_tree, args, env, words):
    result = run(BISECT_RUN, *args, cwd=kernel_tree, env=env)
    one_error_line(result, 2, words)
    assert not (kernel_tree / ".nslab-bisect").exists()
    assert not (kernel_tree / ".config").exists()


def test_not_a_kernel_tree(tmp_path):
    one_error_line(run(BISECT_RUN, TEST_ID, cwd=tmp_path), 2, "is not a kernel tree")
    assert list(tmp_path.iterdir()) == []


def test_wrong_use_during_a_bisection_stops_it_instead_of_blaming_the_commit(kernel_tree):
    git(kernel_tree, "init", "-q")
    git(kernel_tree, "add", "-A")
    git(kernel_tree, "commit", "-qm", "one")
    (kernel_tree / "Kconfig").write_text("# two\n")
    git(kernel_tree, "commit", "-qam", "two")
    git(kernel_tree, "bisect", "start", "HEAD", "HEAD~1")
    one_error_line(run(BISECT_RUN, "labtests/test_vxlan_overlay.py::test_no_such_test",
                       cwd=kernel_tree), 255, "collects no such test")
    # And git bisect run itself stops there, with the commit unjudged.
    result = subprocess.run(["git", "bisect", "run", "bash", str(BISECT_RUN), "not-an-id"],
                            cwd=kernel_tree, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    log = subprocess.run(["git", "bisect", "log"], cwd=kernel_tree, capture_output=True,
                         text=True).stdout
    assert "# bad:" in log and log.count("# bad:") == 1      # only the one given at start


@pytest.mark.parametrize("args, env, words", [
    (("now",), {}, "usage"),
    (("--check",), {"NSLAB_BUILD_JOBS": "0"}, "NSLAB_BUILD_JOBS=0"),
    (("--check",), {"NSLAB_KERNEL_CONFIG": "ci/kernel.config:/nonexistent"}, "no file"),
], ids=["argument", "jobs", "fragment"])
def test_build_kernel_wrong_use(kernel_tree, args, env, words):
    result = run(BUILD_KERNEL, *args, cwd=kernel_tree, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and words in result.stderr
    assert sorted(p.name for p in kernel_tree.iterdir()) == ["Kconfig", "Makefile", "arch"]


def test_build_kernel_outside_a_kernel_tree(tmp_path):
    result = run(BUILD_KERNEL, cwd=tmp_path)
    assert result.returncode == 2 and "is not a kernel tree" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_make_tree_wrong_use(tmp_path):
    (tmp_path / "taken").mkdir()
    cases = [((), "usage"), ((str(tmp_path / "taken"),), "exists"),
             ((str(tmp_path / "no" / "dir"),), "no directory")]
    for args, words in cases:
        result = run(MAKE_TREE, *args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and words in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def changed_code(patch: Path) -> list[str]:
    """The lines a patch adds or removes in C files, comments left out."""
    code, path = [], ""
    for line in patch.read_text().splitlines():
        if line.startswith("+++ "):
            path = line[4:]
        elif line.startswith(("+", "-")) and not line.startswith("--- ") and path.endswith((".c", ".h")):
            text = line[1:].strip()
            if text and not text.startswith(("/*", "*")):
                code.append(text)
    return code


def test_the_demo_series_plants_exactly_one_behaviour_change():
    """Every patch but the revert changes comments and documentation only, so the
    bisection has one answer."""
    series = sorted((MAKE_TREE.parent / "series").glob("*.patch"))
    assert len(series) == 8
    changing = [patch.name for patch in series if changed_code(patch)]
    assert changing == ["0005-Revert-netfilter-nat-never-update-the-UDP-checksum-w.patch"]
    assert "do_csum = hdr->check || skb->ip_summed == CHECKSUM_PARTIAL;" in changed_code(
        MAKE_TREE.parent / "series" / changing[0])
