"""GSO: cutting a super-packet into the frames a wire carries.

Modelled on the kernel's software segmentation (tcp_gso_segment,
__udp_gso_segment, __skb_udp_tunnel_segment, inet_gso_segment,
ipv6_gso_segment), which is also what TSO/USO hardware produces:

- the headers up to the end of the segmented L4 header are copied into every
  segment, the payload is cut every ``gso_size`` bytes;
- every IPv4 header on the way gets its total length, an id incremented per
  segment, and a fresh header checksum (summed once per super-packet without
  the fields that change, which each segment adds: the same value, as the two
  sums agree modulo 0xffff); every IPv6 header its payload length;
- TCP: sequence number advanced, FIN and PSH only on the last segment, CWR only
  on the first; UDP (USO): the UDP length per datagram;
- the L4 checksum: the seed in the super-packet is moved from the old length to
  the segment's and then completed (so a wrong seed stays wrong, as on a real
  wire); a tunnel's outer UDP checksum, when not zero, likewise.

A tunnel shows up as a TCPV4/TCPV6 or UDP_L4 super-packet whose csum_start
names the inner L4 (AF_PACKET reports SKB_GSO_UDP_TUNNEL* only through the
inner type), so the outer headers are found by dissecting what precedes it.
UFO (VIRTIO_NET_HDR_GSO_UDP: IP fragmentation) is not modelled.

Locating the headers is done once per flow (``Shape``): its next super-packets
differ only in what each segment gets anew.
"""
from __future__ import annotations

import struct
from typing import Callable, Iterable, Optional

from .checksum import checksum, ones_sum
from .checksum_partial import adjust_seed, complete_in_place
from .dissect import (
    DEFAULT_GENEVE_PORTS,
    DEFAULT_VXLAN_PORTS,
    Header,
    UdpTunnels,
    locate,
    udp_tunnels,
)
from .header_fields import GRE_CSUM
from .vnet_hdr import (
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    VnetHdr,
)

# gso type -> (L4 kind, checksum offset in it, network header it must follow)
SEGMENTABLE = {
    VIRTIO_NET_HDR_GSO_TCPV4: ("tcp", 16, "ipv4"),
    VIRTIO_NET_HDR_GSO_TCPV6: ("tcp", 16, "ipv6"),
    VIRTIO_NET_HDR_GSO_UDP_L4: ("udp", 6, None),
}
TCP_FIN, TCP_PSH, TCP_CWR = 0x01, 0x08, 0x80
_U16 = struct.Struct("!H")
# a TCP header from its sequence number to its checksum: sequence number, 4 bytes
# GSO leaves alone (ack), header length, flags, window, checksum
_TCP_FIXED = struct.Struct("!I4sBB2sH")
# an IPv4 header from its total length to its checksum: length, id, 4 bytes GSO
# leaves alone (fragment offset, TTL, protocol), checksum
_IPV4_FIXED = struct.Struct("!HH4sH")
_TWO_U16 = struct.Struct("!HH")   # a UDP header's length and checksum
# headers before the segmented L4 that each segment must have fixed
ENCLOSING = frozenset({"ipv4", "ipv6", "udp", "gre"})


class GsoUnsupported(Exception):
    """The super-packet cannot be segmented here; the message says why."""


def segment(frame: bytes, vnet: VnetHdr, *, link: str = "ether",
            vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS,
            geneve_ports: Iterable[int] = DEFAULT_GENEVE_PORTS,
            tunnel_ports: Iterable[int] = ()) -> list[bytes]:
    """The wire frames for a GSO super-packet, checksums completed."""
    return segment_with(frame, vnet, link, udp_tunnels(vxlan_ports, geneve_ports, tunnel_ports))


def segment_with(frame: bytes, vnet: VnetHdr, link: str, tunnels: UdpTunnels) -> list[bytes]:
    cut = Cut(frame, vnet, link, tunnels)
    return [cut.segment(i) for i in range(cut.count)]


