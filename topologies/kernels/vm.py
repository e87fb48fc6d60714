"""Run lab tests on another kernel: boot it with virtme-ng on the host's root file
system and run pytest inside.

- Acceleration: KVM when QEMU can actually run a vCPU with it, else TCG. On some
  hosts ``/dev/kvm`` exists but QEMU aborts at the first vCPU (a paravirtual KVM
  such as kvm_pvm), so this probes a real QEMU for a moment instead of trusting
  the device node. ``$NSLAB_VM_ACCEL=kvm|tcg`` overrides the probe.
- Results: the guest sees the host's root read-only (9p); the results directory
  is shared read-write (``--rwdir``) and receives the JUnit file, artifacts, the
  guest's ``release``, a ``started`` marker and pytest's ``exit-status``.
- The exit status is never lost: it is a file the guest writes after pytest
  returns, not virtme-ng's own channel (which needs udev in the guest to find its
  virtio ports, and costs 10-25 s of ``udevadm settle`` under TCG). No status
  file means the guest died: before the tests started (``no-boot``), during them
  (``crashed``: a panic, an oops that killed pytest, a power-off) or it hung past
  the timeout (``timeout``). Each comes with the console's tail.
- Console: ``vng -v`` puts the kernel console (loglevel 5: warnings, oopses,
  panics) and, without udev, the script's output on our pipe; all of it lands in
  ``console.log`` and progress lines are printed while the guest runs.
"""
from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import LabError, Unsupported
from ..paths import PROJECT_ROOT
from ..selection import unused_plugins
from .images import Kernel

ACCEL_ENV = "NSLAB_VM_ACCEL"
REPO = PROJECT_ROOT
TAIL_LINES = 40
RESULT_WORD = re.compile(r"\b(PASSED|FAILED|SKIPPED|XFAIL|XPASS|ERROR)\b")
# "collected 158 items / 104 deselected / 54 selected", "collected 39 items", xdist's "[54 items]"
COLLECTED = re.compile(r"(?:collected (?P<all>\d+) items?(?:.*?(?P<selected>\d+) selected)?"
                       r"|\[(?P<workers>\d+) items?\])")
GUEST_UP = "nslab-guest: up"
Progress = Callable[[str], None]


def collected_count(match: re.Match) -> int:
    """The tests that will run, from a COLLECTED match."""
    return int(match["selected"] or match["all"] or match["workers"])


# -- acceleration -----------------------------------------------------------------------
@dataclass(frozen=True)
class Accel:
    name: str       # "kvm" | "tcg"
    reason: str     # why this one


