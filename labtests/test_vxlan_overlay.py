"""S-VXLAN: VXLAN + NAT + tx checksum offload — the seed's matrix and the live bug.

Every combination is checked twice: what the receiving node's underlay
carries (every checksum at every layer, after completing what offload left
pending) and whether the overlay delivers (UDP answered, TCP established
without SYN retransmission, no checksum errors counted by the peer). Known
bugs turn the matching ids into strict xfails on the kernels they affect.
"""
import socket
import struct
from typing import Callable

import pytest

from topologies import Lab, traffic
from topologies.lab import conntrack
from topologies.scenarios import known_bugs
from topologies.scenarios import vxlan_overlay as vx
from topologies.verdict import Status, verify

CONFIGS = list(vx.matrix())
QUERIES = 3
# An answer that comes takes milliseconds; the bound only ends a wait gone wrong.
ANSWER_BOUND = 10.0
# A SYN the peer drops is retried after TCP's initial RTO (1 s), rehashed onto a
# new outer flow. The connect is given up only once that retry is dropped too:
# a connect the retransmission slowed down is measured, not cut short.
SYN_AND_RETRY = 2
# The layers this scenario judges. Not the headers quoted in an ICMP error: a
# reply that arrives after the client gave up (now only past ANSWER_BOUND, as
# requests are awaited until answered or counted dropped by the peer) draws a
# port unreachable, whose quote holds the reply's checksum as a veth-only path
# left it (never completed: no NIC on the way) — true bytes, but not this bug's.
JUDGED = ("ipv4", "udp", "vxlan/ipv4", "vxlan/udp", "vxlan/tcp", "vxlan/icmp")


def cases(check: str):
    params = []
    for config in CONFIGS:
        bug = known_bugs.expectation(vx.SCENARIO, config.knobs(), check)
        marks = [pytest.mark.xfail(strict=True, reason=bug.reason())] if bug else []
        params.append(pytest.param(config, id=config.id, marks=marks))
    return params


def bug_id(config, check) -> str:
    bug = known_bugs.expectation(vx.SCENARIO, config.knobs(), check)
    return bug.id if bug else ""


@pytest.fixture(scope="module")
def kernel_default_udpcsum(root_required):
    with Lab(description={"test": "the kernel's default outer UDP checksum"}) as lab:
        return "udpcsum" if vx.kernel_udpcsum_default(lab) else "noudpcsum"


def servers(overlay):
    return (traffic.UdpEchoServer(overlay.pod, "0.0.0.0", vx.DNS_PORT),
            traffic.TcpSinkServer(overlay.pod, "0.0.0.0", vx.DNS_PORT))


def peer_drops(overlay) -> Callable[[], int]:
    """Overlay packets the peer drops for a bad outer checksum, from now on
    (TCP's too: the outer header is UDP)."""
    return traffic.counter_growth(overlay.node_b, "Udp.InCsumErrors")


def query(overlay) -> traffic.UdpResult:
    """The DNS-like queries, each awaited until answered or counted dropped by the peer."""
    return traffic.udp_request(overlay.node_a, overlay.destination, vx.DNS_PORT, count=QUERIES,
                               timeout=ANSWER_BOUND, dropped=peer_drops(overlay))


def connect(overlay, nbytes: int = 0) -> traffic.TcpResult:
    """A TCP exchange with ``nbytes`` of data; its connect time shows a SYN retransmission."""
    dropped = peer_drops(overlay)
    return traffic.tcp_transfer(overlay.node_a, overlay.destination, vx.DNS_PORT, nbytes=nbytes,
                                timeout=ANSWER_BOUND, lost=lambda: dropped() >= SYN_AND_RETRY)


def is_vxlan(frame: bytes) -> bool:
    return (len(frame) > 38 and frame[12:14] == b"\x08\x00" and frame[23] == socket.IPPROTO_UDP
            and struct.unpack_from("!H", frame, 14 + (frame[14] & 0xF) * 4 + 2)[0]
            == vx.VXLAN_PORT)


