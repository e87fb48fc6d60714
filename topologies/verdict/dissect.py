"""Dissect a wire frame and verify every checksum in it.

One pass walks Ethernet (802.1Q/802.1ad tags, at every depth), IPv4 (options,
fragments), IPv6 (extension headers), UDP, TCP, ICMP and ICMPv6 (with RFC 4884
extension structures), the packets quoted in ICMP errors, and the tunnels:
VXLAN, Geneve (options skipped by length), GRE and GRETAP over IPv4 and IPv6
(the GRE checksum when the C bit is set), IPIP, SIT, IP6IP6 and IPv4 in IPv6.
Each header becomes a ``Header`` (for a scapy-like rendering) carrying the
``LayerVerdict`` of its checksum. Bytes the frame does not hold, a malformed
encapsulation or one nested too deep make a layer NOT_CHECKABLE with the
reason; nothing here raises on any input, and nothing is VALID unless its
bytes were summed.

The walk is a loop over an explicit work stack, not recursion: each parser
judges its header and pushes what the header encloses. Tunnels and quotes
nest at most ``MAX_NESTING`` deep.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple, Optional

from .checksum import fold, ones_sum, pseudo_sum_v4, pseudo_sum_v6
from .header_fields import (
    DEFAULT_GENEVE_PORTS,
    DEFAULT_VXLAN_PORTS,
    ETH_P_IP,
    ETH_P_IPV6,
    ETH_P_TEB,
    ETHER_FIELDS,
    ETHERTYPES_WITHOUT_CHECKSUM,
    GENEVE_FIELDS,
    GRE_CSUM,
    GRE_ROUTING,
    GRE_VERSION,
    HOME_ADDRESS_OPTION,
    ICMP_ERROR_TYPES,
    ICMP_EXTENSION_FIELDS,
    ICMP_EXTENSION_OBJECT_FIELDS,
    ICMP_EXTENSION_VERSION,
    ICMP_HEAD,
    ICMP_REST,
    ICMP_RFC4884_TYPES,
    ICMPV6_ERROR_TYPES,
    ICMPV6_HEAD,
    ICMPV6_NAMES,
    ICMPV6_REST,
    ICMPV6_RFC4884_TYPES,
    IP_IN_IP_NAMES,
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_IPIP,
    IPPROTO_IPV6,
    IPPROTO_NONE,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_FIELDS,
    IPV6_EXT_FIELDS,
    IPV6_EXT_HEADERS,
    IPV6_FIELDS,
    OTHER_REST,
    RFC4884_MIN_QUOTE,
    TCP_FIELDS,
    UDP_FIELDS,
    VLAN_FIELDS,
    VLAN_TPIDS,
    VXLAN_FIELDS,
    geneve_options,
    gre_fields,
    gre_header_length,
)
from .layer import PENDING_QUOTE, ZERO_TUNNEL_UDP6, LayerVerdict, Status

if TYPE_CHECKING:
    from .header_fields import FieldSpec

MAX_NESTING = 16            # tunnels and quotes inside one another, at most
NESTING_TOO_DEEP = f"nesting deeper than {MAX_NESTING} layers"
# VLAN tags on one frame, extension headers on one IPv6 header: real frames carry
# a few; a longer chain is parsed no further (each one indents the rendering)
MAX_CHAIN = 16
FRAGMENTED_INNER = "fragmented: the encapsulated packet is split across fragments"
# L4 protocols whose checksum Linux leaves pending (CHECKSUM_PARTIAL) on a virtual link
SEEDED_IN_QUOTES = frozenset({"udp", "tcp"})
UDP_TUNNEL_NAMES = {"vxlan": "VXLAN", "geneve": "Geneve"}
# a zero UDP checksum over IPv6, by whether its destination port is a tunnel's
ZERO_UDP6 = {True: (Status.ZERO_TUNNEL, ZERO_TUNNEL_UDP6),
             False: (Status.INVALID, "zero UDP checksum over IPv6 (RFC 8200)")}


class Header:
    """One header as dissected: enough to render it and to find it again.
    Its fields are formatted when first read: rendering costs more than judging,
    and most verdicts are never shown."""
    __slots__ = ("kind", "name", "offset", "depth", "verdicts", "_fields", "_later")

    def __init__(self, kind: str, name: str, offset: int, depth: int,
                 fields: Iterable[tuple[str, str]] = (),
                 verdicts: Optional[list[LayerVerdict]] = None):
        self.kind = kind            # "eth", "vlan", "ipv4", "ipv6", "ipv6-ext", "udp", "gre", ...
        self.name = name            # block title, scapy style: "IP", "TCP in ICMP"
        self.offset = offset
        self.depth = depth
        self.verdicts: list[LayerVerdict] = verdicts if verdicts is not None else []
        self._fields = list(fields)
        self._later: list[Callable[[], list[tuple[str, str]]]] = []

    @property
    def fields(self) -> list[tuple[str, str]]:
        """(name, value as shown) of every field the frame holds."""
        while self._later:
            self._fields += self._later.pop(0)()
        return self._fields

    def later(self, make: Callable[[], list[tuple[str, str]]]) -> None:
        """Fields to format when they are first read."""
        self._later.append(make)

    def __repr__(self) -> str:
        return f"Header({self.kind!r}, {self.name!r}, offset={self.offset}, depth={self.depth})"


@dataclass
class Dissection:
    headers: list[Header]
    layers: list[LayerVerdict]

    def header_at(self, offset: int, kind: str) -> Optional[Header]:
        return next((h for h in self.headers if h.offset == offset and h.kind == kind), None)


@dataclass(frozen=True)
class UdpTunnels:
    """UDP destination ports that carry a tunnel. VXLAN and Geneve are
    dissected inside; on every one of them a zero checksum over IPv6 is the
    tunnel's choice (RFC 6935/6936), not an error. ``other``: tunnels nslab
    does not dissect (FOU, GUE, L2TPv3, ...)."""
    vxlan: frozenset[int]
    geneve: frozenset[int]
    other: frozenset[int] = frozenset()

    def dissected(self, port: int) -> Optional[str]:
        """Which tunnel this port's payload is dissected as: "vxlan", "geneve" or None."""
        if port in self.vxlan:
            return "vxlan"
        return "geneve" if port in self.geneve else None

    def carries_tunnel(self, port: int) -> bool:
        return port in self.vxlan or port in self.geneve or port in self.other


