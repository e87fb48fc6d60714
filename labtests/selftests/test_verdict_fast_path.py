"""The fast path judges the common frame exactly as the dissector does, and a
verdict that keeps how to make its frame and headers gives the same ones as
the eager engine (``wire_frames`` + ``dissect``); a sum taken while completing a
checksum, which verifying takes instead of summing again, is the one it would take."""
from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from test_verdict_fuzz import BOUNDED, U8, U16, VNET_HEADERS, nested_frames

from topologies.verdict import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    PacketVerdict,
    Status,
    VnetHdr,
    complete_partial,
    dissect,
    fold,
    gso,
    ones_sum,
    pseudo_sum_v4,
    pseudo_sum_v6,
    udp_tunnels,
    verify,
    wire_frames,
)
from topologies.verdict.checksum_partial import complete_in_place
from topologies.verdict.fast_path import Plan, judge
from topologies.verdict.gso import Cut

TUNNELS = udp_tunnels()


def same_as_dissector(frame: bytes, link: str = "ether") -> bool:
    """Whether the fast path judged ``frame`` (it agrees with the dissector if so)."""
    fast = judge(frame, link, TUNNELS)
    if fast is not None:
        assert fast == dissect(frame, link).layers
    return fast is not None


@BOUNDED
@given(nested_frames(), st.data())
def test_fast_path_agrees_with_the_dissector_on_frames_cut_anywhere(frame, data):
    same_as_dissector(frame)
    same_as_dissector(frame[:data.draw(st.integers(0, len(frame)))])
    same_as_dissector(frame[14:], "ip")


@BOUNDED
@given(nested_frames(), st.lists(st.tuples(st.integers(0, 2**16), U8), min_size=1, max_size=4))
def test_fast_path_agrees_with_the_dissector_on_mutated_frames(frame, changes):
    mutated = bytearray(frame)
    for where, value in changes:
        mutated[where % len(mutated)] = value
    same_as_dissector(bytes(mutated))


MAC = dict(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
TCP4 = Ether(**MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2) / (b"x" * 3000)
COMMON = [
    TCP4,
    Ether(**MAC) / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=1, dport=2) / b"data",
    Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=3, dport=4789)
    / VXLAN(vni=9, flags=0x08) / TCP4,
]


def test_the_common_frames_take_the_fast_path_bad_checksums_too():
    for pkt in COMMON:
        frame = bytearray(bytes(pkt))
        assert same_as_dissector(bytes(frame))
        frame[-1] ^= 0xFF
        assert same_as_dissector(bytes(frame))


def tso_super_packet() -> tuple[bytes, VnetHdr]:
    frame = bytearray(bytes(TCP4))
    frame[50:52] = b"\x12\x34"   # any seed: segmentation completes it
    return bytes(frame), VnetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                 gso_type=VIRTIO_NET_HDR_GSO_TCPV4, gso_size=1000,
                                 csum_start=34, csum_offset=16)


@BOUNDED
@given(st.one_of(st.none(), VNET_HEADERS))
def test_verdicts_make_the_frames_and_headers_the_eager_engine_makes(vnet):
    frame, tso = tso_super_packet()
    for vnet in (vnet, tso):
        verdicts = verify(frame, vnet)
        wires = wire_frames(frame, vnet)
        assert [v.frame for v in verdicts] == [w.data for w in wires]
        for verdict, wire in zip(verdicts, wires):
            assert verdict.layers == list(wire.issues) + dissect(wire.data).layers
            shown = verdict.show()
            assert [(h.kind, h.offset, h.fields) for h in verdict.headers] == \
                [(h.kind, h.offset, h.fields) for h in dissect(wire.data).headers]
            assert verdict.show() == shown and verdict == verdict
            assert replace(verdict, segment=None).summary().startswith(
                verdict.summary().split(" | ")[0])


def slow_sum(data: bytes) -> int:
    """RFC 1071 word by word, folded as ``fold`` does (0 only for all zeroes)."""
    data = bytes(data) + b"\0" * (len(data) % 2)
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    return fold(total)


@BOUNDED
@given(st.binary(max_size=5000), st.integers(0, 2**17))   # past the kept halvings too
def test_ones_sum_in_pieces_is_the_word_sum(data, initial):
    assert ones_sum(data, initial) == initial + slow_sum(data)


