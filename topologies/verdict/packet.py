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
    dissect_with,
    udp_tunnels,
)
from .layer import LayerVerdict, Status
from .nic import Completion, Segment, frames_on_wire
from .vnet_hdr import VnetHdr


@dataclass
class PacketVerdict:
    frame: bytes                      # the wire frame that was judged
    layers: list[LayerVerdict]
    headers: list[Header]
    completion: Optional[Completion] = None
    segment: Optional[Segment] = None

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
        parts = [v.describe() for v in self.invalid]
        parts += [f"NOT_CHECKABLE {v.layer} ({v.reason})" for v in self.unchecked]
        parts += [v.brief() for status in (Status.PENDING, Status.ZERO_TUNNEL)
                  for v in self.with_status(status)]
        for status in (Status.DISABLED, Status.VALID):
            names = [v.layer for v in self.with_status(status)]
            if names:
                parts.append(f"{status.name} {', '.join(names)}")
        text = "; ".join(parts) or "no checksum to verify"
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
        for h in self.headers:
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
    for wire in frames_on_wire(frame, vnet, csum_not_ready, link, tunnels):
        d = dissect_with(wire.data, link, tunnels)
        verdicts.append(PacketVerdict(wire.data, list(wire.issues) + d.layers, d.headers,
                                      wire.completion, wire.segment))
    return verdicts
