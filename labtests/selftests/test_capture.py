"""Offload-aware capture on real veth traffic: what the wire would carry,
every checksum at every layer, and proof that a bad checksum is caught."""
import shutil
import socket
import subprocess

import pytest
from scapy.layers.inet import IP, UDP, Ether
from scapy.layers.inet6 import IPv6

from topologies import Capture, LabError, traffic
from topologies.verdict import Status

ETH_P_ALL = 3


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
    traffic.wait_for(lambda: server.snmp().delta(before).get(counter), timeout=2,
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
    out = subprocess.run(["tshark", "-r", path, "-o", "udp.check_checksum:TRUE", "-Y", "udp",
                          "-T", "fields", "-e", "udp.checksum", "-e", "udp.checksum.status"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    statuses = [line.split("\t") for line in out.splitlines()]
    # tshark: status 1 = good, 0 = bad. The three requests and three answers are good.
    assert sorted(s for _, s in statuses) == ["0"] + ["1"] * 6, out
    assert ["0xbad1", "0"] in statuses
