"""virtio_net_hdr: the 10-byte offload header PACKET_VNET_HDR puts before a frame.

Fields are in host byte order (little-endian on x86, which is what AF_PACKET
hands out there). ``csum_start`` counts from the first byte of the captured
frame (the Ethernet header).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

VIRTIO_NET_HDR_F_NEEDS_CSUM = 1   # CHECKSUM_PARTIAL: a checksum is still pending
VIRTIO_NET_HDR_F_DATA_VALID = 2   # CHECKSUM_UNNECESSARY on receive

VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_UDP = 3        # UFO: IP fragmentation of one big datagram
VIRTIO_NET_HDR_GSO_TCPV6 = 4
VIRTIO_NET_HDR_GSO_UDP_L4 = 5     # USO: one datagram per gso_size of payload
VIRTIO_NET_HDR_GSO_ECN = 0x80     # TCP with CWR set in the super-packet

GSO_TYPE_NAMES = {
    VIRTIO_NET_HDR_GSO_NONE: "NONE",
    VIRTIO_NET_HDR_GSO_TCPV4: "TCPV4",
    VIRTIO_NET_HDR_GSO_UDP: "UDP",
    VIRTIO_NET_HDR_GSO_TCPV6: "TCPV6",
    VIRTIO_NET_HDR_GSO_UDP_L4: "UDP_L4",
}

_LAYOUT = struct.Struct("<BBHHHH")


@dataclass(frozen=True)
class VnetHdr:
    flags: int = 0
    gso_type: int = VIRTIO_NET_HDR_GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    SIZE = _LAYOUT.size

    @classmethod
    def parse(cls, data: bytes) -> "VnetHdr":
        if len(data) < cls.SIZE:
            raise ValueError(f"virtio_net_hdr needs {cls.SIZE} bytes, got {len(data)}")
        return cls(*_LAYOUT.unpack_from(data))

    def pack(self) -> bytes:
        return _LAYOUT.pack(self.flags, self.gso_type, self.hdr_len, self.gso_size,
                            self.csum_start, self.csum_offset)

    @property
    def needs_csum(self) -> bool:
        return bool(self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)

    @property
    def gso_kind(self) -> int:
        """The segmentation type without the ECN modifier bit."""
        return self.gso_type & ~VIRTIO_NET_HDR_GSO_ECN

    @property
    def gso_name(self) -> str:
        name = GSO_TYPE_NAMES.get(self.gso_kind, f"unknown ({self.gso_kind})")
        return name + "|ECN" if self.gso_type & VIRTIO_NET_HDR_GSO_ECN else name
