"""S-XDP: an XDP ICMP echo responder and its checksum (seeds 001 and 003).

Live: the client pings the responder, whose XDP program answers in place with
XDP_TX (native and generic mode, IPv4 and IPv6); the replies are judged at
the client, byte for byte against a from-scratch recomputation, and by the
client's kernel. BPF_PROG_TEST_RUN: hypothesis-generated echo requests, each
variant's output equal to the recomputation its table entry allows.

Known-bad variants: ``no-csum`` (the client counts Icmp InCsumErrors, 100 %
loss) and ``rfc1141`` (receivers accept its -0, only the comparison with a
recomputation at RFC 1624's corner case shows it).
"""
from __future__ import annotations

import os
import socket
import struct

import pytest

from topologies import bpf, traffic
from topologies.bpf import libbpf
from topologies.scenarios import xdp_responder as xr
from topologies.verdict import Status, verify

SNMP = {"ipv4": "Icmp", "ipv6": "Icmp6"}
ICMP_LAYER = {"ipv4": "icmp", "ipv6": "icmpv6"}
# What the client's kernel counts for each echo reply it takes in: accepted, or
# dropped for its checksum (then no ping ever sees it: the count ends the wait).
REPLIES_TAKEN = {"ipv4": ("Icmp.InEchoReps", "Icmp.InCsumErrors"),
                 "ipv6": ("Icmp6.InEchoReplies", "Icmp6.InCsumErrors")}
REPLY_BOUND = 10.0   # s: a reply comes in ms; this only ends a wait gone wrong
# Requests no ping socket sends (identifier 0), from a raw socket: the one whose
# reply is all zeros. An ICMPv6 reply never is (the pseudo-header is in its sum).
RAW_PROBES = {"ipv4": {"all_zero_reply": xr.all_zero_reply_request()}, "ipv6": {}}
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF)")


def ping_payloads(topo: xr.XdpResponder, family: str) -> dict[str, bytes]:
    """Payloads by name: the sizes, plus one steered into RFC 1624's corner case."""
    out = {name: bytes(i & 0xFF for i in range(size))
           for name, size in xr.payload_sizes(family).items()}
    out["rfc1624_corner"] = xr.steered_payload(
        family, topo.client_addr(family), topo.responder_addr(family), seq=1, size=56,
        want=xr.corner_request_checksum(family))
    return out


def echo_message(family: str, payload: bytes, ident: int = xr.ECHO_IDENT, seq: int = 1) -> bytes:
    """The ICMP message a ping socket makes of ``payload`` (checksum left out)."""
    return struct.pack("!BBHHH", xr.ECHO_TYPES[family][0], 0, 0, ident, seq) + payload


def send_raw_echo(node, dst: str, message: bytes) -> None:
    """An echo request no ping socket can send (identifier 0), from a raw socket."""
    with node.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.sendto(message, (dst, 0))


def echo_frames(capture_result, family: str, icmp_type: int, direction: str) -> dict:
    """Echo frames of one type by their identifier, sequence and payload (what a
    reply keeps of its request): {key: (EchoFrame, PacketVerdict)}."""
    found = {}
    for _pkt, verdict in capture_result.verdicts(direction):
        frame = verdict.frame
        if xr.ETHERTYPES.get(int.from_bytes(frame[12:14], "big")) != family:
            continue
        echo = xr.EchoFrame(family, frame)
        if frame[echo.l3 + (9 if family == "ipv4" else 6)] == xr.ICMP_PROTO[family] \
                and echo.icmp_type == icmp_type:
            found[frame[echo.l4 + 4:]] = (echo, verdict)
    return found


