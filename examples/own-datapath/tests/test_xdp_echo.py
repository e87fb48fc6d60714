"""The article's XDP echo responder (bpf/xdp_echo.c, unmodified), judged by nslab:
every reply it sends must carry correct IPv4 and ICMP checksums, and the client's
kernel must accept it. The known-bad build (bpf/xdp_echo_no_csum.c: the ICMP
checksum left alone) must be caught: INVALID on the wire, dropped by the client.

Only the nslab pytest plugin's fixtures (``lab``, ``capture``) and the public API.
"""
from pathlib import Path

import pytest

from topologies import Status, bpf, traffic

PROGRAMS = Path(__file__).resolve().parent.parent / "bpf"
# program → (replies the client accepts, the status of the replies' ICMP checksum)
EXPECTED = {
    "xdp_echo.c": (3, Status.VALID),
    "xdp_echo_no_csum.c": (0, Status.INVALID),    # known bad
}


@pytest.fixture
def echo_lab(lab):
    """client 192.0.2.1 — responder 192.0.2.2 over one veth."""
    client, responder = lab.add_node("client"), lab.add_node("responder")
    client_end, responder_end = lab.veth(client, "eth0", responder, "eth0")
    client_end.add_addr("192.0.2.1/24")
    responder_end.add_addr("192.0.2.2/24")
    return client, responder_end


@pytest.mark.parametrize("program", sorted(EXPECTED))
def test_echo_replies_carry_correct_checksums(echo_lab, capture, program):
    client, responder_end = echo_lab
    replies, icmp_status = EXPECTED[program]
    obj = bpf.load(responder_end.node.lab, PROGRAMS / program)
    bpf.attach_xdp(responder_end, obj.program("xdp_echo_reply"), "native")
    cap = capture(client, "eth0")
    dropped = traffic.counter_growth(client, "Icmp.InCsumErrors")
    ping = traffic.ping(client, "192.0.2.2", count=3, dropped=dropped)
    frames = [v for _, v in cap.stop().verdicts("in") if v.find("icmp")]
    assert ping.received == replies
    assert len(frames) == 3, [v.summary() for v in frames]
    assert {v.layer("icmp").status for v in frames} == {icmp_status}
    assert {v.layer("ipv4").status for v in frames} == {Status.VALID}