def udp_tunnels(vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS,
                geneve_ports: Iterable[int] = DEFAULT_GENEVE_PORTS,
                tunnel_ports: Iterable[int] = ()) -> UdpTunnels:
    """The ports, made once per distinct set (verify() asks for each frame)."""
    if vxlan_ports is DEFAULT_VXLAN_PORTS and geneve_ports is DEFAULT_GENEVE_PORTS \
            and tunnel_ports == ():
        return _DEFAULT_TUNNELS
    return _udp_tunnels(tuple(vxlan_ports), tuple(geneve_ports), tuple(tunnel_ports))


@lru_cache(maxsize=32)
def _udp_tunnels(vxlan: tuple, geneve: tuple, other: tuple) -> UdpTunnels:
    return UdpTunnels(frozenset(vxlan), frozenset(geneve), frozenset(other))


_DEFAULT_TUNNELS = _udp_tunnels(DEFAULT_VXLAN_PORTS, DEFAULT_GENEVE_PORTS, ())


def dissect(frame: bytes, link: str = "ether",
            vxlan_ports: Iterable[int] = DEFAULT_VXLAN_PORTS, *,
            geneve_ports: Iterable[int] = DEFAULT_GENEVE_PORTS,
            tunnel_ports: Iterable[int] = ()) -> Dissection:
    """``link``: "ether" for frames from the Ethernet header, "ip" from the IP header."""
    return dissect_with(frame, link, udp_tunnels(vxlan_ports, geneve_ports, tunnel_ports))


def dissect_with(frame: bytes, link: str, tunnels: UdpTunnels) -> Dissection:
    d = _Dissector(bytes(frame), tunnels)
    d.run(link)
    return d.finish()


def locate(frame: bytes, link: str, tunnels: UdpTunnels, until: int) -> list[Header]:
    """The headers that start at or before offset ``until``, no checksum summed:
    what segmenting a GSO super-packet needs, before any deep dissection."""
    d = _Dissector(bytes(frame), tunnels, until)
    d.run(link)
    return d.headers


