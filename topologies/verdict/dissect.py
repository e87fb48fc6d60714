"""Dissect a wire frame and verify every checksum in it.

One pass walks Ethernet (802.1Q/802.1ad tags), IPv4 (options, fragments),
IPv6 (extension headers), UDP, TCP, ICMP, ICMPv6, VXLAN inner frames and the
packets quoted in ICMP errors. Each header becomes a ``Header`` (for a
scapy-like rendering) carrying the ``LayerVerdict`` of its checksum. Bytes the
frame does not hold make a layer NOT_CHECKABLE with the reason; nothing here
raises on short or malformed input, and nothing is VALID unless its bytes
were summed.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterable, Optional

from .checksum import checksum, fold, ones_sum, pseudo_sum_v4, pseudo_sum_v6
from .header_fields import (
    DEFAULT_VXLAN_PORTS,
    ETH_P_IP,
    ETH_P_IPV6,
    ETHERTYPE_NAMES,
    ETHERTYPES_WITHOUT_CHECKSUM,
    HOME_ADDRESS_OPTION,
    ICMP_ERROR_TYPES,
    ICMP_HEAD,
    ICMP_REST,
    ICMP_RFC4884_TYPES,
    ICMPV6_ERROR_TYPES,
    ICMPV6_HEAD,
    ICMPV6_NAMES,
    ICMPV6_REST,
    ICMPV6_RFC4884_TYPES,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_NONE,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_FIELDS,
    IPV6_EXT_FIELDS,
    IPV6_EXT_HEADERS,
    IPV6_FIELDS,
    OTHER_REST,
    TCP_FIELDS,
    UDP_FIELDS,
    VLAN_FIELDS,
    VLAN_TPIDS,
    VXLAN_FIELDS,
)
from .layer import LayerVerdict, Status

if TYPE_CHECKING:
    from .header_fields import FieldSpec


@dataclass
class Header:
    """One header as dissected: enough to render it and to find it again."""
    kind: str                       # "eth", "vlan", "ipv4", "ipv6", "ipv6-ext", "udp", ...
    name: str                       # block title, scapy style: "IP", "TCP in ICMP"
    offset: int
    depth: int
    fields: list[tuple[str, str]]
    verdicts: list[LayerVerdict] = field(default_factory=list)


@dataclass
class Dissection:
    headers: list[Header]
    layers: list[LayerVerdict]

    def header_at(self, offset: int, kind: str) -> Optional[Header]:
        return next((h for h in self.headers if h.offset == offset and h.kind == kind), None)


def dissect(frame: bytes, link: str = "ether",
            vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS) -> Dissection:
    """``link``: "ether" for frames from the Ethernet header, "ip" from the IP header."""
    if link not in ("ether", "ip"):
        raise ValueError(f"link must be 'ether' or 'ip', not {link!r}")
    d = _Dissector(bytes(frame), vxlan_ports)
    (d.ether if link == "ether" else d.ip)(0, len(frame), _Ctx())
    return d.finish()


# --- context and small helpers ----------------------------------------------

@dataclass(frozen=True)
class _Ctx:
    """Where in the frame a header sits: path prefix, qualifiers for people."""
    path: str = ""
    words: tuple[str, ...] = ()
    depth: int = 0
    quoted: bool = False
    title_suffix: str = ""          # " in ICMP" inside a quote, as scapy names them

    def deeper(self) -> "_Ctx":
        return replace(self, depth=self.depth + 1)

    def qualified(self, word: str, path: str, **changes) -> "_Ctx":
        words = self.words if self.words[-1:] == (word,) else self.words + (word,)
        return replace(self, path=self.path + path, words=words, depth=self.depth + 1,
                       **changes)

    def label(self, proto: str) -> str:
        return " ".join(self.words + (proto,))

    def short(self, have: int, need: int) -> str:
        return f"{'quote' if self.quoted else 'frame'} truncated: {max(have, 0)} of {need} bytes"


@dataclass(frozen=True)
class _Net:
    """What an L4 checksum needs from the network layer."""
    family: int
    src: bytes
    dst: bytes
    problem: str = ""               # why the pseudo-header is unknown, if it is

    def pseudo(self, proto: int, length: int) -> int:
        make = pseudo_sum_v4 if self.family == 4 else pseudo_sum_v6
        return make(self.src, self.dst, proto, length)


@dataclass(frozen=True)
class _Fragment:
    offset: int

    @property
    def reason(self) -> str:
        if self.offset:
            return f"non-first fragment (offset {self.offset}): its L4 header is elsewhere"
        return "fragmented: the L4 checksum covers the reassembled datagram"


# --- the dissector -------------------------------------------------------------

class _Dissector:
    def __init__(self, buf: bytes, vxlan_ports: Iterable[int]):
        self.buf = buf
        self.vxlan_ports = frozenset(vxlan_ports)
        self.headers: list[Header] = []
        self.encapsulated = False   # a top-level VXLAN: the top-level layers are "outer"
        self.top_level: set[int] = set()

    def finish(self) -> Dissection:
        if self.encapsulated:
            for h in self.headers:
                h.verdicts = [replace(v, layer="outer " + v.layer)
                              if id(v) in self.top_level else v for v in h.verdicts]
        return Dissection(self.headers, [v for h in self.headers for v in h.verdicts])

    # headers and verdicts

    def header(self, kind: str, title: str, off: int, end: int, ctx: _Ctx,
               specs: Iterable[FieldSpec]) -> Header:
        """A header with every field of ``specs`` that lies before ``end``."""
        fields = []
        for name, rel, size, fmt in specs:
            if off + rel + size <= end:
                value = int.from_bytes(self.buf[off + rel:off + rel + size], "big")
                fields.append((name, fmt(value)))
        h = Header(kind, title + ctx.title_suffix, off, ctx.depth, fields)
        self.headers.append(h)
        return h

    def u16(self, off: int) -> int:
        return int.from_bytes(self.buf[off:off + 2], "big")

    def note(self, h: Header, ctx: _Ctx, path: str, proto: str, status: Status,
             **kw) -> LayerVerdict:
        v = LayerVerdict(path=ctx.path + path, layer=ctx.label(proto), status=status, **kw)
        h.verdicts.append(v)
        if not ctx.words:
            self.top_level.add(id(v))
        return v

    def sums(self, start: int, end: int, field_off: int, initial: int,
             udp: bool) -> tuple[bool, int]:
        """Sum the bytes: valid when the sum including the field folds to
        0xffff (so TCP's 0x0000 and 0xffff both pass, as receivers accept);
        the correct value is computed with the field zeroed."""
        data = self.buf[start:end]
        ok = fold(ones_sum(data, initial)) == 0xFFFF
        zeroed = bytearray(data)
        zeroed[field_off - start:field_off - start + 2] = b"\0\0"
        correct = checksum(zeroed, initial)
        if udp and correct == 0:
            correct = 0xFFFF   # RFC 768: a computed zero is sent as all ones
        return ok, correct

    def verify(self, h: Header, ctx: _Ctx, path: str, proto: str, field_name: str,
               field_off: int, start: int, end: int, initial: int = 0,
               udp: bool = False) -> LayerVerdict:
        ok, correct = self.sums(start, end, field_off, initial, udp)
        return self.note(h, ctx, path, proto, Status.VALID if ok else Status.INVALID,
                         field=field_name, offset=field_off, wire=self.u16(field_off),
                         correct=correct)

    def unchecked(self, h: Header, ctx: _Ctx, path: str, proto: str, field_name: str,
                  field_off: int, avail_end: int, reason: str) -> LayerVerdict:
        wire = self.u16(field_off) if field_off + 2 <= avail_end else None
        return self.note(h, ctx, path, proto, Status.NOT_CHECKABLE, field=field_name,
                         offset=field_off, wire=wire, reason=reason)

    # link layer

    def ether(self, off: int, end: int, ctx: _Ctx) -> None:
        h = self.header("eth", "Ethernet", off, end, ctx, [])
        if end - off < 14:
            self.note(h, ctx, "eth", "Ethernet", Status.NOT_CHECKABLE, field="",
                      reason=ctx.short(end - off, 14))
            return
        b = self.buf
        h.fields = [("dst", b[off:off + 6].hex(":")), ("src", b[off + 6:off + 12].hex(":"))]
        etype = self.u16(off + 12)
        h.fields.append(("type", ETHERTYPE_NAMES.get(etype, f"0x{etype:04x}")))
        off += 14
        while etype in VLAN_TPIDS:
            ctx = ctx.deeper()
            tag = self.header("vlan", VLAN_TPIDS[etype], off, end, ctx, VLAN_FIELDS)
            if end - off < 4:
                self.note(tag, ctx, "vlan", "VLAN tag", Status.NOT_CHECKABLE, field="",
                          reason=ctx.short(end - off, 4))
                return
            etype = self.u16(off + 2)
            off += 4
        if etype == ETH_P_IP:
            self.ipv4(off, end, ctx.deeper())
        elif etype == ETH_P_IPV6:
            self.ipv6(off, end, ctx.deeper())
        elif etype >= 0x600 and etype not in ETHERTYPES_WITHOUT_CHECKSUM:
            self.note(self.headers[-1], ctx, f"ethertype-0x{etype:04x}", "payload",
                      Status.NOT_CHECKABLE, field="", reason=f"ethertype 0x{etype:04x} not parsed")

    def ip(self, off: int, end: int, ctx: _Ctx) -> None:
        version = self.buf[off] >> 4 if off < end else None
        if version == 6:
            self.ipv6(off, end, ctx)
        else:
            self.ipv4(off, end, ctx)   # reports anything else as a malformed IPv4 header

    # network layer

    def ipv4(self, off: int, end: int, ctx: _Ctx) -> None:
        have = end - off
        h = self.header("ipv4", "IP", off, end, ctx, IPV4_FIELDS)
        hlen = (self.buf[off] & 15) * 4 if have > 0 else 20
        if have > 0 and (self.buf[off] >> 4 != 4 or hlen < 20):
            self.note(h, ctx, "ipv4", "IPv4", Status.NOT_CHECKABLE, field="",
                      reason=f"malformed IPv4 header (first byte 0x{self.buf[off]:02x})")
            return
        if have < max(hlen, 20):
            self.unchecked(h, ctx, "ipv4", "IPv4", "chksum", off + 10, end,
                           ctx.short(have, max(hlen, 20)))
            return
        if hlen > 20:
            h.fields.append(("options", self.buf[off + 20:off + hlen].hex()))
        self.verify(h, ctx, "ipv4", "IPv4", "chksum", off + 10, off, off + hlen)
        tot_len, frag, proto = self.u16(off + 2), self.u16(off + 6), self.buf[off + 9]
        if tot_len < hlen:
            self.note(h, ctx, "ipv4", "IPv4", Status.NOT_CHECKABLE, field="len",
                      offset=off + 2, reason=f"total length {tot_len} < header length {hlen}")
            return
        net = _Net(4, self.buf[off + 12:off + 16], self.buf[off + 16:off + 20])
        fragment = _Fragment((frag & 0x1FFF) * 8) if frag & 0x3FFF else None
        self.l4(proto, off + hlen, off + tot_len, min(end, off + tot_len), ctx.deeper(), net,
                fragment)

    def ipv6(self, off: int, end: int, ctx: _Ctx) -> None:
        have = end - off
        h = self.header("ipv6", "IPv6", off, end, ctx, IPV6_FIELDS)
        if have > 0 and self.buf[off] >> 4 != 6:
            self.note(h, ctx, "ipv6", "IPv6", Status.NOT_CHECKABLE, field="",
                      reason=f"malformed IPv6 header (first byte 0x{self.buf[off]:02x})")
            return
        if have < 40:
            self.note(h, ctx, "ipv6", "IPv6", Status.NOT_CHECKABLE, field="",
                      reason=ctx.short(have, 40))
            return
        plen, nh = self.u16(off + 4), self.buf[off + 6]
        declared_end = off + 40 + plen
        avail_end = min(end, declared_end)
        if plen == 0 and nh != IPPROTO_NONE:
            self.note(h, ctx, "ipv6", "IPv6", Status.NOT_CHECKABLE, field="plen",
                      reason="payload length 0 (jumbogram or BIG TCP) not supported")
            return
        src, dst = self.buf[off + 8:off + 24], self.buf[off + 24:off + 40]
        problem, fragment, cur = "", None, off + 40
        while nh in IPV6_EXT_HEADERS:
            ctx = ctx.deeper()
            ext = self.header("ipv6-ext", f"IPv6 {IPV6_EXT_HEADERS[nh]} Header", cur, avail_end,
                              ctx, IPV6_EXT_FIELDS)
            if avail_end - cur < 8:
                self.note(ext, ctx, "ipv6", f"IPv6 {IPV6_EXT_HEADERS[nh]} header",
                          Status.NOT_CHECKABLE, field="", reason=ctx.short(avail_end - cur, 8))
                return
            length = 8 if nh == 44 else (self.buf[cur + 1] + 2) * 4 if nh == 51 else \
                (self.buf[cur + 1] + 1) * 8
            if avail_end - cur < length:
                self.note(ext, ctx, "ipv6", f"IPv6 {IPV6_EXT_HEADERS[nh]} header",
                          Status.NOT_CHECKABLE, field="", reason=ctx.short(avail_end - cur, length))
                return
            body = self.buf[cur:cur + length]
            if nh == 43 and body[3]:
                dst, problem = _routing_final_destination(body, dst)
                ext.fields += [("type", str(body[2])), ("segleft", str(body[3]))]
            elif nh == 44:
                word = int.from_bytes(body[2:4], "big")
                ext.fields += [("offset", str(word >> 3)), ("m", str(word & 1)),
                               ("id", hex(int.from_bytes(body[4:8], "big")))]
                if word & 0xFFF9:
                    fragment = _Fragment(word & 0xFFF8)
            elif nh == 60:
                src = _home_address(body) or src
            nh, cur = body[0], cur + length
        net = _Net(6, src, dst, problem)
        self.l4(nh, cur, declared_end, min(avail_end, declared_end), ctx.deeper(), net, fragment)

    # transport layer

    def l4(self, proto: int, off: int, end: int, avail_end: int, ctx: _Ctx, net: _Net,
           fragment: Optional[_Fragment]) -> None:
        parsers = {IPPROTO_UDP: (self.udp, "udp", "UDP"), IPPROTO_TCP: (self.tcp, "tcp", "TCP"),
                   IPPROTO_ICMP: (self.icmp, "icmp", "ICMP"),
                   IPPROTO_ICMPV6: (self.icmpv6, "icmpv6", "ICMPv6")}
        if proto == IPPROTO_NONE:
            return
        if proto not in parsers:
            h = self.header("raw", f"IP protocol {proto}", off, avail_end, ctx, [])
            self.note(h, ctx, f"proto-{proto}", f"IP protocol {proto}", Status.NOT_CHECKABLE,
                      field="", reason=f"IP protocol {proto} not parsed")
            return
        parse, path, proto_name = parsers[proto]
        if fragment and fragment.offset:
            h = self.header(path, proto_name, off, off, ctx, [])
            self.note(h, ctx, path, proto_name, Status.NOT_CHECKABLE, reason=fragment.reason)
            return
        parse(off, end, avail_end, ctx, net, fragment.reason if fragment else "")

    def udp(self, off: int, end: int, avail_end: int, ctx: _Ctx, net: _Net,
            fragmented: str) -> None:
        h = self.header("udp", "UDP", off, avail_end, ctx, UDP_FIELDS)
        have, declared = avail_end - off, end - off
        field_off = off + 6
        if declared < 8:
            self.unchecked(h, ctx, "udp", "UDP", "chksum", field_off, avail_end,
                           f"IP payload of {declared} bytes is shorter than a UDP header")
            return
        if have < 8:
            self.unchecked(h, ctx, "udp", "UDP", "chksum", field_off, avail_end,
                           ctx.short(have, declared))
            return
        ulen, wire = self.u16(off + 4), self.u16(field_off)
        if ulen < 8 or ulen > declared:
            self.unchecked(h, ctx, "udp", "UDP", "chksum", field_off, avail_end,
                           f"UDP length {ulen} does not fit the IP payload of {declared} bytes")
            return
        udp_end = off + ulen
        unknown = fragmented or net.problem or \
            (ctx.short(have, ulen) if avail_end < udp_end else "")
        if wire == 0 and net.family == 4:
            self.note(h, ctx, "udp", "UDP", Status.DISABLED, offset=field_off, wire=0,
                      reason="zero: the sender computed no checksum (RFC 768)")
        elif wire == 0:
            correct = None if unknown else self.sums(
                off, udp_end, field_off, net.pseudo(IPPROTO_UDP, ulen), udp=True)[1]
            self.note(h, ctx, "udp", "UDP", Status.INVALID, offset=field_off, wire=0,
                      correct=correct, reason="zero UDP checksum over IPv6 (RFC 8200)")
        elif unknown:
            self.unchecked(h, ctx, "udp", "UDP", "chksum", field_off, avail_end, unknown)
        else:
            self.verify(h, ctx, "udp", "UDP", "chksum", field_off, off, udp_end,
                        net.pseudo(IPPROTO_UDP, ulen), udp=True)
        inner_end = min(avail_end, udp_end)
        if self.u16(off + 2) in self.vxlan_ports and not fragmented:
            self.vxlan(off + 8, inner_end, ctx.deeper())
        else:
            self.raw(off + 8, inner_end, ctx.deeper())

    def tcp(self, off: int, end: int, avail_end: int, ctx: _Ctx, net: _Net,
            fragmented: str) -> None:
        h = self.header("tcp", "TCP", off, avail_end, ctx, TCP_FIELDS)
        have, length = avail_end - off, end - off
        if length < 20:
            reason = f"IP payload of {length} bytes is shorter than a TCP header"
        else:
            reason = ctx.short(have, length) if have < length else fragmented or net.problem
        if reason:
            self.unchecked(h, ctx, "tcp", "TCP", "chksum", off + 16, avail_end, reason)
        else:
            self.verify(h, ctx, "tcp", "TCP", "chksum", off + 16, off, end,
                        net.pseudo(IPPROTO_TCP, length))
        hlen = (self.buf[off + 12] >> 4) * 4 if have > 12 else 20
        if hlen > 20 and off + hlen <= avail_end:
            h.fields.append(("options", self.buf[off + 20:off + hlen].hex()))
        self.raw(off + max(hlen, 20), avail_end, ctx.deeper())

    def icmp(self, off: int, end: int, avail_end: int, ctx: _Ctx, net: _Net,
             fragmented: str) -> None:
        kind = self.buf[off] if avail_end > off else None
        h = self.header("icmp", "ICMP", off, avail_end, ctx,
                        ICMP_HEAD + ICMP_REST.get(kind, OTHER_REST))
        self.message(h, off, end, avail_end, ctx, "icmp", "ICMP", "chksum", 0, fragmented)
        if kind in ICMP_ERROR_TYPES and not fragmented:
            words = self.buf[off + 5] if kind in ICMP_RFC4884_TYPES and avail_end > off + 5 else 0
            self.quote(off, end, avail_end, words * 4, ctx, "icmp", " in ICMP")
        else:
            self.raw(off + 8, avail_end, ctx.deeper())

    def icmpv6(self, off: int, end: int, avail_end: int, ctx: _Ctx, net: _Net,
               fragmented: str) -> None:
        kind = self.buf[off] if avail_end > off else None
        title = "ICMPv6" + (f" {ICMPV6_NAMES[kind]}" if kind in ICMPV6_NAMES else "")
        h = self.header("icmpv6", title, off, avail_end, ctx,
                        ICMPV6_HEAD + ICMPV6_REST.get(kind, OTHER_REST))
        pseudo = net.pseudo(IPPROTO_ICMPV6, end - off)
        self.message(h, off, end, avail_end, ctx, "icmpv6", "ICMPv6", "cksum", pseudo,
                     fragmented or net.problem)
        if kind in ICMPV6_ERROR_TYPES and not fragmented:
            words = self.buf[off + 4] if kind in ICMPV6_RFC4884_TYPES and avail_end > off + 4 else 0
            self.quote(off, end, avail_end, words * 8, ctx, "icmpv6", " in ICMPv6")
        else:
            self.raw(off + 8, avail_end, ctx.deeper())

    def message(self, h: Header, off: int, end: int, avail_end: int, ctx: _Ctx, path: str,
                proto: str, field_name: str, initial: int, unknown: str) -> None:
        """An ICMP/ICMPv6 checksum: over the whole message, quote included."""
        length = end - off
        if length < 8:
            reason = f"IP payload of {length} bytes is shorter than an {proto} header"
        else:
            reason = ctx.short(avail_end - off, length) if avail_end < end else unknown
        if reason:
            self.unchecked(h, ctx, path, proto, field_name, off + 2, avail_end, reason)
        else:
            self.verify(h, ctx, path, proto, field_name, off + 2, off, end, initial)

    def quote(self, off: int, end: int, avail_end: int, rfc4884_len: int, ctx: _Ctx,
              path: str, suffix: str) -> None:
        """The invoking packet quoted by an ICMP error, starting 8 bytes in;
        an RFC 4884 length, when given, ends it before the extensions."""
        start = off + 8
        stop = min(avail_end, start + rfc4884_len) if rfc4884_len else avail_end
        if stop <= start:
            return
        self.ip(start, stop, ctx.qualified("quoted", f"{path}/quote/", quoted=True,
                                           title_suffix=suffix))

    def vxlan(self, off: int, end: int, ctx: _Ctx) -> None:
        h = self.header("vxlan", "VXLAN", off, end, ctx, VXLAN_FIELDS)
        if end - off < 8:
            self.note(h, ctx, "vxlan", "VXLAN", Status.NOT_CHECKABLE, field="",
                      reason=ctx.short(end - off, 8))
            return
        if not ctx.path and not ctx.words:
            self.encapsulated = True
        self.ether(off + 8, end, ctx.qualified("inner", "vxlan/"))

    def raw(self, off: int, end: int, ctx: _Ctx) -> None:
        if end > off:
            load = self.buf[off:end]
            text = repr(load[:32]) + (f" ... ({len(load)} bytes)" if len(load) > 32 else "")
            self.headers.append(Header("raw", "Raw", off, ctx.depth, [("load", text)]))


def _routing_final_destination(body: bytes, dst: bytes) -> tuple[bytes, str]:
    """The pseudo-header's destination when a routing header still has
    segments left (RFC 8200 section 8.1): the last hop, not the next one."""
    rtype = body[2]
    if rtype == 0 and len(body) >= 24:            # deprecated type 0: last address listed
        return body[8 + (len(body) - 8) // 16 * 16 - 16:][:16], ""
    if rtype in (2, 4) and len(body) >= 24:       # type 2 home address; SRH segment list[0]
        return body[8:24], ""
    return dst, f"pseudo-header destination unknown (routing header type {rtype})"


def _home_address(body: bytes) -> Optional[bytes]:
    """The Home Address destination option replaces the pseudo-header source."""
    pos = 2
    while pos + 2 <= len(body):
        opt = body[pos]
        if opt == 0:                                  # Pad1
            pos += 1
            continue
        size = body[pos + 1]
        if opt == HOME_ADDRESS_OPTION and size == 16 and pos + 18 <= len(body):
            return body[pos + 2:pos + 18]
        pos += 2 + size
    return None

