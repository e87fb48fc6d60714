"""S-REVNAT: ICMP frag-needed through an SNAT load balancer (seed 000, Cilium PR 43196).

    client:eth0 ── eth0:lb:eth1 ── eth0:router:eth1 ──(MTU 1400)── eth0:backend
                   [lb_from_client] [lb_from_backend]

The LB runs ``bpf/lb_snat.c`` on tc ingress of both devices: VIP:80 is DNATed
to the backend's :8080 and the client SNATed to the LB's node IP and a port
from ``NAT_PORTS`` (mode ``lb``), or the client is SNATed only, toward the
backend network (mode ``snat``, the seed's setup). Forwarding is the program's
own: ``bpf_fib_lookup`` then ``bpf_redirect`` (``bpf_redirect_neigh`` while a
neighbour is unresolved), TTL decremented; ``forwarding="stack"`` hands the
translated packets to the LB's kernel instead. The router has no route back
to the client network: replies only come back through the NAT.

Only the router's device toward the backend has the small MTU (the backend's
own stays at 1500, or its TCP MSS would hide the small hop and no frag-needed
would ever be sent): a DF packet from the client makes the router's kernel
send a frag-needed / Packet Too Big to the node IP, which the program must
RevNAT to the client. Client and backend compute their checksums in software
(tx checksum offload off), as a real NIC puts them on the wire: a quoted
checksum is then a real one, not a CHECKSUM_PARTIAL seed.

Both families are configured on every lab (``PLANS``); a test picks one.
What each variant does to the ICMP checksum, per quote, is data
(``OUTCOMES``, see ``expected``).
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .. import bpf
from ..paths import BPF_SOURCES
from .knobs import KnobConfig

if TYPE_CHECKING:
    from ..bpf.libbpf import BpfObject
    from ..lab.iface import Iface
    from ..lab.lab import Lab
    from ..lab.node import Node

SOURCE = str(BPF_SOURCES / "lb_snat.c")
VARIANTS = {"fixed": {}, "prefix": {"VARIANT_PREFIX": 1}}
FAMILIES = ("ipv4", "ipv6")
INNERS = ("tcp", "udp", "icmp")       # the protocol of the packet the error quotes
MODES = ("lb", "snat")
FORWARDING = ("redirect", "stack")
KNOBS = {"variant": tuple(VARIANTS), "mode": MODES, "forwarding": FORWARDING}

VIP_PORT, BACKEND_PORT = 80, 8080
NAT_PORTS = (40000, 40999)
SMALL_MTU = 1400                      # the router's device toward the backend
LINK_MTU = 1500
PROTOS = {"tcp": 6, "udp": 17, "icmp": {"ipv4": 1, "ipv6": 58}}
ICMP_CSUM_ERRORS = {"ipv4": "Icmp.InCsumErrors", "ipv6": "Icmp6.InCsumErrors"}
# enum lb_stat in the program
STATS = ("nat_new", "nat_fwd", "nat_rev", "icmp_err_rev", "icmp_err_fwd", "no_entry",
         "nat_full", "redirect", "redirect_neigh", "to_stack", "error")


@dataclass(frozen=True)
class Plan:
    """One family's addresses: three links, a VIP."""
    client: str
    lb_client: str            # the LB on the client link (the client's gateway)
    node: str                 # the LB's node IP: clients are SNATed to it
    router_node: str          # the router on the LB link
    router_backend: str       # the router on the backend link (MTU 1400)
    backend: str
    vip: str
    prefixlen: int
    backend_net: str


PLANS = {
    "ipv4": Plan("10.0.10.1", "10.0.10.254", "192.168.0.1", "192.168.0.254", "192.168.1.254",
                 "192.168.1.2", "172.16.0.10", 24, "192.168.1.0/24"),
    "ipv6": Plan("fd00:10::1", "fd00:10::fe", "fd00:168::1", "fd00:168::fe", "fd00:169::fe",
                 "fd00:169::2", "fd00:172::10", 64, "fd00:169::/64"),
}


# -- expected outcomes ------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    icmp_valid: bool          # the ICMP/ICMPv6 checksum is right after the rewrite
    why: str


_FIXED = Outcome(True, "the ICMP checksum absorbs the quoted change (RFC 5508 4.1)")
_CANCELS_V6 = Outcome(True, "pre-PR is right here: no quoted IPv6 header checksum, and the quoted "
                            "L4 checksum absorbs ports and addresses (pseudo-header), so the "
                            "quoted bytes sum as before; the outer address change goes into "
                            "ICMPv6's pseudo-header share, which the pre-PR rewrite did fold")
_LEFT_BEHIND_V4 = Outcome(False, "the quoted IPv4 checksum absorbs the address change, the quoted "
                                 "L4 checksum absorbs it once more through its pseudo-header: "
                                 "the quoted bytes change by minus the address change, which "
                                 "the ICMP checksum never learns")
