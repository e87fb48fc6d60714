"""The nslab command's contract: useful output, one-line errors, exit codes."""
import os
import subprocess
import sys

import pytest

from topologies.paths import PROJECT_ROOT

REPO = str(PROJECT_ROOT)


def nslab(*args):
    return subprocess.run([sys.executable, "-m", "topologies.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [["frobnicate"], ["sweep", "--bogus"], []],
                         ids=["unknown-command", "unknown-option", "no-command"])
def test_bad_input_is_one_line_and_exit_2(argv):
    result = nslab(*argv)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""


def test_doctor_reports_every_check_and_passes_here(root_required):
    result = nslab("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("root", "capabilities", "kernel", "vxlan", "netkit", "clsact", "tcx",
                 "xdp on veth", "BTF", "tracefs", "clang", "libbpf", "firewall tools", "bcc"):
        assert f" {name} " in result.stdout, name
    # Whatever is missing comes with its fix.
    lines = result.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("ERR", "-- ")):
            assert lines[i + 1].strip().startswith("fix:"), line


def test_doctor_fails_without_root_essentials(tmp_path):
    """Run doctor as nobody: the essential checks fail and the exit is non-zero."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
         sys.executable, "-m", "topologies.cli", "doctor"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, HOME=str(tmp_path)))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("ERR root")
    assert "missing essentials" in result.stderr
