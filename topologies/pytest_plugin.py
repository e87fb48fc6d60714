"""The nslab pytest plugin: fixtures for lab tests, failure artifacts, and the
session's promise that nothing of ours outlives it.

Installed with nslab (entry point ``pytest11``), so any test suite gets it
without a conftest.py; ``-p no:nslab`` turns it off. Fixtures:

- ``lab``: a fresh :class:`topologies.Lab`, removed after the test (skipped with
  the reason when not root). On failure its artifacts (pcapng per capture,
  verdicts, links, routes, tc filters, firewall, SNMP counters, drop reasons)
  are written under ``<results>/artifacts/<test id>/``.
- ``capture``: ``capture(node, "eth0")`` starts an offload-aware capture that
  ends with the test and lands in the artifacts.
- ``pair``: two nodes over one veth (client 10.0.0.1 / fd00::1, server .2 / ::2).
- ``topology``: ``nodes = topology("lab.yaml")`` builds a topology file (a path
  relative to the test file, or the current directory) into the test's lab.
- ``report_row``: this test's row in the scenario table ``nslab run`` prints.
- ``drop_monitor``: the machine-wide drop-reason monitor, or None.
- ``root_required``: skip with the reason when not root.

Markers: ``lab`` (added to every test that uses ``lab`` or ``root_required``:
what a kernel can change) and ``vm`` (boots a kernel). The results directory is
``$NSLAB_RESULTS`` or ``results/`` under pytest's rootdir. The session fails if
the root namespace changed or a lab of the session was left behind.
"""
from __future__ import annotations

import os
import re
import sys
import time
from concurrent.futures import Future

import pytest

from . import scapy_guard
from .capture import Capture
from .capture.drop_reasons import HEADER, DropMonitor
from .capture.drop_reasons import describe as describe_drops
from .errors import LabError
from .lab import Lab, owner, raise_on_termination, rootstate, sweep
from .lab import session as lab_session
from .report import artifacts, describe_lab
from .report import rows as report_rows
from .scenarios.catalog import TOPOLOGIES as SCENARIOS
from .verdict import Status

ROOT_REASON = "lab tests need root (CAP_NET_ADMIN + CAP_SYS_ADMIN: namespaces, netlink, BPF)"
# Fixtures that make a test depend on the running kernel; such tests get the
# ``lab`` marker, so ``-m lab`` (nslab matrix's default) picks what a kernel can change.
KERNEL_FIXTURES = {"lab", "root_required"}
VM_TEST_TIMEOUT = 1500   # a boot under TCG plus the guest's own pytest run
MARKERS = (
    "lab: needs root and real network namespaces (added by nslab to tests using its lab fixtures)",
    "vm: boots a kernel in a VM (qemu + virtme-ng; slow under TCG): deselect with -m 'not vm'",
)


def _is_controller(config) -> bool:
    return not hasattr(config, "workerinput")


def results_dir(config) -> str:
    return os.environ.get(report_rows.RESULTS_ENV) or str(config.rootpath / "results")


# -- the session ---------------------------------------------------------------------------
def pytest_configure(config):
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    config._nslab_results = results_dir(config)
    raise_on_termination()
    scapy_guard.install()     # lab traffic stays in lab namespaces, scapy's too
    if _is_controller(config) and os.geteuid() == 0:
        # Every lab made below belongs to this session (nested in an enclosing one).
        config._nslab_session = lab_session.begin()
        # The next run removes what a killed run left (dead owners, dead sessions).
        for swept in sweep.sweep():
            print(f"nslab: swept lab {swept.describe()}")
        # Taken while the tests are collected; awaited before any can run.
        config._nslab_root_before = rootstate.snapshot_in_background()


