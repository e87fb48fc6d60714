"""Protocol numbers and the header fields the dissector shows, scapy style.

Each field spec is (name, offset in the header, size in bytes, formatter of
the big-endian value); the dissector shows a field only when its bytes are
in the frame.
"""
from __future__ import annotations

import ipaddress
from typing import Callable

DEFAULT_VXLAN_PORTS = (4789, 8472)   # IANA, and Linux's legacy default
DEFAULT_GENEVE_PORTS = (6081,)       # IANA (RFC 8926)

ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
ETH_P_TEB = 0x6558                   # Transparent Ethernet Bridging: GRETAP, Geneve L2
VLAN_TPIDS = {0x8100: "802.1Q", 0x88A8: "802.1AD", 0x9100: "802.1Q (QinQ)"}
ETHERTYPES_WITHOUT_CHECKSUM = {0x0806: "ARP", 0x8035: "RARP", 0x88CC: "LLDP"}
ETHERTYPE_NAMES = {ETH_P_IP: "IPv4", ETH_P_IPV6: "IPv6", ETH_P_TEB: "Ethernet (TEB)",
                   **VLAN_TPIDS, **ETHERTYPES_WITHOUT_CHECKSUM}

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58
IPPROTO_NONE = 59
IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_GRE = 4, 41, 47
# IP in IP, by (outer IP version, protocol): the Linux device kind names it
IP_IN_IP_NAMES = {(4, IPPROTO_IPIP): "IPIP", (4, IPPROTO_IPV6): "SIT",
                  (6, IPPROTO_IPV6): "IP6IP6", (6, IPPROTO_IPIP): "IPIP6"}
IPV6_EXT_HEADERS = {0: "Hop-by-Hop Options", 43: "Routing", 44: "Fragment",
                    51: "Authentication", 60: "Destination Options"}
PROTO_NAMES = {IPPROTO_ICMP: "icmp", IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp",
               IPPROTO_ICMPV6: "ipv6-icmp", IPPROTO_NONE: "no-next-header",
               IPPROTO_IPIP: "ipencap", IPPROTO_IPV6: "ipv6", IPPROTO_GRE: "gre"}

ICMP_ERROR_TYPES = {3, 4, 5, 11, 12}
ICMP_RFC4884_TYPES = {3, 11, 12}      # length of the quote, in 32-bit words, at byte 5
ICMPV6_ERROR_TYPES = {1, 2, 3, 4}
ICMPV6_RFC4884_TYPES = {1, 3}         # length of the quote, in 64-bit words, at byte 4
ICMPV6_NAMES = {1: "Destination Unreachable", 2: "Packet Too Big", 3: "Time Exceeded",
                4: "Parameter Problem", 128: "Echo Request", 129: "Echo Reply"}
HOME_ADDRESS_OPTION = 0xC9
ICMP_EXTENSION_VERSION = 2            # RFC 4884 section 7
# RFC 4884: a quote followed by an extension holds at least 128 bytes; Linux
# (ip_icmp_error_rfc4884) looks for no extension after a shorter one.
RFC4884_MIN_QUOTE = 128

# GRE (RFC 2784, RFC 2890): flag bits of the first 16-bit word
GRE_CSUM, GRE_ROUTING, GRE_KEY, GRE_SEQ, GRE_VERSION = 0x8000, 0x4000, 0x2000, 0x1000, 0x0007


FieldSpec = tuple  # (name, offset, size, formatter)


def hex_value(width: int) -> Callable[[int], str]:
    return lambda v: f"0x{v:0{width}x}"


def ipv4_flags(v: int) -> str:
    names = [n for bit, n in ((0x8000, "evil"), (0x4000, "DF"), (0x2000, "MF")) if v & bit]
    return "+".join(names)


def tcp_flags(v: int) -> str:
    return "".join(letter for bit, letter in enumerate("FSRPAUECN") if v & (1 << bit))


def next_header_name(v: int) -> str:
    return PROTO_NAMES.get(v, IPV6_EXT_HEADERS.get(v, str(v)))


def address(v: int, size: int) -> str:
    return str(ipaddress.ip_address(v.to_bytes(size, "big")))


def mac(v: int) -> str:
    return v.to_bytes(6, "big").hex(":")


def ethertype_name(v: int) -> str:
    return ETHERTYPE_NAMES.get(v, f"0x{v:04x}")


def gre_flags(v: int) -> str:
    names = [n for bit, n in ((GRE_CSUM, "C"), (GRE_ROUTING, "R"), (GRE_KEY, "K"),
                              (GRE_SEQ, "S")) if v & bit]
    return "+".join(names)


IPV4_FIELDS: list[FieldSpec] = [
    ("version", 0, 1, lambda v: str(v >> 4)), ("ihl", 0, 1, lambda v: str(v & 15)),
    ("tos", 1, 1, lambda v: hex(v)), ("len", 2, 2, str), ("id", 4, 2, str),
    ("flags", 6, 2, ipv4_flags), ("frag", 6, 2, lambda v: str(v & 0x1FFF)),
    ("ttl", 8, 1, str), ("proto", 9, 1, lambda v: PROTO_NAMES.get(v, str(v))),
    ("chksum", 10, 2, hex_value(4)), ("src", 12, 4, lambda v: address(v, 4)),
    ("dst", 16, 4, lambda v: address(v, 4)),
]
IPV6_FIELDS: list[FieldSpec] = [
    ("version", 0, 1, lambda v: str(v >> 4)), ("tc", 0, 2, lambda v: str((v >> 4) & 0xFF)),
    ("fl", 1, 3, lambda v: str(v & 0xFFFFF)), ("plen", 4, 2, str),
    ("nh", 6, 1, lambda v: next_header_name(v)),
    ("hlim", 7, 1, str), ("src", 8, 16, lambda v: address(v, 16)),
    ("dst", 24, 16, lambda v: address(v, 16)),
]
UDP_FIELDS: list[FieldSpec] = [("sport", 0, 2, str), ("dport", 2, 2, str), ("len", 4, 2, str),
                           ("chksum", 6, 2, hex_value(4))]
