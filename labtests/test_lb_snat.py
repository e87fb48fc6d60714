"""S-REVNAT: ICMP frag-needed through an SNAT load balancer (seed 000, Cilium PR 43196).

Live: a DF upload, DF datagrams and DF pings from the client to the VIP make
the router's kernel send frag-needed / Packet Too Big to the LB's node IP;
the program RevNATs them to the client. Judged at the client's device (every
checksum, the quoted tuple client:port → VIP:port) and by the client's kernel
(learned path MTU, Icmp InCsumErrors, the upload finishing). The ``prefix``
build (before the PR) black-holes the IPv4 upload; where its arithmetic
happens to be right (ICMPv4 echo quotes, full IPv6 quotes) the expected-outcome
table says so and the test holds it to that. Crafted only what no kernel
sends: an RFC 792 8-byte quote.

BPF_PROG_TEST_RUN: the seed's exact packet RevNATed byte for byte to Cilium's
expected one (ICMP 0xcbe5), and the pre-PR build leaving Cilium's failure
(0x788e); hypothesis-generated ICMP errors (either direction, every quoted
protocol, truncated quotes, UDP checksum 0, IPv6) equal a from-scratch scapy
recomputation of every checksum.

The live tests come first: a VM guest running this file gets its first result
without importing scapy or hypothesis.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time
from dataclasses import dataclass, replace
from typing import Callable, Optional

import pytest

from topologies import bpf, traffic
from topologies.bpf import build, libbpf
from topologies.scenarios import lb_snat as ls
from topologies.scenarios.lb_snat import FAMILIES, INNERS, PLANS, NatTuple
from topologies.verdict import (
    PacketVerdict,
    Status,
    checksum,
    fold,
    ones_sum,
    pseudo_sum_v4,
    pseudo_sum_v6,
    verify,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF)")

ETH = dict(dst="13:37:13:37:13:37", src="de:ad:be:ef:de:ef")
ICMP_LAYER = {"ipv4": "icmp", "ipv6": "icmpv6"}
ERROR_TYPES = {"ipv4": (3, 11, 12), "ipv6": (1, 2, 3, 4)}
IP_HLEN = {"ipv4": 20, "ipv6": 40}
UPLOAD_BYTES = 4 << 20
UPLOAD_BOUND = 10.0       # s: a fixed upload takes tens of ms here
EVENT_BOUND = 10.0        # s: an awaited packet or count comes in ms; this ends a wait gone wrong
CRAFTED_MTU = 1300        # what the crafted errors announce (the real hop says 1400)
SO_NO_CHECK = 11          # socket option: IPv4 UDP sent with checksum 0
# What a kernel counts for each ICMP error it takes in, accepted or rejected for
# its checksum; and what a router counts for each frag-needed / Packet Too Big.
ERRORS_TAKEN = {"ipv4": ("Icmp.InDestUnreachs", "Icmp.InCsumErrors"),
                "ipv6": ("Icmp6.InPktTooBigs", "Icmp6.InDestUnreachs", "Icmp6.InCsumErrors")}
ERRORS_SENT = {"ipv4": ("Icmp.OutDestUnreachs",), "ipv6": ("Icmp6.OutPktTooBigs",)}


# -- packets (scapy) ------------------------------------------------------------------------
# scapy is imported where a packet is built or parsed (the plugin's guard covers
# any import): collecting this file, and the live tests, never import it (~8 s in
# a VM guest under TCG).
def ip_header(family: str, src: str, dst: str):
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    return IPv6(src=src, dst=dst) if family == "ipv6" else IP(src=src, dst=dst, id=1, flags="DF")


def l4_message(family: str, inner: str, sport: int, dport: int, payload: bytes = b"", *,
               udp_zero: bool = False, seq: int = 0):
    """TCP SYN, UDP, or an echo: a request carries its identifier as sport, a reply as dport."""
    from scapy.layers.inet import ICMP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest
    if inner == "tcp":
        return TCP(sport=sport, dport=dport, flags="S", seq=seq, window=8192) / payload
    if inner == "udp":
        return UDP(sport=sport, dport=dport, chksum=0 if udp_zero else None) / payload
    request = sport != 0
    ident = sport or dport
    if family == "ipv6":
        return (ICMPv6EchoRequest if request else ICMPv6EchoReply)(id=ident, seq=7) / payload
    return ICMP(type=8 if request else 0, id=ident, seq=7) / payload


ERROR_KINDS = ("frag_needed", "port_unreachable", "time_exceeded")


def icmp_error(family: str, src: str, dst: str, quote: bytes, kind: str = "frag_needed",
               mtu: int = 1500, outer_id: int = 1):
    """An ICMP error quoting ``quote`` (bytes, possibly truncated); scapy sums it."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6PacketTooBig, ICMPv6TimeExceeded,
                                    IPv6)
    from scapy.packet import Raw
    v4, v6 = {   # kind → (ICMP, ICMPv6) header
        "frag_needed": (ICMP(type=3, code=4, nexthopmtu=mtu), ICMPv6PacketTooBig(mtu=mtu)),
        "port_unreachable": (ICMP(type=3, code=3), ICMPv6DestUnreach(code=4)),
        "time_exceeded": (ICMP(type=11, code=0), ICMPv6TimeExceeded(code=0)),
    }[kind]
    if family == "ipv6":
        return IPv6(src=src, dst=dst) / v6 / Raw(quote)
    return IP(src=src, dst=dst, id=outer_id) / v4 / Raw(quote)


