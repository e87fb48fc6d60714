"""The common frame judged without the dissector's bookkeeping.

Bulk traffic is Ethernet, IPv4 or IPv6 without extension headers, unfragmented
TCP or UDP with every byte in the frame, sometimes inside VXLAN. For those
frames ``judge`` returns exactly the LayerVerdicts ``dissect`` makes (same
``sums``, same paths and labels; the tests compare the two), without building
headers for people, which ``dissect`` makes when someone reads them. Anything
else (a tag, an option that matters, a truncation, a zero UDP checksum, ICMP,
GRE, Geneve...) returns None: the dissector judges it.
"""
from __future__ import annotations

from typing import Optional

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
from .nic import Sums

# nesting the fast path follows; deeper tunnels go to the dissector (MAX_NESTING)
MAX_FAST_NESTING = 4


class _Walk:
    """The checksums found so far, labelled once the walk knows whether the
    frame is encapsulated ("outer IPv4") or not ("IPv4")."""
    __slots__ = ("buf", "tunnels", "tails", "found", "encapsulated")

    def __init__(self, buf: bytes, tunnels, tails: Optional[Sums]) -> None:
        self.buf = buf
        self.tunnels = tunnels
        self.tails = tails or {}
        self.found: list[tuple] = []   # (nesting, path, name, field offset, ok, correct)
        self.encapsulated = False

    def add(self, nesting: int, path: str, name: str, field_off: int, start: int, end: int,
            initial: int = 0, udp: bool = False) -> None:
        folded = self.tails.get(start) if end == len(self.buf) else None
        self.found.append((nesting, path, name, field_off)
                          + sums(self.buf, start, end, field_off, initial, udp, folded))

    def verdicts(self) -> list[LayerVerdict]:
        buf, top = self.buf, "outer " if self.encapsulated else ""
        return [LayerVerdict(path, ("inner " if nesting else top) + name,
                             Status.VALID if ok else Status.INVALID, "chksum", field_off,
                             buf[field_off] << 8 | buf[field_off + 1], correct)
                for nesting, path, name, field_off, ok, correct in self.found]


def judge(buf: bytes, link: str, tunnels,
          tails: Optional[Sums] = None) -> Optional[list[LayerVerdict]]:
    """The frame's verdicts, or None when it is not the common case. ``tails``:
    sums of the frame's tails taken while making it (``wire_sources``)."""
    walk = _Walk(buf, tunnels, tails)
    parse = _ether if link == "ether" else _ip
    return walk.verdicts() if parse(walk, 0, len(buf), 0, "") else None


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