def qemu_binary() -> str:
    found = shutil.which("qemu-system-x86_64")
    if not found:
        raise Unsupported("qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
    return found


KERNEL_STARTED = b"Linux version"


def probe_kvm(qemu: str, image: Optional[Path] = None, seconds: float = 3.0) -> Optional[str]:
    """None when QEMU under KVM gets ``image`` to print its first console line within
    ``seconds`` (a kernel does in well under one); else why not. A vCPU that merely
    runs is not enough: on some hosts SeaBIOS runs under KVM and the kernel then
    hangs at its first instruction, or QEMU aborts at once."""
    if not os.path.exists("/dev/kvm"):
        return "no /dev/kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not read-writable for this user"
    argv = [qemu, "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-nodefaults",
            "-display", "none", "-monitor", "none", "-serial", "stdio", "-m", "256",
            "-no-reboot"]
    if image is not None:
        argv += ["-kernel", str(image),
                 "-append", "earlyprintk=serial,ttyS0 console=ttyS0 panic=-1"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    seen = bytearray()

    def read():
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            seen.extend(chunk)
            if image is not None and KERNEL_STARTED in seen:
                return
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(seconds)
    exited = proc.poll()
    if exited is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()
    if image is not None and KERNEL_STARTED in seen:
        return None
    if exited is not None:
        last = (bytes(seen).decode(errors="replace").strip().splitlines() or [f"exit {exited}"])[-1]
        return f"QEMU with KVM exits at once ({last[:160]})"
    if image is None:
        return None                      # still running a vCPU, nothing to boot: assume so
    return f"a kernel under KVM printed nothing in {seconds:.0f} s"


_accel_cache: dict[Optional[Path], Accel] = {}


def accel(image: Optional[Path] = None) -> Accel:
    """KVM when it boots ``image`` (or runs a vCPU, without one), else TCG (cached
    per process and image)."""
    forced = os.environ.get(ACCEL_ENV)
    if forced:
        if forced not in ("kvm", "tcg"):
            raise LabError(f"${ACCEL_ENV} must be kvm or tcg, not {forced!r}")
        return Accel(forced, f"${ACCEL_ENV}={forced}")
    if image not in _accel_cache:
        why_not = probe_kvm(qemu_binary(), image)
        _accel_cache[image] = (Accel("kvm", "KVM boots the kernel") if why_not is None
                               else Accel("tcg", f"TCG: {why_not}"))
    return _accel_cache[image]


# -- a run ------------------------------------------------------------------------------
@dataclass
class Run:
    """One kernel's test session, in a VM or on the host."""
    kernel: str
    results: Path
    state: str = "error"           # completed | no-boot | crashed | timeout | error
    exit_code: Optional[int] = None
    release: str = ""
    seconds: float = 0.0
    boot_seconds: Optional[float] = None          # start → guest userspace up
    first_result_seconds: Optional[float] = None  # start → first test result
    tests_done: int = 0
    console_tail: list[str] = field(default_factory=list)
    panic_line: str = ""           # the first panic/BUG line: the trace after it fills the tail
    detail: str = ""

    @property
    def completed(self) -> bool:
        return self.state == "completed"

    def problem(self) -> str:
        """One line for a run that did not complete ('' otherwise)."""
        if self.completed:
            return ""
        return f"{self.kernel}: {self.state}: {self.detail}"


# -- the guest side ---------------------------------------------------------------------
def guest_script(argv: list[str], results: Path, env: dict[str, str]) -> str:
    """The shell script the guest runs: markers, pytest, the exit status as a file."""
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    r = shlex.quote(str(results))
    return f"""#!/bin/sh
# Written by nslab (topologies/kernels/vm.py); runs as the guest's command.
echo "{GUEST_UP} $(uname -r) after $(cut -d' ' -f1 /proc/uptime) s of guest time"
uname -r > {r}/release
{exports}
mkdir -p /run/netns
cd {shlex.quote(str(REPO))} || exit 125
: > {r}/started
{shlex.join(argv)}
rc=$?
echo "$rc" > {r}/exit-status.tmp && mv {r}/exit-status.tmp {r}/exit-status
sync
echo "nslab-guest: pytest exited $rc"
exit "$rc"
"""


def guest_env(results: Path, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    from ..bpf import compiler, prebuilt
    from . import images
    env = {
        "NSLAB_RESULTS": str(results),
        "NSLAB_CACHE": str(images.cache_root()),
        prebuilt.MANIFEST_ENV: str(compiler.cache_dir() / prebuilt.MANIFEST_NAME),
        # The machine-wide drop-reason monitor is a diagnostic for the host's runs;
        # a guest's verdicts come from its tests.
        "NSLAB_DROPMON": "0",
        "PYTHONDONTWRITEBYTECODE": "1",    # the root file system is read-only
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra or {})
    return env


def vng_binary() -> str:
    """virtme-ng's ``vng``, from this venv first (it runs ``virtme-run`` from PATH)."""
    vng = shutil.which("vng", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if not vng:
        raise Unsupported("vng not found (pip install virtme-ng, as ci/setup.sh does)")
    return vng


def vng_command(kernel: Kernel, results: Path, script: Path, *, acceleration: Accel,
                cpus: int, memory: str, rwdirs: tuple[Path, ...] = ()) -> list[str]:
    vng = vng_binary()
    if kernel.image is None:
        raise LabError(f"{kernel.name}: no kernel image (prepare() it first)")
    argv = [vng, "--run", str(kernel.image), "--force-9p", "-v",
            "--cpus", str(cpus), "--memory", memory, "--name", f"nslab-{kernel.slug}",
            "--append", "loglevel=5", "--rwdir", str(results)]
    for directory in rwdirs:
        argv += ["--rwdir", str(directory)]
    if acceleration.name == "tcg":
        argv.append("--disable-kvm")
    return argv + ["--exec", f"sh {shlex.quote(str(script))}"]


# -- running and watching ---------------------------------------------------------------
class _Watcher:
    """Reads a child's merged output: console.log, tail, markers, progress."""

    def __init__(self, run: Run, log, progress: Progress, started: float):
        self.run, self.log, self.progress, self.started = run, log, progress, started
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.total: Optional[int] = None
        self.counts: dict[str, int] = {}
        self.last_report = started

    def line(self, text: str) -> None:
        now = time.monotonic() - self.started
        self.log.write(text)
        text = text.rstrip("\n")
        self.tail.append(text)
        run = self.run
        if not run.panic_line and ("Kernel panic" in text or "BUG:" in text):
            run.panic_line = text
        if GUEST_UP in text and run.boot_seconds is None:
            run.boot_seconds = now
            self.progress(f"[{run.kernel}] booted in {now:.1f} s: {text.split(GUEST_UP, 1)[1].strip()}")
        match = COLLECTED.search(text)
        if match and self.total is None:
            self.total = collected_count(match)
            self.progress(f"[{run.kernel}] {self.total} tests collected after {now:.1f} s")
        word = RESULT_WORD.search(text)
        if word and "::" in text and "%]" in text:     # a result line, not the summary
            if run.first_result_seconds is None:
                run.first_result_seconds = now
            run.tests_done += 1
            self.counts[word[1]] = self.counts.get(word[1], 0) + 1
            if word[1] in ("FAILED", "ERROR", "XPASS"):
                self.progress(f"[{run.kernel}] {text.strip()[:200]}")
        self.tick()

    def tick(self) -> None:
        """A progress line every 30 s, lines or not (collection under TCG is silent)."""
        if time.monotonic() - self.last_report >= 30:
            self.last_report = time.monotonic()
            self.progress(f"[{self.run.kernel}] {self.status(time.monotonic() - self.started)}")

    def status(self, now: float) -> str:
        run = self.run
        done = f"{run.tests_done}/{self.total or '?'} tests"
        counts = ", ".join(f"{v} {k.lower()}" for k, v in sorted(self.counts.items()))
        eta = ""
        if self.total and run.tests_done and run.first_result_seconds is not None:
            rate = (now - run.first_result_seconds) / run.tests_done   # s per test so far
            eta = f", about {rate * (self.total - run.tests_done):.0f} s left"
        return f"{done} after {now:.0f} s{eta}" + (f" ({counts})" if counts else "")


def watch(argv: list[str], run: Run, *, timeout: float, progress: Progress,
          env: Optional[dict] = None, cwd: Optional[Path] = None) -> None:
    """Run ``argv`` (its own session, under a guardian), stream its output, stop it at
    the timeout."""
    started = time.monotonic()
    with open(run.results / "console.log", "w", errors="replace") as log:
        watcher = _Watcher(run, log, progress, started)
        # The guest dies with this process, however it dies (see guardian).
        guarded = [sys.executable, "-m", "topologies.kernels.guardian", str(os.getpid()), *argv]
        proc = subprocess.Popen(guarded, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True, text=True, errors="replace")
        lines: queue.Queue = queue.Queue()

        def pump():
            for text in proc.stdout:
                lines.put(text)
            lines.put(None)
        threading.Thread(target=pump, daemon=True).start()
        timed_out = False
        try:
            while True:
                left = started + timeout - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                try:
                    text = lines.get(timeout=min(left, 1.0))
                except queue.Empty:
                    watcher.tick()
                    continue
                if text is None:
                    break
                watcher.line(text)
        finally:
            if proc.poll() is None:
                # Imported here: `python -m topologies.kernels.guardian` must not find
                # itself imported already through this package.
                from .guardian import stop_group
                stop_group(proc, grace=15)   # the guardian stops the guest's group
            proc.wait()
        run.seconds = time.monotonic() - started
        run.console_tail = list(watcher.tail)
        run.exit_code = proc.returncode
        if timed_out:
            run.state, run.detail = "timeout", f"no exit after {timeout:.0f} s; stopped"


def handle_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP unwind (stopping the VM on the way out), and the
    children get SIGINT at its default even when we were started with it ignored
    (``nohup ... &``): the lab's own tests send SIGINT to their helpers."""
    from ..lab.lab import raise_on_termination
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise_on_termination()


def run_in_guest(kernel: Kernel, pytest_argv: list[str], results: Path, *,
                 timeout: float = 3600, cpus: int = 2, memory: str = "2G",
                 progress: Progress = print, extra_env: Optional[dict] = None,
                 nice: int = 0) -> Run:
    """Boot ``kernel`` and run ``python -m pytest <pytest_argv>`` in it.

    ``nice`` lowers the VM's CPU priority: a VM booted from inside the host's own
    test session must not starve the timing-sensitive lab tests next to it."""
    from ..bpf import compiler
    results = results.resolve()
    results.mkdir(parents=True, exist_ok=True)
    for stale in ("started", "exit-status", "release", "junit.xml"):
        (results / stale).unlink(missing_ok=True)
    run = Run(kernel=kernel.name, results=results, release=kernel.release)
    env = guest_env(results, extra_env)
    argv = [sys.executable, "-m", "pytest", *pytest_argv, *unused_plugins(pytest_argv),
            f"--junitxml={results / 'junit.xml'}", "-p", "no:cacheprovider", "-v",
            "--color=no",    # the guest's console is a tty
            "-p", "no:debugging"]   # no --pdb in a VM: spares importing pdb and readline
    script = results / "guest.sh"
    script.write_text(guest_script(argv, results, env))
    acceleration = accel(kernel.image)
    bpf_cache = compiler.cache_dir()
    bpf_cache.mkdir(parents=True, exist_ok=True)
    command = vng_command(kernel, results, script, acceleration=acceleration, cpus=cpus,
                          memory=memory, rwdirs=(bpf_cache,))
    if nice:
        command = ["nice", "-n", str(nice), *command]
    progress(f"[{kernel.name}] booting {kernel.release or kernel.image} "
             f"({acceleration.reason}), timeout {timeout:.0f} s")
    host_env = dict(os.environ)
    host_env["PATH"] = f"{Path(sys.executable).parent}:{host_env.get('PATH', '')}"
    watch(command, run, timeout=timeout, progress=progress, env=host_env, cwd=results)
    judge_guest(run)
    progress(f"[{kernel.name}] {summary_line(run)}")
    return run


def judge_guest(run: Run) -> None:
    """Decide the state from the files the guest left (the status file is the truth)."""
    results = run.results
    release = results / "release"
    if release.is_file():
        run.release = release.read_text().strip() or run.release
    status = results / "exit-status"
    if status.is_file() and status.read_text().strip().isdigit():
        run.exit_code = int(status.read_text().strip())
        run.state, run.detail = "completed", f"pytest exit {run.exit_code}"
        return
    panic = run.panic_line or next(
        (l for l in run.console_tail if "Kernel panic" in l or "BUG:" in l), "")
    where = "during the tests" if (results / "started").exists() else "before the tests started"
    if run.state != "timeout":
        run.state = "crashed" if (results / "started").exists() else "no-boot"
        run.detail = f"the guest stopped {where} without an exit status (vng exit {run.exit_code})"
    else:
        run.detail += f" ({where})"
    if panic:
        run.detail += f"; console: {panic.strip()[:200]}"


def summary_line(run: Run) -> str:
    timing = [f"{run.seconds:.0f} s total"]
    if run.boot_seconds is not None:
        timing.append(f"boot {run.boot_seconds:.1f} s")
    if run.first_result_seconds is not None:
        timing.append(f"first test result at {run.first_result_seconds:.1f} s")
    state = run.detail if run.completed else run.problem()
    return f"{state}; {run.tests_done} tests; " + ", ".join(timing)


def printer() -> Progress:
    """Progress lines stamped with the seconds since this call."""
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {message}", flush=True)
    return progress
