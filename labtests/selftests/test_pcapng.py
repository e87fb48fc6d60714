"""The pcapng writer: files read back identically and open in tshark, whose own
checksum validation agrees with the verdict engine's."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

from topologies.capture import pcapng
from topologies.verdict import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
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