def icmp_offset(family: str) -> int:
    return 14 + IP_HLEN[family]


def icmp_checksum_of(frame: bytes, family: str) -> int:
    return struct.unpack_from("!H", frame, icmp_offset(family) + 2)[0]


def message_checksum(message: bytes, family: str, src: bytes, dst: bytes) -> int:
    """The ICMP/ICMPv6 checksum ``message`` should carry (field zeroed, summed afresh)."""
    zeroed = message[:2] + b"\0\0" + message[4:]
    pseudo = pseudo_sum_v6(src, dst, 58, len(message)) if family == "ipv6" else 0
    return checksum(zeroed, pseudo)


# -- frames on the wire ------------------------------------------------------------------------
def family_of(frame: bytes) -> Optional[str]:
    return {0x0800: "ipv4", 0x86DD: "ipv6"}.get(struct.unpack_from("!H", frame, 12)[0])


def is_icmp_error(frame: bytes) -> bool:
    family = family_of(frame)
    if family == "ipv4":
        l4 = 14 + (frame[14] & 15) * 4
        return len(frame) > l4 and frame[23] == 1 and frame[l4] in ERROR_TYPES["ipv4"]
    if family == "ipv6":
        return len(frame) > 54 and frame[20] == 58 and frame[54] in ERROR_TYPES["ipv6"]
    return False


def icmp_errors(result, direction: str) -> list[bytes]:
    return [p.frame for p in icmp_error_packets(result, direction)]


def icmp_error_packets(result, direction: str) -> list:
    return [p for p in result.select(direction) if is_icmp_error(p.frame)]


def addresses(frame: bytes, l3: int, family: str) -> tuple[bytes, bytes]:
    at, size = (l3 + 12, 4) if family == "ipv4" else (l3 + 8, 16)
    return frame[at:at + size], frame[at + size:at + 2 * size]


def quote_tuple(frame: bytes) -> NatTuple:
    """The tuple of the packet an ICMP error quotes (outer header of 20 or 40 bytes)."""
    family = family_of(frame)
    q3 = icmp_offset(family) + 8
    src, dst = addresses(frame, q3, family)
    proto = frame[q3 + 9] if family == "ipv4" else frame[q3 + 6]
    q4 = q3 + ((frame[q3] & 15) * 4 if family == "ipv4" else 40)
    if proto in (6, 17):
        sport, dport = struct.unpack_from("!HH", frame, q4)
    else:
        ident = struct.unpack_from("!H", frame, q4 + 4)[0]
        sport, dport = (ident, 0) if frame[q4] in (8, 128) else (0, ident)
    text = lambda raw: str(ipaddress.ip_address(raw))  # noqa: E731
    return NatTuple(text(src), text(dst), sport, dport, proto)


def judge(frame: bytes) -> PacketVerdict:
    [verdict] = verify(frame)
    return verdict


def verdict_text(verdict: PacketVerdict) -> str:
    """For the report: the wrong checksums, or which ones were verified."""
    if verdict.invalid:
        return "; ".join(v.describe() for v in verdict.invalid)
    return "valid: " + ", ".join(v.layer for v in verdict.with_status(Status.VALID))


def prefix_wire_checksum(before: bytes, after: bytes, family: str) -> int:
    """What the pre-PR build leaves: the untranslated message's checksum under the
    translated outer header (for ICMPv4, simply the checksum it came with)."""
    at = icmp_offset(family)
    src, dst = addresses(after, 14, family)
    return message_checksum(before[at:], family, src, dst)


# -- live: the lab ----------------------------------------------------------------------------
@dataclass
class Sent:
    """What the client's socket made of it."""
    upload: str               # the report's column: time, "stalled", or n/a
    socket_learned: bool      # upload completed / the next DF send failed with EMSGSIZE


def errors_taken(node, family: str) -> Callable[[], int]:
    """ICMP errors ``node``'s kernel takes in from now on, accepted or rejected."""
    return traffic.counter_growth(node, *ERRORS_TAKEN[family])


