"""Offload-aware capture on real veth traffic: what the wire would carry,
every checksum at every layer, and proof that a bad checksum is caught."""
import ipaddress
import shutil
import socket
import subprocess

import pytest
from scapy.layers.inet import IP, UDP, Ether, IPOption_Router_Alert
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6MLDone,
    ICMPv6MLQuery,
    ICMPv6MLReport,
    ICMPv6MLReport2,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RS,
    IPv6,
    IPv6ExtHdrHopByHop,
    RouterAlert,
)
from scapy.layers.l2 import ARP

from topologies import Capture, LabError, traffic
from topologies.capture import CaptureResult, Captured, kernel_chatter
from topologies.verdict import Status, VnetHdr

ETH_P_ALL = 3
EVENT_BOUND = 10.0   # s: an awaited frame or count comes in ms; this ends a wait gone wrong


def all_verdicts(cap):
    return [v for _, v in cap.result.verdicts()]


@pytest.mark.parametrize("dst", ["10.0.0.2", "fd00::2"], ids=["ipv4", "ipv6"])
def test_veth_ping_every_packet_verified(pair, capture, dst):
    client, server = pair
    cap = capture(server, "eth0")
    for size in (0, 1, 57, 1400):
        assert traffic.ping(client, dst, count=1, size=size).received == 1
    cap.stop()
    verdicts = all_verdicts(cap)
    icmp = "icmpv6" if ":" in dst else "icmp"
    echoes = [v for v in verdicts if v.find(icmp)]
    assert len(echoes) >= 8, [v.summary() for v in verdicts]
    assert all(v.ok for v in verdicts), [v.summary() for v in verdicts if not v.ok]
    assert all(v.layer(icmp).status is Status.VALID for v in echoes)


@pytest.mark.parametrize("dst", ["10.0.0.2", "fd00::2"], ids=["ipv4", "ipv6"])
def test_tx_offload_on_shows_partial_checksums_that_complete_to_valid(pair, capture, dst):
    client, server = pair
    echo = traffic.UdpEchoServer(server, "::", 7000)
    cap = capture(client, "eth0")
    assert traffic.udp_request(client, dst, echo.port, count=3).answered == 3
    cap.stop()
    sent = [p for p in cap.result.select("out") if p.vnet.needs_csum]
    assert len(sent) >= 3, "tx checksum offload on: the kernel leaves the UDP checksum pending"
    for pkt in sent:
        l3 = 20 if "." in dst else 40
        assert (pkt.vnet.csum_start, pkt.vnet.csum_offset) == (14 + l3, 6)
        [verdict] = pkt.verdicts()
        assert verdict.completion is not None and verdict.completion.offset == 14 + l3 + 6
        assert verdict.completion.before != verdict.completion.after
        assert verdict.ok and verdict.layer("udp").status is Status.VALID


@pytest.mark.parametrize("dst", ["10.0.0.2", "fd00::2"], ids=["ipv4", "ipv6"])
def test_tx_offload_off_shows_final_bytes(pair, capture, dst):
    client, server = pair
    client.iface("eth0").set_offloads({"tx": False})
    echo = traffic.UdpEchoServer(server, "::", 7000)
    cap = capture(client, "eth0")
    assert traffic.udp_request(client, dst, echo.port, count=3).answered == 3
    cap.stop()
    udp_out = [p for p in cap.result.select("out") if p.verdicts()[0].find("udp")]
    assert len(udp_out) == 3
    for pkt in udp_out:
        assert not pkt.vnet.needs_csum
        [verdict] = pkt.verdicts()
        assert verdict.completion is None
        assert verdict.ok and verdict.layer("udp").status is Status.VALID


def send_raw(node, frame: bytes) -> None:
    with node.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
        sock.bind(("eth0", ETH_P_ALL))
        sock.send(frame)