# -- live: client <-> XDP responder -------------------------------------------------------
@pytest.mark.parametrize("family", xr.FAMILIES)
@pytest.mark.parametrize("mode", xr.KNOBS["mode"])
@pytest.mark.parametrize("variant", xr.KNOBS["variant"])
def test_echo_replies_at_the_client(lab, capture, report_row, variant, mode, family):
    topo = xr.build(lab, xr.Config(variant, mode))
    client, responder = topo.client, topo.responder
    src, dst = topo.client_addr(family), topo.responder_addr(family)
    payloads = ping_payloads(topo, family)
    messages = {name: echo_message(family, p) for name, p in payloads.items()}
    messages.update(RAW_PROBES[family])
    verifies = {name: xr.reply_verifies(variant, family, src, dst, m)
                for name, m in messages.items()}
    client_before, responder_before = client.snmp(), responder.snmp()
    replies_taken = traffic.counter_growth(client, *REPLIES_TAKEN[family])
    cap = capture(client, "eth0")
    pings = {name: traffic.ping(client, dst, count=1, payload=payload, ident=xr.ECHO_IDENT,
                                timeout=REPLY_BOUND, dropped=traffic.counter_growth(
                                    client, f"{SNMP[family]}.InCsumErrors"))
             for name, payload in payloads.items()}
    for message in RAW_PROBES[family].values():
        send_raw_echo(client, dst, message)
    # The raw probes' replies too: each taken in (or dropped) by the client's kernel.
    traffic.wait_for(lambda: replies_taken() >= len(messages), timeout=REPLY_BOUND,
                     what="the client's kernel to take in every echo reply")
    result = cap.stop()
    client_delta = client.snmp().delta(client_before)
    responder_delta = responder.snmp().delta(responder_before)

    request_type, reply_type = xr.ECHO_TYPES[family]
    requests = echo_frames(result, family, request_type, "out")
    replies = echo_frames(result, family, reply_type, "in")
    received = sum(p.received for p in pings.values())
    csum_errors = client_delta.get(f"{SNMP[family]}.InCsumErrors", 0)
    icmp = {name: replies[m[4:]][1].layer(ICMP_LAYER[family])
            for name, m in messages.items() if m[4:] in replies}
    report_row(xr.SCENARIO, {"variant": variant, "mode": mode, "family": family},
               verdict=", ".join(f"{status.value} {sum(v.status is status for v in icmp.values())}"
                                 for status in (Status.VALID, Status.INVALID)),
               loss=f"{1 - received / len(pings):.0%}", csum_errors=csum_errors,
               rfc1624_corner=_wire(icmp.get("rfc1624_corner")),
               all_zero_reply=_wire(icmp.get("all_zero_reply")),
               answered_by_xdp=topo.counter(f"answered_{family}"))

    # The program answered every request itself; the responder's kernel saw none.
    assert sorted(requests) == sorted(replies) == sorted(m[4:] for m in messages.values())
    assert topo.counter(f"answered_{family}") == len(messages)
    assert responder_delta.get(f"{SNMP[family]}.InEchos", 0) == 0
    # Each reply is what the variant's table entry says, byte for byte; the
    # verdict engine judges its ICMP checksum as the arithmetic says, and finds
    # nothing else wrong (the IPv4 header checksum stays valid).
    for name, message in messages.items():
        (request, _), (reply, verdict) = requests[message[4:]], replies[message[4:]]
        assert reply.frame == xr.expected_reply(variant, family, request.frame), name
        assert (icmp[name].status is Status.VALID) == verifies[name], (name, verdict.summary())
        assert {v.path for v in verdict.invalid} <= {ICMP_LAYER[family]}, verdict.summary()
    # RFC 1624's corner: a recomputation gives 0x0000 (rfc1141 writes -0).
    assert icmp["rfc1624_corner"].correct == 0x0000
    # The client's kernel: the replies that verify are taken, the others dropped and counted.
    assert received == sum(verifies[name] for name in pings), pings
    assert csum_errors == sum(not ok for ok in verifies.values()), client_delta


