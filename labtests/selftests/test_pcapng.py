"""The pcapng writer: files read back identically and open in tshark, whose own
checksum validation agrees with the verdict engine's; a capture is written as
two views of each frame (as captured, and the wire frames nslab judged); the
writer never raises on any frame, vnet header, comment or timestamp."""
from __future__ import annotations

import math
import re
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

from topologies.capture import pcapng
from topologies.capture.af_packet import (
    CAPTURED_VIEW,
    TP_STATUS_CSUMNOTREADY,
    WIRE_VIEW,
    Captured,
    CaptureResult,
)
from topologies.verdict import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_TCPV4,
    Status,
    VnetHdr,
    fold,
    pseudo_sum_v4,
    verify,
)

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None,
                                  reason="tshark not installed (apt-get install -y tshark)")

ETH = dict(dst="13:37:13:37:13:37", src="de:ad:be:ef:de:ef")
T0 = 1_700_000_000.123456


def frame(l3, **fields):
    pkt = Ether(**ETH) / l3
    for layer, values in fields.items():
        for name, value in values.items():
            setattr(pkt[layer], name, value)
    return bytes(pkt)


# name: (frame, the layer path judged, the tshark field holding its status)
FRAMES = {
    "udp-good": (frame(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"ok"),
                 "udp", "udp.checksum.status"),
    "udp-bad": (frame(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"ok",
                      UDP={"chksum": 0xBAD1}), "udp", "udp.checksum.status"),
    "tcp-good": (frame(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2) / b"data"),
                 "tcp", "tcp.checksum.status"),
    "tcp-bad": (frame(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2) / b"data",
                      TCP={"chksum": 0xBAD2}), "tcp", "tcp.checksum.status"),
    "icmp-bad": (frame(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP() / b"ping",
                       ICMP={"chksum": 0xBAD3}), "icmp", "icmp.checksum.status"),
    "ip-bad": (frame(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2),
                     IP={"chksum": 0xBAD4}), "ipv4", "ip.checksum.status"),
}
TSHARK_STATUS = {Status.VALID: "1", Status.INVALID: "0"}   # tshark: 1 good, 0 bad


def test_round_trip(tmp_path):
    path = str(tmp_path / "t.pcapng")
    with pcapng.Writer(path) as out:
        a = out.add_interface("client:eth0")
        b = out.add_interface("client:ip0", pcapng.LINKTYPE_RAW)
        out.write_packet(a, T0, b"\x01" * 61, comment="odd length, padded on disk")
        out.write_packet(b, T0 + 1, b"\x45" + bytes(19), original_length=1500)
    back = pcapng.read(path)
    assert [(i.name, i.linktype) for i in back.interfaces] == [
        ("client:eth0", pcapng.LINKTYPE_ETHERNET), ("client:ip0", pcapng.LINKTYPE_RAW)]
    first, second = back.packets
    assert (first.interface, first.timestamp_us, first.data, first.comments) == (
        0, 1_700_000_000_123_456, b"\x01" * 61, ["odd length, padded on disk"])
    assert (second.interface, second.original_length, second.comments) == (1, 1500, [])
    with open(path, "rb") as f:
        assert len(f.read()) % 4 == 0


def test_packet_for_an_unknown_interface_is_refused(tmp_path):
    with pcapng.Writer(str(tmp_path / "t.pcapng")) as out:
        with pytest.raises(ValueError, match="unknown interface"):
            out.write_packet(0, T0, b"x")


def tshark(path, *fields, prefs=()):
    argv = ["tshark", "-r", path, "-T", "fields"]
    for pref in prefs:
        argv += ["-o", pref]
    for name in fields:
        argv += ["-e", name]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


