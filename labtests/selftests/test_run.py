"""The main job's contract: results directory, report, artifacts, kept labs."""
import os
import subprocess
import sys

from topologies.lab import SESSION_ENV, netns, owner
from topologies.paths import PROJECT_ROOT

REPO = str(PROJECT_ROOT)
HERE = os.path.dirname(os.path.abspath(__file__))
FAILING = os.path.join(HERE, "helpers", "fails_on_purpose.py")


def nslab(*args, env=None):
    return subprocess.run([sys.executable, "-m", "topologies.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_run_selects_the_scenario_suites_only():
    """``nslab run`` is every scenario: the scenario files, not the self-tests."""
    from topologies.cli.main import build_parser
    from topologies.cli.run import pytest_argv
    argv = pytest_argv(build_parser().parse_args(["run"]), "/nonexistent")
    targets = [a for a in argv if a.endswith(".py")]
    assert sorted(os.path.relpath(t, REPO) for t in targets) == [
        "labtests/test_lb_snat.py", "labtests/test_pod_egress.py",
        "labtests/test_vxlan_overlay.py", "labtests/test_xdp_responder.py"]
    assert all(os.path.exists(t) for t in targets)
    one = pytest_argv(build_parser().parse_args(["run", "--scenario", "lb_snat"]), "/x")
    assert [a for a in one if a.endswith(".py")] == [os.path.join(REPO, "labtests",
                                                                  "test_lb_snat.py")]


def test_run_writes_junit_report_tables_and_pcapng(root_required, tmp_path):
    result = nslab("run", "--scenario", "vxlan_overlay", "-n", "1", "--results", str(tmp_path),
                   "-k", "test_checksums_on_the_wire and udpcsum-vxtx_on-ultx_on-nat_none")
    assert result.returncode == 0, result.stdout[-2000:]
    assert os.path.exists(tmp_path / "junit.xml")
    report = (tmp_path / "report.md").read_text()
    assert "## vxlan_overlay" in report and "## Known bugs" in report
    assert "udpcsum    vxtx_on   ultx_on      nat_none" in (tmp_path / "scenarios.txt").read_text()
    assert list((tmp_path / "pcapng").glob("*/*.pcapng"))
    assert f"report: {tmp_path}/report.md" in result.stdout


def test_failed_lab_leaves_artifacts_and_can_be_kept_for_inspection(root_required, tmp_path):
    # Nested in this session: the kept lab passes to it when the inner session ends,
    # so a sweep would remove it if this session were killed.
    env = dict(os.environ, NSLAB_RESULTS=str(tmp_path), NSLAB_KEEP_FAILED="1")
    run = subprocess.run([sys.executable, "-m", "pytest", FAILING, "-p", "no:cacheprovider",
                          "-q"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout[-2000:]
    [where] = (tmp_path / "artifacts").iterdir()
    names = {p.name for p in where.rglob("*")}
    for expected in ("links.txt", "routes.txt", "tc-filters.txt", "firewall.txt", "snmp.txt",
                     "drops.txt", "0-server-eth0.pcapng", "0-server-eth0.verdicts.txt"):
        assert expected in names, sorted(names)
    [kept] = [r for r in owner.all_records() if r.name.startswith("test_fails_with_a_lab-")
              and r.session == os.environ[SESSION_ENV] and r.kept and r.owner_alive()]
    assert kept.keeper and kept.name.endswith(kept.prefix.rsplit("-", 1)[1])
    try:
        listing = nslab("ls", kept.name).stdout
        assert "node client" in listing and "10.0.0.1/24" in listing
        inside = nslab("exec", kept.name, "server", "--", "ip", "-br", "addr")
        assert "10.0.0.2/24" in inside.stdout
    finally:
        assert nslab("down", kept.name).returncode == 0
    assert netns.names(kept.prefix) == []
