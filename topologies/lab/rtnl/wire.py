"""Netlink on the wire: message and attribute encoding, errors."""
from __future__ import annotations

import ipaddress
import os
import struct
import sys
from typing import Iterator, Optional

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
NLA_F_NESTED = 0x8000

NLMSG = struct.Struct("=IHHII")
RTA = struct.Struct("=HH")
ERRNO = struct.Struct("=i")


class NetlinkError(OSError):
    """A request the kernel refused: ``code`` (an errno) and its message in
    ``args[1]``, as pyroute2's NetlinkError carries them."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(code, message or os.strerror(code))
        self.code = code


def netlink_errors() -> tuple[type, ...]:
    """What a netlink request may raise: nslab's NetlinkError, and pyroute2's once
    pyroute2 is imported (only then can it have made a request). For ``except``."""
    pyroute2 = sys.modules.get("pyroute2.netlink.exceptions")
    return (NetlinkError,) if pyroute2 is None else (NetlinkError, pyroute2.NetlinkError)


# -- encoding -------------------------------------------------------------------
def attr(kind: int, payload: bytes) -> bytes:
    size = RTA.size + len(payload)
    return RTA.pack(size, kind) + payload + b"\0" * (-size % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def string(value: str) -> bytes:
    return value.encode() + b"\0"


def u8(value: int) -> bytes:
    return struct.pack("=B", value)


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def s32(value: int) -> bytes:
    return struct.pack("=i", value)


def be16(value: int) -> bytes:
    return struct.pack("!H", value)


# -- decoding -------------------------------------------------------------------
def messages(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(type, seq, offset) of each netlink message in a datagram."""
    offset = 0
    while offset + NLMSG.size <= len(data):
        size, kind, _flags, seq, _pid = NLMSG.unpack_from(data, offset)
        yield kind, seq, offset
        offset += max((size + 3) & ~3, NLMSG.size)


def attrs(data: bytes, pos: int, end: int) -> dict[int, bytes]:
    """Each attribute's payload between ``pos`` and ``end``, by type (the first of each)."""
    found: dict[int, bytes] = {}
    while pos + RTA.size <= end:
        length, kind = RTA.unpack_from(data, pos)
        if length < RTA.size:
            break
        found.setdefault(kind & ~NLA_F_NESTED, data[pos + RTA.size:pos + length])
        pos += (length + 3) & ~3
    return found


def body_attrs(data: bytes, offset: int, header: struct.Struct) -> dict[int, bytes]:
    """The attributes after a message's fixed ``header`` (ifinfomsg, rtmsg...)."""
    size = NLMSG.unpack_from(data, offset)[0]
    return attrs(data, offset + NLMSG.size + header.size, offset + size)


def inner(payload: bytes) -> dict[int, bytes]:
    """The attributes nested in an attribute's payload."""
    return attrs(payload, 0, len(payload))


def text(value: Optional[bytes]) -> str:
    return value.split(b"\0", 1)[0].decode() if value else ""


def number(value: Optional[bytes]) -> int:
    return struct.unpack("=I", value[:4])[0] if value else 0


def address(value: Optional[bytes]) -> Optional[str]:
    """An IPv4 or IPv6 address attribute as text (None if absent)."""
    return str(ipaddress.ip_address(value)) if value else None


def mac(value: Optional[bytes]) -> Optional[str]:
    return ":".join(f"{b:02x}" for b in value) if value is not None else None