@needs_tshark
def test_tshark_reads_interfaces_timestamps_and_comments(tmp_path):
    path = str(tmp_path / "t.pcapng")
    with pcapng.Writer(path) as out:
        iface = out.add_interface("server:eth0")
        for n, (data, _, _) in enumerate(FRAMES.values()):
            out.write_packet(iface, T0 + n, data, comment=f"frame {n}")
    rows = tshark(path, "frame.interface_name", "frame.time_epoch", "frame.comment")
    assert [r[0] for r in rows] == ["server:eth0"] * len(FRAMES)
    assert [r[2] for r in rows] == [f"frame {n}" for n in range(len(FRAMES))]
    assert rows[0][1].startswith("1700000000.123456")


@needs_tshark
def test_tshark_checksum_validation_agrees_with_the_verdicts(tmp_path):
    path = str(tmp_path / "t.pcapng")
    with pcapng.Writer(path) as out:
        iface = out.add_interface("server:eth0")
        for data, _, _ in FRAMES.values():
            out.write_packet(iface, T0, data)
    fields = sorted({f for _, _, f in FRAMES.values()})
    rows = tshark(path, *fields, prefs=("ip.check_checksum:TRUE", "udp.check_checksum:TRUE",
                                        "tcp.check_checksum:TRUE"))
    assert len(rows) == len(FRAMES)
    for row, (name, (data, layer, field)) in zip(rows, FRAMES.items()):
        [verdict] = verify(data)
        ours = TSHARK_STATUS[verdict.layer(layer).status]
        assert row[fields.index(field)] == ours, (name, dict(zip(fields, row)))


@needs_tshark
def test_completed_wire_frame_and_its_comment_in_tshark(tmp_path):
    """A frame captured with its UDP checksum pending is written as the wire
    would carry it, with nslab's note of what it completed."""
    src, dst = "10.0.0.1", "10.0.0.2"
    pending = frame(IP(src=src, dst=dst) / UDP(sport=1, dport=2) / b"pending",
                    UDP={"chksum": fold(pseudo_sum_v4(src, dst, 17, 15))})
    vnet = VnetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start=34, csum_offset=6)
    [verdict] = verify(pending, vnet)
    path = str(tmp_path / "t.pcapng")
    with pcapng.Writer(path) as out:
        iface = out.add_interface("client:eth0")
        out.write_packet(iface, T0, verdict.frame, comment=str(verdict.completion))
    [row] = tshark(path, "frame.comment", "udp.checksum.status",
                   prefs=("udp.check_checksum:TRUE",))
    c = verdict.completion
    assert row == [f"nslab completed pending checksum at offset 40: "
                   f"0x{c.before:04x} -> 0x{c.after:04x}", "1"]


# -- both views of a capture ------------------------------------------------------------
SRC, DST = "10.0.0.1", "10.0.0.2"
TP_STATUS_USER = 1
PENDING_UDP_VNET = VnetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start=34, csum_offset=6)
SUPER_PACKET_VNET = VnetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type=VIRTIO_NET_HDR_GSO_TCPV4,
                            hdr_len=54, gso_size=1448, csum_start=34, csum_offset=16)


def pending_udp_frame() -> bytes:
    """A UDP datagram as CHECKSUM_PARTIAL leaves it: the checksum holds the seed."""
    return frame(IP(src=SRC, dst=DST) / UDP(sport=1, dport=2) / b"pending",
                 UDP={"chksum": fold(pseudo_sum_v4(SRC, DST, 17, 15))})


def tcp_super_packet(payload: int = 3000) -> bytes:
    """A TCP GSO super-packet of ``payload`` bytes, its checksum the seed."""
    return frame(IP(src=SRC, dst=DST) / TCP(sport=1, dport=2, flags="PA") / bytes(payload),
                 TCP={"chksum": fold(pseudo_sum_v4(SRC, DST, 6, 20 + payload))})


def captured(data: bytes, vnet: VnetHdr, *, outgoing: bool, timestamp: float = T0,
             status: int = TP_STATUS_USER | TP_STATUS_CSUMNOTREADY,
             orig_len: int = 0) -> Captured:
    return Captured(timestamp, data, vnet, status, outgoing, orig_len or len(data))


