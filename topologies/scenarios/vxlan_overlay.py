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
in ``KNOBS``; the expected outcome comes from ``topologies.known_bugs``. The
underlay is IPv4 (``ul4``, the seed's) or IPv6 (``ul6``: 2001:db8:50::/64,
outer UDP checksum by udp6zerocsumtx/udp6zerocsumrx); the overlay stays IPv4.

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
- The IPv6 underlay behaves the same: the outer checksum is stale after the
  same NATs (``udp6_set_csum`` precomputes it as ``udp_set_csum`` does, and
  NAT goes through the same ``__udp_manip_pkt``); a zero outer checksum
  (udp6zerocsumtx) stays zero through every NAT and the peer, with
  udp6zerocsumrx, accepts it.
- How stale: exactly ``predicted_staleness`` — the port change plus twice the
  address change (see its docstring for the kernel arithmetic).
"""
from __future__ import annotations

import ipaddress
import itertools
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Optional

from ..errors import LabError
from ..lab import firewall
from ..lab.conntrack import Flow
from ..lab.links import vxlan_info
from .knobs import KnobConfig

if TYPE_CHECKING:
    from ..lab.lab import Lab
    from ..lab.node import Node

SCENARIO = "vxlan_overlay"
VNI, VXLAN_PORT = 42, 4789
UNDERLAY = {"node_a": "192.168.50.1", "node_b": "192.168.50.2"}


@dataclass(frozen=True)
class Underlay:
    family: int
    addrs: dict            # node → its underlay address
    prefixlen: int
    snat_to: str           # node_a's second underlay address, the SNAT cells' new source


# The second address sits in the underlay's subnet, so node_b reaches it on-link
# (nothing is addressed to it but ICMP errors: node_b's vxlan answers to its
# configured remote). It is only added where a SNAT rule uses it: an IPv6
# MASQUERADE would otherwise pick it (longest matching prefix with node_b's).
UNDERLAYS = {
    "ul4": Underlay(4, UNDERLAY, 24, "192.168.50.3"),
    "ul6": Underlay(6, {"node_a": "2001:db8:50::1", "node_b": "2001:db8:50::2"}, 64,
                    "2001:db8:50::3"),
}
# SNAT's port range: outside vxlan's source ports (the ephemeral range), so the
# port always changes.
SNAT_PORTS = "20000-29999"
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
    # ip6tables-restore text for an IPv6 underlay; None: the NAT does not apply there
    rules6: Optional[str] = None
    snat_address: bool = False   # node_a needs its second underlay address

    def rules_for(self, underlay: str) -> Optional[str]:
        return self.rules if underlay == "ul4" else self.rules6


def _postrouting(target: str) -> str:
    return f"*nat\n-A POSTROUTING -o eth0 {target}\nCOMMIT\n"


def _snat(to_source: str) -> str:
    return _postrouting(f"-p udp -j SNAT --to-source {to_source}")


_MASQ, _MASQ_RANDOM_FULLY = (_postrouting("-j MASQUERADE"),
                             _postrouting("-j MASQUERADE --random-fully"))
_SNAT4, _SNAT6 = UNDERLAYS["ul4"].snat_to, UNDERLAYS["ul6"].snat_to

NATS = {
    "nat_none": NatKnob("", False, ""),
    "masquerade": NatKnob(_MASQ, False, _MASQ),
    "masq_random_fully": NatKnob(_MASQ_RANDOM_FULLY, False, _MASQ_RANDOM_FULLY),
    # kube-proxy's rules are IPv4-only here (an IPv4 ClusterIP DNATed to the
    # pod's IPv4 address): over an IPv6 underlay the marked packet is the inner
    # one, and only a dual-stack cluster's ip6tables KUBE-POSTROUTING could
    # masquerade the outer IPv6 packet. Left out of the IPv6 underlay.
    "kube_proxy_pre_1_19": NatKnob(KUBE_PROXY_PRE_1_19, True),
    "kube_proxy_post_92035": NatKnob(KUBE_PROXY_POST_92035, True),
    # SNAT to node_a's second address: address and port change, or the address
    # only (conntrack keeps the source port when the tuple stays unique).
    "snat_addr_port": NatKnob(_snat(f"{_SNAT4}:{SNAT_PORTS}"), False,
                              _snat(f"[{_SNAT6}]:{SNAT_PORTS}"), True),
    "snat_addr": NatKnob(_snat(_SNAT4), False, _snat(_SNAT6), True),
}
# The seed's NATs (the matrix the suite started with), and the SNAT cells.
SEED_NATS = ("nat_none", "masquerade", "masq_random_fully", "kube_proxy_pre_1_19",
             "kube_proxy_post_92035")
SNAT_NATS = ("snat_addr_port", "snat_addr")


def _offloads(settings: dict) -> Callable[["Node", int], None]:
    return lambda node, family: node.iface("vxlan0").set_offloads(settings)


def _service_route(node: "Node", family: int) -> None:
    node.add_route(SERVICE_CIDR, dev="vxlan0")


def _accept_underlay_first(node: "Node", family: int) -> None:
    firewall.apply_iptables(node, "*nat\n-I POSTROUTING 1 -o eth0 -j ACCEPT\nCOMMIT\n",
                            family=family)


# The seed's workarounds, each applied on the sending node (and underlay
# family) after NAT.
WORKAROUNDS: dict[str, Callable[["Node", int], None]] = {
    "none": lambda node, family: None,
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
    "underlay": tuple(UNDERLAYS),
}


@dataclass(frozen=True)
class Config(KnobConfig):
    KNOBS = KNOBS

    udpcsum: str = "udpcsum"
    vxlan_tx: str = "vxtx_on"
    underlay_tx: str = "ultx_on"
    nat: str = "nat_none"
    workaround: str = "none"
    underlay: str = "ul4"

    def __post_init__(self):
        super().__post_init__()
        if NATS[self.nat].rules_for(self.underlay) is None:
            raise LabError(f"nat={self.nat} does not apply to underlay={self.underlay} "
                           f"(kube-proxy's rules are IPv4-only here)")

    # The id's word order: the underlay family beside the underlay's offload.
    ID_ORDER = ("udpcsum", "vxlan_tx", "underlay_tx", "underlay", "nat", "workaround")

    @property
    def id(self) -> str:
        """The knob values joined, the IPv4 underlay left out: it is the one
        the suite had before the knob, and its ids stay what they were. ``ul6``
        goes beside ``ultx_*``, so a ``-k`` naming a seed cell's words in a row
        (``udpcsum-vxtx_on-ultx_on-nat_none``) still selects the IPv4 cell only:
        ``udpcsum-vxtx_on-ultx_on-ul6-nat_none-none``."""
        return "-".join(getattr(self, k) for k in self.ID_ORDER
                        if (k, getattr(self, k)) != ("underlay", "ul4"))

    @property
    def family(self) -> int:
        return UNDERLAYS[self.underlay].family


def matrix() -> Iterator[Config]:
    """The seed's whole matrix: checksum × offloads × NAT without workaround,
    then every workaround on the seed's own failing setup."""
    for udpcsum, vxtx, ultx, nat in itertools.product(
            KNOBS["udpcsum"], KNOBS["vxlan_tx"], KNOBS["underlay_tx"], SEED_NATS):
        yield Config(udpcsum, vxtx, ultx, nat)
    for workaround in KNOBS["workaround"][1:]:
        yield Config("udpcsum", "vxtx_on", "ultx_off", "kube_proxy_pre_1_19", workaround)


