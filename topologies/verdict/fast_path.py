"""The common frame judged without the dissector's bookkeeping.

Bulk traffic is Ethernet, IPv4 or IPv6 without extension headers, unfragmented
TCP or UDP with every byte in the frame, sometimes inside VXLAN. For those
frames ``judge`` returns exactly the LayerVerdicts ``dissect`` makes (same
``sums``, same paths and labels; the tests compare the two), without building
headers for people, which ``dissect`` makes when someone reads them. Anything
else (a tag, an option that matters, a truncation, a zero UDP checksum, ICMP,
GRE, Geneve...) returns None: the dissector judges it.

``packed`` says the same in a form that costs no object per checksum: a
``Layout`` (where the checksums are and which are right: the same for every
frame of a flow, made once) and one int holding each field's wire and correct
values. A verdict keeps those and makes LayerVerdicts when someone reads them.

The segments of a GSO super-packet all take the same way through the walk,
and so do those of the next super-packets of its flow: a ``Plan`` keeps that
way, and judges each segment with the sums making it took, without walking.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .checksum import fold
from .dissect import sums
from .header_fields import (
    ETH_P_IP,
    ETH_P_IPV6,
    ETHERTYPES_WITHOUT_CHECKSUM,
    IPPROTO_TCP,
    IPPROTO_UDP,
)
from .layer import LayerVerdict, Status

if TYPE_CHECKING:
    from .nic import Sums

# nesting the fast path follows; deeper tunnels go to the dissector (MAX_NESTING)
MAX_FAST_NESTING = 4
# the bits each checksum takes in a packed int: its wire value, then its correct one
FIELD_BITS = 32
# distinct layouts kept (a flow has one or two); past it, each frame makes its own
MAX_LAYOUTS = 4096


class Layout:
    """The checksums of a frame without their values: path, label, status and
    field offset of each, in frame order. Frames of one flow share one."""
    __slots__ = ("fields", "ok", "statuses")

    def __init__(self, found: tuple, encapsulated: bool):
        top = "outer " if encapsulated else ""
        self.fields = tuple((path, ("inner " if nesting else top) + name,
                             Status.VALID if ok else Status.INVALID, field_off)
                            for nesting, path, name, field_off, ok in found)
        self.ok = all(ok for *_, ok in found)
        self.statuses = frozenset(status for _, _, status, _ in self.fields)

    def layers(self, values: int) -> list[LayerVerdict]:
        """The LayerVerdicts ``values`` (from ``packed``) hold."""
        shift = FIELD_BITS * len(self.fields)
        out = []
        for path, label, status, field_off in self.fields:
            shift -= FIELD_BITS
            both = values >> shift
            out.append(LayerVerdict(path, label, status, "chksum", field_off,
                                    both >> 16 & 0xFFFF, both & 0xFFFF))
        return out


_layouts: dict[tuple, Layout] = {}


def _layout(found: tuple, encapsulated: bool) -> Layout:
    key = (found, encapsulated)
    layout = _layouts.get(key)
    if layout is None:
        layout = Layout(found, encapsulated)
        if len(_layouts) < MAX_LAYOUTS:
            _layouts[key] = layout
    return layout


class _Walk:
    """The checksums found so far: where (``found``) and their values (``values``)."""
    __slots__ = ("buf", "tunnels", "summed", "found", "values", "encapsulated")

    def __init__(self, buf: bytes, tunnels, summed: Optional[Sums]) -> None:
        self.buf = buf
        self.tunnels = tunnels
        self.summed = summed or {}
        self.found: list[tuple] = []   # (nesting, path, name, field offset, ok)
        self.values = 0                # per field: wire << 16 | correct, first field highest
        self.encapsulated = False

    def add(self, nesting: int, path: str, name: str, field_off: int, start: int, end: int,
            initial: int = 0, udp: bool = False) -> None:
        buf = self.buf
        known = self.summed.get(start)
        ok, correct = sums(buf, start, end, field_off, initial, udp,
                           known[1] if known is not None and known[0] == end else None)
        self.found.append((nesting, path, name, field_off, ok))
        self.values = (self.values << FIELD_BITS | buf[field_off] << 24
                       | buf[field_off + 1] << 16 | correct)


def packed(buf: bytes, link: str, tunnels, summed: Optional[Sums] = None,
           walk: Optional[_Walk] = None) -> Optional[tuple[Layout, int]]:
    """The frame's verdicts as (layout, values), or None when it is not the
    common case. ``summed``: sums taken while making the frame (``nic.Sums``);
    ``walk``: a walk of ``buf`` not taken yet, to take instead of a new one."""
    walk = walk or _Walk(buf, tunnels, summed)
    if not (_ether if link == "ether" else _ip)(walk, 0, len(buf), 0, ""):
        return None
    return _layout(tuple(walk.found), walk.encapsulated), walk.values


class _Recorded(_Walk):
    """A walk that also keeps how each checksum was judged, for a ``Plan``."""
    __slots__ = ("judged",)

    def __init__(self, buf: bytes, tunnels, summed: Optional[Sums]) -> None:
        super().__init__(buf, tunnels, summed)
        self.judged: list[tuple] = []   # (field offset, start, end, initial, udp)

    def add(self, nesting: int, path: str, name: str, field_off: int, start: int, end: int,
            initial: int = 0, udp: bool = False) -> None:
        super().add(nesting, path, name, field_off, start, end, initial, udp)
        self.judged.append((field_off, start, end, initial, udp))


class Plan:
    """The walk through one segment of a GSO super-packet (``Plan.first``),
    kept for its other segments and those of super-packets of its shape
    (``gso.Shape``). Segmenting changes only what the walk does not decide on
    (IPv4 ids and checksums, TCP sequence numbers and flags, checksums that
    completing never leaves zero) and the lengths, each to the segment's end:
    every segment takes the same way, with its own sums. The plan is made only
    when the walk ends at the segmented L4: past it, segments differ."""
    __slots__ = ("fields", "static", "encapsulated", "layouts")

    def __init__(self, walk: _Recorded, fields: list[tuple]) -> None:
        # (field offset, start, end or 0 for the segment's end, initial less the length, udp)
        self.fields = tuple(fields)
        self.static = tuple(found[:4] for found in walk.found)   # found less ok
        self.encapsulated = walk.encapsulated
        self.layouts: dict[int, Layout] = {}   # which fields are right (bits) -> layout

    @classmethod
    def first(cls, buf: bytes, link: str, tunnels, summed: Sums,
              last_field: int) -> tuple[Optional[Plan], Optional[tuple[Layout, int]]]:
        """The plan for the segments of ``buf``'s super-packet (None if it has
        none), and ``packed`` for ``buf``; ``last_field``: the segmented L4's checksum."""
        walk = _Recorded(buf, tunnels, summed)
        found = packed(buf, link, tunnels, summed, walk)
        if found is None:
            return None, None
        end, fields = len(buf), []
        for field_off, start, stop, initial, udp in walk.judged:
            if initial:   # an L4: its length, in the pseudo-header, is the segment's
                if stop != end:
                    return None, found
                length = end - start
                fields.append((field_off, start, 0, initial - (length >> 16) - (length & 0xFFFF),
                               udp))
            else:
                fields.append((field_off, start, stop, 0, udp))
        ends_there = walk.judged and walk.judged[-1][0] == last_field
        return (cls(walk, fields) if ends_there else None), found

    def packed(self, buf: bytes, summed: Sums) -> tuple[Layout, int]:
        """``packed`` for another segment of the super-packet."""
        end = len(buf)
        oks = values = 0
        for field_off, start, stop, initial, udp in self.fields:
            known = summed.get(start)
            if not stop:
                stop, length = end, end - start
                initial += (length >> 16) + (length & 0xFFFF)
            elif known is not None and known[0] == stop and known[1] == 0xFFFF:
                # an IPv4 header GSO wrote: sums() finds it right, as is (but 0xffff)
                wire = buf[field_off] << 8 | buf[field_off + 1]
                if wire != 0xFFFF:
                    oks = oks << 1 | 1
                    values = values << FIELD_BITS | wire << 16 | wire
                    continue
            ok, correct = sums(buf, start, stop, field_off, initial, udp,
                               known[1] if known is not None and known[0] == stop else None)
            oks = oks << 1 | ok
            values = (values << FIELD_BITS | buf[field_off] << 24 | buf[field_off + 1] << 16
                      | correct)
        layout = self.layouts.get(oks)
        if layout is None:
            layout = self.layouts[oks] = self._layout(oks)
        return layout, values

    def _layout(self, oks: int) -> Layout:
        last = len(self.static) - 1
        found = tuple((*static, bool(oks >> (last - i) & 1))
                      for i, static in enumerate(self.static))
        return _layout(found, self.encapsulated)