_PORTS_LEFT = Outcome(False, "the quote holds no L4 checksum to absorb the port change "
                             "(and in IPv6 the address change): the ICMP checksum must")

# (variant, family, case) → Outcome. A case is the quoted protocol when the quote
# holds the L4 checksum (kernel-generated errors always do), or how it does not.
CASES = INNERS + ("tcp_8_bytes", "udp_csum_0")
OUTCOMES: dict[tuple[str, str, str], Outcome] = {
    **{("fixed", family, case): _FIXED for family in FAMILIES for case in CASES},
    ("prefix", "ipv4", "tcp"): _LEFT_BEHIND_V4,
    ("prefix", "ipv4", "udp"): _LEFT_BEHIND_V4,
    ("prefix", "ipv4", "icmp"): Outcome(True, "pre-PR is right here: an ICMPv4 echo checksum "
                                              "has no pseudo-header, so the quoted IPv4 and "
                                              "echo checksums absorb every change themselves"),
    **{("prefix", "ipv6", inner): _CANCELS_V6 for inner in INNERS},
    **{("prefix", family, "tcp_8_bytes"): _PORTS_LEFT for family in FAMILIES},
    ("prefix", "ipv4", "udp_csum_0"): _PORTS_LEFT,
}


def expected(variant: str, family: str, case: str) -> Outcome:
    return OUTCOMES[(variant, family, case)]


# -- the program's maps, packed as its structs --------------------------------------------
def _addr16(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed.ljust(16, b"\0")


def _addr_text(raw: bytes, family: int) -> str:
    return str(ipaddress.ip_address(raw[:4] if family == 4 else raw))


@dataclass(frozen=True)
class NatTuple:
    """``struct nat_tuple``: an echo's identifier is ``sport`` of a request and
    ``dport`` of a reply."""
    saddr: str
    daddr: str
    sport: int
    dport: int
    proto: int

    SIZE = 40

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.saddr).version

    def pack(self) -> bytes:
        return (_addr16(self.saddr) + _addr16(self.daddr) +
                struct.pack("!HHBBxx", self.sport, self.dport, self.proto, self.family))

    @classmethod
    def unpack(cls, raw: bytes) -> "NatTuple":
        sport, dport, proto, family = struct.unpack_from("!HHBB", raw, 32)
        return cls(_addr_text(raw[:16], family), _addr_text(raw[16:32], family), sport, dport,
                   proto)

    def swapped(self) -> "NatTuple":
        return NatTuple(self.daddr, self.saddr, self.dport, self.sport, self.proto)


def service_entry(vip: str, port: int, proto: int, backend: str,
                  backend_port: int) -> tuple[bytes, bytes]:
    """``struct svc_key`` → ``struct svc_backend``; echo services have port 0."""
    family = ipaddress.ip_address(vip).version
    return (_addr16(vip) + struct.pack("!HBB", port, proto, family),
            _addr16(backend) + struct.pack("!Hxx", backend_port))


def config_value(*, node4: str, node6: str, masq4: Optional[str] = None,
                 masq6: Optional[str] = None, ports: tuple[int, int] = NAT_PORTS,
                 redirect: bool = True) -> bytes:
    """``struct lb_config``; ``masq4``/``masq6`` are prefixes to SNAT without DNAT."""
    def prefix(cidr: Optional[str]) -> tuple[bytes, int]:
        if cidr is None:
            return bytes(16), 0xFF
        net = ipaddress.ip_network(cidr)
        return net.network_address.packed.ljust(16, b"\0"), net.prefixlen
    (m4, m4len), (m6, m6len) = prefix(masq4), prefix(masq6)
    return (_addr16(node4) + _addr16(node6) + m4 + m6 +
            struct.pack("=HHBBBx", ports[0], ports[1], m4len, m6len, int(redirect)))


def add_nat_flow(obj: "BpfObject", client_side: NatTuple, backend_side: NatTuple) -> None:
    """Both entries of one flow, as the program creates them: ``client_side`` is
    client→VIP, ``backend_side`` node→backend as sent on."""
    obj.map("nat_fwd").update(client_side.pack(), backend_side.pack())
    obj.map("nat_rev").update(backend_side.swapped().pack(), client_side.swapped().pack())


def nat_flows(obj: "BpfObject") -> dict[NatTuple, NatTuple]:
    """nat_fwd decoded: client→VIP tuple → node→backend tuple."""
    return {NatTuple.unpack(k): NatTuple.unpack(v) for k, v in obj.map("nat_fwd").items()}