@BOUNDED
@given(st.binary(min_size=2, max_size=2000), st.data())
def test_completing_returns_the_sum_a_verifier_takes_again(data, draw):
    buf = bytearray(data)
    start = draw.draw(st.integers(0, len(buf) - 2))
    offset = draw.draw(st.integers(0, len(buf) - 2 - start))
    # a tail past the field, at an even distance from start
    tail_at = draw.draw(st.sampled_from([None, *range(start + offset + 2 + offset % 2,
                                                      len(buf) + 1, 2)]))
    tail = None if tail_at is None else (tail_at, slow_sum(buf[tail_at:]))
    total = complete_in_place(buf, start, offset, tail)
    assert bytes(buf) == complete_partial(data, start, offset)
    assert total == (None if offset % 2 else slow_sum(buf[start:]))


VXLAN_TSO = (Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=3, dport=4789)
             / VXLAN(vni=9, flags=0x08) / TCP4)


def test_a_tunnel_segment_is_judged_as_the_dissector_judges_it():
    frame = bytearray(bytes(VXLAN_TSO))
    frame[40:42] = b"\x12\x34"   # outer UDP and inner TCP: seeds, completed per segment
    frame[100:102] = b"\x56\x78"
    vnet = VnetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type=VIRTIO_NET_HDR_GSO_TCPV4,
                   gso_size=1000, csum_start=84, csum_offset=16)
    verdicts = verify(bytes(frame), vnet)
    assert len(verdicts) == 3
    for verdict in verdicts:
        assert verdict.layers == dissect(verdict.frame).layers
        assert [v.path for v in verdict.layers] == ["ipv4", "udp", "vxlan/ipv4", "vxlan/tcp"]


# --- segments: a plan per shape of super-packet ----------------------------------------

def seeded(net, l4, length: int) -> int:
    """The pseudo-header seed a stack leaves in a pending L4 checksum."""
    proto = 6 if l4 == "tcp" else 17
    if net.version == 4:
        return fold(pseudo_sum_v4(net.src, net.dst, proto, length))
    return fold(pseudo_sum_v6(net.src, net.dst, proto, length))