def written(tmp_path, packets: list[Captured], name: str = "t.pcapng"):
    result = CaptureResult("eth0", "client", packets)
    path = result.write_pcapng(str(tmp_path / name))
    return path, pcapng.read(path)


def test_capture_is_written_as_two_views(tmp_path):
    udp, tcp = pending_udp_frame(), tcp_super_packet()
    path, back = written(tmp_path, [
        captured(udp, PENDING_UDP_VNET, outgoing=True),
        captured(tcp, SUPER_PACKET_VNET, outgoing=False, timestamp=T0 + 1)])
    assert [i.name for i in back.interfaces] == [CAPTURED_VIEW.format("client:eth0"),
                                                 WIRE_VIEW.format("client:eth0")]
    assert all(i.description for i in back.interfaces)
    segments = verify(tcp, SUPER_PACKET_VNET, True)
    assert len(segments) == 3
    # file order: each captured frame, then its wire frames; Wireshark numbers from 1
    assert [(p.interface, p.direction, p.timestamp_us) for p in back.packets] == (
        [(0, "out", 1_700_000_000_123_456), (1, "out", 1_700_000_000_123_456)]
        + [(0, "in", 1_700_000_001_123_456)] + [(1, "in", 1_700_000_001_123_456)] * 3)
    assert [p.data for p in back.on(0)] == [udp, tcp]
    assert [p.data for p in back.on(1)] == [verify(udp, PENDING_UDP_VNET)[0].frame] + [
        s.frame for s in segments]


# what each frame's comment says: the captured view its vnet header and auxdata,
# the wire view what nslab did and its verdict; each names the other's frames
PENDING_UDP_COMMENTS = [
    "as captured, outbound | vnet hdr: flags=0x01 (NEEDS_CSUM) gso_type=0x00 (NONE) "
    "gso_size=0 hdr_len=0 csum_start=34 csum_offset=6 | "
    "auxdata: tp_status=0x9 (TP_STATUS_USER|TP_STATUS_CSUMNOTREADY) | wire view: frame 2",
    "wire, outbound, from frame 1 | nslab completed pending checksum at offset 40: "
    "0x1423 -> 0x3c92 | verdict: VALID IPv4, UDP",
]
SUPER_PACKET_COMMENTS = [
    "as captured, inbound | vnet hdr: flags=0x01 (NEEDS_CSUM) gso_type=0x01 (TCPV4) "
    "gso_size=1448 hdr_len=54 csum_start=34 csum_offset=16 | "
    "auxdata: tp_status=0x9 (TP_STATUS_USER|TP_STATUS_CSUMNOTREADY) | wire view: frames 2-4",
    *(f"wire, inbound, from frame 1 | nslab completed pending checksum at offset 50: "
      f"0x{{before:04x}} -> 0x{{after:04x}} | GSO TCPV4 segment {n}/3 (gso_size 1448) | "
      f"verdict: VALID IPv4, TCP" for n in (1, 2, 3)),
]


def test_comments_carry_the_vnet_header_and_what_nslab_did(tmp_path):
    _, back = written(tmp_path, [captured(pending_udp_frame(), PENDING_UDP_VNET, outgoing=True)])
    assert [p.comments for p in back.packets] == [[c] for c in PENDING_UDP_COMMENTS]
    tcp = tcp_super_packet()
    _, back = written(tmp_path, [captured(tcp, SUPER_PACKET_VNET, outgoing=False)], "gso.pcapng")
    completions = [s.completion for s in verify(tcp, SUPER_PACKET_VNET, True)]
    expected = SUPER_PACKET_COMMENTS[:1] + [
        text.format(before=c.before, after=c.after)
        for text, c in zip(SUPER_PACKET_COMMENTS[1:], completions)]
    assert [p.comments for p in back.packets] == [[c] for c in expected]