def too_long(errors: list[str]) -> bool:
    return any("too long" in e for e in errors)


def big_payload(family: str, header: int = 8) -> int:
    """A payload whose packet fills the client's 1500-byte link: too big for the 1400 hop."""
    return ls.LINK_MTU - IP_HLEN[family] - header


class TcpUpload:
    def start(self, topo: ls.LbSnat, family: str) -> None:
        traffic.TcpSinkServer(topo.backend, PLANS[family].backend, ls.BACKEND_PORT)
        assert traffic.tcp_connect(topo.client, *topo.target(family)).completed

    def run(self, topo: ls.LbSnat, family: str, valid: bool) -> Sent:
        # A black hole, as the client's kernel counts it: it rejected an ICMP
        # error (bad checksum), so it learned no path MTU, and its TCP resent a
        # segment, as big as the one the error was about. It can never finish.
        rejected = traffic.counter_growth(topo.client, ls.ICMP_CSUM_ERRORS[family])
        resent = traffic.counter_growth(topo.client, "Tcp.RetransSegs")
        result = traffic.tcp_transfer(topo.client, *topo.target(family), nbytes=UPLOAD_BYTES,
                                      timeout=UPLOAD_BOUND,
                                      lost=lambda: rejected() > 0 and resent() > 0)
        return Sent(f"{result.seconds:.3f}s" if result.completed else
                    f"stalled ({result.error})", result.completed)


@dataclass
class UdpDf:
    no_check: bool = False    # IPv4 UDP checksum 0 (SO_NO_CHECK), as the kernel can send it

    def start(self, topo: ls.LbSnat, family: str) -> None:
        traffic.UdpEchoServer(topo.backend, PLANS[family].backend, ls.BACKEND_PORT)
        assert traffic.udp_request(topo.client, *topo.target(family), count=1).answered == 1

    def run(self, topo: ls.LbSnat, family: str, valid: bool) -> Sent:
        errors, left_client, taken = [], 0, errors_taken(topo.client, family)
        with topo.client.socket(ls.socket_family(family), socket.SOCK_DGRAM) as sock:
            traffic.set_df(sock, ls.socket_family(family), True)
            if self.no_check:
                sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
            for i in range(3):
                try:
                    sock.sendto(bytes(big_payload(family)), topo.target(family))
                    left_client += 1
                except OSError as exc:
                    errors.append(f"datagram {i}: {exc.strerror}")
                # The next send fails at once if the kernel learned the path MTU
                # from the error this one drew: give it that error first.
                traffic.wait_for(lambda: taken() >= left_client, timeout=EVENT_BOUND,
                                 what="the client's kernel to take in the router's ICMP error")
        return Sent("n/a", too_long(errors))


class PingDf:
    def start(self, topo: ls.LbSnat, family: str) -> None:
        assert traffic.ping(topo.client, topo.target(family)[0], count=1).received == 1

    def run(self, topo: ls.LbSnat, family: str, valid: bool) -> Sent:
        # No echo comes back: each ping ends when the client's kernel took in the
        # router's error about it (a next one then fails at once if it learned).
        result = traffic.ping(topo.client, topo.target(family)[0], count=3, df=True,
                              size=big_payload(family), timeout=EVENT_BOUND,
                              dropped=errors_taken(topo.client, family))
        return Sent("n/a", too_long(result.errors))


TRAFFIC = {"tcp": TcpUpload(), "udp": UdpDf(), "icmp": PingDf()}


@dataclass
class Judged:
    errors: int
    verdict: PacketVerdict     # the first error, as it arrived
    pmtu: Optional[int]
    csum_errors: int


def check_errors(sent: list[bytes], got: list[bytes], family: str, outcome: ls.Outcome,
                 expected_quote: Callable[[NatTuple], NatTuple]) -> list[PacketVerdict]:
    """Each error as its sender put it on the wire (``sent``) and as it arrived
    after the LB (``got``): the sender's is right, the arrival is what the
    outcome says, exactly; the quote is translated to ``expected_quote``."""
    assert sent, "no ICMP error was sent: the small hop was never hit"
    assert len(got) == len(sent), f"{len(sent)} ICMP errors sent, {len(got)} arrived"
    layer, verdicts = ICMP_LAYER[family], []
    for before, after in zip(sent, got):
        assert judge(before).ok, judge(before).summary()
        assert quote_tuple(after) == expected_quote(quote_tuple(before))
        verdict = judge(after)
        if outcome.icmp_valid:
            assert verdict.ok, verdict.summary()
            assert verdict.layer(layer).status is Status.VALID
        else:
            [bad] = verdict.invalid
            src, dst = addresses(after, 14, family)
            assert (bad.path, bad.wire, bad.correct) == (
                layer, prefix_wire_checksum(before, after, family),
                message_checksum(after[icmp_offset(family):], family, src, dst)), verdict.summary()
        verdicts.append(verdict)
    return verdicts


