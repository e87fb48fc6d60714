"""A small pcapng writer (and a reader for tests), enough for Wireshark.

One section header, one interface description per view of a capture point
(if_name, if_description, link type, microsecond timestamps) and enhanced
packet blocks, each with optional comments (``opt_comment``) and a direction
(``epb_flags``: inbound or outbound). Layout from draft-ietf-opsawg-pcapng;
written little-endian.

The writer never raises on what it writes, only on a packet for an interface
it was never given (a programming error). What the format or Wireshark cannot
hold is made to fit, visibly:

- text is UTF-8; what UTF-8 cannot encode (lone surrogates) becomes U+FFFD;
- a text longer than an option holds (65535 bytes) is cut at a character
  boundary and ends in ``CUT_MARK``;
- a frame longer than Wireshark reads (256 KiB) is cut, its original length kept;
- an original length below the bytes written is raised to them;
- a timestamp the format cannot hold (negative, not finite, past 2**64 µs) is
  clamped to 0 or the largest one.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Optional, Union

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101          # frames that start at the IP header

SHB_TYPE, IDB_TYPE, EPB_TYPE = 0x0A0D0D0A, 0x00000001, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_ENDOFOPT, OPT_COMMENT = 0, 1
SHB_USERAPPL = 4
IF_NAME, IF_DESCRIPTION, IF_TSRESOL = 2, 3, 9
EPB_FLAGS = 2
TSRESOL_MICROSECONDS = 6    # 10**-6 s

# epb_flags bits 0-1: the direction a frame went (0: not known)
DIRECTION_FLAGS = {"in": 0b01, "out": 0b10}
DIRECTIONS = {bits: name for name, bits in DIRECTION_FLAGS.items()}

MAX_OPTION = 0xFFFF            # an option's length is 16 bits
MAX_PACKET = 256 * 1024        # Wireshark refuses longer Ethernet frames
MAX_TIMESTAMP = 2 ** 64 - 1    # in units of if_tsresol
MAX_LENGTH = 2 ** 32 - 1
CUT_MARK = " [cut: longer than a pcapng option holds]"
_SURROGATE = re.compile("[\ud800-\udfff]")

Comment = Union[str, Iterable[str], None]


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def encoded_text(text: str) -> bytes:
    """``text`` as an option holds it: UTF-8, surrogates as U+FFFD, cut to fit."""
    raw = _SURROGATE.sub("\ufffd", text).encode()
    if len(raw) <= MAX_OPTION:
        return raw
    mark = CUT_MARK.encode()
    return raw[:MAX_OPTION - len(mark)].decode(errors="ignore").encode() + mark


def written_text(text: str) -> str:
    """What a reader gets back for ``text`` (itself, unless it had to be made to fit)."""
    return encoded_text(text).decode()


def _options(options: list[tuple[int, bytes]]) -> bytes:
    if not options:
        return b""
    out = b"".join(struct.pack("<HH", code, len(value)) + _pad4(value)
                   for code, value in options)
    return out + struct.pack("<HH", OPT_ENDOFOPT, 0)


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def _comments(comment: Comment) -> list[str]:
    """One text or several; empty ones are left out."""
    texts = [comment] if isinstance(comment, str) else list(comment or ())
    return [text for text in texts if text]


def _microseconds(timestamp: float) -> int:
    usec = timestamp * 1_000_000
    if isinstance(usec, float) and not math.isfinite(usec):
        return MAX_TIMESTAMP if usec > 0 else 0
    return min(max(round(usec), 0), MAX_TIMESTAMP)


class Writer:
    """``with Writer(path) as out: i = out.add_interface("ns1:eth0");
    out.write_packet(i, time.time(), frame, comment="...", direction="out")``"""

    def __init__(self, path: str):
        self.path = path
        self._file: Optional[BinaryIO] = None
        self._interfaces = 0
        self.packets_written = 0     # Wireshark numbers frames from 1 in file order

    def __enter__(self) -> "Writer":
        self._file = open(self.path, "wb")
        body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)   # section length unknown
        self._file.write(_block(SHB_TYPE, body + _options([(SHB_USERAPPL, b"nslab")])))
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def add_interface(self, name: str, linktype: int = LINKTYPE_ETHERNET,
                      snaplen: int = 0, description: str = "") -> int:
        """Returns the interface id packets refer to. Wireshark shows ``name``
        as the frame's interface name and ``description`` beside it."""
        options = [(IF_NAME, encoded_text(name))]
        if description:
            options.append((IF_DESCRIPTION, encoded_text(description)))
        options.append((IF_TSRESOL, bytes([TSRESOL_MICROSECONDS])))
        body = struct.pack("<HHI", linktype, 0, snaplen) + _options(options)
        self._file.write(_block(IDB_TYPE, body))
        self._interfaces += 1
        return self._interfaces - 1

    def write_packet(self, interface: int, timestamp: float, data: bytes,
                     comment: Comment = None, original_length: Optional[int] = None,
                     direction: Optional[str] = None) -> int:
        """``timestamp`` in seconds since the epoch, stored in microseconds;
        ``comment`` one text or several (each its own opt_comment);
        ``direction`` "in" or "out". Returns the frame's number in the file."""
        if not 0 <= interface < self._interfaces:
            raise ValueError(f"unknown interface id {interface}")
        data = bytes(data)
        full = len(data) if original_length is None else original_length
        data = data[:MAX_PACKET]
        full = min(max(full, len(data)), MAX_LENGTH)
        usec = _microseconds(timestamp)
        body = struct.pack("<IIIII", interface, usec >> 32, usec & 0xFFFFFFFF, len(data), full)
        options = [(OPT_COMMENT, encoded_text(text)) for text in _comments(comment)]
        if direction in DIRECTION_FLAGS:
            options.append((EPB_FLAGS, struct.pack("<I", DIRECTION_FLAGS[direction])))
        self._file.write(_block(EPB_TYPE, body + _pad4(data) + _options(options)))
        self.packets_written += 1
        return self.packets_written