def underlay_and_snat_matrix() -> Iterator[Config]:
    """The cells added after the seed's: SNAT to node_a's second address on the
    IPv4 underlay, and the IPv6 underlay with every NAT that applies to it —
    checksum × offloads each time, no workaround."""
    for underlay, nat in itertools.product(KNOBS["underlay"], KNOBS["nat"]):
        if (underlay == "ul4" and nat in SEED_NATS) or NATS[nat].rules_for(underlay) is None:
            continue
        for udpcsum, vxtx, ultx in itertools.product(
                KNOBS["udpcsum"], KNOBS["vxlan_tx"], KNOBS["underlay_tx"]):
            yield Config(udpcsum, vxtx, ultx, nat, underlay=underlay)


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

    @property
    def underlay(self) -> Underlay:
        return UNDERLAYS[self.config.underlay]

    def udpcsum_reported(self) -> bool:
        """Whether node_a's vxlan device sends an outer UDP checksum, as the
        kernel reports it: IFLA_VXLAN_UDP_CSUM over IPv4; over IPv6 the absence
        of IFLA_VXLAN_UDP_ZERO_CSUM6_TX (an IPv6 device reports UDP_CSUM 1 even
        with udp6zerocsumtx set, as 6.18 does: that flag is IPv4's)."""
        info = vxlan_info(self.node_a, "vxlan0")
        if self.underlay.family == 6:
            return not info["IFLA_VXLAN_UDP_ZERO_CSUM6_TX"]
        return bool(info["IFLA_VXLAN_UDP_CSUM"])

    def outer_flows(self) -> dict[tuple[str, int], tuple[str, int]]:
        """node_a's outer VXLAN flows from conntrack: (source address, port) as
        NAT left them → as the vxlan device sent them."""
        return {(f.reply[2], f.reply[3]): (f.orig[0], f.orig[1])
                for f in udp_flows(self.node_a, self.underlay.family)
                if f.orig[3] == VXLAN_PORT}