def run_icmp_errors_to_client(topo: ls.LbSnat, family: str, outcome: ls.Outcome, traffic_,
                              capture) -> tuple[Judged, Sent]:
    """Traffic that the small hop refuses; the router's errors judged at the client."""
    traffic_.start(topo, family)
    target = topo.target(family)
    before = topo.client.snmp()
    taken = errors_taken(topo.client, family)
    sent_by_router = traffic.counter_growth(topo.router, *ERRORS_SENT[family])
    at_router, at_client = capture(topo.router, "eth0"), capture(topo.client, "eth0")
    sent_by_client = traffic_.run(topo, family, outcome.icmp_valid)
    quiet = time.time()   # nothing leaves the client past here (a given-up upload is reset)
    traffic.wait_for(lambda: taken() >= sent_by_router(), timeout=EVENT_BOUND,
                     what="the client's kernel to take in every error the router sent")
    at_client.stop()      # first: the client saw a prefix of what the router sent ...
    at_router.stop()
    sent = icmp_error_packets(at_router.result, "out")
    got = icmp_error_packets(at_client.result, "in")
    # ... at least each error sent before the traffic returned (the LB forwards at once)
    assert sum(p.timestamp < quiet for p in sent) <= len(got) <= len(sent)
    flows = {backend: client for client, backend in topo.flows().items()}
    verdicts = check_errors([p.frame for p in sent[:len(got)]], [p.frame for p in got], family,
                            outcome, lambda routers: flows[routers])
    for client_side in flows.values():
        assert (client_side.saddr, client_side.daddr) == (PLANS[family].client, target[0])
    got = len(verdicts)
    judged = Judged(got, verdicts[0], topo.client.route_get(target[0])["mtu"],
                    topo.client.snmp().delta(before).get(ls.ICMP_CSUM_ERRORS[family], 0))
    assert topo.stats()["icmp_err_rev"] >= got
    assert judged.pmtu == (ls.SMALL_MTU if outcome.icmp_valid else None)
    assert judged.csum_errors == (0 if outcome.icmp_valid else got)
    assert sent_by_client.socket_learned is outcome.icmp_valid, sent_by_client.upload
    return judged, sent_by_client


# The 4 MiB TCP upload runs after the UDP and ICMP cases: under TCG it takes ~9 s, and
# a VM step's first result should not wait for it (the order changes no test id).
INNERS_UPLOAD_LAST = sorted(INNERS, key=lambda inner: inner == "tcp")
MATRIX = [(variant, inner, family) for variant in ls.VARIANTS for inner in INNERS_UPLOAD_LAST
          for family in FAMILIES]
VARIANT_FAMILY = [(variant, family) for variant in ls.VARIANTS for family in FAMILIES]


def ids(cases: list[tuple]) -> list[str]:
    return ["-".join(case) for case in cases]


@pytest.mark.parametrize("variant, inner, family", MATRIX, ids=ids(MATRIX))
def test_icmp_error_at_client(lab, capture, report_row, variant, inner, family):
    topo = ls.build(lab, ls.Config(variant=variant))
    outcome = ls.expected(variant, family, inner)
    judged, sent = run_icmp_errors_to_client(topo, family, outcome, TRAFFIC[inner], capture)
    report_row("lb_snat", {"variant": variant, "inner": inner, "family": family},
               verdict=verdict_text(judged.verdict), pmtu=judged.pmtu or "none",
               upload=sent.upload, errors=judged.errors, csum_errors=judged.csum_errors)


@pytest.mark.parametrize("variant", list(ls.VARIANTS))
def test_quoted_udp_checksum_zero(lab, capture, report_row, variant):
    """The kernel sends IPv4 UDP with checksum 0 when asked (SO_NO_CHECK): the
    quote then has no L4 checksum to absorb the port change."""
    family = "ipv4"
    topo = ls.build(lab, ls.Config(variant=variant))
    outcome = ls.expected(variant, family, "udp_csum_0")
    judged, sent = run_icmp_errors_to_client(topo, family, outcome, UdpDf(no_check=True), capture)
    assert judged.verdict.layer("icmp/quote/udp").status is Status.DISABLED
    report_row("lb_snat", {"variant": variant, "inner": "udp_csum_0", "family": family},
               verdict=verdict_text(judged.verdict), pmtu=judged.pmtu or "none",
               upload=sent.upload, errors=judged.errors, csum_errors=judged.csum_errors)


