#!/usr/bin/env python3
"""tshark as an independent oracle for nslab's checksum verdicts.

    .venv/bin/python benchmarks/tshark_oracle.py [--list-known] /tmp/r/pcapng [FILE | DIR]...

Takes pcapng files (directories are searched for ``*.pcapng``), runs tshark
with checksum validation on over the frames of each file's *wire* interface
(the frames nslab judged; a file without nslab's two views is taken whole),
and compares tshark's status for every checksum field with nslab's verdict on
the same field of the same bytes (``verify`` on the wire frame: the verdict
the file's comment records). Fields are matched by their byte offset in the
frame (PDML ``pos``), so both tools must have found the field at the same place.

Prints the number of frames, the checksums both judged and how many agree,
the disagreements where tshark is known to be wrong or has no such status
(``KNOWN``, by kind), what only one side judged, and every unexplained
disagreement with its file, frame and layer. Exit status 1 on any unexplained
disagreement, 2 on bad usage or a tshark failure.
"""
from __future__ import annotations

import argparse
import collections
import enum
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional

from topologies.capture import pcapng
from topologies.verdict import (
    DEFAULT_GENEVE_PORTS,
    DEFAULT_VXLAN_PORTS,
    LayerVerdict,
    Status,
    verify,
)

WIRE_INTERFACE_MARK = "(wire:"   # how nslab names a file's wire view (af_packet.WIRE_VIEW)

# Wireshark checks ICMP, ICMPv6, GRE and RFC 4884 extension checksums always; IPv4,
# UDP and TCP only when told. Reassembly off: a reassembled packet's fields have
# offsets in the reassembled buffer, not in the frame.
TSHARK_OPTIONS = (
    "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
    "-o", "tcp.check_checksum:TRUE",
    "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
    "-o", "tcp.desegment_tcp_streams:FALSE", "-o", "tcp.analyze_sequence_numbers:FALSE",
    # the tunnels nslab dissects inside, decoded by tshark too
    *(arg for port in DEFAULT_VXLAN_PORTS for arg in ("-d", f"udp.port=={port},vxlan")),
    *(arg for port in DEFAULT_GENEVE_PORTS for arg in ("-d", f"udp.port=={port},geneve")),
)
PDML_PROTOCOLS = "ip ipv6 udp tcp icmp icmpv6 gre igmp"   # -J: what PDML keeps, whole


class Tshark(enum.IntEnum):
    """Wireshark's proto_checksum_enum_e: the value of ``*.checksum.status``."""
    BAD = 0
    GOOD = 1
    UNVERIFIED = 2
    NOT_PRESENT = 3
    ILLEGAL = 4


# nslab's status -> the tshark statuses that say the same
AGREEING = {
    Status.VALID: {Tshark.GOOD},
    Status.INVALID: {Tshark.BAD, Tshark.ILLEGAL},
    Status.DISABLED: {Tshark.NOT_PRESENT},
    Status.NOT_CHECKABLE: {Tshark.UNVERIFIED},
}
JUDGED = {Tshark.BAD, Tshark.GOOD, Tshark.NOT_PRESENT, Tshark.ILLEGAL}
# nslab statuses that vouch for nothing: agreeing with a tshark that did not verify
NOT_VOUCHED = {Status.PENDING, Status.ZERO_TUNNEL, Status.NOT_CHECKABLE}


@dataclass(frozen=True)
class TsharkChecksum:
    field: str                      # "tcp.checksum"
    offset: int
    status: Optional[Tshark]        # None: tshark showed the field without a status


@dataclass(frozen=True)
class Known:
    """A disagreement where tshark is known to be wrong or has no such status."""
    kind: str
    applies: Callable[[LayerVerdict, TsharkChecksum], bool]


def _computed_zero(ours: LayerVerdict, theirs: TsharkChecksum) -> bool:
    # One's complement has two zeros; the kernel writes 0xffff for a computed 0
    # (skb_checksum_help's CSUM_MANGLED_0) and receivers accept both. tshark
    # calls TCP's 0xffff bad ("see RFC 1624").
    return (ours.status is Status.VALID and theirs.status is Tshark.BAD
            and ours.wire in (0x0000, 0xFFFF) and ours.correct in (0x0000, 0xFFFF))


def _truncated_quote(ours: LayerVerdict, theirs: TsharkChecksum) -> bool:
    # tshark sums the bytes a quote holds as if they were all ("maybe caused by
    # checksum offload"); nslab says the rest of the datagram is missing.
    return ours.status is Status.NOT_CHECKABLE and "quote truncated" in ours.reason


