"""S-LXC: a pod's egress through a Cilium-like program (seed 004, Cilium PR 42926).

    pod:eth0 ==veth or netkit== host:lxc0 [from_pod]    host:eth0 ==veth== remote:eth0

The pod's default gateway (10.1.0.1, fd00:1::1) is an address no device
owns, as with Cilium's router IP: on veth only the program's ARP/ND responder
makes it resolvable, with the MAC of the host side (the "router MAC"). The
host routes (ip_forward, IPv6 forwarding) to the remote node.

Where the program runs:
- veth: tc ingress of the host side (lxc0), after the packet taps, so a
  capture on lxc0 shows the frame as the pod sent it;
- netkit (L3 mode, IFF_NOARP, zero MACs): netkit runs a device's programs in
  that device's transmit, so the pod's egress is the *peer* hook —
  ``BPF_LINK_CREATE`` with ``BPF_NETKIT_PEER`` and the primary's ifindex
  (drivers/net/netkit.c: ``netkit_xmit`` runs ``nk->active`` of the sending
  device; ``netkit_dev_fetch`` maps BPF_NETKIT_PEER to the peer). Cilium
  does the same (its from-container check looks for AttachNetkitPeer links).
  ``BPF_NETKIT_PRIMARY`` runs on the primary's transmit: host-to-pod
  traffic. The program runs after ``eth_skb_pkt_type`` and before the
  primary's ``__netif_rx``, so a capture on lxc0 shows the program's output.

The variants and what the remote must see are data (``VARIANTS``).
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .. import bpf
from ..paths import BPF_SOURCES
from .knobs import KnobConfig

if TYPE_CHECKING:
    from ..bpf.attach import Attachment
    from ..bpf.libbpf import BpfObject
    from ..lab.iface import Iface
    from ..lab.lab import Lab
    from ..lab.node import Node

SCENARIO = "pod_egress"
SOURCE = str(BPF_SOURCES / "pod_egress.c")
LINKS = ("veth", "netkit")
FAMILIES = ("ipv4", "ipv6")
NETKIT_ENDS = ("peer", "primary")
POD = {"ipv4": "10.1.0.2/24", "ipv6": "fd00:1::2/64"}
GATEWAY = {"ipv4": "10.1.0.1", "ipv6": "fd00:1::1"}        # owned by no device
HOST_UPLINK = {"ipv4": "10.2.0.1/24", "ipv6": "fd00:2::1/64"}
REMOTE = {"ipv4": "10.2.0.2/24", "ipv6": "fd00:2::2/64"}
DEFAULT_ROUTE = {"ipv4": "0.0.0.0/0", "ipv6": "::/0"}
HOST_ROUTE = {"ipv4": "/32", "ipv6": "/128"}
FORWARDING = {"ipv4": "net.ipv4.ip_forward", "ipv6": "net.ipv6.conf.all.forwarding"}
COUNTERS = {"arp_replies": 0, "na_replies": 1, "rewritten_ipv4": 2, "rewritten_ipv6": 3,
            "to_stack": 4}                                  # enum in the program
START_TTL = 64      # what the pod's kernel puts in (ip_default_ttl, hop_limit)
ZERO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True)
class Variant:
    defines: dict
    bpf_decrements: int           # TTL / hop limit decrements by the program
    ipv4_header_valid: bool       # does the program leave a valid IPv4 header checksum?
    summary: str


VARIANTS: dict[str, Variant] = {
    "no-rewrite": Variant({}, 0, True, "the PR: straight to the stack"),
    "l3-rewrite": Variant({"VARIANT_L3_REWRITE": 1}, 1, True,
                          "before the PR: dst MAC := router MAC, TTL - 1, incremental checksum"),
    "ttl-no-csum": Variant({"VARIANT_TTL_NO_CSUM": 1}, 1, False,
                           "known-bad: TTL - 1 without the IPv4 header checksum update"),
}


def remote_ttl(variant: str) -> int:
    """The TTL / hop limit the remote sees: the program's decrement, then the host's."""
    return START_TTL - VARIANTS[variant].bpf_decrements - 1


def delivered(variant: str, family: str) -> bool:
    """IPv6 has no header checksum, so only IPv4 can be broken by a missing update."""
    return family == "ipv6" or VARIANTS[variant].ipv4_header_valid


def _addr(cidr: str) -> str:
    return cidr.split("/")[0]


@dataclass
class PodEgress:
    lab: "Lab"
    link: str
    variant: str
    pod: "Node"
    host: "Node"
    remote: "Node"
    pod_end: "Iface"        # the pod's eth0 (veth end, or netkit peer)
    host_end: "Iface"       # the host's lxc0 (veth end, or netkit primary)
    uplink: "Iface"
    remote_end: "Iface"
    obj: "BpfObject"
    attachment: "Attachment"
    router_mac: str

    def pod_addr(self, family: str) -> str:
        return _addr(POD[family])

    def remote_addr(self, family: str) -> str:
        return _addr(REMOTE[family])

    def gateway(self, family: str) -> str:
        return GATEWAY[family]

    def counter(self, name: str) -> int:
        return int.from_bytes(self.obj.map("counters").lookup(COUNTERS[name]), "little")

    def gateway_neighbour(self, family: str) -> Optional[dict]:
        """The pod's neighbour entry for its gateway, if any."""
        return next((n for n in self.pod.neighbours("eth0") if n["dst"] == GATEWAY[family]),
                    None)