@pytest.mark.parametrize("variant, family", VARIANT_FAMILY, ids=ids(VARIANT_FAMILY))
def test_snat_only_mode(lab, capture, report_row, variant, family):
    """The seed's setup live: no DNAT, the client talks to the backend itself."""
    topo = ls.build(lab, ls.Config(variant=variant, mode="snat"))
    outcome = ls.expected(variant, family, "tcp")
    judged, sent = run_icmp_errors_to_client(topo, family, outcome, TcpUpload(), capture)
    assert topo.target(family) == (PLANS[family].backend, ls.BACKEND_PORT)
    report_row("lb_snat", {"variant": variant, "inner": "tcp", "family": family, "mode": "snat"},
               verdict=verdict_text(judged.verdict), pmtu=judged.pmtu or "none",
               upload=sent.upload, errors=judged.errors, csum_errors=judged.csum_errors)


@pytest.mark.parametrize("family", FAMILIES)
def test_forwarding_by_the_stack_delivers_the_same(lab, capture, report_row, family):
    topo = ls.build(lab, ls.Config(forwarding="stack"))
    outcome = ls.expected("fixed", family, "tcp")
    judged, sent = run_icmp_errors_to_client(topo, family, outcome, TcpUpload(), capture)
    stats = topo.stats()
    assert stats["redirect"] == stats["redirect_neigh"] == 0 and stats["to_stack"] > 0
    report_row("lb_snat", {"variant": "fixed", "inner": "tcp", "family": family,
                           "forwarding": "stack"},
               verdict=verdict_text(judged.verdict), pmtu=judged.pmtu or "none",
               upload=sent.upload, errors=judged.errors, csum_errors=judged.csum_errors)


# -- crafted: what no kernel sends ----------------------------------------------------------------
def send_frame(node, ifname: str, frame: bytes) -> None:
    """One frame out of ``ifname`` from a raw (AF_PACKET) socket inside ``node``."""
    with node.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
        sock.bind((ifname, 0))
        sock.send(frame)


def last_packet_from(result, src: str, proto: int) -> Optional[bytes]:
    """The IP packet of the last frame from ``src`` with L4 protocol ``proto``."""
    for pkt in reversed(result.select("in")):
        family = family_of(pkt.frame)
        if family is None:
            continue
        if str(ipaddress.ip_address(addresses(pkt.frame, 14, family)[0])) == src and \
                pkt.frame[23 if family == "ipv4" else 20] == proto:
            return pkt.frame[14:]
    return None


@pytest.mark.parametrize("variant, family", VARIANT_FAMILY, ids=ids(VARIANT_FAMILY))
def test_eight_byte_quote(lab, capture, report_row, variant, family):
    """RFC 792's minimum: the IP header and 8 bytes of TCP, so no TCP checksum.
    Built from the real packet the router last saw (its seq is the sender's
    snd_nxt, or the client's TCP ignores the error as out of window)."""
    from scapy.layers.l2 import Ether
    topo = ls.build(lab, ls.Config(variant=variant))
    outcome = ls.expected(variant, family, "tcp_8_bytes")
    plan, target = PLANS[family], topo.target(family)
    server = traffic.TcpSinkServer(topo.backend, plan.backend, ls.BACKEND_PORT)
    at_router = capture(topo.router, "eth0")
    sock = topo.client.socket(ls.socket_family(family), socket.SOCK_STREAM)
    lab.defer(sock.close, what="idle TCP connection")
    sock.settimeout(EVENT_BOUND)
    sock.connect(target)
    traffic.wait_for(lambda: server.connections, timeout=EVENT_BOUND, what="the connection")
    at_router.stop()
    invoking = last_packet_from(at_router.result, plan.node, 6)
    assert invoking is not None
    error = Ether(dst=topo.lb_backend_side.mac, src=topo.router_lb_side.mac) / icmp_error(
        family, plan.router_node, plan.node, invoking[:IP_HLEN[family] + 8], mtu=CRAFTED_MTU)
    before = topo.client.snmp()
    taken = errors_taken(topo.client, family)
    at_client = capture(topo.client, "eth0")
    send_frame(topo.router, "eth0", bytes(error))
    # Captured, and judged by the client's kernel (the tap sees it first).
    traffic.wait_for(lambda: icmp_errors(at_client.result, "in") and taken(),
                     timeout=EVENT_BOUND, what="the ICMP error taken in by the client")
    at_client.stop()
    client_quote = NatTuple(plan.client, target[0], sock.getsockname()[1], target[1], 6)
    [verdict] = check_errors([bytes(error)], icmp_errors(at_client.result, "in"), family,
                             outcome, lambda sent: client_quote)
    assert verdict.layer(f"{ICMP_LAYER[family]}/quote/tcp").status is Status.NOT_CHECKABLE
    pmtu = topo.client.route_get(target[0])["mtu"]
    csum_errors = topo.client.snmp().delta(before).get(ls.ICMP_CSUM_ERRORS[family], 0)
    assert pmtu == (CRAFTED_MTU if outcome.icmp_valid else None)
    assert csum_errors == (0 if outcome.icmp_valid else 1)
    report_row("lb_snat", {"variant": variant, "inner": "tcp_8_bytes", "family": family},
               verdict=verdict_text(verdict), pmtu=pmtu or "none", upload="n/a", errors=1,
               csum_errors=csum_errors)