def udp_flows(node: "Node", family: int) -> list[Flow]:
    """``node``'s UDP conntrack entries of one address family (a conntrack dump
    asked for one family returns only that family's entries)."""
    def dump() -> list[Flow]:
        from pyroute2 import Conntrack   # on first use: see lab.rtnl on pyroute2's import
        ct = Conntrack(nfgen_family=socket.AF_INET6 if family == 6 else socket.AF_INET)
        try:
            return [Flow(o.proto, (o.saddr, o.sport, o.daddr, o.dport),
                         (r.saddr, r.sport, r.daddr, r.dport))
                    for o, r in ((e.tuple_orig, e.tuple_reply) for e in ct.dump_entries())
                    if o.proto == socket.IPPROTO_UDP]
        finally:
            ct.close()
    return node.call(dump)


def _word_sum(addr: str) -> int:
    """An address's 16-bit words added up, modulo 0xffff (ones' complement)."""
    return int.from_bytes(ipaddress.ip_address(addr).packed, "big") % 0xFFFF


def staleness(wire: int, correct: int) -> int:
    """``wire - correct`` in ones' complement arithmetic, as 0..0xfffe (0 when
    the two are the same checksum: 0x0000 and 0xffff are both zero)."""
    return (wire - correct) % 0xFFFF


