"""KTAP output for kernel CI systems, as kselftest writes it."""
import subprocess
import sys

from topologies.kernels.matrix import Outcome
from topologies.paths import PROJECT_ROOT
from topologies.report import ktap


def test_every_outcome_has_its_ktap_line_and_the_totals_add_up():
    text = ktap.render({
        "t.py::a": Outcome("passed"), "t.py::b": Outcome("failed", "INVALID UDP\nchksum"),
        "t.py::c": Outcome("skipped", "no netkit"), "t.py::d": Outcome("xfail", "known bug x"),
        "t.py::e": Outcome("xpass", "bug x did not show"), "t.py::f": Outcome("error", "setup")})
    assert text.splitlines() == [
        "KTAP version 1", "1..6", "ok 1 t.py::a",
        "# t.py::b: INVALID UDP chksum", "not ok 2 t.py::b",
        "ok 3 t.py::c # SKIP no netkit", "ok 4 t.py::d # XFAIL known bug x",
        "not ok 5 t.py::e # XPASS bug x did not show",
        "# t.py::f: setup", "not ok 6 t.py::f",
        "# Totals: pass:1 fail:1 xfail:1 xpass:1 skip:1 error:1"]


def test_a_bad_ktap_path_is_one_line_and_creates_nothing(root_required, tmp_path):
    results = tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "topologies.cli", "run", "--results",
                          str(results), "--ktap", str(tmp_path / "no" / "such" / "file")],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "no directory" in run.stderr
    assert not results.exists()
