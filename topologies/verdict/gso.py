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
"""
from __future__ import annotations

import struct
from typing import Iterable

from .checksum import checksum, fold, ones_sum
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
_U16, _U32 = struct.Struct("!H"), struct.Struct("!I")
_LENGTH_AND_ID = struct.Struct("!HH")   # an IPv4 header's total length and id
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

    def __init__(self, frame: bytes, vnet: VnetHdr, link: str, tunnels: UdpTunnels):
        l4, chain = _locate(frame, vnet, link, tunnels)
        self.frame, self.vnet, self.l4 = frame, vnet, l4.offset
        self.tcp = SEGMENTABLE[vnet.gso_kind][0] == "tcp"
        self.hdr_end = _header_end(frame, l4.offset, "tcp" if self.tcp else "udp")
        # innermost first: outer checksums cover inner headers
        self.chain = [(h.kind, h.offset, _unchanged_sum(frame, h.kind, h.offset))
                      for h in reversed(chain)]
        self.count = max(1, -(-(len(frame) - self.hdr_end) // vnet.gso_size))
        self.field = vnet.csum_start + vnet.csum_offset
        self.seed = _u16(frame, self.field)
        self.head = frame[:self.hdr_end]   # what every segment starts with

    def segment(self, index: int) -> bytes:
        return self.made(index)[0]

    def made(self, index: int) -> tuple[bytes, dict[int, int]]:
        """A segment, and the folded sums of what making it summed ({start:
        (end, sum of ``seg[start:end]``)}: tails whose checksum was completed,
        IPv4 headers): a verifier summing the same bytes again can take them instead."""
        frame, vnet, l4, mss = self.frame, self.vnet, self.l4, self.vnet.gso_size
        start = self.hdr_end + index * mss
        seg = bytearray(self.head)
        seg += memoryview(frame)[start:start + mss]
        if self.tcp:
            _fix_tcp(seg, l4, index, mss, last=index == self.count - 1)
        else:
            _put16(seg, l4 + 4, len(seg) - l4)
        _put16(seg, self.field, adjust_seed(self.seed, len(frame) - l4, len(seg) - l4))
        sums = {l4: (len(seg), complete_in_place(seg, vnet.csum_start, vnet.csum_offset))}
        for kind, off, unchanged in self.chain:
            _fix_encapsulation(seg, kind, off, index, len(frame), sums, unchanged)
        return bytes(seg), sums


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


def _fix_tcp(seg: bytearray, off: int, index: int, mss: int, last: bool) -> None:
    _U32.pack_into(seg, off + 4, (_U32.unpack_from(seg, off + 4)[0] + index * mss) & 0xFFFFFFFF)
    if not last:
        seg[off + 13] &= ~(TCP_FIN | TCP_PSH) & 0xFF
    if index:
        seg[off + 13] &= ~TCP_CWR & 0xFF


def _unchanged_sum(frame: bytes, kind: str, off: int) -> int:
    """An IPv4 header's sum without the fields GSO changes (total length, id,
    checksum): each segment adds its own to it. 0 for other headers."""
    if kind != "ipv4":
        return 0
    header = bytearray(frame[off:off + (frame[off] & 15) * 4])
    header[2:6] = bytes(4)     # total length, id
    header[10:12] = bytes(2)   # checksum
    return ones_sum(header)


def _fix_encapsulation(seg: bytearray, kind: str, off: int, index: int, super_len: int,
                       sums: dict[int, tuple[int, int]], unchanged: int) -> None:
    """``sums``: what was summed so far, as ``Cut.made`` returns them: a
    tunnel's UDP checksum covers the nearest tail, not summed again.
    ``unchanged``: an IPv4 header's ``_unchanged_sum``."""
    if kind == "ipv4":
        length, ident = len(seg) - off, (_u16(seg, off + 4) + index) & 0xFFFF
        _LENGTH_AND_ID.pack_into(seg, off + 2, length, ident)
        # what summing the header again gives: fold depends only on the sum
        # modulo 0xffff and on whether it is 0, the same for both
        _put16(seg, off + 10, ~fold(unchanged + length + ident) & 0xFFFF)
        sums[off] = (off + (seg[off] & 15) * 4, 0xFFFF)   # a header with its checksum
    elif kind == "ipv6":
        _put16(seg, off + 4, len(seg) - off - 40)
    elif kind == "gre":   # no length; its checksum, when present, covers the segment
        if _u16(seg, off) & GRE_CSUM:
            _put16(seg, off + 4, 0)
            _put16(seg, off + 4, checksum(memoryview(seg)[off:]))
    else:   # a tunnel's UDP header: length, and its checksum unless it is 0 (none)
        _put16(seg, off + 4, len(seg) - off)
        seed = _u16(seg, off + 6)
        if seed:
            _put16(seg, off + 6, adjust_seed(seed, super_len - off, len(seg) - off))
            # fixed already: only headers before it change later
            near = min(start for start, (end, _) in sums.items() if end == len(seg))
            tail = (near, sums[near][1]) if (near - off) % 2 == 0 else None
            sums[off] = (len(seg), complete_in_place(seg, off, 6, tail))


def _u16(buf: bytes, off: int) -> int:
    return _U16.unpack_from(buf, off)[0]


_put16 = _U16.pack_into   # (buf, off, value)