# --- context and small helpers ----------------------------------------------

class _Ctx:
    """Where in the frame a header sits: path prefix, qualifiers for people,
    indentation, and how many tunnels and quotes enclose it."""
    __slots__ = ("path", "words", "depth", "nesting", "quoted", "title_suffix")

    def __init__(self, path: str = "", words: tuple[str, ...] = (), depth: int = 0,
                 nesting: int = 0, quoted: bool = False, title_suffix: str = ""):
        self.path = path
        self.words = words
        self.depth = depth
        self.nesting = nesting
        self.quoted = quoted
        self.title_suffix = title_suffix  # " in ICMP" inside a quote, as scapy names them

    def deeper(self) -> "_Ctx":
        return _Ctx(self.path, self.words, self.depth + 1, self.nesting, self.quoted,
                    self.title_suffix)

    def qualified(self, word: str, path: str, quoted: Optional[bool] = None,
                  title_suffix: Optional[str] = None) -> "_Ctx":
        """One tunnel or quote further in."""
        words = self.words if self.words[-1:] == (word,) else self.words + (word,)
        return _Ctx(self.path + path, words, self.depth + 1, self.nesting + 1,
                    self.quoted if quoted is None else quoted,
                    self.title_suffix if title_suffix is None else title_suffix)

    def label(self, proto: str) -> str:
        return " ".join(self.words + (proto,))

    def short(self, have: int, need: int) -> str:
        return f"{'quote' if self.quoted else 'frame'} truncated: {max(have, 0)} of {need} bytes"


class _Net(NamedTuple):
    """What an L4 checksum needs from the network layer."""
    family: int
    src: bytes
    dst: bytes
    problem: str = ""               # why the pseudo-header is unknown, if it is

    def pseudo(self, proto: int, length: int) -> int:
        make = pseudo_sum_v4 if self.family == 4 else pseudo_sum_v6
        return make(self.src, self.dst, proto, length)


class _Fragment(NamedTuple):
    offset: int

    @property
    def reason(self) -> str:
        if self.offset:
            return f"non-first fragment (offset {self.offset}): its L4 header is elsewhere"
        return "fragmented: the L4 checksum covers the reassembled datagram"


def sums(buf: bytes, start: int, end: int, field_off: int, initial: int,
         udp: bool = False, folded: Optional[int] = None) -> tuple[bool, int]:
    """Judge the checksum field at ``field_off`` over ``buf[start:end]``, summing
    the bytes once (none if ``folded``, their folded sum, is known already):
    valid when the sum including the field folds to 0xffff (so TCP's 0x0000
    and 0xffff both pass, as receivers accept); the correct value is the
    complement of the sum without the field (every checksum field sits at an
    even offset from ``start``)."""
    # fold() written out (every frame takes this): 0 stays 0, else 1..0xffff
    if folded is None:
        folded = ones_sum(buf[start:end])
    total = initial + folded
    total = total % 0xFFFF or 0xFFFF if total else 0
    wire = buf[field_off] << 8 | buf[field_off + 1]
    rest = total + (~wire & 0xFFFF)         # ones' complement: total - field
    rest = rest % 0xFFFF or 0xFFFF if rest else 0
    if rest == 0xFFFF and not initial:
        data, at = buf[start:end], field_off - start
        if not any(data[:at] + data[at + 2:]):
            rest = 0   # every byte but the field is zero: the one sum fold keeps at 0
    correct = ~rest & 0xFFFF
    if udp and correct == 0:
        correct = 0xFFFF   # RFC 768: a computed zero is sent as all ones
    return total == 0xFFFF, correct


def _rendered(buf: bytes, off: int, end: int, specs: Iterable[FieldSpec]) -> list[tuple[str, str]]:
    """Every field of ``specs`` that lies before ``end``, formatted."""
    end = min(end, len(buf))
    return [(name, fmt(int.from_bytes(buf[off + rel:off + rel + size], "big")))
            for name, rel, size, fmt in specs if off + rel + size <= end]


