"""``nslab doctor``: can this machine run labs, and what to do when it cannot.

Every check says what it found and, when something is missing, the fix.
Essential checks decide the exit status; the others only narrow what runs
(their tests skip with the same reason).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable

from ..errors import LabError, Unsupported
from ..paths import IN_CHECKOUT, PROJECT_ROOT

# The fix for what the machine lacks: this checkout's setup script, or (nslab
# installed from a wheel) the Debian packages it would install.
SETUP = (f"bash {PROJECT_ROOT / 'ci' / 'setup.sh'}" if IN_CHECKOUT else
         "apt-get install clang llvm libbpf-dev iproute2 iptables nftables ethtool")
CAPS = {"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_SYS_ADMIN": 21, "CAP_BPF": 39}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    essential: bool = False


def _output(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return ""
    return (proc.stdout or proc.stderr).strip()


def check_root() -> Check:
    ok = os.geteuid() == 0
    return Check("root", ok, "uid 0" if ok else f"uid {os.geteuid()}",
                 "run nslab as root (labs create namespaces and load BPF)", essential=True)


# What every lab command needs: namespaces and netlink (CAP_SYS_ADMIN, CAP_NET_ADMIN).
ROOT_CAPS = ("CAP_NET_ADMIN", "CAP_SYS_ADMIN")


def missing_caps(names=tuple(CAPS)) -> list[str]:
    """The capabilities among ``names`` this process lacks (effective set)."""
    with open("/proc/self/status") as f:
        eff = int(re.search(r"^CapEff:\s*([0-9a-f]+)", f.read(), re.M).group(1), 16)
    return [name for name in names if not eff >> CAPS[name] & 1]


def check_capabilities() -> Check:
    missing = missing_caps()
    return Check("capabilities", not missing,
                 "all of " + ", ".join(CAPS) if not missing else "missing " + ", ".join(missing),
                 "run privileged (docker --privileged, or a root shell on the host)",
                 essential=True)


def check_kernel() -> Check:
    return Check("kernel", True, f"{os.uname().release} ({os.uname().machine})")


def _scratch_lab_checks() -> list[Check]:
    """Features probed for real in a throw-away lab."""
    from ..lab.lab import Lab
    checks = []
    try:
        lab = Lab(name="doctor")
    except OSError as exc:
        return [Check("namespaces", False, str(exc), "needs root and /run writable",
                      essential=True)]
    with lab:
        try:
            a, b = lab.add_node("a"), lab.add_node("b")
            end_a, _ = lab.veth(a, "eth0", b, "eth0")
            checks.append(Check("namespaces+veth", True, "created, linked, removed",
                                essential=True))
        except (LabError, OSError) as exc:
            return [Check("namespaces+veth", False, str(exc),
                          "kernel needs CONFIG_NET_NS and CONFIG_VETH", essential=True)]
        checks.append(_probe("vxlan", lambda: lab.vxlan(
            a, "vx0", vni=1, local="192.0.2.1", remote="192.0.2.2", underlay="eth0",
            udpcsum=True), "CONFIG_VXLAN (modprobe vxlan)"))
        checks.append(_probe("netkit", lambda: lab.netkit(a, "nk0", b, "nk1"),
                             "kernel >= 6.7 with CONFIG_NETKIT (Debian's 6.12 has it); "
                             "the netkit tests run in a VM with `nslab matrix`"))
        checks.append(_probe("clsact", lambda: a.ipr.tc("add", "clsact", end_a.index),
                             "CONFIG_NET_SCH_INGRESS (clsact qdisc)", essential=True))
        checks.extend(_bpf_checks(lab, a, end_a))
    return checks


def _probe(name: str, fn: Callable[[], object], fix: str, essential: bool = False) -> Check:
    try:
        fn()
        return Check(name, True, "works", essential=essential)
    except Unsupported as exc:
        return Check(name, False, str(exc), fix, essential)
    except Exception as exc:
        return Check(name, False, f"{type(exc).__name__}: {exc}", fix, essential)


def _bpf_checks(lab, node, iface) -> list[Check]:
    """tcx and XDP on veth, with the lab's own probe program."""
    from .. import bpf
    from ..bpf import libbpf

    def xdp_native():
        obj = bpf.load(lab, "bpf/core_probe.c")
        bpf.attach_xdp(iface, obj.program("xdp_count"), "native")
    return [
        _probe("tcx", libbpf.require_tcx,
               "kernel >= 6.6 for tcx (BPF_LINK_CREATE with BPF_TCX_INGRESS)"),
        _probe("xdp on veth", xdp_native,
               "kernel with native XDP on veth (>= 4.19), clang and libbpf (" + SETUP + ")"),
    ]


def check_btf() -> Check:
    ok = os.path.exists("/sys/kernel/btf/vmlinux")
    return Check("BTF", ok, "/sys/kernel/btf/vmlinux" if ok else "no /sys/kernel/btf/vmlinux",
                 "kernel with CONFIG_DEBUG_INFO_BTF")


def check_tracefs() -> Check:
    for path in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.exists(os.path.join(path, "events")):
            return Check("tracefs", True, path)
    return Check("tracefs", False, "not mounted (drop-reason monitor off)",
                 "mount -t tracefs nodev /sys/kernel/tracing")


def check_clang() -> Check:
    version = _output(["clang", "--version"]).splitlines()
    return Check("clang", bool(version), version[0] if version else "not found",
                 "apt-get install clang llvm  (or: " + SETUP + ")", essential=True)


def check_libbpf() -> Check:
    try:
        ctypes.CDLL("libbpf.so.1")
        lib_ok = True
    except OSError:
        lib_ok = False
    headers = os.path.exists("/usr/include/bpf/bpf_helpers.h")
    ok = lib_ok and headers
    detail = ("libbpf.so.1 and bpf_helpers.h" if ok else
              ", ".join(m for m, have in (("libbpf.so.1 missing", lib_ok),
                                          ("bpf/bpf_helpers.h missing", headers)) if not have))
    return Check("libbpf", ok, detail, "apt-get install libbpf1 libbpf-dev", essential=True)


def check_iptables() -> Check:
    version = _output(["iptables", "--version"])
    backend = re.search(r"\((\w+)\)", version)
    nft = _output(["nft", "--version"])
    ok = bool(version) and bool(nft)
    detail = (f"{version} [backend {backend.group(1) if backend else 'legacy'}]; {nft}"
              if ok else f"iptables: {version or 'not found'}; nft: {nft or 'not found'}")
    return Check("firewall tools", ok, detail, "apt-get install iptables nftables")


def check_ethtool() -> Check:
    path = shutil.which("ethtool")
    return Check("ethtool", bool(path), path or "not found (nslab uses netlink; "
                 "the command is for people)", "apt-get install ethtool")


def check_drop_monitor() -> Check:
    from ..capture.drop_reasons import DropMonitor
    why = DropMonitor.unavailable()
    return Check("drop reasons", why is None, why or "kfree_skb reasons by a BPF program",
                 "optional: nothing else needs it")


def run_checks() -> list[Check]:
    checks = [check_root(), check_capabilities(), check_kernel()]
    if checks[0].ok:
        checks.extend(_scratch_lab_checks())
    checks += [check_btf(), check_tracefs(), check_clang(), check_libbpf(), check_iptables(),
               check_ethtool(), check_drop_monitor()]
    return checks


def report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        mark = "ok " if c.ok else ("ERR" if c.essential else "-- ")
        lines.append(f"{mark} {c.name:<{width}}  {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"    {'':<{width}}  fix: {c.fix}")
    return "\n".join(lines)


def essential_missing(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.essential and not c.ok]