@pytest.mark.parametrize("config", cases("wire"))
def test_checksums_on_the_wire(lab, capture, report_row, config):
    overlay = vx.build(lab, config)
    servers(overlay)
    cap = capture(overlay.node_b, "eth0")
    query(overlay)
    connect(overlay)
    cap.stop()
    frames = [v for p, v in cap.result.verdicts() if is_vxlan(p.frame)]
    bad = [v for v in frames if any(layer.path in JUDGED for layer in v.invalid)]
    outer = Status.DISABLED if config.udpcsum == "noudpcsum" else Status.VALID
    report_row(vx.SCENARIO, {"check": "wire", **config.knobs()}, known_bug=bug_id(config, "wire"),
               frames=len(frames), verdict=bad[0].summary().split(";")[0] if bad else "valid")
    assert len(frames) >= 2 * QUERIES, "the overlay carried no traffic to judge"
    assert not bad, f"{len(bad)}/{len(frames)} frames: {bad[0].summary()}"
    inner_l4 = [v.find("vxlan/udp") or v.find("vxlan/tcp") for v in frames]
    assert sum(1 for l4 in inner_l4 if l4) >= 2 * QUERIES   # the rest is the overlay's ARP
    for verdict, l4 in zip(frames, inner_l4):
        assert verdict.layer("udp").status is outer
        if l4:
            assert verdict.layer("vxlan/ipv4").status is Status.VALID
            assert l4.status is Status.VALID


@pytest.mark.parametrize("config", cases("delivery"))
def test_delivery(lab, report_row, config):
    overlay = vx.build(lab, config)
    servers(overlay)
    before = overlay.node_b.snmp()
    udp = query(overlay)
    tcp = connect(overlay, nbytes=2048)
    errors = overlay.node_b.snmp().delta(before).get("Udp.InCsumErrors", 0)
    report_row(vx.SCENARIO, {"check": "delivery", **config.knobs()},
               known_bug=bug_id(config, "delivery"),
               udp=f"{udp.answered}/{udp.sent}",
               tcp_connect=f"{tcp.connect_seconds * 1000:.1f} ms" if tcp.connected else tcp.error,
               peer_csum_errors=errors)
    assert udp.answered == QUERIES, udp.errors
    # The first SYN retransmission comes after 1 s: faster means none was needed.
    # A verdict about time, so measured: the connect is never cut short at 1 s.
    assert tcp.completed and tcp.connect_seconds < 1.0, tcp.error or tcp.connect_seconds
    assert errors == 0


LIVE_BUG = vx.Config("udpcsum", "vxtx_on", "ultx_on", "masq_random_fully")


def test_live_bug_is_exactly_the_nat_port_change(lab, capture):
    """The evidence behind the live bug's xfails: the wire value is the checksum
    of the packet *before* NAT changed the outer source port."""
    assert known_bugs.expectation(vx.SCENARIO, LIVE_BUG.knobs(), "wire"), \
        "this test documents the live bug; update it with the known-bug table"
    overlay = vx.build(lab, LIVE_BUG)
    servers(overlay)
    cap = capture(overlay.node_b, "eth0")
    query(overlay)
    cap.stop()
    flows = {f.snat_sport: f.orig[1] for f in conntrack.flows(overlay.node_a, socket.IPPROTO_UDP)
             if f.orig[3] == vx.VXLAN_PORT}
    # Only frames whose inner checksum was left pending get local checksum
    # offload; the overlay's ARP does not, and NAT fixes its outer checksum.
    sent = [v for p, v in cap.result.verdicts("in") if is_vxlan(p.frame) and v.find("vxlan/udp")]
    assert len(sent) == QUERIES
    for verdict in sent:
        outer = verdict.layer("udp")
        assert outer.status is Status.INVALID and outer.wire != outer.correct
        frame = bytearray(verdict.frame)
        sport_at = 14 + (frame[14] & 0xF) * 4
        nat_port = struct.unpack_from("!H", frame, sport_at)[0]
        assert nat_port in flows and flows[nat_port] != nat_port, "NAT changed the port"
        struct.pack_into("!H", frame, sport_at, flows[nat_port])
        [restored] = verify(bytes(frame))
        assert restored.layer("udp").status is Status.VALID, restored.summary()


def test_kernel_default_outer_udp_checksum_is_recorded(kernel_default_udpcsum, report_row):
    report_row(vx.SCENARIO, {"check": "kernel default", "udpcsum": kernel_default_udpcsum})
    assert kernel_default_udpcsum in vx.KNOBS["udpcsum"]