CORRUPTIONS = {
    # name: (scapy packet with a wrong field, layer path, counter that must grow)
    "udp-v4": (lambda: IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=4000, dport=7000,
               chksum=0xBAD1) / b"corrupted on purpose", "udp", "Udp.InCsumErrors"),
    "udp-v6": (lambda: IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=4000, dport=7000,
               chksum=0xBAD1) / b"corrupted on purpose", "udp", "Udp6.InCsumErrors"),
    "ipv4-header": (lambda: IP(src="10.0.0.1", dst="10.0.0.2", chksum=0xBAD1) /
                    UDP(sport=4000, dport=7000) / b"x", "ipv4", "Ip.InHdrErrors"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupted_packet_is_flagged_with_the_right_field(pair, capture, case):
    client, server = pair
    build, path, counter = CORRUPTIONS[case]
    packet = build()
    good = packet.copy()
    (good[UDP] if path == "udp" else good[IP]).chksum = None   # scapy recomputes it
    rebuilt = good.__class__(bytes(good))
    correct = (rebuilt[UDP] if path == "udp" else rebuilt[IP]).chksum
    assert correct != 0xBAD1
    frame = bytes(Ether(src=client.iface("eth0").mac, dst=server.iface("eth0").mac) / packet)
    before = server.snmp()
    cap = capture(server, "eth0")
    send_raw(client, frame)
    traffic.wait_for(lambda: server.snmp().delta(before).get(counter), timeout=EVENT_BOUND,
                     what=f"{counter} to grow")
    cap.stop()
    [bad] = [v for v in all_verdicts(cap) if not v.ok]
    [invalid] = bad.invalid
    assert (invalid.path, invalid.field) == (path, "chksum")
    assert (invalid.wire, invalid.correct) == (0xBAD1, correct)
    assert "INVALID" in bad.show()


def test_capture_with_kernel_drops_is_void(pair):
    client, server = pair
    cap = Capture(server, "eth0", bufsize=4096).start()
    traffic.udp_request(client, "10.0.0.2", 9, count=300, timeout=0.0001)
    cap._stop.set()          # stop reading, so the tiny buffer overflows
    cap._thread.join()       # ... from now on, not after a last read
    traffic.udp_request(client, "10.0.0.2", 9, count=300, timeout=0.0001)
    result = cap.stop()
    assert result.kernel_drops > 0
    with pytest.raises(LabError, match="void"):
        result.verdicts()


def test_tso_super_packets_are_segmented_like_a_nic(pair, capture):
    client, server = pair
    sink = traffic.TcpSinkServer(server, "10.0.0.2", 5001)
    cap = capture(client, "eth0")
    assert traffic.tcp_transfer(client, "10.0.0.2", sink.port, nbytes=1 << 20).completed
    cap.stop()
    gso = [p for p in cap.result.select("out") if p.vnet.gso_type]
    assert gso, "TSO is on for veth: the kernel hands over super-packets"
    for pkt in gso:
        segments = pkt.verdicts()
        assert len(segments) > 1
        assert all(len(s.frame) <= 1514 for s in segments)
        assert all(s.ok and s.layer("tcp").status is Status.VALID for s in segments)


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed")
def test_pcapng_opens_in_tshark_which_agrees_on_checksums(pair, capture, tmp_path):
    client, server = pair
    echo = traffic.UdpEchoServer(server, "10.0.0.2", 7000)
    cap = capture(client, "eth0")
    traffic.udp_request(client, "10.0.0.2", echo.port, count=3)
    bad = Ether(src=client.iface("eth0").mac, dst=server.iface("eth0").mac) / \
        IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=4000, dport=7000, chksum=0xBAD1) / b"x"
    send_raw(client, bytes(bad))
    cap.stop()
    path = cap.result.write_pcapng(str(tmp_path / "capture.pcapng"))
    out = subprocess.run(["tshark", "-r", path, "-o", "udp.check_checksum:TRUE", "-Y",
                          "udp && frame.interface_id == 1",
                          "-T", "fields", "-e", "udp.checksum", "-e", "udp.checksum.status"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    statuses = [line.split("\t") for line in out.splitlines()]
    # tshark: status 1 = good, 0 = bad. The three requests and three answers are good.
    assert sorted(s for _, s in statuses) == ["0"] + ["1"] * 6, out
    assert ["0xbad1", "0"] in statuses


# -- what the kernel sends by itself --------------------------------------------------------
MAC_A, LINK_LOCAL = "02:00:00:00:00:0a", "fe80::a"


def mld(message, dst: str) -> bytes:
    """An MLD message as the kernel sends it: hop limit 1, router alert in a hop-by-hop header."""
    mac = "33:33:" + ":".join(f"{b:02x}" for b in ipaddress.IPv6Address(dst).packed[-4:])
    return bytes(Ether(src=MAC_A, dst=mac) / IPv6(src=LINK_LOCAL, dst=dst, hlim=1)
                 / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / message)


def igmp(kind: int) -> bytes:
    """An IGMP message of type ``kind`` with the router alert option (IHL 6)."""
    return bytes(Ether(src=MAC_A, dst="01:00:5e:00:00:16")
                 / IP(src="10.0.0.1", dst="224.0.0.22", ttl=1, proto=2,
                      options=[IPOption_Router_Alert()]) / bytes([kind, 0, 0, 0, 0, 0, 0, 0]))


def v6(payload, src: str = "fd00::1", dst: str = "fd00::2",
       mac: str = "02:00:00:00:00:0b") -> bytes:
    return bytes(Ether(src=MAC_A, dst=mac) / IPv6(src=src, dst=dst, hlim=255) / payload)


CHATTER = {   # name: (frame, is it kernel chatter?)
    "mldv2_report": (mld(ICMPv6MLReport2(), "ff02::16"), True),
    "mldv1_report": (mld(ICMPv6MLReport(mladdr="ff02::1:ff00:1"), "ff02::1:ff00:1"), True),
    "mld_done": (mld(ICMPv6MLDone(mladdr="ff02::1:ff00:1"), "ff02::2"), True),
    "mld_query": (mld(ICMPv6MLQuery(), "ff02::1"), True),
    "router_solicitation": (v6(ICMPv6ND_RS(), LINK_LOCAL, "ff02::2", "33:33:00:00:00:02"), True),
    "dad_probe": (v6(ICMPv6ND_NS(tgt="fd00::1"), "::", "ff02::1:ff00:1", "33:33:ff:00:00:01"),
                  True),
    "unsolicited_na": (v6(ICMPv6ND_NA(tgt="fd00::1", S=0), "fd00::1", "ff02::1",
                          "33:33:00:00:00:01"), True),
    "igmpv2_report": (igmp(0x16), True),
    "igmpv3_report": (igmp(0x22), True),
    "igmp_leave": (igmp(0x17), True),
    # What the lab's own traffic causes, or is:
    "neighbour_solicitation": (v6(ICMPv6ND_NS(tgt="fd00::2"), "fd00::1", "ff02::1:ff00:2",
                                  "33:33:ff:00:00:02"), False),
    "solicited_na": (v6(ICMPv6ND_NA(tgt="fd00::2", S=1)), False),
    "echo_request_v6": (v6(ICMPv6EchoRequest()), False),
    "udp_behind_hop_by_hop": (v6(IPv6ExtHdrHopByHop() / UDP(dport=53)), False),
    "arp_request": (bytes(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.0.2")),
                    False),
    "udp_v4": (bytes(Ether(src=MAC_A, dst="02:00:00:00:00:0b") / IP(src="10.0.0.1",
                     dst="10.0.0.2") / UDP(dport=53)), False),
    "truncated_v6": (v6(ICMPv6ND_RS())[:50], False),
    "runt": (b"\x33" * 10, False),
}


@pytest.mark.parametrize("name", CHATTER)
def test_kernel_chatter_is_told_from_the_labs_traffic(name):
    frame, chatter = CHATTER[name]
    assert kernel_chatter(frame) is chatter


def captured(frame: bytes) -> Captured:
    return Captured(0.0, frame, VnetHdr.parse(bytes(10)), 0, outgoing=True, orig_len=len(frame))


def test_a_capture_leaves_out_what_it_ignores_but_keeps_every_frame():
    frames = [CHATTER[name][0] for name in ("mldv2_report", "udp_v4", "router_solicitation")]
    result = CaptureResult("eth0", "client", [captured(f) for f in frames])
    assert [p.frame for p in result.select(ignore=kernel_chatter)] == [frames[1]]
    assert len(result.select()) == 3
    result.ignore = kernel_chatter           # what Capture(..., ignore=kernel_chatter) sets
    assert [v.frame for _, v in result.verdicts("out")] == [frames[1]]
    assert len(result.packets) == 3          # pcapng files and artifacts keep them all


def test_the_kernels_own_mld_report_is_chatter_live(pair, capture):
    """On a veth, as on netkit: a new IPv6 address makes the kernel join its
    solicited-node group and say so with an MLDv2 report, unasked. The lab's
    ping and the neighbour discovery it causes are not chatter."""
    client, _ = pair
    cap = capture(client, "eth0")
    client.iface("eth0").add_addr("fd00::99/64")
    traffic.wait_for(lambda: any(kernel_chatter(p.frame) for p in cap.result.packets),
                     timeout=EVENT_BOUND, what="the kernel's MLD report")
    assert traffic.ping(client, "fd00::2", count=1).received == 1
    cap.stop()
    chatter = [p.frame for p in cap.result.packets if kernel_chatter(p.frame)]
    assert any(f[:6] == bytes.fromhex("333300000016") for f in chatter)   # to ff02::16
    lab_frames = [v for _, v in cap.result.verdicts(ignore=kernel_chatter)]
    assert any(v.find("icmpv6") for v in lab_frames)                    # the echo and its ND
    assert len(lab_frames) + len(chatter) == len(cap.result.packets)
