"""The verdict engine: from captured bytes to what a real wire carries, every checksum judged.
Pure computation on bytes (no namespaces, no sockets): complete the pending checksum and cut
GSO super-packets as a NIC would (``nic``), dissect every layer (``dissect``), judge each field.
"""
from .checksum import checksum, fold, ones_sum, pseudo_sum_v4, pseudo_sum_v6
from .checksum_partial import complete_partial
from .dissect import (
    DEFAULT_GENEVE_PORTS,
    DEFAULT_VXLAN_PORTS,
    MAX_NESTING,
    Header,
    UdpTunnels,
    dissect,
    udp_tunnels,
)
from .gso import GsoUnsupported, segment
from .layer import LayerVerdict, Status
from .nic import Completion, Segment, WireFrame, wire_frames
from .packet import PacketVerdict, verify
from .vnet_hdr import (
                       VIRTIO_NET_HDR_F_DATA_VALID,
                       VIRTIO_NET_HDR_F_NEEDS_CSUM,
                       VIRTIO_NET_HDR_GSO_ECN,
                       VIRTIO_NET_HDR_GSO_NONE,
                       VIRTIO_NET_HDR_GSO_TCPV4,
                       VIRTIO_NET_HDR_GSO_TCPV6,
                       VIRTIO_NET_HDR_GSO_UDP,
                       VIRTIO_NET_HDR_GSO_UDP_L4,
                       VnetHdr,
)

__all__ = [
    "verify", "PacketVerdict", "LayerVerdict", "Status", "VnetHdr", "WireFrame", "Completion",
    "Segment", "wire_frames", "complete_partial", "segment", "GsoUnsupported", "dissect",
    "Header", "checksum", "fold", "ones_sum", "pseudo_sum_v4", "pseudo_sum_v6",
    "DEFAULT_VXLAN_PORTS", "DEFAULT_GENEVE_PORTS", "MAX_NESTING", "UdpTunnels", "udp_tunnels",
    "VIRTIO_NET_HDR_F_NEEDS_CSUM", "VIRTIO_NET_HDR_F_DATA_VALID",
    "VIRTIO_NET_HDR_GSO_NONE", "VIRTIO_NET_HDR_GSO_TCPV4", "VIRTIO_NET_HDR_GSO_UDP",
    "VIRTIO_NET_HDR_GSO_TCPV6", "VIRTIO_NET_HDR_GSO_UDP_L4", "VIRTIO_NET_HDR_GSO_ECN",
]
