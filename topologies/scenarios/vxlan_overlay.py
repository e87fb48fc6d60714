"""S-VXLAN: VXLAN + NAT + tx checksum offload (seed 002, flannel-io/flannel#1929).

Topology::

    node_a ──eth0 (underlay veth)── node_b ──veth── pod
      vxlan0 10.244.0.1              vxlan0 10.244.0.2     10.244.1.2 (DNS on :53)

node_a sends: straight to the pod over the overlay, or, with kube-proxy's
rules, to the ClusterIP 10.96.0.10 from the node itself as in the seed's
``nslookup ... 10.96.0.10``: the source is picked for the route toward the
service (the underlay, outside the pod range), so KUBE-MARK-MASQ marks it;
DNAT sends it into vxlan0; the mark survives encapsulation, and before
kube-proxy 1.19 KUBE-POSTROUTING masquerades the *outer* packet too.

Every knob is a parameter with a readable id; what each value does is data
in ``KNOBS``; the expected outcome comes from ``topologies.known_bugs``.

What the lab measured on 6.18 (and why):
- The outer UDP checksum goes stale only when the *inner* packet is still
  CHECKSUM_PARTIAL at encapsulation: then local checksum offload precomputes
  the outer checksum, and NAT of a partial skb leaves it alone. The overlay's
  ARP, or a UDP query whose route at send time had no tx checksum offload, is
  complete before encapsulation and NATs correctly.
- Under kube-proxy only a connection's first packet carries the 0x4000 mark
  (the nat table sees NEW packets only). The outer flow's NAT binding then
  holds for its 5-tuple; a TCP SYN retransmission rehashes the socket, gets a
  new outer source port, is not marked, and gets through — after 1 s: the
  seed's delays.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from ..lab import firewall
from ..lab.links import vxlan_info
from .knobs import KnobConfig

if TYPE_CHECKING:
    from ..lab.lab import Lab
    from ..lab.node import Node

SCENARIO = "vxlan_overlay"
VNI, VXLAN_PORT = 42, 4789
UNDERLAY = {"node_a": "192.168.50.1", "node_b": "192.168.50.2"}
OVERLAY = {"node_a": "10.244.0.1", "node_b": "10.244.0.2"}
POD_GW, POD = "10.244.1.1", "10.244.1.2"
CLUSTER_CIDR, SERVICE_CIDR, CLUSTER_IP = "10.244.0.0/16", "10.96.0.0/16", "10.96.0.10"
DNS_PORT = 53

# kube-proxy (iptables mode) as of Kubernetes 1.18: the mark survives into the
# outer VXLAN packet, which KUBE-POSTROUTING then masquerades as well.
KUBE_PROXY_PRE_1_19 = f"""*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-DNS-UDP - [0:0]
:KUBE-SVC-DNS-TCP - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -m mark --mark 0x4000/0x4000 -j MASQUERADE --random-fully
-A KUBE-SERVICES ! -s {CLUSTER_CIDR} -d {CLUSTER_IP}/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -d {CLUSTER_IP}/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-DNS-UDP
-A KUBE-SERVICES ! -s {CLUSTER_CIDR} -d {CLUSTER_IP}/32 -p tcp -m comment --comment "kube-system/kube-dns:dns-tcp cluster IP" -m tcp --dport 53 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -d {CLUSTER_IP}/32 -p tcp -m comment --comment "kube-system/kube-dns:dns-tcp cluster IP" -m tcp --dport 53 -j KUBE-SVC-DNS-TCP
-A KUBE-SVC-DNS-UDP -p udp -j DNAT --to-destination {POD}:53
-A KUBE-SVC-DNS-TCP -p tcp -j DNAT --to-destination {POD}:53
COMMIT
"""
# Kubernetes PR 92035 (1.19): return early when unmarked, clear the mark, then
# masquerade — the outer packet no longer carries the mark.
KUBE_PROXY_POST_92035 = KUBE_PROXY_PRE_1_19.replace(
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
    '-m mark --mark 0x4000/0x4000 -j MASQUERADE --random-fully',
    "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n"
    "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n"
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
    "-j MASQUERADE --random-fully")


@dataclass(frozen=True)
class NatKnob:
    rules: str          # iptables-restore text applied on node_a ("" for none)
    via_service: bool   # traffic goes to the ClusterIP (kube-proxy) rather than the pod


NATS = {
    "nat_none": NatKnob("", False),
    "masquerade": NatKnob("*nat\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n", False),
    "masq_random_fully": NatKnob(
        "*nat\n-A POSTROUTING -o eth0 -j MASQUERADE --random-fully\nCOMMIT\n", False),
    "kube_proxy_pre_1_19": NatKnob(KUBE_PROXY_PRE_1_19, True),
    "kube_proxy_post_92035": NatKnob(KUBE_PROXY_POST_92035, True),
}


def _offloads(settings: dict) -> Callable[["Node"], None]:
    return lambda node: node.iface("vxlan0").set_offloads(settings)


def _service_route(node: "Node") -> None:
    node.add_route(SERVICE_CIDR, dev="vxlan0")


def _accept_underlay_first(node: "Node") -> None:
    firewall.apply_iptables(node, "*nat\n-I POSTROUTING 1 -o eth0 -j ACCEPT\nCOMMIT\n")


# The seed's workarounds, each applied on the sending node after NAT.
WORKAROUNDS: dict[str, Callable[["Node"], None]] = {
    "none": lambda node: None,
    "ethtool_rx_tx_off": _offloads({"rx": False, "tx": False}),
    "tx_csum_ip_generic_off": _offloads({"tx-checksum-ip-generic": False}),
    "route_service_via_vxlan": _service_route,
    "accept_underlay_first": _accept_underlay_first,
}

KNOBS = {
    "udpcsum": ("udpcsum", "noudpcsum"),
    "vxlan_tx": ("vxtx_on", "vxtx_off"),
    "underlay_tx": ("ultx_on", "ultx_off"),
    "nat": tuple(NATS),
    "workaround": tuple(WORKAROUNDS),
}


@dataclass(frozen=True)
class Config(KnobConfig):
    KNOBS = KNOBS

    udpcsum: str = "udpcsum"
    vxlan_tx: str = "vxtx_on"
    underlay_tx: str = "ultx_on"
    nat: str = "nat_none"
    workaround: str = "none"


def matrix() -> Iterator[Config]:
    """The seed's whole matrix: checksum × offloads × NAT without workaround,
    then every workaround on the seed's own failing setup."""
    for udpcsum, vxtx, ultx, nat in itertools.product(
            KNOBS["udpcsum"], KNOBS["vxlan_tx"], KNOBS["underlay_tx"], KNOBS["nat"]):
        yield Config(udpcsum, vxtx, ultx, nat)
    for workaround in KNOBS["workaround"][1:]:
        yield Config("udpcsum", "vxtx_on", "ultx_off", "kube_proxy_pre_1_19", workaround)


