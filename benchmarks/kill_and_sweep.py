#!/usr/bin/env python3
"""Kill test runs with SIGKILL at random moments, run one ``nslab sweep``, and
print what is left.

Each round starts one workload as its own process group — the scenario suites
(``-n 2``), a session holding keepers and a kept lab, or a VM test — waits a
random time (or, for the keepers, until they exist), then SIGKILLs the whole
group. After the last round: one ``nslab sweep``, then an inventory of what
nslab makes: namespaces, their /run/netns mounts, owner and session records,
keeper, guardian and qemu processes, BPF programs that were not there before,
and the root namespace compared with its state before the first round.

    sudo .venv/bin/python benchmarks/kill_and_sweep.py [--rounds 10] [--seed N]

(Each new test session also sweeps what dead sessions left when it starts; the
final ``nslab sweep`` is what removes the last round's.)
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from topologies.bpf import libbpf
from topologies.lab import netns, owner, rootstate, session
from topologies.paths import PROJECT_ROOT

PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
HELPERS = PROJECT_ROOT / "labtests" / "selftests" / "helpers"
WORKLOADS = {
    "scenarios": (PYTEST + ["-n", "2", "labtests/test_vxlan_overlay.py",
                            "labtests/test_lb_snat.py", "labtests/test_xdp_responder.py"], (2, 25)),
    "keepers": (PYTEST + [str(HELPERS / "session_with_keepers.py")], None),
    "vm": (PYTEST + ["-n", "0", "-m", "vm", "labtests/selftests/test_matrix.py", "-k",
                     "netkit_lab_test_runs_in_a_vm"], (5, 45)),
}
OUR_PROCESSES = ("topologies.lab.keeper", "topologies.cli.keeper", "topologies.kernels.guardian")


def processes() -> dict[int, str]:
    """Our long-lived processes by pid: keepers, guardians and qemu guests named nslab-*
    (read from /proc for the report only: nothing here signals by name)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = " ".join(a.decode(errors="replace") for a in argv if a)
        if any(name in text for name in OUR_PROCESSES) or (
                "qemu-system" in text and "nslab-" in text):
            if owner.process_alive(int(entry)):
                found[int(entry)] = text[:120]
    return found


def inventory(progs_before: set[int], root_before: dict) -> dict[str, list[str]]:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if f"{netns.NETNS_RUN_DIR}/nslab-" in line]
    return {
        "namespaces": netns.names("nslab-"),
        "netns mounts": mounts,
        "owner records": [r.prefix for r in owner.all_records()],
        "session records": [s.id for s in session.all_sessions()],
        "processes": [f"{pid} {argv}" for pid, argv in processes().items()],
        "BPF programs": [str(i) for i in sorted(set(libbpf.prog_ids()) - progs_before)],
        "root namespace": [line for line in
                           rootstate.diff(root_before, rootstate.snapshot()).splitlines()],
    }


def run_round(kind: str, rng: random.Random, workdir: Path) -> str:
    argv, window = WORKLOADS[kind]
    made = workdir / f"made-{time.monotonic_ns()}.json"
    env = dict(os.environ, NSLAB_MADE=str(made), NSLAB_UP_NAME=f"chaos-{os.urandom(3).hex()}",
               NSLAB_DROPMON="0")
    env.pop(session.SESSION_ENV, None)
    proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    started = time.monotonic()
    if window is None:   # kill once the keepers and the kept lab exist (bounded)
        while not made.exists() and proc.poll() is None and time.monotonic() - started < 180:
            time.sleep(0.1)
        wait = time.monotonic() - started
    else:
        wait = rng.uniform(*window)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
    finished = proc.poll() is not None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return f"{kind}: SIGKILL after {wait:.1f} s" + (" (it had already finished)" if finished
                                                    else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--kinds", default=",".join(WORKLOADS),
                        help=f"workloads to draw from (default: {','.join(WORKLOADS)})")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("kill_and_sweep: needs root", file=sys.stderr)
        return 2
    kinds = args.kinds.split(",")
    unknown = [k for k in kinds if k not in WORKLOADS]
    if unknown:
        print(f"kill_and_sweep: unknown workload {unknown[0]}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    progs_before, root_before = set(libbpf.prog_ids()), rootstate.snapshot()
    print(f"kill_and_sweep: {args.rounds} rounds, seed {seed}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.rounds):
            # The first rounds take each kind once, so every kind is killed at least once.
            kind = kinds[n] if n < len(kinds) else rng.choice(kinds)
            print(f"round {n + 1}: {run_round(kind, rng, Path(tmp))}", flush=True)
    before_sweep = inventory(progs_before, root_before)
    sweep = subprocess.run([sys.executable, "-m", "topologies.cli", "sweep"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, timeout=300)
    print("\nbefore the sweep: " + ", ".join(f"{len(v)} {k}" for k, v in before_sweep.items()))
    print(f"nslab sweep (exit {sweep.returncode}):\n  " + "\n  ".join(
        sweep.stdout.strip().splitlines() or ["(no output)"]))
    left = inventory(progs_before, root_before)
    print("\nleft after one sweep:")
    for what, items in left.items():
        print(f"  {what:<16} {len(items)}" + "".join(f"\n    {i}" for i in items))
    total = sum(len(v) for v in left.values())
    print(f"\nkill_and_sweep: {args.rounds} SIGKILLs, {total} things left after one sweep")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
