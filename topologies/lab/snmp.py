"""Per-namespace SNMP counters.

``/proc/net`` follows the *reading thread's* namespace only through
``/proc/thread-self/net``; ``/proc/self/net`` is the main thread's view. So
counters are read on a thread inside the namespace (see ``Node.snmp``).
"""
from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("/proc/thread-self/net/snmp", "/proc/thread-self/net/netstat",
           "/proc/thread-self/net/snmp6")


def parse_paired(text: str) -> dict[str, dict[str, int]]:
    """Parse the ``Proto: names`` / ``Proto: values`` line pairs of snmp and netstat."""
    out: dict[str, dict[str, int]] = {}
    lines = text.splitlines()
    for head, values in zip(lines[0::2], lines[1::2]):
        proto, names = head.split(":", 1)
        _, nums = values.split(":", 1)
        out.setdefault(proto, {}).update(zip(names.split(), (int(v) for v in nums.split())))
    return out


def parse_snmp6(text: str) -> dict[str, dict[str, int]]:
    """snmp6 is one ``Ip6InReceives 12`` per line; group by protocol prefix."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        name, value = line.split()
        for proto in ("Ip6", "Icmp6", "UdpLite6", "Udp6"):
            if name.startswith(proto):
                out.setdefault(proto, {})[name[len(proto):]] = int(value)
                break
    return out


def read_here() -> "Counters":
    """Read the calling thread's namespace counters."""
    tables: dict[str, dict[str, int]] = {}
    for source in SOURCES:
        with open(source) as f:
            text = f.read()
        tables.update(parse_snmp6(text) if source.endswith("snmp6") else parse_paired(text))
    return Counters(tables)


@dataclass
class Counters:
    tables: dict[str, dict[str, int]]

    def __getitem__(self, key: str) -> int:
        """``counters["Udp.InCsumErrors"]``."""
        proto, name = key.split(".", 1)
        return self.tables[proto][name]

    def delta(self, before: "Counters") -> dict[str, int]:
        """Non-zero changes since ``before``, as ``{"Udp.InCsumErrors": 5}``."""
        out = {}
        for proto, names in self.tables.items():
            for name, value in names.items():
                diff = value - before.tables.get(proto, {}).get(name, 0)
                if diff:
                    out[f"{proto}.{name}"] = diff
        return out