KNOWN = (
    Known("pending quote: nslab PENDING (a CHECKSUM_PARTIAL seed in the quote); "
          "tshark has no such status", lambda ours, theirs: ours.status is Status.PENDING),
    Known("zero tunnel checksum: nslab ZERO_TUNNEL (RFC 6935); tshark has no such status",
          lambda ours, theirs: ours.status is Status.ZERO_TUNNEL),
    Known("truncated quote: nslab NOT_CHECKABLE; tshark judges bytes the quote does not hold",
          _truncated_quote),
    Known("0xffff vs 0x0000 for a computed zero: nslab VALID; tshark bad",
          _computed_zero),
    Known("not checkable: nslab NOT_CHECKABLE (with its reason); tshark has no such status",
          lambda ours, theirs: ours.status is Status.NOT_CHECKABLE),
)

AGREE, KNOWN_DISAGREEMENT, ONE_SIDED, UNEXPLAINED = "agree", "known", "one-sided", "unexplained"


@dataclass(frozen=True)
class Comparison:
    file: str
    frame: int                       # Wireshark's frame number in the file
    ours: Optional[LayerVerdict]
    theirs: Optional[TsharkChecksum]
    outcome: str                     # AGREE, KNOWN_DISAGREEMENT, ONE_SIDED, UNEXPLAINED
    kind: str = ""

    def describe(self) -> str:
        ours = "nslab: no layer" if self.ours is None else (
            f"{self.ours.path} (offset {self.ours.offset}): nslab {self.ours.describe()}")
        theirs = "tshark: no checksum field" if self.theirs is None else (
            f"tshark {self.theirs.field} "
            f"{self.theirs.status.name if self.theirs.status is not None else 'no status'}")
        return f"{self.file} frame {self.frame}: {ours}; {theirs}"


def classify(ours: Optional[LayerVerdict],
             theirs: Optional[TsharkChecksum]) -> tuple[str, str]:
    """(outcome, kind) for one checksum field as both tools see it."""
    if ours is None:
        if theirs.status in (Tshark.BAD, Tshark.ILLEGAL):
            return UNEXPLAINED, "tshark finds a bad checksum that nslab does not judge"
        return ONE_SIDED, f"only tshark reports {theirs.field}"
    if theirs is None:
        return ONE_SIDED, f"only nslab reports {ours.path} ({ours.status.name})"
    if theirs.status in AGREEING.get(ours.status, ()):
        return AGREE, ""
    if theirs.status in JUDGED:
        known = next((k for k in KNOWN if k.applies(ours, theirs)), None)
        return (KNOWN_DISAGREEMENT, known.kind) if known else (UNEXPLAINED, "opposite verdicts")
    if ours.status in NOT_VOUCHED:
        return AGREE, ""      # tshark did not verify it either
    return ONE_SIDED, (f"only nslab judges {ours.path} ({ours.status.name}): "
                       "tshark did not verify it")


# -- tshark -----------------------------------------------------------------------------

def tshark_checksums(path: str, display_filter: str = "") -> dict[int, list[TsharkChecksum]]:
    """Frame number -> every checksum field tshark dissected in it, with its status."""
    argv = ["tshark", "-n", "-r", path, "-T", "pdml", "-J", PDML_PROTOCOLS, *TSHARK_OPTIONS]
    if display_filter:
        argv += ["-Y", display_filter]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        frames = dict(_pdml_frames(proc.stdout))
        errors = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"tshark failed on {path} (exit {proc.returncode}): {errors.strip()}")
    return frames


def _pdml_frames(stream) -> Iterator[tuple[int, list[TsharkChecksum]]]:
    number, fields, statuses = 0, {}, {}
    for _, elem in ElementTree.iterparse(stream, events=("end",)):
        if elem.tag == "field":
            name = elem.get("name", "")
            if name == "num":
                number = int(elem.get("show"), 0)
            elif name.endswith(".checksum"):
                fields.setdefault(int(elem.get("pos")), (name, elem.get("showname", "")))
            elif name.endswith(".checksum.status"):
                statuses.setdefault(int(elem.get("pos")), Tshark(int(elem.get("show"))))
        elif elem.tag == "packet":
            yield number, [TsharkChecksum(name, pos, _status(statuses.get(pos), showname))
                           for pos, (name, showname) in sorted(fields.items())]
            fields, statuses = {}, {}
            elem.clear()


def _status(status: Optional[Tshark], showname: str) -> Optional[Tshark]:
    # a zero UDP checksum over IPv6 gets no status field, only "[zero-value illegal]"
    if status is None and "illegal" in showname:
        return Tshark.ILLEGAL
    return status


# -- one file -------------------------------------------------------------------------