def judge(buf: bytes, link: str, tunnels,
          summed: Optional[Sums] = None) -> Optional[list[LayerVerdict]]:
    """``packed`` as LayerVerdicts."""
    found = packed(buf, link, tunnels, summed)
    return None if found is None else found[0].layers(found[1])


def _ether(walk: _Walk, off: int, end: int, nesting: int, prefix: str) -> bool:
    if end - off < 14:
        return False
    buf = walk.buf
    etype = buf[off + 12] << 8 | buf[off + 13]
    if etype == ETH_P_IP:
        return _ipv4(walk, off + 14, end, nesting, prefix)
    if etype == ETH_P_IPV6:
        return _ipv6(walk, off + 14, end, nesting, prefix)
    return etype in ETHERTYPES_WITHOUT_CHECKSUM


def _ip(walk: _Walk, off: int, end: int, nesting: int, prefix: str) -> bool:
    if end > off and walk.buf[off] >> 4 == 6:
        return _ipv6(walk, off, end, nesting, prefix)
    return _ipv4(walk, off, end, nesting, prefix)


def _ipv4(walk: _Walk, off: int, end: int, nesting: int, prefix: str) -> bool:
    buf = walk.buf
    if end - off < 20 or buf[off] >> 4 != 4:
        return False
    hlen = (buf[off] & 15) * 4
    if hlen < 20 or end - off < hlen:
        return False
    walk.add(nesting, prefix + "ipv4", "IPv4", off + 10, off, off + hlen)
    tot_len = buf[off + 2] << 8 | buf[off + 3]
    if tot_len < hlen or (buf[off + 6] << 8 | buf[off + 7]) & 0x3FFF:   # or a fragment
        return False
    addresses = fold(int.from_bytes(buf[off + 12:off + 20], "big"))
    return _l4(walk, buf[off + 9], off + hlen, off + tot_len, min(end, off + tot_len),
               addresses, nesting, prefix)


