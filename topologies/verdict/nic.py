"""From a captured frame to the frames a real wire would carry.

A capture taken with PACKET_VNET_HDR shows frames as the stack handed them to
the device: at most one checksum still pending (CHECKSUM_PARTIAL, named by
csum_start/csum_offset) and possibly a GSO super-packet. ``wire_frames`` does
what the NIC (or the kernel's software fallback) would do, and records what it
wrote so a verdict and a pcapng comment can say so.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Iterator, Optional, Union

from .checksum_partial import complete_partial, completed
from .dissect import (
    DEFAULT_GENEVE_PORTS,
    DEFAULT_VXLAN_PORTS,
    UdpTunnels,
    dissect_with,
    udp_tunnels,
)
from .gso import Cut, GsoUnsupported
from .layer import LayerVerdict, Status
from .vnet_hdr import VIRTIO_NET_HDR_GSO_NONE, VnetHdr

# A pending checksum is seeded with the pseudo-header sum; only protocols with
# a pseudo-header are ever left pending by Linux. path leaf -> csum_offset; the
# leaf names the L4 at any depth ("tcp", "vxlan/udp", "gre/tcp", "ipip/udp").
PENDING_CANDIDATES = {"tcp": 16, "udp": 6, "icmpv6": 2}
# {start: (end, folded sum of frame[start:end])}, summed while making a frame
Sums = dict[int, tuple[int, int]]


@dataclass(frozen=True)
class Completion:
    """The pending checksum nslab completed: where, and the value before/after."""
    offset: int
    before: int
    after: int
    inferred: bool = False   # located by its seed: no vnet header said where

    def __str__(self) -> str:
        how = " (located by its pseudo-header seed: no vnet header)" if self.inferred else ""
        return (f"nslab completed pending checksum at offset {self.offset}: "
                f"0x{self.before:04x} -> 0x{self.after:04x}{how}")


@dataclass(frozen=True)
class Segment:
    index: int
    count: int
    gso: str
    gso_size: int

    def __str__(self) -> str:
        return f"GSO {self.gso} segment {self.index + 1}/{self.count} (gso_size {self.gso_size})"


@dataclass(frozen=True)
class WireFrame:
    data: bytes
    completion: Optional[Completion] = None
    segment: Optional[Segment] = None
    issues: tuple[LayerVerdict, ...] = ()   # what the offload model could not do


def wire_frames(frame: bytes, vnet: Optional[VnetHdr], csum_not_ready: bool = False, *,
                link: str = "ether", vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS,
                geneve_ports: Iterable[int] = DEFAULT_GENEVE_PORTS,
                tunnel_ports: Iterable[int] = ()) -> list[WireFrame]:
    """``csum_not_ready`` is auxdata's TP_STATUS_CSUMNOTREADY; it only matters
    when there is no vnet header to name the pending field."""
    return frames_on_wire(frame, vnet, csum_not_ready, link,
                          udp_tunnels(vxlan_ports, geneve_ports, tunnel_ports))


def frames_on_wire(frame: bytes, vnet: Optional[VnetHdr], csum_not_ready: bool, link: str,
                   tunnels: UdpTunnels) -> list[WireFrame]:
    return [made.wire_frame(data, detail) if made else WireFrame(data)
            for data, made, detail, _ in wire_sources(frame, vnet, csum_not_ready, link, tunnels)]


class Completed:
    """Wire frames made from a captured frame whose one pending checksum the
    vnet header names, completed (``detail``: the captured frame). Shared by
    every frame with that checksum where it is: a verdict keeps this and the
    captured frame, not a copy that differs in two bytes."""
    __slots__ = ("start", "csum_offset", "field", "issues")

    def __init__(self, start: int, csum_offset: int, issues: tuple[LayerVerdict, ...] = ()):
        self.start, self.csum_offset, self.field = start, csum_offset, start + csum_offset
        self.issues = issues   # what the offload model could not do (then not shared)

    def remake(self, captured: bytes) -> bytes:
        return complete_partial(captured, self.start, self.csum_offset)

    def completion(self, captured: bytes, after: int) -> Completion:
        return Completion(self.field, _u16(captured, self.field), after)

    def segment_of(self, captured: bytes) -> None:
        return None

    def wire_frame(self, data: bytes, captured: bytes) -> WireFrame:
        return WireFrame(data, self.completion(captured, _u16(data, self.field)),
                         issues=self.issues)


completed_at = lru_cache(maxsize=256)(Completed)


class Segmented:
    """The wire frames cut from one GSO super-packet (``detail``: the segment's index)."""
    __slots__ = ("cut", "field", "name")
    issues = ()

    def __init__(self, cut: Cut):
        self.cut, self.field, self.name = cut, cut.field, cut.vnet.gso_name

    def remake(self, index: int) -> bytes:
        return self.cut.segment(index)

    def completion(self, index: int, after: int) -> Completion:
        return Completion(self.field, self.cut.seed, after)

    def segment_of(self, index: int) -> Segment:
        return Segment(index, self.cut.count, self.name, self.cut.vnet.gso_size)

    def wire_frame(self, data: bytes, index: int) -> WireFrame:
        return WireFrame(data, self.completion(index, _u16(data, self.field)),
                         self.segment_of(index))


class Kept:
    """A wire frame nslab made otherwise (a checksum located by its seed) or
    could not make (the issues say why): kept as made."""
    __slots__ = ("wire",)
    field = None

    def __init__(self, wire: WireFrame):
        self.wire = wire

    @property
    def issues(self) -> tuple[LayerVerdict, ...]:
        return self.wire.issues

    def remake(self, _detail: None) -> bytes:
        return self.wire.data

    def completion(self, _detail: None, _after: int) -> Optional[Completion]:
        return self.wire.completion

    def segment_of(self, _detail: None) -> Optional[Segment]:
        return self.wire.segment

    def wire_frame(self, _data: bytes, _detail: None) -> WireFrame:
        return self.wire


Made = Union[Completed, Segmented, Kept]
# (wire frame's bytes, how they were made (None: as captured), what ``Made`` needs
# to make them again, and the sums making them took)
Source = tuple[bytes, Optional[Made], object, Sums]


def wire_sources(frame: bytes, vnet: Optional[VnetHdr], csum_not_ready: bool, link: str,
                 tunnels: UdpTunnels) -> Iterable[Source]:
    """The wire frames (a GSO super-packet's made one at a time), each with how
    it was made, which can make its bytes, completion and segment again (a
    verdict keeps that, not them), and the sums completing its checksums took,
    which verifying need not take again."""
    frame = bytes(frame)
    if vnet is not None and vnet.gso_kind != VIRTIO_NET_HDR_GSO_NONE:
        return _segmented(frame, vnet, link, tunnels)
    if vnet is not None and vnet.needs_csum:
        return (_completed(frame, vnet),)
    if vnet is None and csum_not_ready:
        return (_kept(_located(frame, link, tunnels)),)
    return ((frame, None, None, {}),)


def _issue(reason: str) -> LayerVerdict:
    return LayerVerdict(path="offload", layer="offload", status=Status.NOT_CHECKABLE,
                        field="", reason=reason)


def _u16(buf: bytes, off: int) -> int:
    return int.from_bytes(buf[off:off + 2], "big")


def _kept(wire: WireFrame) -> Source:
    return wire.data, Kept(wire), None, {}


def _completed(frame: bytes, vnet: VnetHdr, *issues: LayerVerdict) -> Source:
    start = vnet.csum_start
    try:
        wire, total = completed(frame, start, vnet.csum_offset)
    except ValueError as err:
        return _kept(WireFrame(frame, issues=issues + (_issue(str(err)),)))
    made = Completed(start, vnet.csum_offset, issues) if issues else completed_at(
        start, vnet.csum_offset)
    return wire, made, frame, {start: (len(wire), total)}


def _segmented(frame: bytes, vnet: VnetHdr, link: str, tunnels: UdpTunnels) -> Iterator[Source]:
    try:
        cut = Cut(frame, vnet, link, tunnels)
    except GsoUnsupported as err:
        issue = _issue(f"not segmented: {err}; checksums below are the super-packet's")
        yield (_completed(frame, vnet, issue) if vnet.needs_csum
               else _kept(WireFrame(frame, issues=(issue,))))
        return
    made = Segmented(cut)
    for i in range(cut.count):
        seg, sums = cut.made(i)
        yield seg, made, i, sums


def _located(frame: bytes, link: str, tunnels: UdpTunnels) -> WireFrame:
    """TP_STATUS_CSUMNOTREADY without a vnet header: one L4 checksum is pending
    but nothing says which. The field that holds exactly its pseudo-header seed
    is the one that completing makes valid; if there is not exactly one such
    field, nothing is completed and the verdict says so."""
    candidates = []
    for layer in dissect_with(frame, link, tunnels).layers:
        csum_offset = PENDING_CANDIDATES.get(layer.path.rsplit("/", 1)[-1])
        if csum_offset is None or layer.status is not Status.INVALID or layer.offset is None:
            continue
        start = layer.offset - csum_offset
        wire = complete_partial(frame, start, csum_offset)
        after = [v for v in dissect_with(wire, link, tunnels).layers
                 if v.offset == layer.offset]
        if after and after[0].status is Status.VALID:
            candidates.append(WireFrame(wire, Completion(layer.offset, layer.wire or 0,
                                                         _u16(wire, layer.offset),
                                                         inferred=True)))
    if len(candidates) == 1:
        return candidates[0]
    return WireFrame(frame, issues=(_issue(
        "TP_STATUS_CSUMNOTREADY without a vnet header: the pending checksum could not be "
        f"located ({len(candidates)} fields hold a pseudo-header seed); "
        "L4 verdicts may judge a seed"),))
