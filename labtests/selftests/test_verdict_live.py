"""The verdict engine against what this kernel really sends: a port unreachable
quoting a datagram that crossed veth with its checksum pending, and a VXLAN
tunnel over IPv6 with zero UDP checksums (udp6zerocsumtx/rx)."""
from __future__ import annotations

import socket

import pytest

from topologies import Status, traffic

ANSWER_BOUND = 5.0   # s: the port unreachable comes in ms; this ends a wait gone wrong
CLOSED_PORT = 9      # discard: nothing listens in the lab
DESTINATIONS = {"ipv4": ("10.0.0.2", "icmp"), "ipv6": ("fd00::2", "icmpv6")}
PENDING_QUOTE = ("the quoted packet crossed a virtual link with its checksum still pending "
                 "(CHECKSUM_PARTIAL): what a NIC would have sent cannot be known")


def refused_datagram(node, dst: str) -> None:
    """A UDP datagram from a kernel socket to a closed port, and the wait for
    the port unreachable (a connected socket hears it as ECONNREFUSED)."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with node.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(ANSWER_BOUND)
        sock.connect((dst, CLOSED_PORT))
        sock.send(b"is anyone listening?")
        with pytest.raises(ConnectionRefusedError):
            sock.recv(100)


def port_unreachable_at_sender(pair, capture, dst: str, icmp: str):
    """(the datagram as the sender handed it to veth, the error as it came back)."""
    client, _ = pair
    cap = capture(client, "eth0")
    refused_datagram(client, dst)
    result = cap.stop()
    sent = [p for p in result.select("out") if p.verdicts()[0].find("udp")]
    errors = [v for _, v in result.verdicts("in") if v.find(f"{icmp}/quote/udp")]
    assert len(sent) == 1 and len(errors) == 1, [v.summary() for _, v in result.verdicts()]
    return sent[0], errors[0]


@pytest.mark.parametrize("family", DESTINATIONS)
def test_port_unreachable_quoting_a_pending_checksum_is_pending_not_invalid(pair, capture,
                                                                           family):
    dst, icmp = DESTINATIONS[family]
    datagram, error = port_unreachable_at_sender(pair, capture, dst, icmp)
    assert datagram.vnet.needs_csum, "tx checksum offload on: the UDP checksum leaves pending"
    seed = datagram.verdicts()[0].completion.before
    quoted = error.layer(f"{icmp}/quote/udp")
    assert (quoted.status, quoted.wire, quoted.reason) == (Status.PENDING, seed, PENDING_QUOTE), \
        error.summary()
    assert quoted.correct == datagram.verdicts()[0].completion.after
    assert error.ok and error.layer(icmp).status is Status.VALID, error.summary()
    assert error.summary().startswith(f"PENDING quoted UDP chksum wire=0x{seed:04x}")


@pytest.mark.parametrize("family", DESTINATIONS)
def test_port_unreachable_quoting_a_final_checksum_is_valid(pair, capture, family):
    dst, icmp = DESTINATIONS[family]
    pair[0].iface("eth0").set_offloads({"tx": False})
    datagram, error = port_unreachable_at_sender(pair, capture, dst, icmp)
    assert not datagram.vnet.needs_csum and datagram.verdicts()[0].completion is None
    assert error.layer(f"{icmp}/quote/udp").status is Status.VALID, error.summary()
    assert error.ok and not error.unchecked


INNER = {"client": "10.9.0.1", "server": "10.9.0.2"}


@pytest.mark.parametrize("udpcsum, outer", [(False, Status.ZERO_TUNNEL), (True, Status.VALID)],
                         ids=["udp6zerocsum", "udpcsum"])
def test_vxlan_over_ipv6_zero_checksum_is_a_tunnel_choice_not_invalid(lab, pair, capture,
                                                                      udpcsum, outer):
    client, server = pair
    for node, local, remote in ((client, "fd00::1", "fd00::2"), (server, "fd00::2", "fd00::1")):
        vx = lab.vxlan(node, "vx0", vni=7, local=local, remote=remote, underlay="eth0",
                       udpcsum=udpcsum)
        vx.add_addr(f"{INNER[node.name]}/24")
    cap = capture(server, "eth0")
    assert traffic.ping(client, INNER["server"], count=2).received == 2
    tunnelled = [v for _, v in cap.stop().verdicts("in") if v.find("vxlan/icmp")]
    assert len(tunnelled) >= 2
    for verdict in tunnelled:
        udp = verdict.layer("udp")
        assert udp.status is outer and verdict.ok, verdict.summary()
        assert verdict.layer("vxlan/icmp").status is Status.VALID