class Cut:
    """One super-packet's segmentation, planned once; each segment is made
    when asked for, so a verdict can keep how to make its frame, not a copy."""
    __slots__ = ("shape", "frame", "vnet", "l4", "tcp", "hdr_end", "chain", "mss", "l4_len",
                 "count", "field", "seed", "head", "tcp_fixed")

    def __init__(self, frame: bytes, vnet: VnetHdr, link: str, tunnels: UdpTunnels):
        self.shape = shape = _shape(frame, vnet, link, tunnels)
        self.frame, self.vnet, self.l4 = frame, vnet, shape.l4
        self.tcp, self.hdr_end = shape.tcp, shape.hdr_end
        # innermost first: outer checksums cover inner headers
        self.chain = _fixers(frame, shape.chain, shape.l4)
        self.mss, self.l4_len = vnet.gso_size, len(frame) - shape.l4
        self.count = max(1, -(-(len(frame) - self.hdr_end) // vnet.gso_size))
        self.field = vnet.csum_start + vnet.csum_offset
        self.seed = _u16(frame, self.field)
        self.head = frame[:self.hdr_end]   # what every segment starts with
        if self.tcp:
            self.tcp_fixed = _tcp_fixed(frame, self.l4)

    def segment(self, index: int) -> bytes:
        return self.made(index)[0]

    def made(self, index: int) -> tuple[bytes, dict[int, int]]:
        """A segment, and the folded sums of what making it summed ({start:
        (end, sum of ``seg[start:end]``)}: tails whose checksum was completed,
        IPv4 headers): a verifier summing the same bytes again can take them instead."""
        l4, mss = self.l4, self.mss
        start = self.hdr_end + index * mss
        seg = bytearray(self.head)
        seg += memoryview(self.frame)[start:start + mss]
        end = len(seg)
        seed = adjust_seed(self.seed, self.l4_len, end - l4)
        if self.tcp:
            seq, ack, offset, flags, window = self.tcp_fixed
            _TCP_FIXED.pack_into(seg, l4 + 4, seq + index * mss & 0xFFFFFFFF, ack, offset,
                                 flags[(index == 0) << 1 | (index == self.count - 1)], window,
                                 seed)
        else:
            _TWO_U16.pack_into(seg, l4 + 4, end - l4, seed)
        tail = (l4, complete_in_place(seg, l4, self.field - l4))
        sums = {l4: (end, tail[1])}
        for fix, off, constant in self.chain:
            tail = fix(seg, off, index, constant, sums, tail)
        return bytes(seg), sums


class Shape:
    """Where a super-packet's headers are (what locating them found), kept for
    the next super-packets of its flow. Locating decides on the same bytes in
    all of them but for the fields GSO writes anew in every segment (IPv4 ids
    and checksums, UDP checksums, TCP sequence numbers, flags, options...),
    which ``matches`` leaves out, and the lengths, which must say "to the end
    of the frame" in each (then no decision depends on their value). ``plan``
    is the verifier's to keep (``fast_path.Plan``: the same for every segment
    of this shape)."""
    __slots__ = ("l4", "tcp", "hdr_end", "chain", "spans", "lengths", "seeds", "template",
                 "plan")

    def __init__(self, frame: bytes, l4: Header, chain: list[Header], hdr_end: int):
        self.l4, self.tcp, self.hdr_end = l4.offset, l4.kind == "tcp", hdr_end
        self.chain = [(h.kind, h.offset) for h in reversed(chain)]   # innermost first
        self.spans: list[tuple[int, int]] = []     # bytes left out: GSO writes them anew
        self.lengths: list[tuple[int, int]] = []   # (field, where the length counts from)
        self.seeds: list[tuple[int, bool]] = []    # (UDP checksum, whether 0: then none)
        for kind, off in self.chain:
            self._leave_out(frame, kind, off)
        self._leave_out(frame, l4.kind, l4.offset)
        self.template = self.masked(frame)
        self.plan = None

    def _leave_out(self, frame: bytes, kind: str, off: int) -> None:
        if kind == "ipv4":
            self.spans += [(off + 2, off + 6), (off + 10, off + 12)]   # length, id; checksum
            self.lengths.append((off + 2, off))
        elif kind == "ipv6":
            self.spans.append((off + 4, off + 6))
            self.lengths.append((off + 4, off + 40))
        elif kind == "udp":
            self.spans.append((off + 4, off + 8))   # length, checksum
            self.lengths.append((off + 4, off))
            self.seeds.append((off + 6, not _u16(frame, off + 6)))
        elif kind == "tcp":   # the segmented L4: all but the ports and the header length
            self.spans += [(off + 4, off + 12), (off + 13, self.hdr_end)]

    def masked(self, frame: bytes) -> bytes:
        head = bytearray(frame[:self.hdr_end])
        for start, end in self.spans:
            head[start:end] = bytes(end - start)
        return bytes(head)

    def to_the_end(self, frame: bytes) -> bool:
        """Whether every length says "to the end of ``frame``"."""
        size = len(frame)
        return all(_u16(frame, field) == size - start for field, start in self.lengths)

    def matches(self, frame: bytes) -> bool:
        """Whether locating ``frame``'s headers would find these."""
        return (len(frame) >= self.hdr_end and self.to_the_end(frame)
                and all((not _u16(frame, field)) is zero for field, zero in self.seeds)
                and self.masked(frame) == self.template)


# one shape per kind of super-packet (link, tunnels, vnet header but gso_size): a
# flow's, which its next super-packets match; past MAX_SHAPES kinds, none is kept
MAX_SHAPES = 256
_shapes: dict[tuple, Shape] = {}


def _shape(frame: bytes, vnet: VnetHdr, link: str, tunnels: UdpTunnels) -> Shape:
    """The shape kept for super-packets like ``frame`` if it matches, else
    ``frame``'s own, located (raises GsoUnsupported) and kept if it can be."""
    key = (link, tunnels, vnet.flags, vnet.gso_type, vnet.csum_start, vnet.csum_offset)
    shape = _shapes.get(key)
    if shape is not None and vnet.gso_size and shape.matches(frame):
        return shape
    l4, chain = _locate(frame, vnet, link, tunnels)
    shape = Shape(frame, l4, chain, _header_end(frame, l4.offset, l4.kind))
    if shape.to_the_end(frame) and (key in _shapes or len(_shapes) < MAX_SHAPES):
        _shapes[key] = shape
    return shape


def _locate(frame: bytes, vnet: VnetHdr, link: str,
            tunnels: UdpTunnels) -> tuple[Header, list[Header]]:
    """The L4 header being segmented and the IP/UDP/GRE headers enclosing it,
    found by dissecting only as far as csum_start: the payload is cut first."""
    if vnet.gso_kind not in SEGMENTABLE:
        raise GsoUnsupported(f"GSO type {vnet.gso_name} is not segmented by nslab")
    if vnet.gso_size == 0:
        raise GsoUnsupported(f"GSO type {vnet.gso_name} with gso_size 0")
    if not vnet.needs_csum:
        raise GsoUnsupported("GSO super-packet without NEEDS_CSUM: no csum_start names its L4")
    kind, csum_offset, family = SEGMENTABLE[vnet.gso_kind]
    headers = locate(frame, link, tunnels, vnet.csum_start)
    l4 = next((h for h in headers if h.offset == vnet.csum_start and h.kind == kind), None)
    if l4 is None or vnet.csum_offset != csum_offset:
        raise GsoUnsupported(f"GSO {vnet.gso_name}: csum_start {vnet.csum_start} / csum_offset "
                             f"{vnet.csum_offset} do not name a {kind.upper()} checksum")
    chain = [h for h in headers if h.offset < l4.offset and h.kind in ENCLOSING]
    network = [h for h in chain if h.kind in ("ipv4", "ipv6")]
    if family and (not network or network[-1].kind != family):
        raise GsoUnsupported(f"GSO {vnet.gso_name} but the {kind.upper()} header does not "
                             f"follow an {family} header")
    return l4, chain


def _header_end(frame: bytes, off: int, kind: str) -> int:
    """Where the segmented L4 header ends: what every segment repeats."""
    length = 8
    if kind == "tcp" and off + 13 <= len(frame):
        length = (frame[off + 12] >> 4) * 4
    if length < (20 if kind == "tcp" else 8) or off + length > len(frame):
        raise GsoUnsupported(f"the {kind.upper()} header at {off} is cut short or malformed")
    return off + length


def _tcp_fixed(frame: bytes, off: int) -> tuple:
    """What ``_TCP_FIXED`` packs but the sequence number's advance and the
    checksum; flags indexed by (first segment) << 1 | (last segment): FIN and
    PSH only on the last, CWR only on the first."""
    seq, ack, offset, flags, window, _ = _TCP_FIXED.unpack_from(frame, off + 4)
    later = flags & ~TCP_CWR
    by_place = (later & ~(TCP_FIN | TCP_PSH), later, flags & ~(TCP_FIN | TCP_PSH), flags)
    return seq, ack, offset, by_place, window


def _fixers(frame: bytes, chain: list[tuple[str, int]],
            l4: int) -> list[tuple[Fixer, int, object]]:
    """How each segment's headers of ``chain`` (innermost first) are fixed:
    (function, offset, what the function needs that is the same for every
    segment). A tunnel's UDP checksum covers the nearest region completed
    before it (the ``tail``: the L4 or an inner tunnel's UDP) and what lies
    between them."""
    fixers, tail, between = [], l4, []
    for kind, off in chain:
        if kind == "ipv4":
            # a header with its checksum sums to all ones: what summing it would give
            summed = (off + (frame[off] & 15) * 4, 0xFFFF)
            constant = (_unchanged_sum(frame, off), _u16(frame, off + 4), frame[off + 6:off + 10],
                        summed)
            fixers.append((_fix_ipv4, off, constant))
        elif kind == "udp":
            fixers.append((_fix_udp, off, (len(frame) - off,
                                           _between_sum(frame, off, tail, between))))
            if _u16(frame, off + 6):   # completed: the next tail
                tail, between = off, []
                continue
        else:
            fixers.append(((_fix_ipv6 if kind == "ipv6" else _fix_gre), off, 0))
        between.append((kind, off))
    return fixers


def _between_sum(frame: bytes, off: int, tail: int,
                 between: list[tuple[str, int]]) -> Optional[tuple[int, int]]:
    """For a tunnel's UDP header at ``off``: what every segment's bytes from it
    to the ``tail`` sum to but for its UDP length and checksum, as (a constant,
    how many times the segment's length adds to it): an IPv6 header's payload
    length adds the segment's length less where its payload starts; IPv4
    headers, once GSO fixed them, sum to all ones, nothing modulo 0xffff. None
    unless all that lies between is IPv4 or IPv6 at even distances (the words
    line up)."""
    if (tail - off) % 2 or any(kind not in ("ipv4", "ipv6") or (at - off) % 2
                                for kind, at in between):
        return None
    head = bytearray(frame[off:tail])
    head[4:8] = bytes(4)   # length, checksum
    for kind, at in between:
        start = at - off
        if kind == "ipv4":
            head[start:start + (frame[at] & 15) * 4] = bytes((frame[at] & 15) * 4)
        else:
            head[start + 4:start + 6] = bytes(2)   # payload length
    ipv6 = [at + 40 for kind, at in between if kind == "ipv6"]
    return ones_sum(head) - sum(ipv6), len(ipv6)


def _unchanged_sum(frame: bytes, off: int) -> int:
    """An IPv4 header's sum without the fields GSO changes (total length, id,
    checksum): each segment adds its own to it."""
    header = bytearray(frame[off:off + (frame[off] & 15) * 4])
    header[2:6] = bytes(4)     # total length, id
    header[10:12] = bytes(2)   # checksum
    return ones_sum(header)


# A fixer: (segment, header offset, segment index, its constant, sums, tail) ->
# tail. ``sums``: what was summed so far, as ``Cut.made`` returns them; ``tail``:
# (start, folded sum) of the nearest checksummed region ending at the segment's
# end, which an enclosing UDP checksum takes instead of summing it again.
Tail = tuple[int, int]
Fixer = Callable[[bytearray, int, int, object, dict, Tail], Tail]


def _fix_ipv4(seg: bytearray, off: int, index: int, constant: tuple, sums: dict,
              tail: Tail) -> Tail:
    unchanged, ident, middle, summed = constant
    length, ident = len(seg) - off, ident + index & 0xFFFF
    # what summing the header again gives: fold depends only on the sum
    # modulo 0xffff and on whether it is 0, the same for both (never 0 here)
    total = unchanged + length + ident
    _IPV4_FIXED.pack_into(seg, off + 2, length, ident, middle,
                          ~(total % 0xFFFF or 0xFFFF) & 0xFFFF)
    sums[off] = summed
    return tail


def _fix_ipv6(seg: bytearray, off: int, _index: int, _constant: object, _sums: dict,
              tail: Tail) -> Tail:
    _put16(seg, off + 4, len(seg) - off - 40)
    return tail


def _fix_gre(seg: bytearray, off: int, _index: int, _constant: object, _sums: dict,
             tail: Tail) -> Tail:
    """No length; its checksum, when present, covers the segment."""
    if _u16(seg, off) & GRE_CSUM:
        _put16(seg, off + 4, 0)
        _put16(seg, off + 4, checksum(memoryview(seg)[off:]))
    return tail


def _fix_udp(seg: bytearray, off: int, _index: int, constant: tuple, sums: dict,
             tail: Tail) -> Tail:
    """A tunnel's UDP header: length, and its checksum unless it is 0 (none)."""
    super_len, between = constant
    end = len(seg)
    seed = seg[off + 6] << 8 | seg[off + 7]
    if not seed:
        _put16(seg, off + 4, end - off)
        return tail
    seed = adjust_seed(seed, super_len, end - off)
    _TWO_U16.pack_into(seg, off + 4, end - off, seed)
    # the tail is fixed already: only headers before it change later
    if between is None:
        total = complete_in_place(seg, off, 6, tail if (tail[0] - off) % 2 == 0 else None)
    else:   # the sum of the bytes, modulo 0xffff and not 0 (a length is not): its fold
        fixed, ipv6_headers = between   # and the UDP length: one more segment's length
        total = fixed + (ipv6_headers + 1) * end - off + seed + tail[1]
        total = complete_in_place(seg, off, 6, total=total % 0xFFFF or 0xFFFF)
    sums[off] = (end, total)
    return off, total


def _u16(buf: bytes, off: int) -> int:
    return _U16.unpack_from(buf, off)[0]


_put16 = _U16.pack_into   # (buf, off, value)
