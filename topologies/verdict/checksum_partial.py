"""CHECKSUM_PARTIAL: completing a pending checksum the way the kernel does.

For a CHECKSUM_PARTIAL skb the field at csum_start + csum_offset holds a seed,
normally the (non-inverted) folded pseudo-header sum; whoever transmits sums
from csum_start to the end of the packet, the seed included, and stores the
complement. A NIC does it in hardware; the kernel's software fallback is
``skb_checksum_help()`` (net/core/dev.c), mirrored here exactly:

    csum = skb_checksum(skb, offset, skb->len - offset, 0);
    *(__sum16 *)(skb->data + offset + csum_offset) = csum_fold(csum) ?: CSUM_MANGLED_0;

so a result of 0 is stored as 0xffff for every protocol. For UDP that is what
RFC 768 requires (0 would mean "no checksum"); for TCP the two are the same
ones' complement zero. Hardware may store 0x0000 for TCP; receivers accept
both. A wrong seed (a NAT that did not fold its change into it) is not
corrected: the result is wrong exactly as it would be on the wire.
"""
from __future__ import annotations

from typing import Optional

from .checksum import fold, ones_sum

CSUM_MANGLED_0 = 0xFFFF


def complete_partial(frame: bytes, csum_start: int, csum_offset: int) -> bytes:
    """``frame`` with its pending checksum completed; offsets count from the
    first byte of ``frame``. Raises ValueError where the kernel would WARN."""
    return completed(frame, csum_start, csum_offset)[0]


def completed(frame: bytes, csum_start: int, csum_offset: int) -> tuple[bytes, Optional[int]]:
    """``complete_partial``, and the sum ``complete_in_place`` returns."""
    field = csum_start + csum_offset
    if csum_start >= len(frame) or field + 2 > len(frame):
        raise ValueError(f"pending checksum at csum_start {csum_start} + csum_offset "
                         f"{csum_offset} lies outside the {len(frame)}-byte frame")
    out = bytearray(frame)
    total = complete_in_place(out, csum_start, csum_offset)
    return bytes(out), total


def complete_in_place(buf: bytearray, csum_start: int, csum_offset: int,
                      tail: Optional[tuple[int, int]] = None,
                      total: Optional[int] = None) -> Optional[int]:
    """``complete_partial`` on a buffer being built, offsets known to be inside it.
    ``tail``: (offset, folded sum of ``buf[offset:]``), a part already summed
    (as completed: it holds no pending field), at an even distance from
    ``csum_start``; ``total``: the folded sum of ``buf[csum_start:]``, if known.
    Returns the folded sum of ``buf[csum_start:]`` as completed, which a
    verifier would sum again (None for an odd ``csum_offset``)."""
    field = csum_start + csum_offset
    seed = buf[field] << 8 | buf[field + 1]
    if total is None and tail is None:
        total = ones_sum(memoryview(buf)[csum_start:])   # folded already: 0 added
    elif total is None:
        total = fold(ones_sum(memoryview(buf)[csum_start:tail[0]], tail[1]))
    value = ~total & 0xFFFF or CSUM_MANGLED_0
    buf[field], buf[field + 1] = value >> 8, value & 0xFF
    if csum_offset % 2:
        return None
    # the bytes summed to ``total`` holding ``seed`` in a word-aligned field, which
    # now holds ``value`` (never 0, so neither is the sum: 0xffff stands for a
    # multiple of 0xffff)
    return (total - seed + value) % 0xFFFF or 0xFFFF


def adjust_seed(seed: int, old_len: int, new_len: int) -> int:
    """A pseudo-header seed moved from one L4 length to another, as GSO does
    for each segment (``csum_sub(check, old len)`` then ``csum_add(new len)``)."""
    return (seed + new_len + 0xFFFF - old_len % 0xFFFF) % 0xFFFF or 0xFFFF   # fold(): never 0
