"""Offload-aware capture: AF_PACKET with PACKET_VNET_HDR and PACKET_AUXDATA.

The vnet header tells which checksum is still pending (CHECKSUM_PARTIAL:
``csum_start``/``csum_offset``) and whether a frame is a GSO super-packet;
auxdata's TP_STATUS_CSUMNOTREADY says the same from the socket's side. The
verdict engine needs both to judge what a real wire would carry.

A capture is started before traffic (the socket is bound when ``start``
returns) and stopped after; kernel drops (PACKET_STATISTICS) are kept with the
packets, and a capture with drops has no verdict: "no bad packet seen" is only
true when nothing was lost.
"""
from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Optional

from ..errors import LabError
from ..verdict import PacketVerdict, VnetHdr, verify
from . import pcapng

if TYPE_CHECKING:
    from ..lab.node import Node

SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_STATISTICS = 6
PACKET_VNET_HDR = 15
ETH_P_ALL = 0x0003
TP_STATUS_CSUMNOTREADY = 1 << 3
TP_STATUS_CSUM_VALID = 1 << 7
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # absent from some Pythons
VNET_HDR_LEN = 10
MAX_FRAME = 256 * 1024   # a GSO super-packet is delivered whole
AUXDATA = struct.Struct("=IIIHHHH")  # tpacket_auxdata
STATS = struct.Struct("=II")         # tpacket_stats: packets, drops
LINKTYPE_ETHERNET = 1


@dataclass
class Captured:
    """One frame as the socket saw it, before any completion."""
    timestamp: float
    frame: bytes
    vnet: VnetHdr
    status: int          # tpacket_auxdata.tp_status
    outgoing: bool
    orig_len: int
    _verdicts: Optional[list[PacketVerdict]] = field(default=None, repr=False, compare=False)

    @property
    def csum_not_ready(self) -> bool:
        return bool(self.status & TP_STATUS_CSUMNOTREADY)

    @property
    def truncated(self) -> bool:
        return self.orig_len > len(self.frame)

    def verdicts(self) -> list[PacketVerdict]:
        """Judged once: tests, pcapng and artifacts all ask for the same frames."""
        if self._verdicts is None:
            self._verdicts = verify(self.frame, self.vnet, self.csum_not_ready)
        return self._verdicts


@dataclass
class CaptureResult:
    device: str
    node: str
    packets: list[Captured] = field(default_factory=list)
    kernel_seen: int = 0
    kernel_drops: int = 0

    def __iter__(self) -> Iterator[Captured]:
        return iter(self.packets)

    def __len__(self) -> int:
        return len(self.packets)

    def select(self, direction: Optional[str] = None) -> list[Captured]:
        """``direction``: "in", "out" or None for both."""
        if direction is None:
            return list(self.packets)
        want_out = direction == "out"
        return [p for p in self.packets if p.outgoing == want_out]

    def require_complete(self) -> None:
        """Raise when the kernel dropped frames: the capture cannot vouch for anything."""
        truncated = sum(p.truncated for p in self.packets)
        if self.kernel_drops or truncated:
            raise LabError(f"capture on {self.node}:{self.device} is void: "
                           f"{self.kernel_drops} dropped by the kernel, {truncated} truncated")

    def verdicts(self, direction: Optional[str] = None) -> list[tuple[Captured, PacketVerdict]]:
        self.require_complete()
        return [(p, v) for p in self.select(direction) for v in p.verdicts()]

    def write_pcapng(self, path: str) -> str:
        """Write the wire frames (pending checksums completed, GSO segmented),
        each with a comment saying what nslab completed."""
        with pcapng.Writer(path) as out:
            iface = out.add_interface(f"{self.node}:{self.device}", LINKTYPE_ETHERNET)
            for pkt in self.packets:
                for verdict in pkt.verdicts():
                    out.write_packet(iface, pkt.timestamp, verdict.frame,
                                     comment=_comment(pkt, verdict))
        return path


def _comment(pkt: Captured, verdict: PacketVerdict) -> str:
    parts = ["out" if pkt.outgoing else "in"]
    if verdict.completion:
        parts.append(str(verdict.completion))
    parts.append(verdict.summary())
    return "; ".join(parts)


class Capture:
    """``with Capture(node, "eth0") as cap: ...traffic...`` then ``cap.result``."""

    def __init__(self, node: "Node", device: str, *, bufsize: int = 64 << 20):
        self.node, self.device, self.bufsize = node, device, bufsize
        self.result = CaptureResult(device, node.name)
        self._sock: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._cleanup = None

    def __enter__(self) -> "Capture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "Capture":
        self.node.ifindex(self.device)  # a clear error for a wrong device name
        sock = self.node.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.bufsize)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((self.device, ETH_P_ALL))   # protocol in host order, as bind() wants
        self._sock = sock
        self._stats()                           # reading the statistics resets them
        self._thread = threading.Thread(target=self._loop, name=f"capture-{self.device}",
                                        daemon=True)
        self._thread.start()
        self._cleanup = self.node.lab.defer(self.stop, what=f"capture on {self.device}")
        self.node.lab.captures.append(self)
        return self

    def stop(self, grace: float = 0.05) -> CaptureResult:
        """Stop after ``grace`` seconds, drain what is queued, read the drop counters."""
        if self._sock is None:
            return self.result
        time.sleep(grace)
        self._stop.set()
        self._thread.join()
        self._drain(block=False)
        packets, drops = self._stats()
        self.result.kernel_seen, self.result.kernel_drops = packets, drops
        self._sock.close()
        self._sock = None
        if self._cleanup:
            self._cleanup.cancel()
        return self.result

    def _stats(self) -> tuple[int, int]:
        return STATS.unpack(self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, STATS.size))

    def _loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.02)
            if ready:
                self._drain(block=False)

    def _drain(self, block: bool) -> None:
        flags = 0 if block else socket.MSG_DONTWAIT
        space = socket.CMSG_SPACE(AUXDATA.size) + socket.CMSG_SPACE(16)
        while True:
            try:
                data, ancdata, msg_flags, addr = self._sock.recvmsg(
                    VNET_HDR_LEN + MAX_FRAME, space, flags | socket.MSG_TRUNC)
            except BlockingIOError:
                return
            self.result.packets.append(_parse(data, ancdata, addr))


def _parse(data: bytes, ancdata, addr) -> Captured:
    vnet = VnetHdr.parse(data[:VNET_HDR_LEN])
    frame = data[VNET_HDR_LEN:]
    status, orig_len, stamp = 0, len(frame), time.time()
    for level, kind, payload in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA:
            status, orig_len, _snaplen, *_ = AUXDATA.unpack_from(payload)
        elif level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack_from("=qq", payload)
            stamp = sec + nsec / 1e9
    return Captured(stamp, frame, vnet, status, outgoing=addr[2] == PACKET_OUTGOING,
                    orig_len=orig_len)