def test_a_truncated_capture_keeps_its_original_length(tmp_path):
    udp = pending_udp_frame()
    _, back = written(tmp_path, [captured(udp[:40], PENDING_UDP_VNET, outgoing=False,
                                          orig_len=len(udp))])
    [as_captured] = back.on(0)
    assert as_captured.original_length == len(udp)
    assert f"truncated: 40 of {len(udp)} bytes captured" in as_captured.comments[0]


@needs_tshark
def test_tshark_shows_the_pending_checksum_on_one_view_and_the_wire_on_the_other(tmp_path):
    path, _ = written(tmp_path, [captured(pending_udp_frame(), PENDING_UDP_VNET, outgoing=True)])
    rows = tshark(path, "frame.interface_name", "frame.comment",
                  "frame.packet_flags_direction", "udp.checksum.status",
                  prefs=("udp.check_checksum:TRUE",))
    assert rows == [
        [CAPTURED_VIEW.format("client:eth0"), PENDING_UDP_COMMENTS[0], "0x00000002", "0"],
        [WIRE_VIEW.format("client:eth0"), PENDING_UDP_COMMENTS[1], "0x00000002", "1"]]


# -- the writer never raises --------------------------------------------------------------
BOUNDED = settings(max_examples=200, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
U8, U16, U32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 2 ** 32 - 1)
# any unicode, lone surrogates included (UTF-8 cannot encode them)
TEXT = st.text(alphabet=st.one_of(st.characters(), st.characters(categories=["Cs"])),
               max_size=300)


