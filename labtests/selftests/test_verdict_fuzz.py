"""The verdict engine never raises, on any input: arbitrary bytes with arbitrary
vnet headers, and structured frames (tunnels and quotes inside one another) so
the fuzzer reaches the deep code; nesting deeper than MAX_NESTING is reported,
never a RecursionError. Valid nested frames have every layer valid.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import GRE, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from topologies.verdict import (
    MAX_NESTING,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    PacketVerdict,
    Status,
    VnetHdr,
    fold,
    pseudo_sum_v4,
    pseudo_sum_v6,
    segment,
    verify,
)

BOUNDED = settings(max_examples=300, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NESTING = f"nesting deeper than {MAX_NESTING} layers"
MAC = dict(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
A4, B4, A6, B6 = "10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"
TUNNEL_PORTS = (4789, 8472, 6081)


def judged(frame, *args, **kw) -> list[PacketVerdict]:
    """verify(), and every verdict rendered: neither may raise."""
    verdicts = verify(frame, *args, **kw)
    assert isinstance(verdicts, list) and verdicts
    for verdict in verdicts:
        assert isinstance(verdict, PacketVerdict)
        verdict.summary()
        verdict.show()
    return verdicts


# --- arbitrary bytes, arbitrary vnet headers ------------------------------------------

U8, U16 = st.integers(0, 0xFF), st.integers(0, 0xFFFF)
VNET_HEADERS = st.builds(VnetHdr, flags=U8, gso_type=U8, hdr_len=U16,
                         gso_size=st.one_of(st.integers(0, 64), st.integers(500, 1500), U16),
                         csum_start=st.one_of(st.integers(0, 140), U16),
                         csum_offset=st.one_of(st.sampled_from([0, 2, 6, 16]), U16))
PORTS = st.lists(U16, max_size=3).map(tuple)


@BOUNDED
@given(st.binary(max_size=600), st.one_of(st.none(), VNET_HEADERS), st.booleans(),
       st.sampled_from(["ether", "ip"]), PORTS, PORTS, PORTS)
def test_arbitrary_bytes_and_vnet_headers_never_raise(data, vnet, not_ready, link, vxlan,
                                                      geneve, other):
    judged(data, vnet, not_ready, link, vxlan, geneve_ports=geneve, tunnel_ports=other)


# --- structured frames: tunnels and quotes inside one another ---------------------------
#
# A frame is built from the inside out: an IP packet, then wrappers, each of which
# takes an IP packet or an Ethernet frame and gives one back. Every checksum is
# scapy's, so a frame built this way has every layer valid.

@dataclass
class Built:
    data: bytes
    kind: str                 # "ip" or "ether": what the bytes start with
    family: int = 4           # of the IP packet, when kind == "ip"


def ip_over(family, proto, payload, **kw):
    if family == 4:
        return IP(src=A4, dst=B4, proto=proto, **kw) / payload
    return IPv6(src=A6, dst=B6, nh=proto) / payload


@st.composite
def innermost(draw):
    family = draw(st.sampled_from([4, 6]))
    payload = draw(st.binary(max_size=40))
    kind = draw(st.sampled_from(["udp", "tcp", "icmp"]))
    ports = st.integers(1024, 65535).filter(lambda p: p not in TUNNEL_PORTS)
    if kind == "udp":
        l4, proto = UDP(sport=draw(ports), dport=draw(ports)) / payload, 17
    elif kind == "tcp":
        l4, proto = TCP(sport=draw(ports), dport=draw(ports), seq=draw(st.integers(0, 2**32 - 1)),
                        flags=draw(st.sampled_from(["S", "SA", "PA"]))) / payload, 6
    elif family == 4:
        l4, proto = ICMP(id=draw(U16), seq=draw(U16)) / payload, 1
    else:
        l4, proto = ICMPv6EchoRequest(id=draw(U16), seq=draw(U16), data=payload), 58
    return Built(bytes(ip_over(family, proto, l4)), "ip", family)


def as_frame(b: Built, vlans: int = 0) -> Built:
    """An IP packet in an Ethernet frame, under 0–2 VLAN tags (QinQ at 2)."""
    if b.kind == "ether":
        return b
    etype = 0x0800 if b.family == 4 else 0x86DD
    if vlans == 0:
        return Built(bytes(Ether(type=etype, **MAC) / Raw(b.data)), "ether")
    tags = Dot1Q(vlan=10, type=etype) if vlans == 1 else \
        Dot1AD(vlan=100, type=0x8100) / Dot1Q(vlan=10, type=etype)
    outer = 0x8100 if vlans == 1 else 0x88A8
    return Built(bytes(Ether(type=outer, **MAC) / tags / Raw(b.data)), "ether")


def wrap_udp_tunnel(b: Built, family: int, port: int, geneve: bool, vlans: int) -> Built:
    frame = as_frame(b, vlans)
    head = GENEVE(vni=5, proto=0x6558, options=[GeneveOptions(classid=0x102, type=1,
                                                              data=b"\0" * 4)]) \
        if geneve else VXLAN(vni=5, flags=0x08)
    return Built(bytes(ip_over(family, 17, UDP(sport=40000, dport=port) / head
                               / Raw(frame.data))), "ip", family)


def wrap_geneve_l3(b: Built, family: int) -> Built:
    if b.kind == "ether":
        return wrap_udp_tunnel(b, family, 6081, True, 0)
    proto = 0x0800 if b.family == 4 else 0x86DD
    return Built(bytes(ip_over(family, 17, UDP(sport=40000, dport=6081)
                               / GENEVE(vni=9, proto=proto) / Raw(b.data))), "ip", family)


def wrap_gre(b: Built, family: int, csum: bool, key: bool, seq: bool, tap: bool) -> Built:
    """GRE over IPv4 or IPv6; an Ethernet frame always goes as GRETAP."""
    tap = tap or b.kind == "ether"
    inner = as_frame(b) if tap else b
    proto = 0x6558 if tap else (0x0800 if b.family == 4 else 0x86DD)
    gre = GRE(proto=proto, chksum_present=int(csum), key_present=int(key), key=7,
              seqnum_present=int(seq), sequence_number=3)
    return Built(bytes(ip_over(family, 47, gre / Raw(inner.data))), "ip", family)


def wrap_ip_in_ip(b: Built, family: int) -> Built:
    if b.kind == "ether":
        return wrap_gre(b, family, False, False, False, True)
    return Built(bytes(ip_over(family, 4 if b.family == 4 else 41, Raw(b.data))), "ip", family)


def wrap_quote(b: Built, family: int) -> Built:
    """An ICMP error quoting the whole packet (a frame is tunnelled first)."""
    if b.kind == "ether":
        b = wrap_udp_tunnel(b, family, 4789, False, 0)
    if b.family == 4:
        return Built(bytes(IP(src=B4, dst=A4) / ICMP(type=3, code=3) / Raw(b.data)), "ip", 4)
    return Built(bytes(IPv6(src=B6, dst=A6) / ICMPv6DestUnreach(code=4) / Raw(b.data)), "ip", 6)


@st.composite
def wrappers(draw):
    family = draw(st.sampled_from([4, 6]))
    name = draw(st.sampled_from(["vxlan", "geneve", "geneve_l3", "gre", "ipip", "quote"]))
    if name in ("vxlan", "geneve"):
        port = draw(st.sampled_from([4789, 8472] if name == "vxlan" else [6081]))
        vlans = draw(st.integers(0, 2))
        return lambda b: wrap_udp_tunnel(b, family, port, name == "geneve", vlans)
    if name == "geneve_l3":
        return lambda b: wrap_geneve_l3(b, family)
    if name == "gre":
        flags = [draw(st.booleans()) for _ in range(4)]
        return lambda b: wrap_gre(b, family, *flags)
    if name == "ipip":
        return lambda b: wrap_ip_in_ip(b, family)
    return lambda b: wrap_quote(b, family)


@st.composite
def nested_frames(draw, max_levels=5):
    """A valid frame: an IP packet inside 0–max_levels tunnels and quotes, in
    an Ethernet frame (VLAN-tagged or not)."""
    b = draw(innermost())
    for wrap in draw(st.lists(wrappers(), max_size=max_levels)):
        b = wrap(b)
    return as_frame(b, draw(st.integers(0, 2))).data


@BOUNDED
@given(nested_frames())
def test_valid_nested_frames_have_every_layer_judged_valid(frame):
    [verdict] = judged(frame)
    assert verdict.layers and all(v.status is Status.VALID for v in verdict.layers), \
        verdict.summary()


@BOUNDED
@given(nested_frames(), st.data())
def test_nested_frames_cut_anywhere_are_never_invalid(frame, data):
    cut = data.draw(st.integers(0, len(frame)))
    [verdict] = judged(frame[:cut])
    assert not verdict.invalid, verdict.summary()


@BOUNDED
@given(nested_frames(), st.lists(st.tuples(st.integers(0, 2**16), U8), min_size=1, max_size=4),
       st.one_of(st.none(), VNET_HEADERS), st.booleans())
def test_mutated_nested_frames_with_any_vnet_header_never_raise(frame, changes, vnet, not_ready):
    mutated = bytearray(frame)
    for where, value in changes:
        mutated[where % len(mutated)] = value
    judged(bytes(mutated), vnet, not_ready)


# --- GSO through nested tunnels ---------------------------------------------------------

@st.composite
def tcp_super_packets(draw):
    """A TSO super-packet inside 0–3 tunnels as the stack hands it over: the inner
    TCP checksum holds its seed for the whole length, tunnel UDP checksums are
    zero, GRE checksums anything (segmentation recomputes them)."""
    family = draw(st.sampled_from([4, 6]))
    payload = draw(st.binary(min_size=1, max_size=3000))
    src, dst = (A4, B4) if family == 4 else (A6, B6)
    seed = fold((pseudo_sum_v4 if family == 4 else pseudo_sum_v6)(src, dst, 6, 20 + len(payload)))
    tcp = TCP(sport=40000, dport=5001, seq=draw(st.integers(0, 2**32 - 1)), flags="PA",
              chksum=seed) / payload
    b = Built(bytes((IP(src=src, dst=dst, flags="DF") if family == 4 else IPv6(src=src, dst=dst))
                    / tcp), "ip", family)
    for _ in range(draw(st.integers(0, 3))):
        outer = draw(st.sampled_from([4, 6]))
        tunnel = draw(st.sampled_from(["vxlan", "geneve", "gre", "ipip"]))
        if tunnel in ("vxlan", "geneve"):
            frame = as_frame(b, draw(st.integers(0, 2)))
            head = VXLAN(vni=1, flags=0x08) if tunnel == "vxlan" else GENEVE(proto=0x6558)
            b = Built(bytes(ip_over(outer, 17, UDP(sport=1, dport=4789 if tunnel == "vxlan"
                                                   else 6081, chksum=0) / head
                                    / Raw(frame.data))), "ip", outer)
        elif tunnel == "gre":
            b = wrap_gre(b, outer, draw(st.booleans()), draw(st.booleans()), False,
                         draw(st.booleans()))
        else:
            b = wrap_ip_in_ip(b, outer)
    frame = as_frame(b).data
    start = len(frame) - len(tcp)
    kind = VIRTIO_NET_HDR_GSO_TCPV4 if family == 4 else VIRTIO_NET_HDR_GSO_TCPV6
    vnet = VnetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type=kind, csum_start=start,
                   csum_offset=16, gso_size=draw(st.integers(1, 1500)))
    return frame, vnet, payload


@settings(BOUNDED, max_examples=100)
@given(tcp_super_packets())
def test_tso_through_nested_tunnels_gives_valid_segments_that_carry_the_payload(case):
    frame, vnet, payload = case
    verdicts = judged(frame, vnet)
    assert all(v.ok and not v.unchecked and v.segment for v in verdicts), verdicts[0].summary()
    hdr_end = vnet.csum_start + 20
    assert b"".join(v.frame[hdr_end:] for v in verdicts) == payload


@settings(BOUNDED, max_examples=20)
@given(tcp_super_packets())
def test_segmenting_sums_no_checksum_of_the_super_packet(case):
    """GSO super-packets are cut before deep dissection: locating the L4 to cut
    reads headers only."""
    frame, vnet, _ = case
    expected = segment(frame, vnet)
    dissector = importlib.import_module("topologies.verdict.dissect")
    with mock.patch.object(dissector, "ones_sum", side_effect=AssertionError("summed")):
        assert segment(frame, vnet) == expected


# --- nesting deeper than MAX_NESTING ---------------------------------------------------

def nested_quotes(levels: int) -> bytes:
    b = Built(bytes(IP(src=A4, dst=B4) / UDP(sport=1, dport=2) / b"x"), "ip")
    for _ in range(levels):
        b = wrap_quote(b, 4)
    return as_frame(b).data


def nested_vxlan(levels: int) -> bytes:
    b = Built(bytes(IP(src=A4, dst=B4) / UDP(sport=1, dport=2) / b"x"), "ip")
    for _ in range(levels):
        b = wrap_udp_tunnel(b, 4, 4789, False, 0)
    return as_frame(b).data


def nested_gre(levels: int) -> bytes:
    b = Built(bytes(IP(src=A4, dst=B4) / UDP(sport=1, dport=2) / b"x"), "ip")
    for _ in range(levels):
        b = wrap_gre(b, 4, True, False, False, False)
    return as_frame(b).data


def nested_ipip(levels: int) -> bytes:
    b = Built(bytes(IP(src=A4, dst=B4) / UDP(sport=1, dport=2) / b"x"), "ip")
    for _ in range(levels):
        b = wrap_ip_in_ip(b, 4)
    return as_frame(b).data


# name: (builder of N levels, the path of one level, the layer judged once per level)
NESTINGS = {
    "icmp_quotes": (nested_quotes, "icmp/quote/", "icmp"),
    "vxlan": (nested_vxlan, "vxlan/", "udp"),
    "gre_with_checksum": (nested_gre, "gre/", "gre"),
    "ipip": (nested_ipip, "ipip/", "ipv4"),
}


@pytest.mark.parametrize("name", NESTINGS)
def test_300_nested_layers_are_not_checkable_below_the_bound_never_a_recursion_error(name):
    build, level, per_level = NESTINGS[name]
    frame = build(300)
    [verdict] = judged(frame)
    [deep] = verdict.unchecked
    assert deep.reason == NESTING and deep.path == level * MAX_NESTING + level.rstrip("/")
    assert not verdict.invalid
    judged_levels = [v for v in verdict.layers
                     if v.path.endswith(per_level) and v.status is Status.VALID]
    assert len(judged_levels) == MAX_NESTING + 1, verdict.summary()
    assert f"NOT_CHECKABLE {deep.layer} ({NESTING})" in verdict.summary()


@pytest.mark.parametrize("name", NESTINGS)
def test_nesting_up_to_the_bound_is_judged_whole(name):
    build, _, _ = NESTINGS[name]
    [inside] = judged(build(MAX_NESTING))
    assert inside.layers and all(v.status is Status.VALID for v in inside.layers), \
        inside.summary()
    [beyond] = judged(build(MAX_NESTING + 1))
    assert [v.reason for v in beyond.unchecked] == [NESTING]


def test_deep_nesting_inside_a_gso_super_packet_never_raises():
    frame = nested_vxlan(200)
    vnet = VnetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type=VIRTIO_NET_HDR_GSO_TCPV4,
                   gso_size=1000, csum_start=len(frame) - 29, csum_offset=16)
    [verdict] = judged(frame, vnet)
    assert "not segmented" in verdict.layer("offload").reason


LONG_CHAINS = {
    # name: (frame, path, reason)
    "vlan_tags": (bytes(Ether(type=0x8100, **MAC)) + b"\x00\x01\x81\x00" * 2000
                  + bytes(IP(src=A4, dst=B4) / UDP()), "vlan", "more than 16 VLAN tags"),
    "ipv6_extension_headers": (bytes(Ether(type=0x86DD, **MAC))
                               + bytes(IPv6(src=A6, dst=B6, nh=60, plen=8 * 4000))
                               + b"\x3c\x00\x01\x04\x00\x00\x00\x00" * 4000, "ipv6",
                               "more than 16 extension headers"),
}


@pytest.mark.parametrize("name", LONG_CHAINS)
def test_a_long_chain_of_tags_or_extension_headers_is_cut_short_and_says_so(name):
    frame, path, reason = LONG_CHAINS[name]
    [verdict] = judged(frame)
    assert [(v.path, v.reason) for v in verdict.unchecked] == [(path, reason)]
    assert len(verdict.show().splitlines()) < 200