def _root_before(config) -> dict:
    """The root namespace as it was before the session's tests (waited for)."""
    before = config._nslab_root_before
    if isinstance(before, Future):
        before = config._nslab_root_before = before.result()
    return before


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    # xdist's workers start collecting and running tests when this hook ends
    if hasattr(session.config, "_nslab_root_before") \
            and session.config.pluginmanager.has_plugin("dsession"):
        _root_before(session.config)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    if hasattr(session.config, "_nslab_root_before"):
        _root_before(session.config)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if KERNEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)
        if item.get_closest_marker("vm") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(VM_TEST_TIMEOUT))


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if not _is_controller(config) or not hasattr(config, "_nslab_root_before"):
        return
    problems = []
    _let_workers_finish(config._nslab_session)
    kept, left = lab_session.finish(config._nslab_session)
    for record in kept:
        print(f"\nnslab: kept lab {record.name} ({record.prefix}): nslab ls / exec / down "
              f"{record.name}")
    if left:
        problems.append("labs left behind by this session (now removed): "
                        + ", ".join(sweep.remove_lab(r, "left by its session").prefix
                                    for r in left))
    changed = rootstate.diff(_root_before(config), rootstate.snapshot())
    if changed:
        problems.append("the root namespace changed during the session:\n" + changed)
    if problems:
        reporter = config.pluginmanager.get_plugin("terminalreporter")   # None: -p no:terminal
        for problem in problems:
            if reporter is not None:
                reporter.write_line(f"nslab: {problem}", red=True)
            else:
                print(f"nslab: {problem}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


WORKER_TEARDOWN_BOUND = 30.0   # s
# Statuses that mean a checksum's bytes were summed (not skipped, not unknowable).
SUMMED = (Status.VALID, Status.DISABLED, Status.ZERO_TUNNEL)


def _let_workers_finish(session_record) -> None:
    """An interrupted session ends here while its xdist workers may still be
    removing their labs: wait for those (their owners alive, not keepers) to go,
    bounded, before judging what was left behind."""
    def tearing_down():
        return [r for r in owner.all_records() if r.session == session_record.id
                and not r.keeper and r.owner_alive() and r.pid != os.getpid()]
    deadline = time.monotonic() + WORKER_TEARDOWN_BOUND
    while tearing_down() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"_nslab_{report.when}", report)
    row = getattr(item, "_nslab_row", None)
    if row is None and report.when == "call":
        row = item._nslab_row = _check_row(item)
    if row is not None and report.when == "call" and report_rows.results_dir():
        row.outcome = _outcome(report)
        row.wire = _what_the_wire_carried(item.funcargs.get("lab"))
        report_rows.write(row, report_rows.results_dir())
    if report.when == "call":
        for name, value in _properties(row):   # junit.xml carries the row's evidence
            report.user_properties.append((name, value))
    return report


def _check_row(item):
    """A test of a scenario's suite (``test_<scenario>.py``) that reported no row of
    its own is still listed under that scenario, as a check."""
    scenario = item.path.stem.removeprefix("test_")
    if not item.path.stem.startswith("test_") or scenario not in SCENARIOS:
        return None
    callspec = getattr(item, "callspec", None)
    name = item.originalname + (f"[{callspec.id}]" if callspec else "")
    return report_rows.Row(scenario=scenario, test=item.nodeid, knobs={"check": name},
                           check=True)


def _what_the_wire_carried(the_lab) -> str:
    """The lab's captures in one phrase: ``correct`` when no checksum on any frame was
    wrong, else the first wrong one (``BROKEN: ICMP chksum wire=0x788e correct=0xcbe5``);
    "" when nothing was captured or a capture is void (dropped frames)."""
    if the_lab is None or not the_lab.captures:
        return ""
    judged = 0
    for cap in the_lab.captures:
        try:
            verdicts = cap.stop().verdicts()
        except LabError:          # void: the kernel dropped or truncated frames
            return ""
        for _, verdict in verdicts:
            if verdict.invalid:
                return f"BROKEN: {verdict.invalid[0].describe().removeprefix('INVALID ')}"
            judged += any(layer.status in SUMMED for layer in verdict.layers)
    return "correct" if judged else ""     # "correct" only for bytes that were summed


def _properties(row) -> list[tuple[str, str]]:
    if row is None or not getattr(row, "outcome", ""):
        return []
    return ([("scenario", row.scenario), ("datapath", row.datapath()),
             ("expected", row.expectation())]
            + [(f"knob.{k}", str(v)) for k, v in row.knobs.items()]
            + [(f"evidence.{k}", str(v)) for k, v in row.evidence.items()])


def _outcome(report) -> str:
    if hasattr(report, "wasxfail"):
        return "xfail" if report.skipped else "XPASS"
    return report.outcome


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture
def report_row(request):
    """``report_row(scenario, knobs, **evidence)``: this test's row in the scenario
    table that ``nslab run`` prints (knobs → verdict, counters, timings)."""
    def record(scenario: str, knobs: dict, known_bug: str = "", **evidence):
        request.node._nslab_row = report_rows.Row(
            scenario=scenario, test=request.node.nodeid, knobs=dict(knobs),
            evidence={k: str(v) for k, v in evidence.items()}, known_bug=known_bug)
        return request.node._nslab_row
    return record


