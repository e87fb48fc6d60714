"""Internet checksum (RFC 1071) primitives.

The ones' complement sum of 16-bit big-endian words equals the buffer read as
one big integer modulo 0xffff (2**16 = 1 mod 0xffff), which ``int.from_bytes``
computes in C: no per-word Python loop. The one thing the modulus loses, a
non-zero sum folding to 0xffff rather than 0, is restored by ``fold``.
"""
from __future__ import annotations

import ipaddress
from typing import Union

Address = Union[bytes, str]
# Dividing a long int by 0xffff costs a machine division per 30 bits; the sum of
# its 384-byte pieces (even: each starts on a word) is congruent and shorter.
PIECE = 384


def ones_sum(data: bytes, initial: int = 0) -> int:
    """``initial`` plus the ones' complement sum of ``data`` (odd length padded
    with a zero byte, as RFC 1071 says). Unfolded: pass it to ``fold``."""
    n = len(data)
    if n <= PIECE:
        value = int.from_bytes(data, "big")
        return initial + fold(value << 8 if n % 2 else value)
    # a sum of word-aligned pieces: the same modulo 0xffff, a shorter division
    view = memoryview(data)
    last = n - n % PIECE
    value = int.from_bytes(view[last:], "big")
    if n % 2:   # the padding byte, after the last piece
        value <<= 8
    for at in range(0, last, PIECE):
        value += int.from_bytes(view[at:at + PIECE], "big")
    return initial + fold(value)


def fold(s: int) -> int:
    """Fold an unfolded sum to 16 bits with end-around carry: 0 only for 0."""
    if s == 0:
        return 0
    return s % 0xFFFF or 0xFFFF


def checksum(data: bytes, initial: int = 0) -> int:
    """The value a sender stores: the complement of the folded sum."""
    return ~fold(ones_sum(data, initial)) & 0xFFFF


def _packed(addr: Address, size: int) -> bytes:
    raw = addr if isinstance(addr, (bytes, bytearray)) else ipaddress.ip_address(addr).packed
    if len(raw) != size:
        raise ValueError(f"expected a {size}-byte address, got {len(raw)} bytes")
    return bytes(raw)


def pseudo_sum_v4(src: Address, dst: Address, proto: int, length: int) -> int:
    """Unfolded sum of the IPv4 pseudo-header (RFC 768/793)."""
    return ones_sum(_packed(src, 4) + _packed(dst, 4), proto + length)


def pseudo_sum_v6(src: Address, dst: Address, next_header: int, length: int) -> int:
    """Unfolded sum of the IPv6 pseudo-header (RFC 8200 section 8.1); the
    32-bit upper-layer length contributes both of its halves."""
    return ones_sum(_packed(src, 16) + _packed(dst, 16),
                    next_header + (length >> 16) + (length & 0xFFFF))