def _ipv6(walk: _Walk, off: int, end: int, nesting: int, prefix: str) -> bool:
    buf = walk.buf
    if end - off < 40 or buf[off] >> 4 != 6:
        return False
    plen = buf[off + 4] << 8 | buf[off + 5]
    if plen == 0:
        return False
    addresses = fold(int.from_bytes(buf[off + 8:off + 40], "big"))
    declared_end = off + 40 + plen
    return _l4(walk, buf[off + 6], off + 40, declared_end, min(end, declared_end), addresses,
               nesting, prefix)


def _l4(walk: _Walk, proto: int, off: int, end: int, avail_end: int, addresses: int,
        nesting: int, prefix: str) -> bool:
    """TCP or UDP whose bytes are all here; ``addresses``: the pseudo-header's
    folded address sum, to which protocol and length add (both families)."""
    length = end - off
    if proto == IPPROTO_TCP:
        if length < 20 or avail_end < end:
            return False
        walk.add(nesting, prefix + "tcp", "TCP", off + 16, off, end,
                 addresses + IPPROTO_TCP + (length >> 16) + (length & 0xFFFF))
        return True
    if proto != IPPROTO_UDP or length < 8 or avail_end - off < 8:
        return False
    buf = walk.buf
    ulen = buf[off + 4] << 8 | buf[off + 5]
    if ulen < 8 or ulen > length or avail_end < off + ulen or not (buf[off + 6] | buf[off + 7]):
        return False
    walk.add(nesting, prefix + "udp", "UDP", off + 6, off, off + ulen,
             addresses + IPPROTO_UDP + (ulen >> 16) + (ulen & 0xFFFF), udp=True)
    tunnel = walk.tunnels.dissected(buf[off + 2] << 8 | buf[off + 3])
    if tunnel is None:
        return True
    if tunnel != "vxlan" or nesting >= MAX_FAST_NESTING or ulen < 16:   # UDP + VXLAN
        return False
    walk.encapsulated = True
    return _ether(walk, off + 16, off + ulen, nesting + 1, prefix + "vxlan/")