@st.composite
def long_bytes(draw, max_size: int = 70000) -> bytes:
    """Up to ``max_size`` bytes: a drawn pattern repeated, cheap to generate."""
    pattern = draw(st.binary(min_size=1, max_size=64))
    size = draw(st.integers(0, max_size))
    return (pattern * (size // len(pattern) + 1))[:size]


ANY_FRAMES = st.one_of(st.binary(max_size=200), long_bytes(),
                   st.integers(0, 3000).map(tcp_super_packet), st.just(pending_udp_frame()))
TIMESTAMPS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                       st.integers(-2 ** 70, 2 ** 70), st.just(T0))
VNET_HEADERS = st.one_of(
    st.builds(VnetHdr, flags=U8, gso_type=U8, hdr_len=U16, csum_start=U16, csum_offset=U16,
              gso_size=st.one_of(st.integers(0, 64), st.integers(500, 1500), U16)),
    st.just(PENDING_UDP_VNET), st.builds(lambda size: VnetHdr(
        flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type=VIRTIO_NET_HDR_GSO_TCPV4, hdr_len=54,
        gso_size=size, csum_start=34, csum_offset=16), st.integers(8, 1500)))
CAPTURES = st.lists(st.builds(Captured, timestamp=st.floats(0, 2 ** 33), frame=ANY_FRAMES,
                              vnet=VNET_HEADERS, status=U32, outgoing=st.booleans(),
                              orig_len=U32), max_size=4)
PACKETS = st.lists(st.tuples(ANY_FRAMES, st.one_of(st.none(), TEXT, st.lists(TEXT, max_size=3)),
                             TIMESTAMPS, st.one_of(st.none(), U32),
                             st.sampled_from([None, "in", "out"])), max_size=5)


def expected_microseconds(timestamp) -> int:
    usec = timestamp * 1_000_000
    if isinstance(usec, float) and not math.isfinite(usec):
        return 2 ** 64 - 1 if usec > 0 else 0
    return min(max(round(usec), 0), 2 ** 64 - 1)


@BOUNDED
@given(TEXT, PACKETS)
def test_writer_never_raises_and_reads_back(tmp_path_factory, name, packets):
    path = str(tmp_path_factory.mktemp("w") / "t.pcapng")
    with pcapng.Writer(path) as out:
        iface = out.add_interface(name, description=name)
        for data, comment, timestamp, original_length, direction in packets:
            out.write_packet(iface, timestamp, data, comment, original_length, direction)
    back = pcapng.read(path)
    assert [(i.name, i.description) for i in back.interfaces] == [
        (pcapng.written_text(name), pcapng.written_text(name))]
    assert len(back.packets) == len(packets)
    for got, (data, comment, timestamp, original_length, direction) in zip(back.packets,
                                                                          packets):
        texts = [comment] if isinstance(comment, str) else comment or []
        assert got.data == data[:pcapng.MAX_PACKET]
        assert got.original_length == max(len(got.data), min(
            len(data) if original_length is None else original_length, 2 ** 32 - 1))
        assert got.comments == [pcapng.written_text(t) for t in texts if t]
        assert got.timestamp_us == expected_microseconds(timestamp)
        assert got.direction == direction


def test_text_is_made_to_fit():
    assert pcapng.written_text("plain, é, 🦈") == "plain, é, 🦈"
    assert pcapng.written_text("lone \ud800 surrogate") == "lone \ufffd surrogate"
    cut = pcapng.written_text("é" * 40000)        # 80000 bytes in UTF-8
    assert cut.endswith(pcapng.CUT_MARK) and len(cut.encode()) <= pcapng.MAX_OPTION
    assert set(cut[:-len(pcapng.CUT_MARK)]) == {"é"}


def check_capture_file(path: str, packets: list[Captured]) -> pcapng.PcapngFile:
    """Each captured frame once on the first interface; its wire frames, as
    judged, on the second; same timestamp and direction on both."""
    back = pcapng.read(path)
    assert [p.data for p in back.on(0)] == [p.frame for p in packets]
    assert [p.data for p in back.on(1)] == [v.frame for p in packets for v in p.verdicts()]
    number = 0
    for pkt in packets:
        wire = pkt.verdicts()
        view = back.packets[number:number + 1 + len(wire)]
        assert [p.interface for p in view] == [0] + [1] * len(wire)
        assert {(p.timestamp_us, p.direction) for p in view} == {
            (round(pkt.timestamp * 1e6), "out" if pkt.outgoing else "in")}
        assert view[0].original_length == max(pkt.orig_len, len(pkt.frame))
        assert re.search(f"csum_start={pkt.vnet.csum_start} ", view[0].comments[0])
        assert all(p.comments[0].endswith(v.summary().split(" | ")[0])
                   for p, v in zip(view[1:], wire))
        number += len(view)
    return back


@BOUNDED
@given(CAPTURES)
def test_any_capture_is_written_with_both_views(tmp_path_factory, packets):
    path, _ = written(tmp_path_factory.mktemp("c"), packets)
    check_capture_file(path, packets)


@needs_tshark
@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(CAPTURES)
def test_tshark_reads_any_capture_file(tmp_path_factory, packets):
    path, back = written(tmp_path_factory.mktemp("c"), packets)
    done = subprocess.run(["tshark", "-r", path], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


EDGES = [   # (frame, comment, timestamp, original length): what the writer must make fit
    (b"", "", T0, None),
    (bytes(70000), "a 70000-byte frame", T0, None),
    (bytes(300000), "longer than Wireshark reads: cut", T0, None),
    (b"\x01" * 61, "lone \udc80 surrogate, NUL \0, 🦈", float("nan"), 10),
    (b"\x02" * 8, "é" * 40000, float("-inf"), 2 ** 40),
    (b"\x03" * 8, ["two", "comments"], 2.0 ** 80, None),
]


@needs_tshark
def test_tshark_reads_what_the_writer_made_fit(tmp_path):
    path = str(tmp_path / "edges.pcapng")
    with pcapng.Writer(path) as out:
        iface = out.add_interface("lab:eth0 \ud800")
        for data, comment, timestamp, original_length in EDGES:
            out.write_packet(iface, timestamp, data, comment, original_length, "in")
    rows = tshark(path, "frame.cap_len", "frame.len")
    assert [int(r[0]) for r in rows] == [min(len(e[0]), pcapng.MAX_PACKET) for e in EDGES]
    assert int(rows[2][1]) == 300000
