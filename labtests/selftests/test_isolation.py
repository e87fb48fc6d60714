"""Labs own only what they create: parallel owners never collide, a killed
owner's lab is removed by ``nslab sweep``, and the root namespace is untouched."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from topologies.lab import netns, owner, rootstate, sweep
from topologies.paths import PROJECT_ROOT

REPO = str(PROJECT_ROOT)
HERE = os.path.dirname(os.path.abspath(__file__))
HOLD = [sys.executable, os.path.join(HERE, "helpers", "hold_lab.py")]


@pytest.fixture
def held(root_required):
    """Start hold_lab.py processes. Afterwards, kill them and remove their labs
    only (a global sweep here could race with a test that is asserting what
    a killed owner left behind)."""
    procs = []

    def start(*flags):
        proc = subprocess.Popen(HOLD + list(flags), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=REPO)
        procs.append(proc)
        return proc
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    pids = {proc.pid for proc in procs}
    for record in owner.all_records():
        if record.pid in pids:
            sweep.remove_lab(record)


def nslab(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "topologies.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def first_line(proc) -> dict:
    line = proc.stdout.readline()
    assert line, f"hold_lab failed: {proc.stderr.read()}"
    return json.loads(line)


def bpf_prog_exists(prog_id: int) -> bool:
    from topologies import bpf
    return bpf.prog_exists(prog_id)


def wait_until(predicate, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_two_owners_building_the_same_topology_never_collide(held):
    """Same node names, device names and addresses, built at the same moment."""
    procs = [held("--exit"), held("--exit")]
    made = [first_line(p) for p in procs]
    assert made[0]["prefix"] != made[1]["prefix"]
    assert [m["answered"] for m in made] == [3, 3]
    for proc in procs:
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    for m in made:
        assert netns.names(m["prefix"]) == []


# Both tests run the global `nslab sweep`: one worker runs them, one after the
# other, so neither sweeps what the other is looking at.
@pytest.mark.xdist_group("global-sweep")
def test_sigkill_leaves_the_lab_and_sweep_removes_everything(held):
    root_before = rootstate.snapshot()
    proc = held("--bpf")
    made = first_line(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Killed: nothing ran its cleanup, so everything is still there.
    assert netns.names(made["prefix"]) == sorted(made["namespaces"])
    assert os.path.exists(f"/proc/{made['pid']}")
    assert all(bpf_prog_exists(i) for i in made["prog_ids"])

    swept = nslab("sweep")
    assert swept.returncode == 0, swept.stderr
    # (Its output may not name the lab: a test session starting meanwhile on
    # this machine sweeps dead owners' labs too. What counts is what is left.)
    assert netns.names(made["prefix"]) == []
    assert made["prefix"] not in [r.prefix for r in owner.all_records()]
    assert wait_until(lambda: not os.path.exists(f"/proc/{made['pid']}"))
    assert wait_until(lambda: not any(bpf_prog_exists(i) for i in made["prog_ids"]))
    assert rootstate.diff(root_before, rootstate.snapshot()) == ""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupted_owner_cleans_up_by_itself(held, sig):
    proc = held()
    made = first_line(proc)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert netns.names(made["prefix"]) == []
    assert made["prefix"] not in [r.prefix for r in owner.all_records()]


@pytest.mark.xdist_group("global-sweep")
def test_sweep_spares_live_labs_and_namespaces_without_a_record(lab):
    node = lab.add_node("alive")
    stranger = f"{lab.prefix}x-not-ours"   # our prefix shape, but no owner record
    netns.create(stranger)
    try:
        result = nslab("sweep")
        assert result.returncode == 0
        assert node.netns in netns.names(lab.prefix)
        assert stranger in netns.names(stranger)
    finally:
        netns.remove(stranger)
