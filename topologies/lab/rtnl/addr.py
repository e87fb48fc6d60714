"""Address messages."""
from __future__ import annotations

import socket
import struct

from .wire import attr

RTM_NEWADDR = 20
IFA_ADDRESS, IFA_LOCAL = 1, 2

IFADDR = struct.Struct("=BBBBI")       # family, prefixlen, flags, scope, index


def address_request(index: int, family: int, address: bytes, prefixlen: int,
                    flags: int = 0) -> bytes:
    """RTM_NEWADDR body as ``ip addr add`` sends it (IPv4: local = address)."""
    body = IFADDR.pack(family, prefixlen, flags, 0, index)
    if family == socket.AF_INET:
        body += attr(IFA_LOCAL, address)
    return body + attr(IFA_ADDRESS, address)