@dataclass
class Overlay:
    config: Config
    node_a: "Node"
    node_b: "Node"
    pod: "Node"

    @property
    def destination(self) -> str:
        """Where node_a's DNS queries go: the ClusterIP under kube-proxy, else the pod."""
        return CLUSTER_IP if NATS[self.config.nat].via_service else POD

    def udpcsum_reported(self) -> bool:
        return bool(vxlan_info(self.node_a, "vxlan0")["IFLA_VXLAN_UDP_CSUM"])


def build(lab: "Lab", config: Config) -> Overlay:
    node_a, node_b, pod = lab.add_node("node_a"), lab.add_node("node_b"), lab.add_node("pod")
    ul_a, ul_b = lab.veth(node_a, "eth0", node_b, "eth0")
    ul_a.add_addr(f"{UNDERLAY['node_a']}/24")
    ul_b.add_addr(f"{UNDERLAY['node_b']}/24")
    for name, node in (("node_a", node_a), ("node_b", node_b)):
        peer = "node_b" if name == "node_a" else "node_a"
        vx = lab.vxlan(node, "vxlan0", vni=VNI, port=VXLAN_PORT, local=UNDERLAY[name],
                       remote=UNDERLAY[peer], underlay="eth0",
                       udpcsum=config.udpcsum == "udpcsum")
        vx.add_addr(f"{OVERLAY[name]}/24")
    gw, pod_eth = lab.veth(node_b, "pod0", pod, "eth0")
    gw.add_addr(f"{POD_GW}/24")
    pod_eth.add_addr(f"{POD}/24")
    pod.add_route("0.0.0.0/0", via=POD_GW)
    node_b.sysctl("net.ipv4.ip_forward", "1")
    node_a.add_route("10.244.1.0/24", via=OVERLAY["node_b"], dev="vxlan0")
    # Like a node's default route: the service range is reached over the underlay.
    node_a.add_route("0.0.0.0/0", via=UNDERLAY["node_b"])

    node_a.iface("vxlan0").set_offloads({"tx-checksum-ip-generic": config.vxlan_tx == "vxtx_on"})
    if config.underlay_tx == "ultx_off":
        ul_a.set_offloads({"tx": False})   # software checksum: what a real NIC hands on
    nat = NATS[config.nat]
    if nat.rules:
        firewall.apply_iptables(node_a, nat.rules)
    WORKAROUNDS[config.workaround](node_a)
    return Overlay(config, node_a, node_b, pod)


def kernel_udpcsum_default(lab: "Lab") -> bool:
    """The running kernel's outer UDP checksum default for a new vxlan device
    (it changed over the years; the scenario always sets it explicitly)."""
    node = lab.add_node("probe")
    node.ipr.link("add", ifname="vxprobe", kind="vxlan", vxlan_id=1, vxlan_port=VXLAN_PORT,
                  vxlan_local="192.0.2.1", vxlan_group="192.0.2.2")
    return bool(vxlan_info(node, "vxprobe")["IFLA_VXLAN_UDP_CSUM"])