def _wire(layer) -> str:
    """``0xffff valid, recomputed 0x0000``: the value, the verdict, and the
    recomputation when the two differ."""
    if layer is None:
        return "-"
    text = f"0x{layer.wire:04x} {layer.status.value}"
    return text + (f", recomputed 0x{layer.correct:04x}" if layer.correct != layer.wire else "")


# -- BPF_PROG_TEST_RUN ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def builds():
    """Every variant loaded once (nothing attached, so no lab)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (BPF)")
    objs = {name: libbpf.BpfObject.open(bpf.build(xr.SOURCE, defines=v.defines).path,
                                        name=f"xdp_responder[{name}]")
            for name, v in xr.VARIANTS.items()}
    yield objs
    for obj in objs.values():
        obj.close()


MAC_A, MAC_B = "02:00:00:00:05:01", "02:00:00:00:05:02"


def echo_request(family: str, src: str, dst: str, ident: int, seq: int, payload: bytes,
                 ttl: int = 64, tos: int = 0, ip_id: int = 1) -> bytes:
    """scapy builds it, so the request's checksums come from an independent implementation."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import Ether
    eth = Ether(src=MAC_A, dst=MAC_B)
    if family == "ipv4":
        return bytes(eth / IP(src=src, dst=dst, ttl=ttl, tos=tos, id=ip_id, flags="DF")
                     / ICMP(type=8, id=ident, seq=seq) / payload)
    return bytes(eth / IPv6(src=src, dst=dst, hlim=ttl, tc=tos)
                 / ICMPv6EchoRequest(id=ident, seq=seq, data=payload))


CORNERS = ("none", "rfc1624", "all_zero_reply")


def echo_requests():
    """Any echo request, often steered into one of the two corner cases: a
    hypothesis strategy, made by the test that uses it. Collecting this file
    never imports hypothesis (~4.5 s in a VM guest under TCG)."""
    from hypothesis import strategies as st
    address = {"ipv4": st.ip_addresses(v=4).filter(lambda a: not a.is_multicast).map(str),
               "ipv6": st.ip_addresses(v=6).filter(lambda a: not a.is_multicast).map(str)}

    @st.composite
    def echo_request_frames(draw):
        family = draw(st.sampled_from(xr.FAMILIES))
        corner = draw(st.sampled_from(CORNERS if family == "ipv4" else CORNERS[:2]))
        src, dst = draw(address[family]), draw(address[family])
        ident, seq = draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF))
        size = draw(st.integers(0, 300))
        if corner == "rfc1624" and size >= 2:
            payload = xr.steered_payload(family, src, dst, seq, size,
                                         xr.corner_request_checksum(family), ident=ident)
        elif corner == "all_zero_reply":
            ident = seq = 0
            payload = bytes(size)
        else:
            payload = draw(st.binary(min_size=size, max_size=size))
        frame = echo_request(family, src, dst, ident, seq, payload,
                             ttl=draw(st.integers(1, 255)), tos=draw(st.integers(0, 255)),
                             ip_id=draw(st.integers(0, 0xFFFF)))
        return family, frame
    return echo_request_frames()


