"""A minimal pcapng writer (and a reader for tests), enough for Wireshark.

One section header, one interface description per capture point (if_name,
link type, microsecond timestamps) and enhanced packet blocks, each with an
optional ``opt_comment`` (nslab notes there what it completed or segmented).
Layout from draft-ietf-opsawg-pcapng; written little-endian.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Optional

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101          # frames that start at the IP header

SHB_TYPE, IDB_TYPE, EPB_TYPE = 0x0A0D0D0A, 0x00000001, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_ENDOFOPT, OPT_COMMENT = 0, 1
SHB_USERAPPL = 4
IF_NAME, IF_TSRESOL = 2, 9
TSRESOL_MICROSECONDS = 6    # 10**-6 s


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _options(options: list[tuple[int, bytes]]) -> bytes:
    if not options:
        return b""
    out = b"".join(struct.pack("<HH", code, len(value)) + _pad4(value)
                   for code, value in options)
    return out + struct.pack("<HH", OPT_ENDOFOPT, 0)


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


class Writer:
    """``with Writer(path) as out: i = out.add_interface("ns1:eth0");
    out.write_packet(i, time.time(), frame, comment="...")``"""

    def __init__(self, path: str):
        self.path = path
        self._file: Optional[BinaryIO] = None
        self._interfaces = 0

    def __enter__(self) -> "Writer":
        self._file = open(self.path, "wb")
        body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)   # section length unknown
        self._file.write(_block(SHB_TYPE, body + _options([(SHB_USERAPPL, b"nslab")])))
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def add_interface(self, name: str, linktype: int = LINKTYPE_ETHERNET,
                      snaplen: int = 0) -> int:
        """Returns the interface id packets refer to."""
        body = struct.pack("<HHI", linktype, 0, snaplen) + _options(
            [(IF_NAME, name.encode()), (IF_TSRESOL, bytes([TSRESOL_MICROSECONDS]))])
        self._file.write(_block(IDB_TYPE, body))
        self._interfaces += 1
        return self._interfaces - 1

    def write_packet(self, interface: int, timestamp: float, data: bytes,
                     comment: Optional[str] = None,
                     original_length: Optional[int] = None) -> None:
        """``timestamp`` in seconds since the epoch, stored in microseconds."""
        if not 0 <= interface < self._interfaces:
            raise ValueError(f"unknown interface id {interface}")
        usec = round(timestamp * 1_000_000)
        body = struct.pack("<IIIII", interface, usec >> 32, usec & 0xFFFFFFFF, len(data),
                           len(data) if original_length is None else original_length)
        opts = [(OPT_COMMENT, comment.encode())] if comment else []
        self._file.write(_block(EPB_TYPE, body + _pad4(bytes(data)) + _options(opts)))


@dataclass
class Interface:
    name: str
    linktype: int


@dataclass
class Packet:
    interface: int
    timestamp_us: int
    data: bytes
    original_length: int
    comments: list[str] = field(default_factory=list)


@dataclass
class PcapngFile:
    interfaces: list[Interface] = field(default_factory=list)
    packets: list[Packet] = field(default_factory=list)


def read(path: str) -> PcapngFile:
    """Read back the block types ``Writer`` produces (others are skipped)."""
    with open(path, "rb") as f:
        raw = f.read()
    out, pos, order = PcapngFile(), 0, "<"
    while pos + 12 <= len(raw):
        block_type = struct.unpack_from("<I", raw, pos)[0]
        if block_type == SHB_TYPE:
            order = "<" if struct.unpack_from("<I", raw, pos + 8)[0] == BYTE_ORDER_MAGIC else ">"
        total = struct.unpack_from(order + "I", raw, pos + 4)[0]
        body = raw[pos + 8:pos + total - 4]
        if block_type == IDB_TYPE:
            linktype = struct.unpack_from(order + "H", body)[0]
            names = [v.decode() for code, v in _parse_options(body[8:], order) if code == IF_NAME]
            out.interfaces.append(Interface(names[0] if names else "", linktype))
        elif block_type == EPB_TYPE:
            iface, high, low, caplen, origlen = struct.unpack_from(order + "IIIII", body)
            data = body[20:20 + caplen]
            comments = [v.decode() for code, v in
                        _parse_options(body[20 + caplen + (-caplen % 4):], order)
                        if code == OPT_COMMENT]
            out.packets.append(Packet(iface, (high << 32) | low, data, origlen, comments))
        pos += total
    return out


def _parse_options(data: bytes, order: str) -> list[tuple[int, bytes]]:
    options, pos = [], 0
    while pos + 4 <= len(data):
        code, length = struct.unpack_from(order + "HH", data, pos)
        if code == OPT_ENDOFOPT:
            break
        options.append((code, data[pos + 4:pos + 4 + length]))
        pos += 4 + length + (-length % 4)
    return options