# -- the forward path: an ICMP error from the client ----------------------------------------------
@pytest.mark.parametrize("variant, family", VARIANT_FAMILY, ids=ids(VARIANT_FAMILY))
def test_client_icmp_error_goes_out_translated(lab, capture, report_row, variant, family):
    """A late UDP reply finds the client's socket closed: the client's kernel
    sends port-unreachable to the VIP, which must reach the backend as from the
    node IP, quoting backend:8080 → node:natport, every checksum right."""
    topo = ls.build(lab, ls.Config(variant=variant))
    outcome = ls.expected(variant, family, "udp")
    plan, target = PLANS[family], topo.target(family)
    fam = ls.socket_family(family)
    server = topo.backend.socket(fam, socket.SOCK_DGRAM)
    lab.defer(server.close, what="backend UDP socket")
    server.bind((plan.backend, ls.BACKEND_PORT))
    server.settimeout(EVENT_BOUND)
    with topo.client.socket(fam, socket.SOCK_DGRAM) as client:
        client.sendto(b"request", target)
        cport = client.getsockname()[1]
    _data, peer = server.recvfrom(64)
    assert peer[0] == plan.node and ls.NAT_PORTS[0] <= peer[1] <= ls.NAT_PORTS[1]
    before = topo.backend.snmp()
    taken = errors_taken(topo.backend, family)
    at_client, at_backend = capture(topo.client, "eth0"), capture(topo.backend, "eth0")
    server.sendto(b"late reply", peer[:2])
    # Captured, and judged by the backend's kernel (the tap sees it first).
    traffic.wait_for(lambda: icmp_errors(at_backend.result, "in") and taken(),
                     timeout=EVENT_BOUND, what="the client's ICMP error taken in by the backend")
    at_client.stop()
    at_backend.stop()
    backend_quote = NatTuple(plan.backend, plan.node, ls.BACKEND_PORT, peer[1], 17)
    got, sent = icmp_errors(at_backend.result, "in"), icmp_errors(at_client.result, "out")
    client_view = NatTuple(target[0], plan.client, target[1], cport, 17)
    assert [quote_tuple(e) for e in sent] == [client_view]
    [verdict] = check_errors(sent, got, family, outcome, lambda _: backend_quote)
    outer = addresses(got[0], 14, family)
    assert [str(ipaddress.ip_address(a)) for a in outer] == [plan.node, plan.backend]
    delta = topo.backend.snmp().delta(before)
    prefix = "Icmp" if family == "ipv4" else "Icmp6"
    assert delta.get(f"{prefix}.InCsumErrors", 0) == (0 if outcome.icmp_valid else 1)
    assert delta.get(f"{prefix}.InDestUnreachs", 0) == (1 if outcome.icmp_valid else 0)
    assert topo.stats()["icmp_err_fwd"] == 1
    report_row("lb_snat", {"variant": variant, "inner": "udp_forward_path", "family": family},
               verdict=verdict_text(verdict), pmtu="n/a", upload="n/a", errors=1,
               csum_errors=delta.get(f"{prefix}.InCsumErrors", 0))


# -- the seed's golden vector (BPF_PROG_TEST_RUN) -------------------------------------------
SEED_CLIENT = NatTuple("10.0.10.1", "192.168.0.2", 3030, 80, 6)


def seed_packet(outer_dst: str, inner_src: str, sport: int, icmp_chksum=None) -> bytes:
    """Seed 000's packet: frag-needed from 192.168.0.2 quoting a TCP SYN to :80."""
    from scapy.layers.inet import ICMP, IP, TCP
    from scapy.layers.l2 import Ether
    return bytes(Ether(**ETH) / IP(src="192.168.0.2", dst=outer_dst, id=1) /
                 ICMP(type=3, code=4, nexthopmtu=1500, chksum=icmp_chksum) /
                 IP(src=inner_src, dst="192.168.0.2", id=1, flags="DF") /
                 TCP(sport=sport, dport=80, flags="S", window=8192))


def seed_expected() -> bytes:
    return seed_packet("10.0.10.1", "10.0.10.1", 3030)   # Cilium's "Expected"


