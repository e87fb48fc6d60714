"""The drop-reason monitor names the kernel's reason and where it dropped."""
import re
import socket

import pytest
from scapy.layers.inet import IP, UDP, Ether

from topologies import traffic
from topologies.capture import drop_reasons

FORMAT = """name: kfree_skb
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * location;\toffset:16;\tsize:8;\tsigned:0;
\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;

print fmt: "skbaddr=%p reason=%s", REC->skbaddr, __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 5, "UDP_CSUM" })
"""


def test_tracepoint_format_gives_offsets_and_reason_names():
    offsets, names = drop_reasons.parse_format(FORMAT)
    assert offsets["location"] == 16 and offsets["reason"] == 36
    assert names == {2: "NOT_SPECIFIED", 5: "UDP_CSUM"}


def test_bad_udp_checksum_is_named_with_its_drop_location(lab, drop_monitor):
    if drop_monitor is None:
        pytest.skip(drop_reasons.DropMonitor.unavailable() or "drop monitor disabled")
    a, b = lab.add_node("client"), lab.add_node("server")
    end_a, end_b = lab.veth(a, "eth0", b, "eth0")
    end_a.add_addr("10.0.0.1/24")
    end_b.add_addr("10.0.0.2/24")
    assert traffic.ping(a, "10.0.0.2", count=1).received == 1   # neighbours resolved
    frame = bytes(Ether(src=end_a.mac, dst=end_b.mac) / IP(src="10.0.0.1", dst="10.0.0.2") /
                  UDP(sport=4000, dport=7000, chksum=0xBAD1) / b"x")
    before = drop_monitor.snapshot()
    with a.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
        sock.bind(("eth0", 3))
        for _ in range(7):
            sock.send(frame)
    traffic.wait_for(
        lambda: drop_monitor.since(before).get(("UDP_CSUM", "__udp4_lib_rcv"), 0) >= 7,
        timeout=10, what="7 UDP_CSUM drops")   # they come in ms; 10 s ends a wait gone wrong
    # Machine-wide: a parallel test may add its own drops, never fewer than ours.
    lines = drop_reasons.describe(drop_monitor.since(before))
    assert any(re.fullmatch(r"(\d+) × UDP_CSUM at __udp4_lib_rcv", l) for l in lines), lines