@pytest.fixture(scope="session")
def root_required():
    if os.geteuid() != 0:
        pytest.skip(ROOT_REASON)


@pytest.fixture(scope="session")
def drop_monitor(root_required):
    """The machine-wide drop-reason monitor of this worker, or None (with why)."""
    why = DropMonitor.unavailable() or (
        "drop reasons off: NSLAB_DROPMON=0" if os.environ.get("NSLAB_DROPMON") == "0" else None)
    if why:
        yield None
        return
    monitor = DropMonitor()
    yield monitor
    monitor.close()


@pytest.fixture
def lab(request, root_required, drop_monitor):
    """A lab for one test; artifacts on failure; always removed."""
    the_lab = Lab(description={"test": request.node.nodeid})
    drops_before = drop_monitor.snapshot() if drop_monitor else None
    results = request.config._nslab_results
    try:
        yield the_lab
    finally:
        report = getattr(request.node, "_nslab_call", None)
        if report is not None and report.failed:
            where = os.path.join(results, "artifacts", artifacts.safe_name(request.node.nodeid))
            for cap in the_lab.captures:
                cap.stop()
            artifacts.collect(the_lab, where)
            _write_drops(where, drop_monitor, drops_before)
            print(f"nslab artifacts: {where}", file=sys.stderr)
            if os.environ.get("NSLAB_KEEP_FAILED") == "1":
                name = kept_name(request.node.name, the_lab.prefix)
                prefix = the_lab.hand_over(name, describe_lab(the_lab))
                print(f"nslab: kept lab {name} ({prefix}) for inspection: "
                      f"nslab ls / exec / down {name}", file=sys.stderr)
        elif os.environ.get("NSLAB_KEEP_PCAPNG") == "1" and the_lab.captures:
            where = os.path.join(results, "pcapng", artifacts.safe_name(request.node.nodeid))
            os.makedirs(where, exist_ok=True)
            for i, cap in enumerate(the_lab.captures):
                cap.stop()
                cap.result.write_pcapng(os.path.join(
                    where, artifacts.safe_name(f"{i}-{cap.node.name}-{cap.device}") + ".pcapng"))
        the_lab.close()


def kept_name(test_name: str, prefix: str) -> str:
    """A kept lab's name: the test's, made to follow the lab-name rule, and the
    lab's own hex so that two sessions keeping the same test never share one."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name).strip("_.-")[:50] or "test"
    return f"{stem}-{prefix.rsplit('-', 1)[-1]}"


def _write_drops(where: str, monitor, before) -> None:
    if monitor is None:
        text = (DropMonitor.unavailable() or "drop reasons off: NSLAB_DROPMON=0") + "\n"
    else:
        text = "\n".join([HEADER, *describe_drops(monitor.since(before))]) + "\n"
    with open(os.path.join(where, "drops.txt"), "w") as f:
        f.write(text)


@pytest.fixture
def pair(lab):
    """Two nodes over one veth: client eth0 10.0.0.1/24 fd00::1/64 — server eth0
    10.0.0.2/24 fd00::2/64. Returns (client, server)."""
    client, server = lab.add_node("client"), lab.add_node("server")
    end_c, end_s = lab.veth(client, "eth0", server, "eth0")
    end_c.add_addr("10.0.0.1/24").add_addr("fd00::1/64")
    end_s.add_addr("10.0.0.2/24").add_addr("fd00::2/64")
    return client, server


@pytest.fixture
def capture(lab):
    """``cap = capture(node, dev)``: started now, stopped at the latest with the test;
    keywords go to :class:`Capture` (e.g. ``ignore=kernel_chatter``)."""
    def start(node, device: str, **options) -> Capture:
        return Capture(node, device, **options).start()
    return start


@pytest.fixture
def topology(request, lab):
    """``nodes = topology("lab.yaml")``: a topology file built into this test's lab;
    returns its nodes by name."""
    def build(path):
        from .scenarios import topology_file   # with its YAML parser: only where used
        beside_test = request.path.parent / path
        return topology_file.build(lab, beside_test if beside_test.exists() else path)
    return build
