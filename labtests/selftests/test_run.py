"""The main job's contract: results directory, report, artifacts, kept labs."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET

import pytest

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
    # No scenario file imports hypothesis at module level (a property test makes its
    # @given in its body): the runs leave out its plugin, which would import it.
    for run_argv in (argv, one):
        assert run_argv[run_argv.index("no:hypothesispytest") - 1] == "-p"


def test_run_writes_junit_report_tables_and_pcapng(root_required, tmp_path):
    result = nslab("run", "--scenario", "vxlan_overlay", "-n", "1", "--results", str(tmp_path),
                   "-k", "test_checksums_on_the_wire and udpcsum-vxtx_on-ultx_on-nat_none",
                   "--ktap", str(tmp_path / "results.ktap"))
    assert result.returncode == 0, result.stdout[-2000:]
    assert os.path.exists(tmp_path / "junit.xml")
    report = (tmp_path / "report.md").read_text()
    assert "## vxlan_overlay" in report and "## Known bugs" in report
    tables = (tmp_path / "scenarios.txt").read_text()
    assert "every row: check=wire, vxlan_tx=vxtx_on, underlay_tx=ultx_on, nat=nat_none" \
        in tables, tables
    [row] = [line for line in tables.splitlines() if line.startswith("udpcsum ")
             and "frames" not in line]
    assert row.endswith("valid    correct   as expected"), row
    assert tables.count("datapath:") == 1                    # the legend, once per table
    assert "<h2>vxlan_overlay (2 rows)</h2>" in (tmp_path / "report.html").read_text()
    ktap_lines = (tmp_path / "results.ktap").read_text().splitlines()
    assert ktap_lines[:2] == ["KTAP version 1", "1..2"] and ktap_lines[2].startswith("ok 1 ")
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


@pytest.mark.parametrize("argv, message", [
    (["-k", "and or"], "bad -k expression 'and or' at column 1"),
    (["--scenario", "nope"], "unknown scenario 'nope'; scenarios: lb_snat, pod_egress"),
    (["-n", "many"], "-n 'many': a number of workers"),
], ids=["bad-k", "unknown-scenario", "bad-jobs"])
def test_bad_run_input_is_one_line_exit_2_and_creates_nothing(root_required, tmp_path,
                                                              argv, message):
    results = tmp_path / "results"
    result = nslab("run", *argv, "--results", str(results))
    assert (result.returncode, result.stdout) == (2, ""), result.stdout[-2000:]
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not results.exists()


# ``nslab run`` on a stand-in suite: the real scenario file names, tests that skip
# (as every lab test does without root or a kernel feature) and tests that pass.
RUN_STAND_IN = """
import sys
from topologies.cli import run
from topologies.cli.main import main
run.TESTS = sys.argv[1]
sys.exit(main(["run", "-n", "0", *sys.argv[2:]]))
"""   # -n 0: pytest in one process; what is tested is the run's verdict, not its workers
STAND_IN_SUITE = {
    "test_vxlan_overlay.py": """
        import pytest
        @pytest.mark.parametrize("variant", ["a", "b", "c"])
        def test_wire(variant):
            pytest.skip("kernel lacks the frobnicator")
        """,
    "test_lb_snat.py": """
        import pytest
        def test_runs():
            pass
        @pytest.mark.xfail(reason="known bug", strict=True)
        def test_known_bug():
            assert False
        """,
}


def run_stand_in(tmp_path, *argv):
    suite = tmp_path / "suite"
    suite.mkdir(exist_ok=True)
    for name, text in STAND_IN_SUITE.items():
        (suite / name).write_text(textwrap.dedent(text))
    return subprocess.run([sys.executable, "-c", RUN_STAND_IN, str(suite), *argv,
                           "--results", str(tmp_path / "results")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_run_fails_when_a_selected_scenario_did_not_run(root_required, tmp_path):
    """pytest exits 0 when every test skips: nslab run does not (a green CI that
    tested nothing), and says which scenario and why; an xfail counts as run."""
    result = run_stand_in(tmp_path, "--scenario", "vxlan_overlay", "--scenario", "lb_snat")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr
    line = "nslab run: scenario vxlan_overlay did not run: every test skipped " \
           "(3 × kernel lacks the frobnicator)"
    assert line in result.stderr.splitlines(), result.stderr
    assert "lb_snat" not in result.stderr
    assert "## Scenarios that did not run" in (tmp_path / "results" / "report.md").read_text()


def test_run_allow_skips_accepts_a_scenario_that_did_not_run(root_required, tmp_path):
    result = run_stand_in(tmp_path, "--scenario", "vxlan_overlay", "--allow-skips")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "did not run" not in result.stderr


def test_run_that_selects_nothing_fails_with_a_clear_line(root_required, tmp_path):
    result = nslab("run", "--scenario", "lb_snat", "-n", "0", "-k", "no_such_variant_anywhere",
                   "--results", str(tmp_path))
    assert result.returncode == 5, result.stdout[-2000:]
    assert "nslab run: no test was selected (pytest exit 5): -k 'no_such_variant_anywhere' " \
           "matches none of lb_snat" in result.stderr


def test_scenarios_not_run_reads_the_junit_file(tmp_path):
    """Skipped everywhere, or not collected at all: only a -k that narrows an
    unnamed selection may leave a scenario out."""
    from topologies.cli.run import scenarios_not_run
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="labtests.test_lb_snat" name="test_a">'
        '<skipped type="pytest.skip" message="needs root (BPF)"/></testcase>'
        '<testcase classname="labtests.test_vxlan_overlay" name="test_b[x]"/>'
        '<testcase classname="labtests.test_xdp_responder" name="test_c">'
        '<skipped type="pytest.xfail" message="known"/></testcase>'
        '</testsuite></testsuites>')
    selected = ["lb_snat", "pod_egress", "vxlan_overlay", "xdp_responder"]
    assert scenarios_not_run(str(junit), selected, must_collect=True) == [
        "scenario lb_snat did not run: every test skipped (1 × needs root (BPF))",
        "scenario pod_egress did not run: no test of it was collected"]
    assert scenarios_not_run(str(junit), selected, must_collect=False) == [
        "scenario lb_snat did not run: every test skipped (1 × needs root (BPF))"]


def test_report_points_at_the_artifacts_in_the_actual_results_directory(tmp_path):
    from topologies.cli.run import markdown
    from topologies.report.artifacts import safe_name
    test = "labtests/test_vxlan_overlay.py::test_wire[udpcsum]"
    (tmp_path / "artifacts" / safe_name(test)).mkdir(parents=True)
    counts = {"tests": 1, "failures": 1, "errors": 0, "skipped": 0}
    report = markdown(str(tmp_path), [], counts, [(test, "boom")], 1.0)
    assert f"artifacts: `{tmp_path}/artifacts/{safe_name(test)}/`" in report
    assert "`results/artifacts/`" not in report


class Output:
    """A child's stdout, read as it comes (pytest's progress has no newlines)."""

    def __init__(self, stream):
        self.text, self.changed = "", threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for chunk in iter(lambda: os.read(stream.fileno(), 4096), b""):
            with self.changed:
                self.text += chunk.decode(errors="replace")
                self.changed.notify_all()

    def wait_for(self, pattern: str, deadline: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: re.search(pattern, self.text),
                                         timeout=max(0.0, deadline - time.monotonic()))


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["sigint", "sigterm"])
def test_interrupted_run_keeps_junit_tables_and_report(root_required, tmp_path, sig, code):
    proc = subprocess.Popen([sys.executable, "-m", "topologies.cli", "run", "--scenario",
                             "vxlan_overlay", "-n", "1", "--results", str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = Output(proc.stdout)
    try:
        # The event: a test has finished, in its row file and in pytest's output (in
        # console.log); a second result shows pytest is done with the first one's report
        # (a signal in the middle of handing a report on would keep it out of the JUnit).
        deadline = time.monotonic() + 180

        def results_in_console() -> int:
            log = tmp_path / "console.log"
            return len(re.findall(r"(PASSED|FAILED|SKIPPED|XFAIL|XPASS|ERROR) .*::",
                                  log.read_text())) if log.exists() else 0
        # (A run that ends by itself meanwhile is an event too: no use waiting on.)
        while (results_in_console() < 2 or not list((tmp_path / "rows").glob("*.json"))) \
                and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert results_in_console() >= 2, output.text[-2000:]
        assert list((tmp_path / "rows").glob("*.json")), output.text[-2000:]
        proc.send_signal(sig)
        assert proc.wait(timeout=180) == code, output.text[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    cases = ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    assert [c for c in cases if c.get("name")], output.text[-2000:]
    report = (tmp_path / "report.md").read_text()
    assert f"interrupted ({sig.name})" in report
    assert (tmp_path / "scenarios.txt").read_text().startswith("== vxlan_overlay")
    assert output.wait_for(rf"nslab run: interrupted \({sig.name}\) after \d+ tests",
                           time.monotonic() + 10), output.text[-2000:]