@dataclass
class Interface:
    name: str
    linktype: int
    description: str = ""


@dataclass
class Packet:
    interface: int
    timestamp_us: int
    data: bytes
    original_length: int
    comments: list[str] = field(default_factory=list)
    flags: int = 0                 # epb_flags

    @property
    def direction(self) -> Optional[str]:
        """"in", "out", or None when the file does not say."""
        return DIRECTIONS.get(self.flags & 0b11)


@dataclass
class PcapngFile:
    interfaces: list[Interface] = field(default_factory=list)
    packets: list[Packet] = field(default_factory=list)

    def interface_named(self, suffix: str) -> Optional[int]:
        """The id of the first interface whose name ends with ``suffix``."""
        return next((i for i, iface in enumerate(self.interfaces)
                     if iface.name.endswith(suffix)), None)

    def on(self, interface: int) -> list[Packet]:
        return [p for p in self.packets if p.interface == interface]


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
        if total < 12:
            break                      # a corrupt block: nothing after it can be trusted
        body = raw[pos + 8:pos + total - 4]
        if block_type == IDB_TYPE:
            out.interfaces.append(_interface(body, order))
        elif block_type == EPB_TYPE:
            out.packets.append(_packet(body, order))
        pos += total
    return out


def _interface(body: bytes, order: str) -> Interface:
    linktype = struct.unpack_from(order + "H", body)[0]
    options = _parse_options(body[8:], order)
    return Interface(_text(options, IF_NAME), linktype, _text(options, IF_DESCRIPTION))


def _packet(body: bytes, order: str) -> Packet:
    iface, high, low, caplen, origlen = struct.unpack_from(order + "IIIII", body)
    options = _parse_options(body[20 + caplen + (-caplen % 4):], order)
    flags = [struct.unpack(order + "I", v)[0] for code, v in options
             if code == EPB_FLAGS and len(v) == 4]
    comments = [v.decode(errors="replace") for code, v in options if code == OPT_COMMENT]
    return Packet(iface, (high << 32) | low, body[20:20 + caplen], origlen, comments,
                  flags[0] if flags else 0)


def _text(options: list[tuple[int, bytes]], code: int) -> str:
    return next((v.decode(errors="replace") for c, v in options if c == code), "")


def _parse_options(data: bytes, order: str) -> list[tuple[int, bytes]]:
    options, pos = [], 0
    while pos + 4 <= len(data):
        code, length = struct.unpack_from(order + "HH", data, pos)
        if code == OPT_ENDOFOPT:
            break
        options.append((code, data[pos + 4:pos + 4 + length]))
        pos += 4 + length + (-length % 4)
    return options