@needs_root
@pytest.mark.parametrize("variant", list(xr.VARIANTS))
def test_reply_equals_full_recomputation(builds, variant):
    """Byte for byte what the variant's table entry says: the recomputation
    itself, except where the entry names the corner the variant gets wrong."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(request=echo_requests())
    def reply_matches_its_table_entry(request):
        family, frame = request
        run = bpf.test_run(builds[variant].program("xdp_echo"), frame)
        assert run.action == "XDP_TX"
        assert run.data_out == xr.expected_reply(variant, family, frame)
        full = xr.EchoFrame(family, xr.recomputed_reply(family, frame)).icmp_checksum
        wire = xr.EchoFrame(family, run.data_out).icmp_checksum
        icmp = verify(run.data_out)[0].layer(ICMP_LAYER[family])
        assert (icmp.status is Status.VALID) == xr.verifies(wire, full)
    reply_matches_its_table_entry()


@needs_root
@pytest.mark.parametrize("family", xr.FAMILIES)
@pytest.mark.parametrize("variant", list(xr.VARIANTS))
def test_rfc1624_corner_case(builds, variant, family):
    """The request whose reply sums to 0xffff: recomputation and RFC 1624 give
    0x0000; RFC 1141 gives 0xffff, which still verifies (both are zero in one's
    complement) but differs from the recomputation. One step off the corner,
    RFC 1141 agrees with everybody."""
    src, dst, _ = xr.ADDRESSES[family]
    want = xr.corner_request_checksum(family)
    expect = xr.VARIANTS[variant]
    for request_checksum, reply_correct in ((want, 0x0000), (want + 1, 0x0001)):
        payload = xr.steered_payload(family, src, dst, 1, 56, request_checksum)
        frame = echo_request(family, src, dst, xr.ECHO_IDENT, 1, payload)
        icmp = verify(bpf.test_run(builds[variant].program("xdp_echo"), frame).data_out)[0] \
            .layer(ICMP_LAYER[family])
        assert icmp.correct == reply_correct
        assert icmp.wire == expect.reply_checksum(request_checksum, reply_correct)


ALL_ZERO_REPLY = {"icmp-ip-csum": (0x0000, Status.INVALID), "icmp-csum": (0x0000, Status.INVALID),
                  "no-csum": (0xF7FF, Status.INVALID), "rfc1141": (0xFFFF, Status.VALID)}


@needs_root
@pytest.mark.parametrize("variant", list(xr.VARIANTS))
def test_all_zero_reply(builds, variant):
    """The other zero: identifier 0, sequence 0, no payload. The reply's sum is
    +0, so its checksum must be 0xffff; the article's bpf_csum_diff writes 0x0000
    and the reply fails verification, while RFC 1141's formula happens to be right."""
    frame = echo_request("ipv4", "10.0.5.1", "10.0.5.2", ident=0, seq=0, payload=b"")
    assert frame[14 + 20:] == xr.all_zero_reply_request()
    icmp = verify(bpf.test_run(builds[variant].program("xdp_echo"), frame).data_out)[0] \
        .layer("icmp")
    assert icmp.correct == 0xFFFF
    assert (icmp.wire, icmp.status) == ALL_ZERO_REPLY[variant]


PASSED_THROUGH = ("udp", "arp", "echo_reply", "ip_options", "fragment", "icmpv6_reply",
                  "truncated")


def passed_through(kind: str) -> bytes:
    """A frame the responder must hand to the stack untouched."""
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.inet6 import ICMPv6EchoReply, IPv6
    from scapy.layers.l2 import ARP, Ether
    eth, ip = Ether(src=MAC_A, dst=MAC_B), IP(src="10.0.5.1", dst="10.0.5.2")
    frames = {
        "udp": eth / ip / UDP(dport=7) / b"x",
        "arp": Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.5.2"),
        "echo_reply": eth / ip / ICMP(type=0),
        "ip_options": eth / IP(src="10.0.5.1", dst="10.0.5.2", options=b"\x01\x01\x01\x00")
        / ICMP(type=8),
        "fragment": eth / IP(src="10.0.5.1", dst="10.0.5.2", flags="MF") / ICMP(type=8),
        "icmpv6_reply": eth / IPv6(src="fd00:5::1", dst="fd00:5::2") / ICMPv6EchoReply(),
        "truncated": eth / IP(src="10.0.5.1", dst="10.0.5.2", proto=1),
    }
    return bytes(frames[kind])


@needs_root
@pytest.mark.parametrize("kind", PASSED_THROUGH)
def test_everything_but_echo_requests_goes_to_the_stack(builds, kind):
    frame = passed_through(kind)
    run = bpf.test_run(builds["icmp-ip-csum"].program("xdp_echo"), frame)
    assert (run.action, run.data_out) == ("XDP_PASS", frame)
