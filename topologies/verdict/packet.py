"""Offload-aware checksum verdicts: what a real wire would carry, judged.

``verify`` completes the pending checksum a vnet header names and segments GSO
super-packets (``wire_frames``), then sums every checksum at every layer of
each resulting frame (``dissect``). Each ``PacketVerdict`` names
the layer, the field, the value on the wire and the value it should be.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from .dissect import (
    DEFAULT_GENEVE_PORTS,
    DEFAULT_VXLAN_PORTS,
    Header,
    UdpTunnels,
    dissect_with,
    udp_tunnels,
)
from .fast_path import Layout, Plan, packed
from .layer import LayerVerdict, Status
from .nic import Completion, Made, Segment, Segmented, Sums, wire_sources
from .vnet_hdr import VnetHdr

# PacketVerdict's fields a judged verdict makes when first read (``__getattr__``)
MADE_WHEN_READ = frozenset({"frame", "layers", "headers", "completion", "segment"})


class _Recipe:
    """What a judged verdict keeps instead of its fields: how its frame was
    made (``made``, None if as captured, and what it needs: ``detail``), the
    wire value of the completed checksum and, when the fast path judged the
    frame, its layout and values (``numbers``: values << 16 | that wire value),
    and what dissecting it again takes."""
    __slots__ = ("_made", "_detail", "_layout", "_numbers", "_link", "_tunnels")


@dataclass(slots=True)
class PacketVerdict(_Recipe):
    """A verdict from ``verify`` keeps how to make its frame (when it is not
    the captured one), its layers, completion, segment and headers, not them:
    the segments of a GSO super-packet would double the capture, an object per
    checksum would take more than the frame, and headers are for people, read
    for few frames. Each is made when first read (layers and headers then kept)."""
    frame: bytes                      # the wire frame that was judged
    layers: list[LayerVerdict]
    headers: list[Header]
    completion: Optional[Completion] = None
    segment: Optional[Segment] = None

    @classmethod
    def _judged(cls, data: bytes, made: Optional[Made], detail: object, summed: Sums,
                link: str, tunnels: UdpTunnels) -> "PacketVerdict":
        verdict = cls.__new__(cls)
        verdict._made, verdict._detail, verdict._link, verdict._tunnels = \
            made, detail, link, tunnels
        after = 0
        if made is None:
            verdict.frame, verdict.completion, verdict.segment = data, None, None
        elif made.field is not None:
            after = data[made.field] << 8 | data[made.field + 1]
        issues = made.issues if made else ()
        if issues:
            found = None
        elif type(made) is Segmented:
            found = _segment_packed(data, made, summed, link, tunnels)
        else:
            found = packed(data, link, tunnels, summed)
        if found is None:
            verdict.layers = list(issues) + dissect_with(data, link, tunnels).layers
            verdict._layout, verdict._numbers = None, after
        else:
            verdict._layout, values = found
            verdict._numbers = values << 16 | after
        return verdict

    def __getattr__(self, name: str):
        """Only called for a field not set: what a judged verdict makes when first read."""
        if name not in MADE_WHEN_READ:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if name == "frame":
            return self._made.remake(self._detail)
        if name == "completion":
            return self._made.completion(self._detail, self._numbers & 0xFFFF)
        if name == "segment":
            return self._made.segment_of(self._detail)
        if name == "layers":
            self.layers = self._layout.layers(self._numbers >> 16)
        else:
            self.headers = self._dissected_headers()
        return object.__getattribute__(self, name)

    def _dissected_headers(self) -> list[Header]:
        return dissect_with(self.frame, self._link, self._tunnels).headers

    def _packed(self) -> Optional[Layout]:
        """The fast path's layout while the layers are not made (then methods
        make them for the caller and do not keep them)."""
        try:
            object.__getattribute__(self, "layers")
        except AttributeError:
            return self._layout
        return None

    def _layers(self) -> list[LayerVerdict]:
        layout = self._packed()
        return self.layers if layout is None else layout.layers(self._numbers >> 16)

    @property
    def ok(self) -> bool:
        """No checksum is wrong. Not "all verified": see ``unchecked``; pending
        quotes and zero tunnel checksums are not wrong either."""
        layout = self._packed()
        return layout.ok if layout is not None else not self.invalid

    @property
    def invalid(self) -> list[LayerVerdict]:
        return self.with_status(Status.INVALID)

    @property
    def unchecked(self) -> list[LayerVerdict]:
        return self.with_status(Status.NOT_CHECKABLE)

    def with_status(self, status: Status) -> list[LayerVerdict]:
        layout = self._packed()
        if layout is not None and status not in layout.statuses:
            return []
        return [v for v in self._layers() if v.status is status]

    def find(self, path: str) -> Optional[LayerVerdict]:
        return next((v for v in self._layers() if v.path == path), None)

    def layer(self, path: str) -> LayerVerdict:
        found = self.find(path)
        if found is None:
            raise KeyError(f"no layer {path!r}; layers: {[v.path for v in self._layers()]}")
        return found

    def summary(self) -> str:
        """One line, the wrong checksums first:
        ``INVALID outer UDP chksum wire=0xc067 correct=0xf612; VALID outer IPv4, ...``"""
        layers = self._layers()
        text = layers_summary(layers)
        completion, segment = self.completion, self.segment
        if completion:
            field = next((v for v in layers if v.offset == completion.offset), None)
            text += (f" | completed pending csum at offset {completion.offset}"
                     + (f" ({field.layer})" if field else ""))
        if segment:
            text += f" | {segment}"
        return text

    def layers_summary(self) -> str:
        """``summary()`` without what nslab did to the frame."""
        return layers_summary(self._layers())

    def show(self) -> str:
        """A rendering close to scapy's ``show2()``, each checksum annotated:
        ``chksum    = 0xa60d  [valid]``."""
        lines = []
        offload = [v for v in self._layers() if v.path == "offload"]
        completion, segment = self.completion, self.segment
        if completion or segment or offload:
            lines.append("###[ nslab ]###")
            if completion:
                lines.append(f"  {'completion':<10}= {completion}")
            if segment:
                lines.append(f"  {'segment':<10}= {segment}")
            lines += [f"  {'offload':<10}= {v.annotation()}" for v in offload]
        # a judged verdict's headers, made for this rendering and not kept
        try:
            headers = object.__getattribute__(self, "headers")
        except AttributeError:
            headers = self._dissected_headers()
        for h in headers:
            lines.append(f"###[ {h.name} ]###")
            indent = "  " + "   " * h.depth
            pending = list(h.verdicts)
            for name, value in h.fields:
                line = f"{indent}{name:<10}= {value}"
                v = next((v for v in pending if v.field == name), None)
                if v:
                    pending.remove(v)
                    line += f"  {v.annotation()}"
                lines.append(line)
            for v in pending:
                value = "?" if v.wire is None else f"0x{v.wire:04x}"
                lines.append(f"{indent}{v.field or 'verdict':<10}= {value}  {v.annotation()}")
        return "\n".join(lines)


# a shape's ``plan`` once its first segment could not make one
UNPLANNED = False


def _segment_packed(data: bytes, made: Segmented, summed: Sums, link: str,
                    tunnels: UdpTunnels) -> Optional[tuple[Layout, int]]:
    """``packed`` for a segment: the segments of all super-packets of one shape
    (``gso.Shape``) share one ``Plan``, made from the first."""
    shape = made.cut.shape
    plan = shape.plan
    if plan is None:
        plan, found = Plan.first(data, link, tunnels, summed, made.field)
        shape.plan = plan or UNPLANNED
        return found
    return plan.packed(data, summed) if plan else packed(data, link, tunnels, summed)


def layers_summary(layers: list[LayerVerdict]) -> str:
    """``summary()`` without what nslab did to the frame."""
    def with_status(status: Status) -> list[LayerVerdict]:
        return [v for v in layers if v.status is status]
    parts = [v.describe() for v in with_status(Status.INVALID)]
    parts += [f"NOT_CHECKABLE {v.layer} ({v.reason})" for v in with_status(Status.NOT_CHECKABLE)]
    parts += [v.brief() for status in (Status.PENDING, Status.ZERO_TUNNEL)
              for v in with_status(status)]
    for status in (Status.DISABLED, Status.VALID):
        names = [v.layer for v in with_status(status)]
        if names:
            parts.append(f"{status.name} {', '.join(names)}")
    return "; ".join(parts) or "no checksum to verify"


def verify(frame: bytes, vnet: Optional[VnetHdr] = None, csum_not_ready: bool = False,
           link: str = "ether", vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS, *,
           geneve_ports: Iterable[int] = DEFAULT_GENEVE_PORTS,
           tunnel_ports: Iterable[int] = ()) -> list[PacketVerdict]:
    """One verdict per wire frame: pending checksum completed, GSO segmented.

    UDP destination ports: ``vxlan_ports`` and ``geneve_ports`` are dissected as
    VXLAN and Geneve; ``tunnel_ports`` are other tunnels' (FOU, GUE, ...), not
    dissected. On all of them a zero UDP checksum over IPv6 is ZERO_TUNNEL."""
    tunnels = udp_tunnels(vxlan_ports, geneve_ports, tunnel_ports)
    judged = PacketVerdict._judged
    return [judged(data, made, detail, summed, link, tunnels)
            for data, made, detail, summed in wire_sources(frame, vnet, csum_not_ready, link,
                                                          tunnels)]