def stats(obj: "BpfObject") -> dict[str, int]:
    counters = obj.map("stats")
    return {name: int.from_bytes(counters.lookup(i), "little") for i, name in enumerate(STATS)}


# -- the lab ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config(KnobConfig):
    KNOBS = KNOBS

    variant: str = "fixed"
    mode: str = "lb"              # lb: VIP DNAT + SNAT; snat: SNAT only
    forwarding: str = "redirect"  # redirect: the program's FIB redirect; stack: the LB's kernel

    @property
    def defines(self) -> dict:
        return VARIANTS[self.variant]


@dataclass
class LbSnat:
    lab: "Lab"
    config: Config
    client: "Node"
    lb: "Node"
    router: "Node"
    backend: "Node"
    lb_client_side: "Iface"       # lb:eth0
    lb_backend_side: "Iface"      # lb:eth1
    router_lb_side: "Iface"       # router:eth0
    router_backend_side: "Iface"  # router:eth1, the small MTU
    obj: "BpfObject"

    def target(self, family: str) -> tuple[str, int]:
        """Where the client sends: the VIP, or (SNAT only) the backend itself."""
        plan = PLANS[family]
        return (plan.vip, VIP_PORT) if self.config.mode == "lb" else (plan.backend, BACKEND_PORT)

    def flows(self) -> dict[NatTuple, NatTuple]:
        return nat_flows(self.obj)

    def stats(self) -> dict[str, int]:
        return stats(self.obj)


def _router_sysctls(node: "Node") -> None:
    node.sysctl("net.ipv4.ip_forward", "1")
    node.sysctl("net.ipv6.conf.all.forwarding", "1")


def build(lab: "Lab", config: Config = Config()) -> LbSnat:
    """The four nodes, both families, the program loaded, configured and attached."""
    client, lb = lab.add_node("client"), lab.add_node("lb")
    router, backend = lab.add_node("router"), lab.add_node("backend")
    _router_sysctls(lb)
    _router_sysctls(router)
    if config.forwarding == "stack":
        # SNATed on ingress, a packet's source is the LB's own node IP: IPv4 input
        # drops that as a martian unless told to accept local sources.
        lb.sysctl("net.ipv4.conf.all.accept_local", "1")
    client_end, lb_client_side = lab.veth(client, "eth0", lb, "eth0")
    lb_backend_side, router_lb_side = lab.veth(lb, "eth1", router, "eth0")
    router_backend_side, backend_end = lab.veth(router, "eth1", backend, "eth0")
    router_backend_side.set_mtu(SMALL_MTU)
    for end in (client_end, backend_end):
        end.set_offloads({"tx": False})       # checksums on the wire, as a real NIC's
    for plan in PLANS.values():
        client_end.add_addr(f"{plan.client}/{plan.prefixlen}")
        lb_client_side.add_addr(f"{plan.lb_client}/{plan.prefixlen}")
        lb_backend_side.add_addr(f"{plan.node}/{plan.prefixlen}")
        router_lb_side.add_addr(f"{plan.router_node}/{plan.prefixlen}")
        router_backend_side.add_addr(f"{plan.router_backend}/{plan.prefixlen}")
        backend_end.add_addr(f"{plan.backend}/{plan.prefixlen}")
        default = "::/0" if ":" in plan.client else "0.0.0.0/0"
        client.add_route(default, via=plan.lb_client)
        backend.add_route(default, via=plan.router_backend)
        lb.add_route(plan.backend_net, via=plan.router_node)
    obj = bpf.load(lab, SOURCE, defines=config.defines)
    _configure(obj, config)
    bpf.attach_tc(lb_client_side, obj.program("lb_from_client"), "ingress")
    bpf.attach_tc(lb_backend_side, obj.program("lb_from_backend"), "ingress")
    return LbSnat(lab, config, client, lb, router, backend, lb_client_side, lb_backend_side,
                  router_lb_side, router_backend_side, obj)


def _configure(obj: "BpfObject", config: Config) -> None:
    v4, v6 = PLANS["ipv4"], PLANS["ipv6"]
    snat = config.mode == "snat"
    obj.map("config").update(0, config_value(
        node4=v4.node, node6=v6.node, masq4=v4.backend_net if snat else None,
        masq6=v6.backend_net if snat else None, redirect=config.forwarding == "redirect"))
    if snat:
        return
    for family, plan in PLANS.items():
        for proto in (PROTOS["tcp"], PROTOS["udp"]):
            obj.map("services").update(*service_entry(plan.vip, VIP_PORT, proto, plan.backend,
                                                      BACKEND_PORT))
        key, value = service_entry(plan.vip, 0, PROTOS["icmp"][family], plan.backend, 0)
        obj.map("services").update(key, value)


def socket_family(family: str) -> int:
    return socket.AF_INET6 if family == "ipv6" else socket.AF_INET