def wire_interfaces(capture: pcapng.PcapngFile) -> list[int]:
    """The interfaces holding wire frames: nslab's wire views, else all of them."""
    wire = [i for i, iface in enumerate(capture.interfaces) if WIRE_INTERFACE_MARK in iface.name]
    return wire or list(range(len(capture.interfaces)))


def compare_file(path: str) -> tuple[int, list[Comparison]]:
    """(wire frames, one comparison per checksum field either tool judged)."""
    capture = pcapng.read(path)
    wire = wire_interfaces(capture)
    frames = {n: p for n, p in enumerate(capture.packets, start=1) if p.interface in wire}
    if not frames:
        return 0, []
    only_wire = " || ".join(f"frame.interface_id == {i}" for i in wire)
    theirs_by_frame = tshark_checksums(path, only_wire)
    comparisons = []
    for number, packet in frames.items():
        comparisons += compare_frame(path, number, packet.data, theirs_by_frame.get(number, []))
    return len(frames), comparisons


def compare_frame(path: str, number: int, frame: bytes,
                  theirs: Iterable[TsharkChecksum]) -> list[Comparison]:
    [verdict] = verify(frame)        # no vnet header: a wire frame is what it is
    ours = {v.offset: v for v in verdict.layers if v.offset is not None}
    theirs = {t.offset: t for t in theirs}
    out = []
    for offset in sorted(ours.keys() | theirs.keys()):
        outcome, kind = classify(ours.get(offset), theirs.get(offset))
        out.append(Comparison(path, number, ours.get(offset), theirs.get(offset), outcome, kind))
    return out


# -- many files -----------------------------------------------------------------------

@dataclass
class Tally:
    files: int = 0
    frames: int = 0
    comparisons: list[Comparison] = field(default_factory=list)

    def add(self, frames: int, comparisons: list[Comparison]) -> None:
        self.files += 1
        self.frames += frames
        self.comparisons += comparisons

    def outcome(self, outcome: str) -> list[Comparison]:
        return [c for c in self.comparisons if c.outcome == outcome]

    @property
    def both_judged(self) -> int:
        return sum(c.outcome in (AGREE, KNOWN_DISAGREEMENT, UNEXPLAINED)
                   for c in self.comparisons)

    def report(self, list_known: bool = False) -> str:
        kinds = lambda outcome: collections.Counter(c.kind for c in self.outcome(outcome))
        lines = [f"tshark oracle: {self.files} files, {self.frames} wire frames, "
                 f"{len(self.comparisons)} checksum fields",
                 f"  judged by both: {self.both_judged}",
                 f"  agree:          {len(self.outcome(AGREE))}",
                 f"  known disagreements: {len(self.outcome(KNOWN_DISAGREEMENT))}"]
        lines += [f"    {n:6d}  {kind}" for kind, n in kinds(KNOWN_DISAGREEMENT).most_common()]
        if list_known:
            lines += [f"      {c.describe()}" for c in self.outcome(KNOWN_DISAGREEMENT)]
        lines.append(f"  judged by one side only: {len(self.outcome(ONE_SIDED))}")
        lines += [f"    {n:6d}  {kind}" for kind, n in kinds(ONE_SIDED).most_common()]
        unexplained = self.outcome(UNEXPLAINED)
        lines.append(f"  unexplained disagreements: {len(unexplained)}")
        lines += [f"    {c.describe()} [{c.kind}]" for c in unexplained]
        return "\n".join(lines)


def pcapng_files(paths: Iterable[str]) -> list[str]:
    found = []
    for path in paths:
        if os.path.isdir(path):
            found += sorted(os.path.join(d, name) for d, _, names in os.walk(path)
                            for name in names if name.endswith(".pcapng"))
        else:
            found.append(path)
    return found


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="DIR_OR_FILE")
    parser.add_argument("--list-known", action="store_true",
                        help="also list each known disagreement with its file, frame and layer")
    args = parser.parse_args(argv)
    if shutil.which("tshark") is None:
        print("tshark_oracle: tshark not installed (apt-get install -y tshark)", file=sys.stderr)
        return 2
    files = pcapng_files(args.paths)
    missing = [f for f in files if not os.path.isfile(f)]
    if missing or not files:
        print(f"tshark_oracle: no pcapng file at {', '.join(missing or args.paths)}",
              file=sys.stderr)
        return 2
    tally = Tally()
    try:
        for path in files:
            tally.add(*compare_file(path))
    except RuntimeError as err:
        print(f"tshark_oracle: {err}", file=sys.stderr)
        return 2
    print(tally.report(args.list_known))
    return 1 if tally.outcome(UNEXPLAINED) else 0


if __name__ == "__main__":
    sys.exit(main())
