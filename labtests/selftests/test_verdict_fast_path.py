"""The fast path judges the common frame exactly as the dissector does, and a
verdict that keeps how to make its frame and headers gives the same ones as
the eager engine (``wire_frames`` + ``dissect``); a sum taken while completing a
checksum, which verifying takes instead of summing again, is the one it would take."""
from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from test_verdict_fuzz import BOUNDED, U8, VNET_HEADERS, nested_frames

from topologies.verdict import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VnetHdr,
    complete_partial,
    dissect,
    fold,
    ones_sum,
    udp_tunnels,
    verify,
    wire_frames,
)
from topologies.verdict.checksum_partial import complete_in_place
from topologies.verdict.fast_path import judge

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
@given(st.binary(max_size=2000), st.integers(0, 2**17))
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