def _raw_load(load: bytes) -> list[tuple[str, str]]:
    return [("load", repr(load[:32]) + (f" ... ({len(load)} bytes)" if len(load) > 32 else ""))]


# --- the dissector -------------------------------------------------------------

class _Dissector:
    def __init__(self, buf: bytes, tunnels: UdpTunnels, until: Optional[int] = None):
        self.buf = buf
        self.tunnels = tunnels
        self.until = until          # locating only: no header past it, no checksum summed
        self.headers: list[Header] = []
        self.encapsulated = False   # a top-level tunnel: the top-level layers are "outer"
        self.top_level: set[int] = set()
        self.todo: list[tuple[Callable[..., None], tuple]] = []

    def run(self, link: str) -> None:
        """Parse from the first header until nothing is left to parse."""
        if link not in ("ether", "ip"):
            raise ValueError(f"link must be 'ether' or 'ip', not {link!r}")
        todo, until = self.todo, self.until
        self.push(self.ether if link == "ether" else self.ip, 0, len(self.buf), _Ctx())
        while todo:
            parse, args = todo.pop()
            if until is None or args[0] <= until:
                parse(*args)

    def push(self, parse: Callable[..., None], *args) -> None:
        """Parse this next (LIFO: what is pushed last is parsed first)."""
        self.todo.append((parse, args))

    def finish(self) -> Dissection:
        if self.encapsulated:
            for h in self.headers:
                h.verdicts = [replace(v, layer="outer " + v.layer)
                              if id(v) in self.top_level else v for v in h.verdicts]
        return Dissection(self.headers, [v for h in self.headers for v in h.verdicts])

    # headers and verdicts

    def header(self, kind: str, title: str, off: int, end: int, ctx: _Ctx,
               specs: Iterable[FieldSpec] = ()) -> Header:
        """A header with every field of ``specs`` that lies before ``end``."""
        h = Header(kind, title + ctx.title_suffix, off, ctx.depth)
        if specs:
            h.later(partial(_rendered, self.buf, off, end, specs))
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

    def verify(self, h: Header, ctx: _Ctx, path: str, proto: str, field_name: str,
               field_off: int, start: int, end: int, initial: int = 0,
               udp: bool = False) -> None:
        if self.until is not None:
            return
        ok, correct = sums(self.buf, start, end, field_off, initial, udp)
        wire, status, reason = self.u16(field_off), Status.VALID, ""
        if not ok:
            status = Status.INVALID
            if ctx.quoted and path in SEEDED_IN_QUOTES and _is_seed(wire, initial):
                status, reason = Status.PENDING, PENDING_QUOTE
        self.note(h, ctx, path, proto, status, field=field_name, offset=field_off, wire=wire,
                  correct=correct, reason=reason)

    def unchecked(self, h: Header, ctx: _Ctx, path: str, proto: str, field_name: str,
                  field_off: int, avail_end: int, reason: str) -> LayerVerdict:
        wire = self.u16(field_off) if field_off + 2 <= avail_end else None
        return self.note(h, ctx, path, proto, Status.NOT_CHECKABLE, field=field_name,
                         offset=field_off, wire=wire, reason=reason)

    def malformed(self, h: Header, ctx: _Ctx, path: str, proto: str, reason: str) -> None:
        """A layer that cannot be judged, with no checksum field to point at."""
        self.note(h, ctx, path, proto, Status.NOT_CHECKABLE, field="", reason=reason)

    def nested(self, h: Header, ctx: _Ctx, word: str, path: str, what: str,
               **changes) -> Optional[_Ctx]:
        """The context one tunnel or quote further in; None, and a NOT_CHECKABLE
        layer on ``h``, when that is deeper than MAX_NESTING."""
        if ctx.nesting >= MAX_NESTING:
            self.malformed(h, ctx, path.rstrip("/"), what, NESTING_TOO_DEEP)
            return None
        if word == "inner" and not ctx.words:
            self.encapsulated = True
        return ctx.qualified(word, path, **changes)

    # link layer

    def ether(self, off: int, end: int, ctx: _Ctx) -> None:
        if end - off < 14:
            h = self.header("eth", "Ethernet", off, end, ctx)
            self.malformed(h, ctx, "eth", "Ethernet", ctx.short(end - off, 14))
            return
        h = self.header("eth", "Ethernet", off, end, ctx, ETHER_FIELDS)
        etype = self.u16(off + 12)
        off += 14
        tags = 0
        while etype in VLAN_TPIDS:
            ctx, tags = ctx.deeper(), tags + 1
            h = self.header("vlan", VLAN_TPIDS[etype], off, end, ctx, VLAN_FIELDS)
            too_long = f"more than {MAX_CHAIN} VLAN tags" if tags > MAX_CHAIN else ""
            if end - off < 4 or too_long:
                self.malformed(h, ctx, "vlan", "VLAN tag", too_long or ctx.short(end - off, 4))
                return
            etype = self.u16(off + 2)
            off += 4
        self.ethertype(h, etype, off, end, ctx, tunnel=False)

    def ethertype(self, h: Header, etype: int, off: int, end: int, ctx: _Ctx,
                  tunnel: bool) -> None:
        """What an ethertype, or a tunnel's protocol type, says comes next."""
        if etype == ETH_P_IP:
            self.push(self.ipv4, off, end, ctx.deeper())
        elif etype == ETH_P_IPV6:
            self.push(self.ipv6, off, end, ctx.deeper())
        elif etype == ETH_P_TEB and tunnel:
            self.push(self.ether, off, end, ctx.deeper())
        elif etype not in ETHERTYPES_WITHOUT_CHECKSUM and (etype >= 0x600 or tunnel):
            self.malformed(h, ctx, f"ethertype-0x{etype:04x}", "payload",
                           f"ethertype 0x{etype:04x} not parsed")

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
            self.malformed(h, ctx, "ipv4", "IPv4",
                           f"malformed IPv4 header (first byte 0x{self.buf[off]:02x})")
            return
        if have < max(hlen, 20):
            self.unchecked(h, ctx, "ipv4", "IPv4", "chksum", off + 10, end,
                           ctx.short(have, max(hlen, 20)))
            return
        if hlen > 20:
            options = self.buf[off + 20:off + hlen]
            h.later(lambda: [("options", options.hex())])
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
            self.malformed(h, ctx, "ipv6", "IPv6",
                           f"malformed IPv6 header (first byte 0x{self.buf[off]:02x})")
            return
        if have < 40:
            self.malformed(h, ctx, "ipv6", "IPv6", ctx.short(have, 40))
            return
        plen, nh = self.u16(off + 4), self.buf[off + 6]
        declared_end = off + 40 + plen
        avail_end = min(end, declared_end)
        if plen == 0 and nh != IPPROTO_NONE:
            self.note(h, ctx, "ipv6", "IPv6", Status.NOT_CHECKABLE, field="plen",
                      reason="payload length 0 (jumbogram or BIG TCP) not supported")
            return
        src, dst = self.buf[off + 8:off + 24], self.buf[off + 24:off + 40]
        problem, fragment, cur, chain = "", None, off + 40, 0
        while nh in IPV6_EXT_HEADERS:
            ctx, chain = ctx.deeper(), chain + 1
            name = IPV6_EXT_HEADERS[nh]
            ext = self.header("ipv6-ext", f"IPv6 {name} Header", cur, avail_end, ctx,
                              IPV6_EXT_FIELDS)
            too_long = f"more than {MAX_CHAIN} extension headers" if chain > MAX_CHAIN else ""
            if avail_end - cur < 8 or too_long:
                self.malformed(ext, ctx, "ipv6", f"IPv6 {name} header",
                               too_long or ctx.short(avail_end - cur, 8))
                return
            length = 8 if nh == 44 else (self.buf[cur + 1] + 2) * 4 if nh == 51 else \
                (self.buf[cur + 1] + 1) * 8
            if avail_end - cur < length:
                self.malformed(ext, ctx, "ipv6", f"IPv6 {name} header",
                               ctx.short(avail_end - cur, length))
                return
            body = self.buf[cur:cur + length]
            if nh == 43 and body[3]:
                dst, problem = _routing_final_destination(body, dst)
                ext.later(lambda body=body: [("type", str(body[2])), ("segleft", str(body[3]))])
            elif nh == 44:
                word = int.from_bytes(body[2:4], "big")
                ext.later(lambda word=word, body=body: [
                    ("offset", str(word >> 3)), ("m", str(word & 1)),
                    ("id", hex(int.from_bytes(body[4:8], "big")))])
                if word & 0xFFF9:
                    fragment = _Fragment(word & 0xFFF8)
            elif nh == 60:
                src = _home_address(body) or src
            nh, cur = body[0], cur + length
        net = _Net(6, src, dst, problem)
        self.l4(nh, cur, declared_end, min(avail_end, declared_end), ctx.deeper(), net, fragment)

    # what an IP header carries

    def l4(self, proto: int, off: int, end: int, avail_end: int, ctx: _Ctx, net: _Net,
           fragment: Optional[_Fragment]) -> None:
        if proto == IPPROTO_NONE:
            return
        if proto in (IPPROTO_IPIP, IPPROTO_IPV6):
            self.ip_in_ip(proto, off, avail_end, ctx, net, fragment)
            return
        if proto not in self.PARSERS:
            h = self.header("raw", f"IP protocol {proto}", off, avail_end, ctx)
            self.malformed(h, ctx, f"proto-{proto}", f"IP protocol {proto}",
                           f"IP protocol {proto} not parsed")
            return
        path, name = self.PARSERS[proto]
        if fragment and (fragment.offset or proto == IPPROTO_GRE):
            h = self.header(path, name, off, off, ctx)
            reason = fragment.reason if fragment.offset else FRAGMENTED_INNER
            self.note(h, ctx, path, name, Status.NOT_CHECKABLE,
                      field="" if proto == IPPROTO_GRE else "chksum", reason=reason)
            return
        self.push(getattr(self, path), off, end, avail_end, ctx, net,
                  fragment.reason if fragment else "")

    def ip_in_ip(self, proto: int, off: int, avail_end: int, ctx: _Ctx, net: _Net,
                 fragment: Optional[_Fragment]) -> None:
        """IPIP, SIT, IP6IP6, IPv4 in IPv6: the inner IP header follows at once."""
        name = IP_IN_IP_NAMES[(net.family, proto)]
        if fragment:
            h = self.header(name.lower(), name, off, off, ctx)
            self.malformed(h, ctx, name.lower(), name,
                           fragment.reason if fragment.offset else FRAGMENTED_INNER)
            return
        inner = self.nested(self.headers[-1], ctx, "inner", name.lower() + "/",
                            f"{name} payload")
        if inner:
            self.push(self.ipv4 if proto == IPPROTO_IPIP else self.ipv6, off, avail_end, inner)

    # transport layer

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
        ulen, wire, dport = self.u16(off + 4), self.u16(field_off), self.u16(off + 2)
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
            correct = None if unknown or self.until is not None else sums(
                self.buf, off, udp_end, field_off, net.pseudo(IPPROTO_UDP, ulen), udp=True)[1]
            status, reason = ZERO_UDP6[self.tunnels.carries_tunnel(dport)]
            self.note(h, ctx, "udp", "UDP", status, offset=field_off, wire=0, correct=correct,
                      reason=reason)
        elif unknown:
            self.unchecked(h, ctx, "udp", "UDP", "chksum", field_off, avail_end, unknown)
        else:
            self.verify(h, ctx, "udp", "UDP", "chksum", field_off, off, udp_end,
                        net.pseudo(IPPROTO_UDP, ulen), udp=True)
        inner_end = min(avail_end, udp_end)
        tunnel = self.tunnels.dissected(dport)
        if tunnel is None:
            self.raw(off + 8, inner_end, ctx.deeper())
        elif fragmented:
            self.malformed(h, ctx, tunnel, UDP_TUNNEL_NAMES[tunnel], FRAGMENTED_INNER)
        else:
            self.push(self.vxlan if tunnel == "vxlan" else self.geneve, off + 8, inner_end,
                      ctx.deeper())

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
            options = self.buf[off + 20:off + hlen]
            h.later(lambda: [("options", options.hex())])
        self.raw(off + max(hlen, 20), avail_end, ctx.deeper())

    def icmp(self, off: int, end: int, avail_end: int, ctx: _Ctx, net: _Net,
             fragmented: str) -> None:
        kind = self.buf[off] if avail_end > off else None
        h = self.header("icmp", "ICMP", off, avail_end, ctx,
                        ICMP_HEAD + ICMP_REST.get(kind, OTHER_REST))
        self.message(h, off, end, avail_end, ctx, "icmp", "ICMP", "chksum", 0, fragmented)
        if kind in ICMP_ERROR_TYPES and not fragmented:
            words = self.buf[off + 5] if kind in ICMP_RFC4884_TYPES and avail_end > off + 5 else 0
            self.error_body(h, off, end, avail_end, words * 4, ctx, "icmp", "ICMP", " in ICMP")
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
            self.error_body(h, off, end, avail_end, words * 8, ctx, "icmpv6", "ICMPv6",
                            " in ICMPv6")
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

    def error_body(self, h: Header, off: int, end: int, avail_end: int, rfc4884_len: int,
                   ctx: _Ctx, path: str, proto: str, suffix: str) -> None:
        """What an ICMP error carries 8 bytes in: the invoking packet, and after
        it, when an RFC 4884 length says where the quote ends, the extension
        structure (pushed first: the quote comes first in the frame)."""
        start = off + 8
        if rfc4884_len >= RFC4884_MIN_QUOTE and start + rfc4884_len < end:
            self.push(self.extension, start + rfc4884_len, end, avail_end, ctx.deeper(),
                      f"{path}/ext", f"{proto} extension")
        stop = min(avail_end, start + rfc4884_len) if rfc4884_len else avail_end
        if stop <= start:
            return
        inner = self.nested(h, ctx, "quoted", f"{path}/quote/", f"{proto} quote", quoted=True,
                            title_suffix=suffix)
        if inner:
            self.push(self.ip, start, stop, inner)

    def extension(self, off: int, end: int, avail_end: int, ctx: _Ctx, path: str,
                  proto: str) -> None:
        """An RFC 4884 extension structure: a 4-byte header whose checksum covers
        the whole structure (0: none sent), then its objects."""
        h = self.header("icmp-ext", "ICMP Extension", off, avail_end, ctx,
                        ICMP_EXTENSION_FIELDS)
        length, have = end - off, avail_end - off
        field_off = off + 2
        if length < 4:
            reason = f"extension structure of {length} bytes is shorter than its 4-byte header"
        elif have < length:
            reason = ctx.short(have, length)
        elif self.buf[off] >> 4 != ICMP_EXTENSION_VERSION:
            reason = (f"extension version {self.buf[off] >> 4} not parsed "
                      f"(RFC 4884 defines {ICMP_EXTENSION_VERSION})")
        else:
            reason = ""
        if reason:
            self.unchecked(h, ctx, path, proto, "chksum", field_off, avail_end, reason)
        elif self.u16(field_off) == 0:
            self.note(h, ctx, path, proto, Status.DISABLED, offset=field_off, wire=0,
                      reason="zero: the sender computed no checksum (RFC 4884)")
        else:
            self.verify(h, ctx, path, proto, "chksum", field_off, off, end)
        self.extension_objects(off + 4, min(end, avail_end), ctx.deeper())

    def extension_objects(self, off: int, end: int, ctx: _Ctx) -> None:
        """Each object's header, for people; a malformed length ends the walk."""
        while end - off >= 4:
            h = self.header("icmp-ext-obj", "ICMP Extension Object", off, end, ctx,
                            ICMP_EXTENSION_OBJECT_FIELDS)
            length = self.u16(off)
            if length < 4 or off + length > end:
                h.later(lambda length=length, room=end - off: [
                    ("malformed", f"object length {length} with {room} bytes left")])
                return
            off += length

    # tunnels

    def vxlan(self, off: int, end: int, ctx: _Ctx) -> None:
        h = self.header("vxlan", "VXLAN", off, end, ctx, VXLAN_FIELDS)
        if end - off < 8:
            self.malformed(h, ctx, "vxlan", "VXLAN", ctx.short(end - off, 8))
            return
        inner = self.nested(h, ctx, "inner", "vxlan/", "VXLAN payload")
        if inner:
            self.push(self.ether, off + 8, end, inner)

    def geneve(self, off: int, end: int, ctx: _Ctx) -> None:
        """Geneve (RFC 8926): version 0, options skipped by their total length."""
        h = self.header("geneve", "Geneve", off, end, ctx, GENEVE_FIELDS)
        have = end - off
        if have < 8:
            self.malformed(h, ctx, "geneve", "Geneve", ctx.short(have, 8))
            return
        version, hlen = self.buf[off] >> 6, 8 + (self.buf[off] & 0x3F) * 4
        if version:
            self.malformed(h, ctx, "geneve", "Geneve", f"Geneve version {version} not parsed")
            return
        if have < hlen:
            self.malformed(h, ctx, "geneve", "Geneve", ctx.short(have, hlen))
            return
        if hlen > 8:
            options = self.buf[off + 8:off + hlen]
            h.later(lambda: [("options", geneve_options(options))])
        inner = self.nested(h, ctx, "inner", "geneve/", "Geneve payload")
        if inner:
            self.ethertype(h, self.u16(off + 2), off + hlen, end, inner, tunnel=True)

    def gre(self, off: int, end: int, avail_end: int, ctx: _Ctx, net: _Net,
            fragmented: str) -> None:
        """GRE (RFC 2784/2890): checksum, key and sequence number each present
        by their flag; the checksum covers the GRE header and its payload."""
        h = self.header("gre", "GRE", off, avail_end, ctx)
        have, length = avail_end - off, end - off
        if min(have, length) < 4:
            self.malformed(h, ctx, "gre", "GRE", ctx.short(have, 4) if have < length else
                           f"IP payload of {length} bytes is shorter than a GRE header")
            return
        flags = self.u16(off)
        h.later(partial(_rendered, self.buf, off, avail_end, gre_fields(flags)))
        if flags & GRE_VERSION:
            version = flags & GRE_VERSION
            self.malformed(h, ctx, "gre", "GRE", f"GRE version {version} not parsed"
                           + (" (PPTP)" if version == 1 else ""))
            return
        if flags & GRE_ROUTING:
            self.malformed(h, ctx, "gre", "GRE", "GRE source routing (RFC 1701) not parsed")
            return
        hlen = gre_header_length(flags)
        if length < hlen:
            self.malformed(h, ctx, "gre", "GRE",
                           f"IP payload of {length} bytes is shorter than its {hlen}-byte "
                           "GRE header")
            return
        if flags & GRE_CSUM:
            if have < length:
                self.unchecked(h, ctx, "gre", "GRE", "chksum", off + 4, avail_end,
                               ctx.short(have, length))
            else:
                self.verify(h, ctx, "gre", "GRE", "chksum", off + 4, off, end)
        if have < hlen:
            if not flags & GRE_CSUM:   # else the checksum's verdict says it already
                self.malformed(h, ctx, "gre", "GRE", ctx.short(have, hlen))
            return
        inner = self.nested(h, ctx, "inner", "gre/", "GRE payload")
        if inner:
            self.ethertype(h, self.u16(off + 2), off + hlen, avail_end, inner, tunnel=True)

    def raw(self, off: int, end: int, ctx: _Ctx) -> None:
        if end > off:
            h = Header("raw", "Raw", off, ctx.depth)
            h.later(partial(_raw_load, self.buf[off:end]))
            self.headers.append(h)

    # IP protocol -> (path, which names the parser method too; name for people).
    # IP in IP goes to ip_in_ip.
    PARSERS = {IPPROTO_UDP: ("udp", "UDP"), IPPROTO_TCP: ("tcp", "TCP"),
               IPPROTO_ICMP: ("icmp", "ICMP"), IPPROTO_ICMPV6: ("icmpv6", "ICMPv6"),
               IPPROTO_GRE: ("gre", "GRE")}



def _is_seed(wire: int, pseudo: int) -> bool:
    """``wire`` holds the pseudo-header sum as CHECKSUM_PARTIAL leaves it:
    folded, not inverted (``~csum_tcpudp_magic``/``~csum_ipv6_magic``); the two
    zeros of ones' complement are one value."""
    return wire % 0xFFFF == fold(pseudo) % 0xFFFF


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
