"""tshark as an independent oracle (``benchmarks/tshark_oracle.py``): crafted
frames where tshark is known to be wrong are classified as such, an opposite
verdict is caught, and one live capture per scenario (its default topology,
a little traffic) has no unexplained disagreement."""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sys
from dataclasses import dataclass, replace
from typing import Callable
from unittest import mock

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from topologies import Capture, traffic
from topologies.capture import pcapng
from topologies.scenarios import catalog
from topologies.verdict import Status, fold, ones_sum, pseudo_sum_v4, verify

pytestmark = pytest.mark.skipif(
    shutil.which("tshark") is None,
    reason="tshark not installed (apt-get install -y tshark): the oracle runs it")

ORACLE_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks",
                           "tshark_oracle.py")


def load_oracle():
    """The script as a module (benchmarks/ is no package); registered first, as
    dataclasses look their module up."""
    spec = importlib.util.spec_from_file_location("nslab_tshark_oracle", ORACLE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


oracle = load_oracle()
ETH = dict(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
A, B = "10.0.0.1", "10.0.0.2"
T0 = 1_700_000_000.0


# -- crafted frames: the known cases, one each ----------------------------------------

def tcp_computing_to_zero(wire_checksum: int) -> bytes:
    """A TCP segment whose correct checksum is 0, carrying ``wire_checksum``:
    the first payload word is chosen so the rest sums to 0xffff."""
    segment = bytearray(bytes(TCP(sport=1, dport=2, flags="PA", chksum=0) / bytes(8)))
    total = fold(ones_sum(bytes(segment), pseudo_sum_v4(A, B, 6, len(segment))))
    segment[20:22] = (0xFFFF - total).to_bytes(2, "big")
    segment[16:18] = wire_checksum.to_bytes(2, "big")
    return bytes(Ether(**ETH) / IP(src=A, dst=B, proto=6) / bytes(segment))


def quote_of(quoted: bytes) -> bytes:
    """An ICMP port unreachable quoting ``quoted`` (an IP packet)."""
    return bytes(Ether(**ETH) / IP(src=B, dst=A) / ICMP(type=3, code=3) / quoted)


def pending_udp() -> bytes:
    """A UDP datagram as CHECKSUM_PARTIAL leaves it: its checksum the pseudo-header seed."""
    packet = IP(src=A, dst=B) / UDP(sport=1000, dport=9) / b"pending"
    packet[UDP].chksum = fold(pseudo_sum_v4(A, B, 17, 15))
    return bytes(packet)


def zero_udp6_to_vxlan() -> bytes:
    inner = Ether(**ETH) / IP(src=A, dst=B) / UDP(sport=1, dport=2) / b"inner"
    return bytes(Ether(**ETH) / IPv6(src="fd00::1", dst="fd00::2")
                 / UDP(sport=40000, dport=4789, chksum=0) / VXLAN(vni=7) / inner)


TRUNCATED_TCP = bytes(IP(src=A, dst=B) / TCP(sport=1, dport=80, flags="S") / bytes(1000))[:48]

# name: (frame, the nslab layer compared, its status, outcome, what the kind starts with)
CRAFTED = {
    "bad-udp-both-say-bad": (
        bytes(Ether(**ETH) / IP(src=A, dst=B) / UDP(sport=1, dport=2, chksum=0xBAD1) / b"x"),
        "udp", Status.INVALID, oracle.AGREE, ""),
    "udp-zero-over-ipv4": (
        bytes(Ether(**ETH) / IP(src=A, dst=B) / UDP(sport=1, dport=2, chksum=0) / b"x"),
        "udp", Status.DISABLED, oracle.AGREE, ""),
    "tcp-ffff-for-a-computed-zero": (
        tcp_computing_to_zero(0xFFFF), "tcp", Status.VALID, oracle.KNOWN_DISAGREEMENT,
        "0xffff vs 0x0000"),
    "tcp-0000-for-a-computed-zero": (
        tcp_computing_to_zero(0x0000), "tcp", Status.VALID, oracle.AGREE, ""),
    "truncated-tcp-quote": (
        quote_of(TRUNCATED_TCP), "icmp/quote/tcp", Status.NOT_CHECKABLE,
        oracle.KNOWN_DISAGREEMENT, "truncated quote"),
    "pending-udp-quote": (
        quote_of(pending_udp()), "icmp/quote/udp", Status.PENDING,
        oracle.KNOWN_DISAGREEMENT, "pending quote"),
    "zero-udp6-checksum-to-vxlan": (
        zero_udp6_to_vxlan(), "udp", Status.ZERO_TUNNEL, oracle.KNOWN_DISAGREEMENT,
        "zero tunnel checksum"),
}


def write_wire_file(path: str, frames: list[bytes]) -> str:
    with pcapng.Writer(path) as out:
        out.add_interface("lab:eth0 (as captured: checksums still pending, GSO super-packets)")
        wire = out.add_interface("lab:eth0 (wire: as a NIC would send it, judged by nslab)")
        for frame in frames:
            out.write_packet(wire, T0, frame)
    return path


def comparison_of(comparisons, path: str):
    return next(c for c in comparisons if c.ours is not None and c.ours.path == path)


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_frame_is_classified(tmp_path, name):
    frame, layer, status, outcome, kind = CRAFTED[name]
    assert verify(frame)[0].layer(layer).status is status
    path = write_wire_file(str(tmp_path / "t.pcapng"), [frame])
    frames, comparisons = oracle.compare_file(path)
    assert frames == 1
    found = comparison_of(comparisons, layer)
    assert (found.outcome, found.kind[:len(kind)]) == (outcome, kind), found.describe()
    assert not [c for c in comparisons if c.outcome == oracle.UNEXPLAINED]


def test_only_the_wire_interface_is_judged(tmp_path):
    """The captured view holds pending checksums tshark calls bad: not compared."""
    path = str(tmp_path / "t.pcapng")
    with pcapng.Writer(path) as out:
        captured = out.add_interface("lab:eth0 (as captured: checksums still pending, GSO "
                                     "super-packets)")
        wire = out.add_interface("lab:eth0 (wire: as a NIC would send it, judged by nslab)")
        out.write_packet(captured, T0, bytes(Ether(**ETH) / pending_udp()))
        out.write_packet(wire, T0, CRAFTED["bad-udp-both-say-bad"][0])
    frames, comparisons = oracle.compare_file(path)
    assert frames == 1 and {c.frame for c in comparisons} == {2}


def test_an_opposite_verdict_is_unexplained_and_fails_the_run(tmp_path, capsys):
    """The oracle can fail: nslab made to call a bad UDP checksum valid."""
    frame = CRAFTED["bad-udp-both-say-bad"][0]
    [verdict] = verify(frame)
    verdict.layers = [replace(layer, status=Status.VALID) if layer.path == "udp" else layer
                      for layer in verdict.layers]
    path = write_wire_file(str(tmp_path / "t.pcapng"), [frame])
    with mock.patch.object(oracle, "verify", return_value=[verdict]):
        assert oracle.main([path]) == 1
    out = capsys.readouterr().out
    assert "unexplained disagreements: 1" in out
    assert "frame 1: udp (offset 40): nslab VALID UDP chksum" in out
    assert "tshark udp.checksum BAD" in out


def test_missing_file_is_a_usage_error(tmp_path, capsys):
    assert oracle.main([str(tmp_path / "nope.pcapng")]) == 2
    assert "no pcapng file" in capsys.readouterr().err


# -- one live capture per scenario ---------------------------------------------------

@dataclass(frozen=True)
class Drive:
    """Where a scenario's default topology is captured, a little traffic over it,
    and the kinds of known disagreement that traffic shows."""
    capture_at: Callable[[object], tuple[object, str]]
    traffic: Callable[[object], None]
    known: frozenset = frozenset()


def vxlan_overlay_traffic(overlay) -> None:
    """A query and a TCP transfer over the overlay, and a datagram from the pod to
    a closed port: its port unreachable quotes the checksum still pending."""
    from topologies.scenarios import vxlan_overlay as vx
    traffic.UdpEchoServer(overlay.pod, "0.0.0.0", vx.DNS_PORT)
    traffic.TcpSinkServer(overlay.pod, "0.0.0.0", vx.DNS_PORT)
    assert traffic.udp_request(overlay.node_a, overlay.destination, vx.DNS_PORT,
                               count=2).answered == 2
    assert traffic.tcp_transfer(overlay.node_a, overlay.destination, vx.DNS_PORT,
                                nbytes=64 << 10).completed
    unreachable = traffic.counter_growth(overlay.pod, "Icmp.InDestUnreachs")
    with overlay.pod.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"anyone?", (vx.OVERLAY["node_a"], 9))
    traffic.wait_for(lambda: unreachable() >= 1, timeout=5, what="the port unreachable")


def lb_snat_traffic(topo) -> None:
    """Pings to the VIP, and DF pings too big for the router's hop: the
    frag-needed / Packet Too Big comes back RevNATed."""
    from topologies.scenarios import lb_snat as ls
    for family in ls.FAMILIES:
        vip = topo.target(family)[0]
        assert traffic.ping(topo.client, vip, count=1).received == 1
        taken = traffic.counter_growth(topo.client, "Icmp.InDestUnreachs", "Icmp.InCsumErrors",
                                       "Icmp6.InPktTooBigs", "Icmp6.InCsumErrors")
        traffic.ping(topo.client, vip, count=1, df=True, size=ls.LINK_MTU - 100,
                     timeout=5, dropped=taken)
        traffic.wait_for(lambda: taken() >= 1, timeout=5, what="the RevNATed ICMP error")


def pings(source: Callable, destination: Callable) -> Callable[[object], None]:
    def drive(topo) -> None:
        for family in ("ipv4", "ipv6"):
            assert traffic.ping(source(topo), destination(topo, family), count=2).received == 2
    return drive


SCENARIOS = {
    "vxlan_overlay": Drive(lambda t: (t.node_b, "eth0"), vxlan_overlay_traffic,
                           known=frozenset({"pending quote"})),
    "lb_snat": Drive(lambda t: (t.client, "eth0"), lb_snat_traffic),
    "xdp_responder": Drive(lambda t: (t.client, "eth0"),
                           pings(lambda t: t.client, lambda t, f: t.responder_addr(f))),
    "pod_egress": Drive(lambda t: (t.host, "lxc0"),
                        pings(lambda t: t.pod, lambda t, f: t.remote_addr(f))),
}


def test_every_scenario_has_a_drive():
    assert set(SCENARIOS) == set(catalog.TOPOLOGIES)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_capture_has_no_unexplained_disagreement(lab, tmp_path, scenario):
    module = catalog.load(scenario)
    topo = module.build(lab, module.Config())
    drive = SCENARIOS[scenario]
    with Capture(*drive.capture_at(topo)) as cap:
        drive.traffic(topo)
    cap.result.require_complete()
    path = cap.result.write_pcapng(str(tmp_path / f"{scenario}.pcapng"))
    frames, comparisons = oracle.compare_file(path)
    unexplained = [c.describe() for c in comparisons if c.outcome == oracle.UNEXPLAINED]
    assert frames >= len(cap.result) and not unexplained, unexplained
    assert any(c.outcome == oracle.AGREE for c in comparisons)
    known = {c.kind.split(":")[0] for c in comparisons if c.outcome == oracle.KNOWN_DISAGREEMENT}
    assert known == drive.known
