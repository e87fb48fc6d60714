"""Fixtures for lab tests: a ``lab`` per test, captures, failure artifacts, and
the session's promise that nothing of ours outlives it.

Fixtures (for people writing their own lab tests):
- ``lab``: a fresh :class:`topologies.Lab`, closed after the test; on failure its
  artifacts (pcapng per capture, verdicts, links, routes, tc filters, firewall,
  SNMP counters) are written under ``results/artifacts/<test id>/``.
- ``capture``: ``capture(node, "eth0")`` starts an offload-aware capture that
  ends with the test and lands in the artifacts.
- ``pair``: two nodes over one veth (client 10.0.0.1 / fd00::1, server .2 / ::2).
- ``report_row``: this test's row in the scenario table ``nslab run`` prints.
- ``drop_monitor``: the machine-wide drop-reason monitor, or None.
- ``root_required``: skip with the reason when not root.
"""
from __future__ import annotations

import os
import re
import sys

import pytest

from topologies.capture.drop_reasons import HEADER, DropMonitor
from topologies.capture.drop_reasons import describe as describe_drops
from topologies.lab import Lab, raise_on_termination, rootstate, sweep
from topologies.lab import session as lab_session
from topologies.report import artifacts, describe_lab
from topologies.report import rows as report_mod

RESULTS_DIR = os.environ.get("NSLAB_RESULTS", os.path.join(os.path.dirname(__file__), "results"))


def _is_controller(config) -> bool:
    return not hasattr(config, "workerinput")


def _scapy_must_not_resolve(*args, **kwargs):
    raise RuntimeError("scapy wanted to resolve a MAC address, which sends ARP/ND from the "
                       "root namespace: give Ether() an explicit dst")


def _forbid_scapy_resolution() -> None:
    """Lab traffic stays in lab namespaces: an ``Ether()`` without ``dst`` makes
    scapy send ARP or neighbour solicitations from the root namespace."""
    from scapy.layers import inet6, l2
    l2.getmacbyip = inet6.getmacbyip6 = _scapy_must_not_resolve


def pytest_configure(config):
    raise_on_termination()
    _forbid_scapy_resolution()
    if _is_controller(config) and os.geteuid() == 0:
        # Every lab made below belongs to this session (nested in an enclosing one).
        config._nslab_session = lab_session.begin()
        # The next run removes what a killed run left (dead owners, dead sessions).
        for swept in sweep.sweep():
            print(f"nslab: swept lab {swept.describe()}")
        config._nslab_root_before = rootstate.snapshot()


# Fixtures that make a test depend on the running kernel; such tests get the
# ``lab`` marker, so ``-m lab`` (nslab matrix's default) picks what a kernel can change.
KERNEL_FIXTURES = {"lab", "root_required"}


VM_TEST_TIMEOUT = 1500   # a boot under TCG plus the guest's own pytest run


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
    kept, left = lab_session.finish(config._nslab_session)
    for record in kept:
        print(f"\nnslab: kept lab {record.name} ({record.prefix}): nslab ls / exec / down "
              f"{record.name}")
    if left:
        problems.append("labs left behind by this session (now removed): "
                        + ", ".join(sweep.remove_lab(r, "left by its session").prefix
                                    for r in left))
    changed = rootstate.diff(config._nslab_root_before, rootstate.snapshot())
    if changed:
        problems.append("the root namespace changed during the session:\n" + changed)
    if problems:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        for problem in problems:
            reporter.write_line(f"nslab: {problem}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"_nslab_{report.when}", report)
    row = getattr(item, "_nslab_row", None)
    if row is not None and report.when == "call" and report_mod.results_dir():
        row.outcome = _outcome(report)
        report_mod.write(row, report_mod.results_dir())
    return report


def _outcome(report) -> str:
    if hasattr(report, "wasxfail"):
        return "xfail" if report.skipped else "XPASS"
    return report.outcome


@pytest.fixture
def report_row(request):
    """``report_row(scenario, knobs, **evidence)``: this test's row in the scenario
    table that ``nslab run`` prints (knobs → verdict, counters, timings)."""
    def record(scenario: str, knobs: dict, known_bug: str = "", **evidence):
        request.node._nslab_row = report_mod.Row(
            scenario=scenario, test=request.node.nodeid, knobs=dict(knobs),
            evidence={k: str(v) for k, v in evidence.items()}, known_bug=known_bug)
        return request.node._nslab_row
    return record


@pytest.fixture(scope="session")
def root_required():
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (namespaces, netlink, BPF)")


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
    try:
        yield the_lab
    finally:
        report = getattr(request.node, "_nslab_call", None)
        if report is not None and report.failed:
            where = os.path.join(RESULTS_DIR, "artifacts",
                                 artifacts.safe_name(request.node.nodeid))
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
            where = os.path.join(RESULTS_DIR, "pcapng", artifacts.safe_name(request.node.nodeid))
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
    """``cap = capture(node, dev)``: started now, stopped at the latest with the test."""
    from topologies import Capture

    def start(node, device: str) -> Capture:
        return Capture(node, device).start()
    return start