@pytest.fixture(scope="module")
def programs():
    """Both builds, loaded once, handing translated packets to the stack (no FIB)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (BPF)")
    objs = {variant: libbpf.BpfObject.open(build(ls.SOURCE, defines=defines).path,
                                           name=f"lb_snat[{variant}]")
            for variant, defines in ls.VARIANTS.items()}
    for obj in objs.values():
        obj.map("config").update(0, ls.config_value(node4=PLANS["ipv4"].node,
                                                    node6=PLANS["ipv6"].node, redirect=False))
    yield objs
    for obj in objs.values():
        obj.close()


def seed_revnat(obj, natport: int):
    ls.add_nat_flow(obj, SEED_CLIENT, NatTuple("192.168.0.1", "192.168.0.2", natport, 80, 6))
    return ls_test_run(obj, "lb_from_backend", seed_packet("192.168.0.1", "192.168.0.1", natport))


def ls_test_run(obj, program: str, frame: bytes):
    run = bpf.test_run(obj.program(program), frame)
    assert run.action == "TC_ACT_OK"
    return run


@pytest.mark.parametrize("natport", [40000, 40963, 65535])
def test_seed_revnat_is_byte_identical_to_ciliums_expected_packet(programs, natport):
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether
    run, expected = seed_revnat(programs["fixed"], natport), seed_expected()
    assert run.data_out[14:] == expected[14:]
    assert run.data_out[:14] == expected[:14]    # no forwarding here: MACs untouched
    out = Ether(run.data_out)
    assert (out[IP].chksum, out[ICMP].chksum, out[ICMP].payload.chksum) == (0xA60D, 0xCBE5, 0x6624)
    assert judge(run.data_out).ok


def test_seed_prefix_build_leaves_ciliums_failure(programs):
    run = seed_revnat(programs["prefix"], 40963)
    assert run.data_out == seed_packet("10.0.10.1", "10.0.10.1", 3030, icmp_chksum=0x788E)
    [bad] = judge(run.data_out).invalid
    assert (bad.path, bad.wire, bad.correct) == ("icmp", 0x788E, 0xCBE5)


# -- property: every rewrite equals a full recomputation -------------------------------------
@dataclass(frozen=True)
class ErrorCase:
    """One flow and one ICMP error about it, in either direction:
    ``to_client``    a router quotes node:natport → backend:bport (lb_from_backend RevNATs);
    ``from_client``  the client quotes target:vport → client:cport (lb_from_client translates)."""
    family: str
    inner: str
    direction: str
    kind: str
    client: str
    target: str      # the VIP, or the backend itself in SNAT-only mode
    node: str
    backend: str
    router: str
    cport: int
    vport: int
    natport: int
    bport: int
    payload: bytes
    quote_l4: int    # bytes of the quoted L4 header + payload kept (>= 8)
    udp_zero: bool
    outer_id: int

    @property
    def proto(self) -> int:
        return ls.PROTOS["icmp"][self.family] if self.inner == "icmp" else ls.PROTOS[self.inner]

    def ports(self, sport: int, dport: int) -> tuple[int, int]:
        return (sport, 0) if self.inner == "icmp" else (sport, dport)

    def client_side(self) -> NatTuple:
        return NatTuple(self.client, self.target, *self.ports(self.cport, self.vport), self.proto)

    def backend_side(self) -> NatTuple:
        return NatTuple(self.node, self.backend, *self.ports(self.natport, self.bport), self.proto)

    def quote(self, flow: NatTuple) -> bytes:
        packet = ip_header(self.family, flow.saddr, flow.daddr) / l4_message(
            self.family, self.inner, flow.sport, flow.dport, self.payload, udp_zero=self.udp_zero,
            seq=0x01020304)
        return bytes(packet)[:IP_HLEN[self.family] + self.quote_l4]

    def frames(self) -> tuple[str, bytes, bytes, bytes]:
        """The program, the frame in, the frame a full recomputation gives, and the
        frame whose ICMP checksum the pre-PR build leaves: the translated outer
        header around the untranslated quote."""
        if self.direction == "to_client":
            program, before_q = "lb_from_backend", self.backend_side()
            after_q = self.client_side()
            outer_in, outer_out = (self.router, self.node), (self.router, self.client)
        else:
            program, before_q = "lb_from_client", self.client_side().swapped()
            after_q = self.backend_side().swapped()
            outer_in, outer_out = (self.client, self.target), (self.node, self.backend)
        from scapy.layers.l2 import Ether
        make = lambda outer, quote: bytes(Ether(**ETH) / icmp_error(  # noqa: E731
            self.family, *outer, quote, self.kind, outer_id=self.outer_id))
        before, after = self.quote(before_q), self.quote(after_q)
        return program, make(outer_in, before), make(outer_out, self.kept(before, after)), \
            make(outer_out, before)

    def kept(self, before: bytes, after: bytes) -> bytes:
        """A quote that ends inside the L4 checksum keeps that lone byte as it was:
        its new value depends on the carry out of the missing byte."""
        field = IP_HLEN[self.family] + {"tcp": 16, "udp": 6, "icmp": 2}[self.inner]
        return after[:field] + before[field:] if len(after) == field + 1 else after


def error_cases():
    """Any flow and any error about it: a hypothesis strategy, made by the test
    that uses it (collecting this file never imports hypothesis)."""
    from hypothesis import strategies as st

    @st.composite
    def error_case(draw) -> ErrorCase:
        family = draw(st.sampled_from(FAMILIES))
        inner = draw(st.sampled_from(INNERS))
        address = st.ip_addresses(v=4 if family == "ipv4" else 6).map(str)
        port = st.integers(1, 65535)
        mode = draw(st.sampled_from(ls.MODES))
        client, node, backend, vip, router = (draw(address) for _ in range(5))
        bport = draw(port)
        vport = draw(port) if mode == "lb" else bport
        payload = draw(st.binary(max_size=40))
        l4_len = {"tcp": 20, "udp": 8, "icmp": 8}[inner] + len(payload)
        return ErrorCase(
            family=family, inner=inner,
            direction=draw(st.sampled_from(("to_client", "from_client"))),
            kind=draw(st.sampled_from(sorted(ERROR_KINDS))), client=client,
            target=vip if mode == "lb" else backend, node=node, backend=backend, router=router,
            cport=draw(port), vport=vport, natport=draw(port), bport=bport, payload=payload,
            quote_l4=draw(st.integers(8, l4_len)),
            udp_zero=inner == "udp" and family == "ipv4" and draw(st.booleans()),
            outer_id=draw(st.integers(0, 65535)))
    return error_case()


# Found by hypothesis: 17 bytes of TCP end inside its checksum field.
HALF_CHECKSUM_QUOTE = ErrorCase("ipv4", "tcp", "to_client", "frag_needed", "10.0.10.1",
                                "172.16.0.10", "192.168.0.1", "192.168.1.2", "192.168.0.254",
                                cport=3030, vport=80, natport=40001, bport=8080, payload=b"",
                                quote_l4=17, udp_zero=False, outer_id=1)


@needs_root
def test_icmp_error_rewrite_equals_full_recomputation(programs):
    from hypothesis import HealthCheck, example, given, settings

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=error_cases())
    @example(case=HALF_CHECKSUM_QUOTE)
    def rewrite_is_the_recomputation(case):
        program, frame_in, recomputed, prefix_view = case.frames()
        for variant, obj in programs.items():
            ls.add_nat_flow(obj, case.client_side(), case.backend_side())
            out = ls_test_run(obj, program, frame_in).data_out
            if variant == "fixed":
                assert out == recomputed, judge(out).show()
                assert judge(out).ok
            else:   # every byte the same but the ICMP checksum, which ignores the quote's change
                wire = icmp_checksum_of(prefix_view, case.family)
                expected = bytearray(recomputed)
                struct.pack_into("!H", expected, icmp_offset(case.family) + 2, wire)
                assert out == bytes(expected)
    rewrite_is_the_recomputation()


def steered_udp_payload(family: str, flow: NatTuple, rest: bytes = b"nslab") -> bytes:
    """Two bytes in front of ``rest`` that make ``flow``'s UDP checksum compute to 0."""
    pseudo = (pseudo_sum_v6 if family == "ipv6" else pseudo_sum_v4)(
        flow.saddr, flow.daddr, 17, 8 + 2 + len(rest))
    head = struct.pack("!HHHH", flow.sport, flow.dport, 8 + 2 + len(rest), 0)
    base = fold(ones_sum(head + b"\0\0" + rest, pseudo))
    return struct.pack("!H", (0xFFFF - base) % 0xFFFF) + rest


@pytest.mark.parametrize("family", FAMILIES)
def test_quoted_udp_checksum_computing_to_zero_goes_out_as_all_ones(programs, family):
    """RFC 768: a computed 0 is sent as 0xffff (0 means "no checksum"). Random
    inputs hit this once in 65536; the payload is steered onto it."""
    plan = PLANS[family]
    case = ErrorCase(family, "udp", "to_client", "frag_needed", plan.client, plan.vip, plan.node,
                     plan.backend, plan.router_node, cport=3030, vport=80, natport=40001,
                     bport=8080, payload=b"", quote_l4=8 + 7, udp_zero=False, outer_id=1)
    case = replace(case, payload=steered_udp_payload(family, case.client_side()))
    program, frame_in, recomputed, _ = case.frames()
    quoted_udp = icmp_offset(family) + 8 + IP_HLEN[family]
    assert recomputed[quoted_udp + 6:quoted_udp + 8] == b"\xff\xff"
    ls.add_nat_flow(programs["fixed"], case.client_side(), case.backend_side())
    assert ls_test_run(programs["fixed"], program, frame_in).data_out == recomputed
