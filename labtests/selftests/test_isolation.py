"""Labs own only what they create: parallel owners never collide, a killed
owner's lab is removed by ``nslab sweep``, and the root namespace is untouched."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from topologies.lab import SESSION_ENV, netns, owner, rootstate, sweep
from topologies.lab import session as lab_session
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


# Only a bound: a namespace's teardown (which frees its links' BPF programs) runs
# in a kernel workqueue after RCU grace periods, seconds late under TCG.
def wait_until(predicate, timeout=60.0) -> bool:
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


def test_each_xdist_group_lies_within_one_file():
    """This repository runs its suite with ``--dist loadfile`` (pyproject.toml),
    which keeps a file on one worker but ignores xdist_group marks: a group
    spread over two files would run on two workers at once."""
    files_of: dict[str, set[str]] = {}
    for path in (PROJECT_ROOT / "labtests").rglob("test_*.py"):
        for group in re.findall(r"xdist_group\(\s*[\"']([^\"']+)", path.read_text()):
            files_of.setdefault(group, set()).add(path.name)
    assert files_of, "no xdist_group marks found: is the pattern stale?"
    assert {g: f for g, f in files_of.items() if len(f) > 1} == {}


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
    assert owner.process_alive(made["pid"])
    assert all(bpf_prog_exists(i) for i in made["prog_ids"])

    swept = nslab("sweep")
    assert swept.returncode == 0, swept.stderr
    # (Its output may not name the lab: a test session starting meanwhile on
    # this machine sweeps dead owners' labs too. What counts is what is left.)
    assert netns.names(made["prefix"]) == []
    assert made["prefix"] not in [r.prefix for r in owner.all_records()]
    # Dead, as a zombie too: an orphan's reaper may be an init that never reaps (a VM's).
    assert wait_until(lambda: not owner.process_alive(made["pid"]))
    assert wait_until(lambda: not any(bpf_prog_exists(i) for i in made["prog_ids"]))
    assert rootstate.diff(root_before, rootstate.snapshot()) == ""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupted_owner_cleans_up_by_itself(held, sig):
    proc = held()
    made = first_line(proc)
    proc.send_signal(sig)
    # Its stderr is read meanwhile (a full pipe would block its exit), and shown if it hangs.
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode is not None, stderr[-2000:]
    assert netns.names(made["prefix"]) == [], stderr[-2000:]
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


# -- ownership that survives every way a run can die --------------------------------------
def inner_pytest(helper: str, env: dict, *args) -> subprocess.Popen:
    """A nested pytest session in its own process group (so it can be killed whole)."""
    return subprocess.Popen([sys.executable, "-m", "pytest", os.path.join(HERE, "helpers", helper),
                             "-p", "no:cacheprovider", "-q", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def records_of_session(session_id: str) -> list:
    return [r for r in owner.all_records() if r.session == session_id]


@pytest.mark.xdist_group("global-sweep")
def test_a_killed_session_is_swept_with_its_keepers_and_kept_labs(root_required, tmp_path):
    made_path = tmp_path / "made.json"
    env = dict(os.environ, NSLAB_MADE=str(made_path), NSLAB_UP_NAME=f"s-{os.urandom(3).hex()}")
    proc = inner_pytest("session_with_keepers.py", env)
    try:
        assert wait_until(made_path.exists, timeout=180), proc.stdout.read() \
            if proc.poll() is not None else "the inner session made nothing in 180 s"
        made = json.loads(made_path.read_text())
        records = records_of_session(made["session"])
        keepers = [r.pid for r in records if r.keeper]
        assert len(records) == 3 and len(keepers) == 2, records
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Keepers live in sessions of their own: the kill did not reach them.
    assert all(owner.process_alive(pid) for pid in keepers)
    listing = nslab("ls", made["up_name"])
    # Any test session starting meanwhile (nested ones in other tests) sweeps it too.
    if listing.returncode == 0:
        assert f"test session {made['session'][:8]} (gone" in listing.stdout, listing.stdout
    else:
        assert f"no lab '{made['up_name']}'" in listing.stderr, listing.stderr

    swept = nslab("sweep")
    assert swept.returncode == 0, swept.stderr
    assert records_of_session(made["session"]) == []
    assert all(netns.names(r.prefix) == [] for r in records)
    assert wait_until(lambda: not any(owner.process_alive(pid) for pid in keepers))
    assert lab_session.load(made["session"]) is None


@pytest.mark.xdist_group("global-sweep")
def test_a_lab_started_by_hand_is_never_swept_while_its_keeper_lives(root_required):
    name = f"hand-{os.urandom(3).hex()}"
    by_hand = {k: v for k, v in os.environ.items() if k != SESSION_ENV}
    up = subprocess.run([sys.executable, "-m", "topologies.cli", "up", "pod_egress", "--name",
                         name], cwd=REPO, env=by_hand, capture_output=True, text=True,
                        timeout=120)
    assert up.returncode == 0, up.stderr
    try:
        [record] = [r for r in owner.all_records() if r.name == name]
        assert record.session == "" and record.keeper
        assert nslab("sweep").returncode == 0
        assert record.owner_alive() and netns.names(record.prefix)
        assert "started by hand" in nslab("ls", name).stdout
    finally:
        assert nslab("down", name).returncode == 0


def test_a_zombie_owner_is_dead(root_required):
    """A killed owner whose parent never reaps it keeps its pid and start time in
    /proc as a zombie: it must count as dead."""
    child = subprocess.Popen([sys.executable, "-c", "import os\nfrom topologies import Lab\n"
                              "lab = Lab()\nlab.add_node('z')\nprint(lab.prefix, flush=True)\n"
                              "import sys\nsys.stdin.read()\nos._exit(0)"],
                             cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    prefix = child.stdout.readline().strip()
    try:
        # Its record, read while it lives: once it is a zombie, a sweep that another
        # test's session starts meanwhile may remove the lab (rightly) before we look.
        [record] = [r for r in owner.all_records() if r.prefix == prefix]
        assert record.owner_alive()
        child.stdin.close()                          # now it exits, unreaped
        assert wait_until(lambda: open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1]
                          .split()[0] == "Z", timeout=10)
        assert not record.owner_alive()
        assert sweep.why_orphan(record) == f"owner pid {child.pid} is gone"
        sweep.remove_lab(record, "test")
        assert netns.names(prefix) == []
    finally:
        child.wait()


def test_a_guarded_process_group_dies_with_its_starter():
    """A VM guest (vng → sh → qemu) dies with the test that started it, even by SIGKILL."""
    starter = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "import os\nsubprocess.Popen([sys.executable, '-m', 'topologies.kernels.guardian', "
         "str(os.getpid()), 'sh', '-c', 'sleep 300 & echo $!; wait'], start_new_session=True)"
         "\ntime.sleep(300)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True)
    grandchild = int(starter.stdout.readline())
    assert owner.process_alive(grandchild)
    os.killpg(starter.pid, signal.SIGKILL)
    starter.wait()
    assert wait_until(lambda: not owner.process_alive(grandchild), timeout=15)


def test_a_hung_test_fails_with_its_stack_and_its_lab_is_removed(root_required, tmp_path):
    made = tmp_path / "prefix"
    proc = inner_pytest("hangs.py", dict(os.environ, NSLAB_MADE=str(made)), "--timeout", "3")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert "Timeout" in out and "threading.Event().wait()" in out, out
    prefix = made.read_text()
    assert netns.names(prefix) == []
    assert prefix not in [r.prefix for r in owner.all_records()]


def pytest_in_a_namespace_of_its_own(helper: str) -> tuple[int, str]:
    """A nested pytest session on a helper file, in a new network namespace (its
    root namespace): what it does there never reaches the host's."""
    proc = subprocess.run(["unshare", "--net", sys.executable, "-m", "pytest", "-q",
                           "-p", "no:cacheprovider", os.path.join(HERE, "helpers", helper)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def test_scapy_never_resolves_from_the_root_namespace_even_imported_late(root_required):
    """An Ether() without dst makes scapy send ARP (or, to an IPv6 address, a
    neighbour solicitation) from the root namespace: the plugin stops it, also
    where scapy is first imported by a fixture or by the test's body. (In a network
    namespace of its own: were the plugin to let it through, nothing leaves the host's.)"""
    returncode, out = pytest_in_a_namespace_of_its_own("scapy_resolves.py")
    assert returncode == 1, out
    # One traceback line per test (the summary repeats it, untruncated under CI=true).
    raised = re.findall(r"^E +RuntimeError: .*scapy wanted to resolve a MAC address", out, re.M)
    assert len(raised) == 2, out


def test_a_session_that_changes_the_root_namespace_fails(root_required):
    """A change a test makes to the root namespace fails the session, with the
    diff. (In a network namespace of its own, which is the session's root.)"""
    returncode, out = pytest_in_a_namespace_of_its_own("changes_root_namespace.py")
    assert returncode == 1, out
    assert "the root namespace changed during the session" in out and "LOOPBACK,UP" in out, out


def _processes_running(marker: str) -> list[int]:
    """pids whose command line holds ``marker`` (a test's own unique argument)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker in open(f"/proc/{entry}/cmdline").read() \
                    and owner.process_alive(int(entry)):
                found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("delay", ["0", "0.001", "0.01", "0.05"])
def test_a_guardian_whose_starter_dies_at_once_leaves_nothing(delay, tmp_path):
    """Killed while the guardian is still starting up: its child never outlives it.
    The child writes a file when it starts; the guardian's exit is the event."""
    started = tmp_path / "started"
    marker = f"{300 + os.getpid() % 1000}.{os.urandom(2).hex()}"   # a unique sleep length
    starter = subprocess.Popen(
        [sys.executable, "-c", "import os, subprocess, sys, time\n"
         "g = subprocess.Popen([sys.executable, '-m', 'topologies.kernels.guardian', "
         f"str(os.getpid()), 'sh', '-c', 'touch {started}; exec sleep {marker}'], "
         f"start_new_session=True)\nprint(g.pid, flush=True)\ntime.sleep({delay})"],
        cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True)
    guardian = int(starter.stdout.readline())
    starter.wait()                 # it dies right after starting the guardian
    assert wait_until(lambda: not owner.process_alive(guardian), timeout=60)
    assert _processes_running(marker) == [], f"child started: {started.exists()}"