TCP_FIELDS: list[FieldSpec] = [
    ("sport", 0, 2, str), ("dport", 2, 2, str), ("seq", 4, 4, str), ("ack", 8, 4, str),
    ("dataofs", 12, 1, lambda v: str(v >> 4)), ("flags", 12, 2, lambda v: tcp_flags(v & 0x1FF)),
    ("window", 14, 2, str), ("chksum", 16, 2, hex_value(4)), ("urgptr", 18, 2, str),
]
ICMP_HEAD: list[FieldSpec] = [("type", 0, 1, str), ("code", 1, 1, str),
                              ("chksum", 2, 2, hex_value(4))]
ECHO_FIELDS: list[FieldSpec] = [("id", 4, 2, hex_value(4)), ("seq", 6, 2, hex_value(4))]
ICMP_REST: dict[int, list[FieldSpec]] = {
    0: ECHO_FIELDS, 8: ECHO_FIELDS,
    3: [("unused", 4, 1, str), ("length", 5, 1, str), ("nexthopmtu", 6, 2, str)],
    5: [("gw", 4, 4, lambda v: address(v, 4))],
    11: [("unused", 4, 1, str), ("length", 5, 1, str), ("unused", 6, 2, str)],
    12: [("ptr", 4, 1, str), ("length", 5, 1, str), ("unused", 6, 2, str)],
}
ICMPV6_HEAD: list[FieldSpec] = [("type", 0, 1, str), ("code", 1, 1, str),
                                ("cksum", 2, 2, hex_value(4))]
ICMPV6_REST: dict[int, list[FieldSpec]] = {
    1: [("length", 4, 1, str), ("unused", 5, 3, str)], 2: [("mtu", 4, 4, str)],
    3: [("length", 4, 1, str), ("unused", 5, 3, str)], 4: [("ptr", 4, 4, str)],
    128: ECHO_FIELDS, 129: ECHO_FIELDS,
}
OTHER_REST: list[FieldSpec] = [("rest", 4, 4, hex_value(8))]
ETHER_FIELDS: list[FieldSpec] = [("dst", 0, 6, mac), ("src", 6, 6, mac),
                                 ("type", 12, 2, ethertype_name)]
VLAN_FIELDS: list[FieldSpec] = [
    ("prio", 0, 1, lambda v: str(v >> 5)), ("dei", 0, 1, lambda v: str((v >> 4) & 1)),
    ("vlan", 0, 2, lambda v: str(v & 0xFFF)),
    ("type", 2, 2, ethertype_name),
]
IPV6_EXT_FIELDS: list[FieldSpec] = [("nh", 0, 1, next_header_name), ("len", 1, 1, str)]
VXLAN_FIELDS: list[FieldSpec] = [("flags", 0, 1, hex_value(2)), ("vni", 4, 3, hex)]
GENEVE_FIELDS: list[FieldSpec] = [
    ("version", 0, 1, lambda v: str(v >> 6)), ("optionlen", 0, 1, lambda v: str(v & 0x3F)),
    ("oam", 1, 1, lambda v: str(v >> 7)), ("critical", 1, 1, lambda v: str((v >> 6) & 1)),
    ("proto", 2, 2, ethertype_name), ("vni", 4, 3, hex),
]
ICMP_EXTENSION_FIELDS: list[FieldSpec] = [("version", 0, 1, lambda v: str(v >> 4)),
                                          ("chksum", 2, 2, hex_value(4))]
ICMP_EXTENSION_OBJECT_FIELDS: list[FieldSpec] = [("len", 0, 2, str), ("classnum", 2, 1, str),
                                                 ("classtype", 3, 1, str)]


def gre_fields(flags: int) -> list[FieldSpec]:
    """GRE's fields where they are: checksum, key and sequence number are each
    present only when their flag says so, and shift what follows."""
    specs: list[FieldSpec] = [("flags", 0, 2, gre_flags), ("version", 0, 2, lambda v: str(v & 7)),
                              ("proto", 2, 2, ethertype_name)]
    pos = 4
    if flags & (GRE_CSUM | GRE_ROUTING):
        specs += [("chksum", 4, 2, hex_value(4)), ("offset", 6, 2, str)]
        pos += 4
    for flag, name in ((GRE_KEY, "key"), (GRE_SEQ, "seq")):
        if flags & flag:
            specs.append((name, pos, 4, hex_value(8) if flag == GRE_KEY else str))
            pos += 4
    return specs


def gre_header_length(flags: int) -> int:
    return 4 + 4 * sum(bool(flags & f) for f in (GRE_CSUM | GRE_ROUTING, GRE_KEY, GRE_SEQ))


def geneve_options(data: bytes) -> str:
    """Geneve options (RFC 8926 section 3.5), class/type/length each, for people."""
    shown, pos = [], 0
    while pos + 4 <= len(data):
        length = 4 + (data[pos + 3] & 0x1F) * 4
        shown.append(f"class 0x{int.from_bytes(data[pos:pos + 2], 'big'):04x} "
                     f"type 0x{data[pos + 2]:02x} len {length}")
        pos += length
    if pos != len(data):
        shown.append(f"malformed: options end at {pos} of {len(data)} bytes")
    return "; ".join(shown)
