"""Why the kernel dropped packets: ``skb:kfree_skb`` drop reasons through bcc.

A diagnostic beside the per-namespace SNMP counters, and unlike them it is
**machine-wide**: the tracepoint fires for every namespace, parallel tests
included. Reason names come from the running kernel's tracepoint format (its
``__print_symbolic`` table), field offsets too, so no kernel headers have to
match; the drop location is resolved to a kernel symbol.

Where bcc or tracefs is missing, ``DropMonitor.unavailable()`` says why and
nothing else breaks.
"""
from __future__ import annotations

import collections
import os
import re
from typing import Optional

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
EVENT = "events/skb/kfree_skb/format"
NOISE = {"NOT_SPECIFIED"}   # plain kfree_skb() calls: not a drop worth naming

_PROGRAM = r"""
struct key_t { u32 reason; u64 location; };
BPF_HASH(drops, struct key_t, u64, 16384);
int on_kfree_skb(void *ctx) {
    struct key_t key = {};
    bpf_probe_read_kernel(&key.location, sizeof(key.location), ctx + LOCATION_OFFSET);
    bpf_probe_read_kernel(&key.reason, sizeof(key.reason), ctx + REASON_OFFSET);
    drops.increment(key);
    return 0;
}
"""


def _format_file() -> Optional[str]:
    for root in TRACEFS:
        path = os.path.join(root, EVENT)
        if os.path.exists(path):
            return path
    return None


def parse_format(text: str) -> tuple[dict[str, int], dict[int, str]]:
    """Field offsets and the reason-number → name table of the tracepoint."""
    offsets = {name: int(offset)
               for name, offset in re.findall(r"field:[^;]*?(\w+);\s*offset:(\d+);", text)}
    symbolic = re.search(r"__print_symbolic\(REC->reason,(.*)\)", text, re.S)
    names = {int(n): name for n, name in
             re.findall(r"\{\s*(\d+),\s*\"(\w+)\"\s*\}", symbolic[1])} if symbolic else {}
    return offsets, names


class DropMonitor:
    """``mon = DropMonitor(); before = mon.snapshot(); ...; mon.since(before)``."""

    @staticmethod
    def unavailable() -> Optional[str]:
        """Why the monitor cannot run here, or None."""
        if os.geteuid() != 0:
            return "drop reasons off: needs root"
        try:
            import bcc  # noqa: F401
        except ImportError:
            return "drop reasons off: bcc not importable (apt-get install python3-bpfcc)"
        release = os.uname().release
        if not (os.path.exists(f"/lib/modules/{release}/build")
                or os.path.exists("/sys/kernel/kheaders.tar.xz")):
            return (f"drop reasons off: bcc finds no kernel headers for {release} "
                    "(bash ci/setup.sh links Debian's)")
        path = _format_file()
        if not path:
            return ("drop reasons off: no skb:kfree_skb tracepoint "
                    "(mount -t tracefs nodev /sys/kernel/tracing)")
        with open(path) as f:
            offsets, _ = parse_format(f.read())
        if "reason" not in offsets:
            return "drop reasons off: kernel's kfree_skb has no reason field (< 5.17)"
        return None

    def __init__(self):
        from bcc import BPF
        with open(_format_file()) as f:
            offsets, self.names = parse_format(f.read())
        # bcc wants bytes for names and program text.
        self._bpf = BPF(text=_PROGRAM.encode(),
                        cflags=[f"-DLOCATION_OFFSET={offsets['location']}",
                                f"-DREASON_OFFSET={offsets['reason']}"])
        self._bpf.attach_tracepoint(tp=b"skb:kfree_skb", fn_name=b"on_kfree_skb")
        self._symbols: dict[int, str] = {}

    def _symbol(self, addr: int) -> str:
        if addr not in self._symbols:
            name = self._bpf.ksym(addr)
            self._symbols[addr] = name.decode() if isinstance(name, bytes) else str(name)
        return self._symbols[addr]

    def snapshot(self) -> collections.Counter:
        counts: collections.Counter = collections.Counter()
        for key, value in self._bpf[b"drops"].items():
            reason = self.names.get(key.reason, str(key.reason))
            counts[(reason, self._symbol(key.location))] += value.value
        return counts

    def since(self, before: collections.Counter) -> collections.Counter:
        after = self.snapshot()
        after.subtract(before)
        return collections.Counter({k: v for k, v in after.items() if v > 0})

    def close(self) -> None:
        self._bpf.cleanup()


def describe(drops: collections.Counter, *, include_noise: bool = False) -> list[str]:
    """``["7 × UDP_CSUM at __udp4_lib_rcv", ...]``, most frequent first."""
    return [f"{count} × {reason} at {where}" for (reason, where), count in drops.most_common()
            if include_noise or reason not in NOISE]


HEADER = "drop reasons (skb:kfree_skb, machine-wide: all namespaces, parallel tests included)"