@st.composite
def super_packets(draw, family=None, tunnel=None):
    """A GSO super-packet as the stack hands one over, its vnet header, and
    whether its seeds are right: TCP (or UDP: USO) over IPv4 or IPv6, plain or
    in VXLAN whose outer UDP checksum is seeded or zero; the inner IPv4
    checksum anything (GSO writes it anew), any flags, ids, sizes (odd ones
    too) and gso_size (up to 64 segments: more only repeat the same steps)."""
    family = family or draw(st.sampled_from([4, 6]))
    tunnel = draw(st.booleans()) if tunnel is None else tunnel
    tcp = not tunnel and draw(st.booleans()) or tunnel
    payload = draw(st.binary(min_size=1, max_size=2500))
    if family == 4:
        net = IP(src="10.0.0.1", dst="10.0.0.2", id=draw(U16), flags="DF",
                 chksum=draw(st.one_of(st.none(), U16)))
    else:
        net = IPv6(src="fd00::1", dst="fd00::2")
    l4 = (TCP(sport=40000, dport=5001, seq=draw(st.integers(0, 2**32 - 1)), ack=7, window=500,
              flags=draw(st.sampled_from(["A", "PA", "FPA", "SAC", "FPAEC"])))
          if tcp else UDP(sport=4433, dport=443))
    length = len(l4 / payload)
    wrong = draw(st.sampled_from([0, 0, 1]))
    l4.chksum = seeded(net, "tcp" if tcp else "udp", length) ^ wrong
    inner = Ether(**MAC) / net / l4 / payload
    start = 14 + len(net) - len(net.payload)
    if tunnel:
        outer = IP(src="192.0.2.1", dst="192.0.2.2", id=draw(U16))
        udp = UDP(sport=draw(st.integers(1024, 65535)), dport=4789)
        outer_wrong = draw(st.sampled_from([0, 0, 0x100]))
        udp.chksum = draw(st.sampled_from([0, seeded(outer, "udp", 16 + len(inner)) ^ outer_wrong]))
        wrong |= udp.chksum and outer_wrong
        inner = Ether(**MAC) / outer / udp / VXLAN(vni=9, flags=0x08) / inner
        start += 50
    kinds = {4: VIRTIO_NET_HDR_GSO_TCPV4, 6: VIRTIO_NET_HDR_GSO_TCPV6}
    vnet = VnetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM,
                   gso_type=kinds[family] if tcp else VIRTIO_NET_HDR_GSO_UDP_L4,
                   gso_size=draw(st.integers(-(-len(payload) // 64), 1500)), csum_start=start,
                   csum_offset=16 if tcp else 6)
    return bytes(inner), vnet, not wrong


def judged_as_dissected(frame: bytes, vnet: VnetHdr) -> list[PacketVerdict]:
    """``verify``'s verdicts, each the dissector's on its frame (after what
    nslab could not do to it, if anything)."""
    verdicts = verify(frame, vnet)
    for verdict in verdicts:
        issues = [v for v in verdict.layers if v.path == "offload"]
        assert verdict.layers == issues + dissect(verdict.frame).layers
    return verdicts


@BOUNDED
@given(super_packets(), super_packets())
def test_segments_judged_by_a_plan_agree_with_the_dissector(first, second):
    """The first super-packet of a shape makes its plan; later ones of the same
    shape (other ids, sequence numbers, sizes, seeds, flags) take it."""
    gso._shapes.clear()
    for frame, vnet, right in (first, second, first):
        assert all(v.ok for v in judged_as_dissected(frame, vnet)) == right


@settings(BOUNDED, max_examples=50)
@given(st.data())
def test_a_flows_super_packets_share_one_shape_and_plan(data):
    family = data.draw(st.sampled_from([4, 6]))
    first, second = (data.draw(super_packets(family, tunnel=True))[:2] for _ in range(2))
    gso._shapes.clear()
    cuts = []
    for frame, vnet in (first, second):
        udp = frame[40:42]   # the same sport, and a zero or non-zero seed, in both
        vnet = replace(vnet, gso_size=first[1].gso_size)
        frame = frame[:34] + first[0][34:36] + frame[36:40] + (
            udp if (udp == b"\0\0") == (first[0][40:42] == b"\0\0") else first[0][40:42]) \
            + frame[42:]
        judged_as_dissected(frame, vnet)
        cuts.append(Cut(frame, vnet, "ether", TUNNELS))
    assert cuts[0].shape is cuts[1].shape
    assert isinstance(cuts[0].shape.plan, Plan) == (first[0][40:42] != b"\0\0")


def test_a_different_shape_is_located_again():
    gso._shapes.clear()
    frame = bytearray(bytes(VXLAN_TSO))
    frame[40:42] = b"\x12\x34"
    vnet = VnetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type=VIRTIO_NET_HDR_GSO_TCPV4,
                   gso_size=1000, csum_start=84, csum_offset=16)
    shape = Cut(bytes(frame), vnet, "ether", TUNNELS).shape
    other_port, zero_seed, padded = bytearray(frame), bytearray(frame), bytes(frame) + b"\0"
    other_port[36:38] = b"\x12\xb6"   # 4790: no tunnel, so no inner TCP to segment
    zero_seed[40:42] = b"\0\0"        # no outer UDP checksum: segments take none
    assert not shape.matches(bytes(other_port)) and not shape.matches(bytes(zero_seed))
    assert not shape.matches(padded)  # lengths no longer reach the end
    assert Cut(bytes(zero_seed), vnet, "ether", TUNNELS).shape is not shape
    for changed in (other_port, zero_seed, padded):
        judged_as_dissected(bytes(changed), vnet)


@pytest.mark.parametrize("outer_seeded", [True, False])
@pytest.mark.parametrize("inner_seeded", [True, False])
def test_segments_of_vxlan_in_vxlan_complete_each_tunnels_checksum(outer_seeded, inner_seeded):
    """An inner tunnel's UDP checksum, when seeded, is the outer one's tail; when
    zero, it lies between them and the outer one sums its bytes."""
    tcp = IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1, dport=2, flags="PA") / (b"y" * 2999)
    tcp[TCP].chksum = seeded(tcp, "tcp", len(tcp[TCP]))
    frame = Ether(**MAC) / tcp
    for seeded_udp in (inner_seeded, outer_seeded):
        outer = IP(src="192.0.2.1", dst="192.0.2.2")
        udp = UDP(sport=7, dport=4789, chksum=0)
        if seeded_udp:
            udp.chksum = seeded(outer, "udp", 16 + len(frame))
        frame = Ether(**MAC) / outer / udp / VXLAN(vni=9, flags=0x08) / frame
    vnet = VnetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type=VIRTIO_NET_HDR_GSO_TCPV6,
                   gso_size=999, csum_start=2 * 50 + 54, csum_offset=16)
    verdicts = judged_as_dissected(bytes(frame), vnet)
    assert len(verdicts) == 4 and all(v.ok for v in verdicts)
    expected = {"udp": outer_seeded, "vxlan/udp": inner_seeded}
    assert {v.path: v.status is Status.VALID for v in verdicts[0].layers
            if v.path in expected} == expected
