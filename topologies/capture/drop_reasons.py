"""Why the kernel dropped packets: ``kfree_skb`` drop reasons, counted by a BPF program.

A diagnostic beside the per-namespace SNMP counters, and unlike them it is
**machine-wide**: the tracepoint fires for every namespace, parallel tests
included. ``bpf/drop_monitor.c`` (a raw tracepoint: built once, cached like
every nslab program, loaded in milliseconds) counts by reason and location;
reason names come from the running kernel's tracepoint format (its
``__print_symbolic`` table), locations are named from ``/proc/kallsyms``, so no
kernel headers have to match.

Where tracefs, clang or libbpf is missing, ``DropMonitor.unavailable()`` says why
and nothing else breaks.
"""
from __future__ import annotations

import bisect
import collections
import functools
import os
import re
import struct
from typing import Optional

from ..bpf import compiler
from ..errors import LabError

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
EVENT = "events/skb/kfree_skb/format"
NOISE = {"NOT_SPECIFIED"}   # plain kfree_skb() calls: not a drop worth naming
PROGRAM = "bpf/drop_monitor.c"
DROP_KEY = struct.Struct("=I4xQ")      # struct drop_key: reason, location
COUNT = struct.Struct("=Q")


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
        path = _format_file()
        if not path:
            return ("drop reasons off: no skb:kfree_skb tracepoint "
                    "(mount -t tracefs nodev /sys/kernel/tracing)")
        with open(path) as f:
            offsets, _ = parse_format(f.read())
        if "reason" not in offsets:
            return "drop reasons off: kernel's kfree_skb has no reason field (< 5.17)"
        try:
            compiler.clang()
            from ..bpf import libbpf  # noqa: F401  (raises Unsupported without libbpf.so.1)
        except LabError as exc:   # Unsupported is one
            return f"drop reasons off: {exc}"
        return None

    def __init__(self):
        from ..bpf import libbpf
        with open(_format_file()) as f:
            _offsets, self.names = parse_format(f.read())
        self._obj = libbpf.BpfObject.open(compiler.build(PROGRAM).path, name="drop_monitor.c")
        try:
            self._link = libbpf.raw_tracepoint_open("kfree_skb",
                                                    self._obj.program("on_kfree_skb").fd)
        except BaseException:
            self._obj.close()
            raise
        self._drops = self._obj.map("drops")

    def snapshot(self) -> collections.Counter:
        """The counts so far, as ``since`` takes them: by (reason, location) numbers
        (named only when a difference is asked for: reading the kernel's symbols
        takes 0.2 s, and a lab test takes a snapshot before it starts)."""
        counts: collections.Counter = collections.Counter()
        for key, value in self._drops.items():
            counts[DROP_KEY.unpack(key)] += COUNT.unpack_from(value)[0]
        return counts

    def since(self, before: collections.Counter) -> collections.Counter:
        """What was dropped since ``snapshot()`` returned ``before``, by (reason
        name, kernel function)."""
        after = self.snapshot()
        after.subtract(before)
        named: collections.Counter = collections.Counter()
        for (reason, location), count in after.items():
            if count > 0:
                named[(self.names.get(reason, str(reason)), kernel_symbol(location))] += count
        return named

    def close(self) -> None:
        os.close(self._link)    # detaches the program
        self._obj.close()


@functools.lru_cache(maxsize=1)
def _kernel_text() -> tuple[list[int], list[str]]:
    """The kernel's text symbols, by address (read once: about 0.1 s)."""
    addresses, names = [], []
    with open("/proc/kallsyms", "rb") as f:
        for line in f:
            address, kind, name = line.split(b" ", 2)
            if kind in (b"t", b"T"):
                addresses.append(int(address, 16))
                names.append(name.split(b"\t", 1)[0].strip().decode())
    order = sorted(range(len(addresses)), key=addresses.__getitem__)
    return [addresses[i] for i in order], [names[i] for i in order]


@functools.lru_cache(maxsize=4096)
def kernel_symbol(address: int) -> str:
    """The kernel function ``address`` is in (its name, no offset), or the address."""
    addresses, names = _kernel_text()
    at = bisect.bisect_right(addresses, address) - 1
    return names[at] if at >= 0 and address else f"0x{address:x}"


def describe(drops: collections.Counter, *, include_noise: bool = False) -> list[str]:
    """``["7 × UDP_CSUM at __udp4_lib_rcv", ...]``, most frequent first."""
    return [f"{count} × {reason} at {where}" for (reason, where), count in drops.most_common()
            if include_noise or reason not in NOISE]


HEADER = "drop reasons (skb:kfree_skb, machine-wide: all namespaces, parallel tests included)"