def config_value(router_mac: str) -> bytes:
    """``struct lxc_config``: gateway4, gateway6, router_mac, 2 bytes padding."""
    return (ipaddress.IPv4Address(GATEWAY["ipv4"]).packed
            + ipaddress.IPv6Address(GATEWAY["ipv6"]).packed
            + bytes.fromhex(router_mac.replace(":", "")) + b"\0\0")


def _pod_link(lab: "Lab", link: str, pod: "Node", host: "Node") -> tuple["Iface", "Iface"]:
    """(pod end, host end). netkit raises Unsupported where the kernel has none."""
    if link == "veth":
        return lab.veth(pod, "eth0", host, "lxc0")
    primary, peer = lab.netkit(host, "lxc0", pod, "eth0", mode="l3")
    return peer, primary


# netkit_end: the netkit hook the program goes on ("primary" shows the one that
# does not see the pod's egress); a veth ignores it.
KNOBS = {"link": LINKS, "variant": tuple(VARIANTS), "netkit_end": NETKIT_ENDS}


@dataclass(frozen=True)
class Config(KnobConfig):
    KNOBS = KNOBS

    link: str = "veth"
    variant: str = "no-rewrite"
    netkit_end: str = "peer"


def build(lab: "Lab", config: Config) -> PodEgress:
    """The three nodes, routing both families, the variant's build attached
    where it sees the pod's egress. netkit raises Unsupported where the kernel
    has none (CONFIG_NETKIT)."""
    link, variant = config.link, config.variant
    pod, host, remote = lab.add_node("pod"), lab.add_node("host"), lab.add_node("remote")
    pod_end, host_end = _pod_link(lab, link, pod, host)
    uplink, remote_end = lab.veth(host, "eth0", remote, "eth0")
    for family in FAMILIES:
        host.sysctl(FORWARDING[family], "1")
        pod_end.add_addr(POD[family])
        uplink.add_addr(HOST_UPLINK[family])
        remote_end.add_addr(REMOTE[family])
        pod.add_route(DEFAULT_ROUTE[family], via=GATEWAY[family])
        host.add_route(_addr(POD[family]) + HOST_ROUTE[family], dev="lxc0")
        remote.add_route(str(ipaddress.ip_interface(POD[family]).network),
                         via=_addr(HOST_UPLINK[family]))

    router_mac = host_end.mac     # all zeros on an L3 netkit
    obj = bpf.load(lab, SOURCE, defines=VARIANTS[variant].defines)
    obj.map("config").update(0, config_value(router_mac))
    prog = obj.program("from_pod")
    if link == "veth":
        attachment = bpf.attach_tc(host_end, prog, "ingress")
    else:
        attachment = bpf.attach_netkit(host_end, prog, end=config.netkit_end)
    return PodEgress(lab, link, variant, pod, host, remote, pod_end, host_end, uplink,
                     remote_end, obj, attachment, router_mac)


def ip_ttl(frame: bytes) -> Optional[int]:
    """TTL or hop limit of an Ethernet frame's IP packet."""
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == 0x0800:
        return frame[14 + 8]
    if ethertype == 0x86DD:
        return frame[14 + 7]
    return None
