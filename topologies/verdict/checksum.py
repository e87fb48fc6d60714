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
# Dividing a long int by 0xffff costs a machine division per 30 bits. Word-aligned
# halves of it add up to the same modulo 0xffff, in a shift, a mask and an add:
# the halves are folded together down to this many bits, then divided.
FOLD_TO_BITS = 1024
# masks of the halves of frames up to 4 KiB are kept (a few KiB in all); longer, made each time
KEPT_MASK_BITS = 1 << 14
_masks: dict[int, int] = {}
# the halvings (shift, mask) each even length takes, for lengths whose masks are kept
_halvings: dict[int, tuple[tuple[int, int], ...]] = {}


def ones_sum(data: bytes, initial: int = 0) -> int:
    """``initial`` plus the ones' complement sum of ``data`` (odd length padded
    with a zero byte, as RFC 1071 says). Unfolded: pass it to ``fold``."""
    n = len(data)
    value = int.from_bytes(data, "big")
    if n % 2:
        value <<= 8
        n += 1
    halvings = _halvings.get(n)
    if halvings is None:
        halvings = _halved(n)
    for half, mask in halvings:
        value = (value >> half) + (value & mask)
    # fold() written out: every checksum takes this
    return initial + (value % 0xFFFF or 0xFFFF if value else 0)


def _halved(n: int) -> tuple[tuple[int, int], ...]:
    """The halvings that fold ``n`` bytes (even) to FOLD_TO_BITS at most."""
    halvings, bits = [], n * 8
    while bits > FOLD_TO_BITS:
        half = bits >> 5 << 4    # half the 16-bit words, in bits
        halvings.append((half, _low_mask(half)))
        bits -= half - 1         # the sum carries at most one bit
    if n * 4 <= KEPT_MASK_BITS:
        _halvings[n] = tuple(halvings)
    return tuple(halvings)


def _low_mask(bits: int) -> int:
    mask = _masks.get(bits)
    if mask is None:
        mask = (1 << bits) - 1
        if bits <= KEPT_MASK_BITS:
            _masks[bits] = mask
    return mask


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