def predicted_staleness(old_addr: str, new_addr: str, old_port: int, new_port: int) -> int:
    """How stale the outer UDP checksum is after NAT of a locally
    checksum-offloaded VXLAN packet: ``staleness(wire, correct)`` predicted
    from the source address and port before and after NAT::

        wire - correct = (new_port - old_port) + 2 * (new_addr - old_addr)

    in ones' complement arithmetic (modulo 0xffff), an address counting as
    the sum of its 16-bit words. Derivation, with ~x = -x:

    - The vxlan device encapsulates a packet whose inner checksum is still
      pending (CHECKSUM_PARTIAL). ``udp_set_csum`` (``udp6_set_csum`` over
      IPv6) then uses local checksum offload, ``lco_csum``, to write the
      *final* outer checksum C = -S, S being the sum over the outer UDP
      pseudo-header, header and payload; the skb stays CHECKSUM_PARTIAL (for
      the inner checksum).
    - NAT changes the source address a -> a' and port p -> p'. The correct
      checksum is then -(S + (a' - a) + (p' - p)) = C - (a' - a) - (p' - p).
    - ``__udp_manip_pkt`` (net/netfilter/nf_nat_proto.c) updates the address
      with ``nf_csum_update`` -> ``inet_proto_csum_replace4`` (``..16`` for
      IPv6) with pseudohdr=true, and the port with
      ``inet_proto_csum_replace2`` with pseudohdr=false. On a
      CHECKSUM_PARTIAL skb (net/core/utils.c) the pseudohdr=false call
      changes nothing, and the pseudohdr=true one treats the field as a
      pseudo-header *seed* (an uncomplemented sum): it writes
      ``~csum_fold(csum_unfold(*sum) - from + to)``, i.e. C + (a' - a).
    - wire - correct = C + (a' - a) - (C - (a' - a) - (p' - p))
                     = (p' - p) + 2 (a' - a).

    A NAT that keeps address and port leaves the checksum right (0)."""
    return ((new_port - old_port) + 2 * (_word_sum(new_addr) - _word_sum(old_addr))) % 0xFFFF


def build(lab: "Lab", config: Config) -> Overlay:
    node_a, node_b, pod = lab.add_node("node_a"), lab.add_node("node_b"), lab.add_node("pod")
    underlay = UNDERLAYS[config.underlay]
    ul_a, ul_b = lab.veth(node_a, "eth0", node_b, "eth0")
    ul_a.add_addr(f"{underlay.addrs['node_a']}/{underlay.prefixlen}")
    ul_b.add_addr(f"{underlay.addrs['node_b']}/{underlay.prefixlen}")
    nat = NATS[config.nat]
    if nat.snat_address:
        ul_a.add_addr(f"{underlay.snat_to}/{underlay.prefixlen}")
    for name, node in (("node_a", node_a), ("node_b", node_b)):
        peer = "node_b" if name == "node_a" else "node_a"
        vx = lab.vxlan(node, "vxlan0", vni=VNI, port=VXLAN_PORT, local=underlay.addrs[name],
                       remote=underlay.addrs[peer], underlay="eth0",
                       udpcsum=config.udpcsum == "udpcsum")
        vx.add_addr(f"{OVERLAY[name]}/24")
    gw, pod_eth = lab.veth(node_b, "pod0", pod, "eth0")
    gw.add_addr(f"{POD_GW}/24")
    pod_eth.add_addr(f"{POD}/24")
    pod.add_route("0.0.0.0/0", via=POD_GW)
    node_b.sysctl("net.ipv4.ip_forward", "1")
    node_a.add_route("10.244.1.0/24", via=OVERLAY["node_b"], dev="vxlan0")
    if underlay.family == 4:
        # Like a node's default route: the service range is reached over the underlay.
        node_a.add_route("0.0.0.0/0", via=underlay.addrs["node_b"])

    node_a.iface("vxlan0").set_offloads({"tx-checksum-ip-generic": config.vxlan_tx == "vxtx_on"})
    if config.underlay_tx == "ultx_off":
        ul_a.set_offloads({"tx": False})   # software checksum: what a real NIC hands on
    rules = nat.rules_for(config.underlay)
    if rules:
        firewall.apply_iptables(node_a, rules, family=underlay.family)
    WORKAROUNDS[config.workaround](node_a, underlay.family)
    return Overlay(config, node_a, node_b, pod)


def kernel_udpcsum_default(lab: "Lab") -> bool:
    """The running kernel's outer UDP checksum default for a new vxlan device
    (it changed over the years; the scenario always sets it explicitly)."""
    node = lab.add_node("probe")
    node.ipr.link("add", ifname="vxprobe", kind="vxlan", vxlan_id=1, vxlan_port=VXLAN_PORT,
                  vxlan_local="192.0.2.1", vxlan_group="192.0.2.2")
    return bool(vxlan_info(node, "vxprobe")["IFLA_VXLAN_UDP_CSUM"])
