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
from .fast_path import judge
from .layer import LayerVerdict, Status
from .nic import Completion, Remake, Segment, WireFrame, wire_sources
from .vnet_hdr import VnetHdr


@dataclass
class PacketVerdict:
    """A verdict from ``verify`` keeps how to make its frame (when it is not
    the captured one) and its headers, not them: the segments of a GSO
    super-packet would double the capture, and headers are for people, read
    for few frames. Both are made when first read (headers then kept)."""
    frame: bytes                      # the wire frame that was judged
    layers: list[LayerVerdict]
    headers: list[Header]
    completion: Optional[Completion] = None
    segment: Optional[Segment] = None

    @classmethod
    def _judged(cls, wire: WireFrame, layers: list[LayerVerdict], remake: Optional[Remake],
                link: str, tunnels: UdpTunnels) -> "PacketVerdict":
        verdict = cls.__new__(cls)
        verdict.layers, verdict.completion, verdict.segment = layers, wire.completion, wire.segment
        if remake is None:
            verdict.frame = wire.data
        else:
            verdict._remake = remake
        verdict._link, verdict._tunnels = link, tunnels
        return verdict

    def __getattr__(self, name: str):
        """Only called for what is not set: a judged verdict's frame or headers."""
        if name == "frame" and "_remake" in self.__dict__:
            return self._remake()
        if name == "headers" and "_link" in self.__dict__:
            self.headers = self._dissected_headers()
            return self.headers
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _dissected_headers(self) -> list[Header]:
        return dissect_with(self.frame, self._link, self._tunnels).headers

    @property
    def ok(self) -> bool:
        """No checksum is wrong. Not "all verified": see ``unchecked``; pending
        quotes and zero tunnel checksums are not wrong either."""
        return not self.invalid

    @property
    def invalid(self) -> list[LayerVerdict]:
        return self.with_status(Status.INVALID)

    @property
    def unchecked(self) -> list[LayerVerdict]:
        return self.with_status(Status.NOT_CHECKABLE)

    def with_status(self, status: Status) -> list[LayerVerdict]:
        return [v for v in self.layers if v.status is status]

    def find(self, path: str) -> Optional[LayerVerdict]:
        return next((v for v in self.layers if v.path == path), None)

    def layer(self, path: str) -> LayerVerdict:
        found = self.find(path)
        if found is None:
            raise KeyError(f"no layer {path!r}; layers: {[v.path for v in self.layers]}")
        return found

    def summary(self) -> str:
        """One line, the wrong checksums first:
        ``INVALID outer UDP chksum wire=0xc067 correct=0xf612; VALID outer IPv4, ...``"""
        text = layers_summary(self.layers)
        if self.completion:
            field = next((v for v in self.layers if v.offset == self.completion.offset), None)
            text += (f" | completed pending csum at offset {self.completion.offset}"
                     + (f" ({field.layer})" if field else ""))
        if self.segment:
            text += f" | {self.segment}"
        return text

    def show(self) -> str:
        """A rendering close to scapy's ``show2()``, each checksum annotated:
        ``chksum    = 0xa60d  [valid]``."""
        lines = []
        offload = [v for v in self.layers if v.path == "offload"]
        if self.completion or self.segment or offload:
            lines.append("###[ nslab ]###")
            if self.completion:
                lines.append(f"  {'completion':<10}= {self.completion}")
            if self.segment:
                lines.append(f"  {'segment':<10}= {self.segment}")
            lines += [f"  {'offload':<10}= {v.annotation()}" for v in offload]
        # a judged verdict's headers, made for this rendering and not kept
        headers = (self.__dict__["headers"] if "headers" in self.__dict__
                   else self._dissected_headers())
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
    verdicts = []
    for wire, remake, tails in wire_sources(frame, vnet, csum_not_ready, link, tunnels):
        layers = judge(wire.data, link, tunnels, tails)
        if layers is None:
            layers = dissect_with(wire.data, link, tunnels).layers
        verdicts.append(PacketVerdict._judged(wire, list(wire.issues) + layers, remake, link,
                                              tunnels))
    return verdicts
