"""S-XDP: an XDP ICMP echo responder (seeds 001 and 003).

    client:eth0 ==veth== responder:eth0 [XDP xdp_echo, native or generic]

The responder's program answers echo requests itself with XDP_TX, so its
kernel never sees them. In native mode the client's end runs ``xdp_pass``:
a veth delivers XDP_TX frames only to a peer whose receive side runs NAPI,
which an XDP program turns on (with GRO alone they sit in the queue).

The variants and what each must do to the reply's checksum are data
(``VARIANTS``); ``recomputed_reply`` is the oracle (every checksum computed
from scratch). One's complement has two zeros, and each incremental update
gets one of them wrong:
- RFC 1624's corner: a reply whose sum is 0xffff (-0) must carry 0x0000;
  RFC 1141's HC + m + ~m' writes 0xffff. Receivers accept it (it still sums
  to zero), only a comparison with the recomputation shows it.
  ``steered_payload`` makes the kernel's echo requests land there.
- The all-zero reply (IPv4, identifier 0, sequence 0, zero payload): its sum
  is +0, so its checksum must be 0xffff; the article's bpf_csum_diff (like
  RFC 1624's eqn. 3) writes 0x0000, and receivers drop it. ICMPv6 cannot get
  there: the pseudo-header is part of its sum.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .. import bpf
from ..errors import LabError
from ..paths import BPF_SOURCES
from ..verdict.checksum import checksum, fold, ones_sum, pseudo_sum_v6
from . import topology_file
from .knobs import KnobConfig

if TYPE_CHECKING:
    from ..bpf.libbpf import BpfObject
    from ..lab.iface import Iface
    from ..lab.lab import Lab
    from ..lab.node import Node

SCENARIO = "xdp_responder"
SOURCE = str(BPF_SOURCES / "xdp_responder.c")
BASE = topology_file.load(Path(__file__).with_suffix(".yaml"))   # client — responder
MODES = ("native", "generic")
FAMILIES = ("ipv4", "ipv6")


def _addresses(base: topology_file.TopologySpec) -> dict[str, tuple[str, str, int]]:
    """family → (client address, responder address, prefix length), from the file."""
    pairs = zip(base.nodes["client"].interfaces["eth0"].addresses,
                base.nodes["responder"].interfaces["eth0"].addresses)
    out = {}
    for client, responder in pairs:
        iface = ipaddress.ip_interface(client)
        out[f"ipv{iface.version}"] = (str(iface.ip), responder.split("/")[0],
                                      iface.network.prefixlen)
    return out


ADDRESSES = _addresses(BASE)
COUNTERS = {"answered_ipv4": 0, "answered_ipv6": 1, "passed": 2}   # enum in the program
MTU = BASE.links[0].options["mtu"]

ETH_HLEN = 14
IP_HLEN = {"ipv4": 20, "ipv6": 40}
ETHERTYPES = {0x0800: "ipv4", 0x86DD: "ipv6"}
ECHO_TYPES = {"ipv4": (8, 0), "ipv6": (128, 129)}     # (request, reply)
ICMP_PROTO = {"ipv4": 1, "ipv6": 58}
ECHO_IDENT = 0x4E53   # fixed identifier, so a request's checksum can be steered


@dataclass(frozen=True)
class Variant:
    """A build of the program and what it writes into the reply's checksum,
    given the request's checksum and the reply's from-scratch checksum."""
    defines: dict
    reply_checksum: Callable[[int, int], int]
    summary: str


def _article_diff(request: int, full: int) -> int:
    """bpf_csum_diff of the header with the field zeroed, folded, complemented:
    right except for a reply that is all zeros (IPv4 echo reply, identifier
    and sequence 0, zero payload). Its sum is +0, its checksum must be 0xffff;
    the diff yields -0 and writes 0x0000, as RFC 1624's eqn. 3 would. Receivers
    drop it. ICMPv6 never gets there: the pseudo-header is never all zeros."""
    return 0x0000 if full == 0xFFFF else full


def _rfc1141(request: int, full: int) -> int:
    """RFC 1624 section 3: RFC 1141's HC + m + ~m' gives -0 (0xffff) where a
    recomputation gives +0 (0x0000). Receivers accept it (both are zero in one's
    complement): only a comparison with recomputation shows it."""
    return 0xFFFF if full == 0x0000 else full


VARIANTS: dict[str, Variant] = {
    "icmp-ip-csum": Variant({}, _article_diff,
                            "the article's last program: ICMP and IPv4 header by bpf_csum_diff"),
    "icmp-csum": Variant({"VARIANT_ICMP_CSUM": 1}, _article_diff,
                         "ICMP by bpf_csum_diff; the address swap leaves the IPv4 checksum valid"),
    "no-csum": Variant({"VARIANT_NO_CSUM": 1}, lambda request, full: request,
                       "known-bad: the type changes, the checksum stays the request's"),
    "rfc1141": Variant({"VARIANT_RFC1141": 1}, _rfc1141,
                       "known-bad: RFC 1141's incremental update, -0 instead of 0x0000"),
}


def reply_verifies(variant: str, family: str, src: str, dst: str, message: bytes) -> bool:
    """Will ``variant``'s reply to the echo ``message`` (ICMP header and payload,
    as sent from ``src`` to ``dst``) pass the client's checksum check?"""
    pseudo = pseudo_sum(family, src, dst, len(message))
    message = message[:2] + b"\0\0" + message[4:]
    request = checksum(message, pseudo)
    full = checksum(bytes([ECHO_TYPES[family][1]]) + message[1:], pseudo)
    return verifies(VARIANTS[variant].reply_checksum(request, full), full)


def verifies(wire: int, full: int) -> bool:
    """Does a message whose from-scratch checksum is ``full`` verify with ``wire``
    in the field? The sum over everything must fold to 0xffff: -0 in place of
    +0 does, +0 in place of -0 (0x0000 on an all-zero message) does not."""
    return fold((~full & 0xFFFF) + wire) == 0xFFFF


def max_payload(family: str, mtu: int = MTU) -> int:
    """The largest echo payload that fits the MTU unfragmented."""
    return mtu - IP_HLEN[family] - 8


def payload_sizes(family: str) -> dict[str, int]:
    """Echo payload sizes the live tests send: empty, tiny, odd, ping's default, near the MTU."""
    return {"0": 0, "1": 1, "odd_57": 57, "56": 56,
            "mtu_minus_1": max_payload(family) - 1, "mtu": max_payload(family)}


# -- checksums: the corner case and the oracle ----------------------------------------
def _type_word(kind: int) -> int:
    return kind << 8   # type is the high byte, code 0 the low one


def all_zero_reply_request(family: str = "ipv4") -> bytes:
    """The ICMP echo request whose reply is all zeros: identifier 0, sequence 0,
    no payload. A ping socket never uses identifier 0, so this one is sent
    from a raw socket (the kernel still builds the IPv4 header)."""
    if family != "ipv4":
        raise LabError("an ICMPv6 reply is never all zeros: the pseudo-header is in its sum")
    head = struct.pack("!BBHHH", ECHO_TYPES[family][0], 0, 0, 0, 0)
    return head[:2] + struct.pack("!H", checksum(head)) + head[4:]


def corner_request_checksum(family: str) -> int:
    """The request checksum whose reply must carry 0x0000 (RFC 1624 section 3).

    The reply's checksum is 0x0000 when the reply's sum without it is 0xffff;
    the request differs only in the type word, so its sum is that plus the
    request's type word minus the reply's (IPv4 0xf7ff, IPv6 0x0100)."""
    request, reply = (_type_word(t) for t in ECHO_TYPES[family])
    request_sum = fold(0xFFFF + request + (~reply & 0xFFFF))
    return ~request_sum & 0xFFFF


def pseudo_sum(family: str, src, dst, length: int) -> int:
    """The pseudo-header's part of an ICMP checksum: none for ICMP, RFC 8200's for ICMPv6."""
    return pseudo_sum_v6(src, dst, ICMP_PROTO[family], length) if family == "ipv6" else 0


def steered_payload(family: str, src: str, dst: str, seq: int, size: int, want: int,
                    ident: int = ECHO_IDENT) -> bytes:
    """``size`` bytes whose first two make the kernel's request checksum ``want``.

    The kernel computes the request's checksum over the type word, the
    identifier (the socket's port), the sequence number, the payload and, for
    ICMPv6, the pseudo-header; two payload bytes are the free variable."""
    if size < 2:
        raise LabError(f"a steered payload needs 2 bytes at least, not {size}")
    rest = bytes(i & 0xFF for i in range(2, size))
    request_type = ECHO_TYPES[family][0]
    head = struct.pack("!BBHHH", request_type, 0, 0, ident, seq)
    base = fold(ones_sum(head + b"\0\0" + rest, pseudo_sum(family, src, dst, 8 + size)))
    target = ~want & 0xFFFF                        # the sum the message must fold to
    steer = (target - base) % 0xFFFF
    payload = struct.pack("!H", steer) + rest
    assert checksum(head + payload, pseudo_sum(family, src, dst, 8 + size)) == want
    return payload


@dataclass
class EchoFrame:
    """An echo request or reply frame, split where the responder works on it."""
    family: str
    frame: bytes
    l3: int = field(init=False)
    l4: int = field(init=False)

    def __post_init__(self):
        ethertype = struct.unpack_from("!H", self.frame, 12)[0]
        if ETHERTYPES.get(ethertype) != self.family:
            raise LabError(f"not an {self.family} frame (ethertype 0x{ethertype:04x})")
        self.l3 = ETH_HLEN
        self.l4 = ETH_HLEN + IP_HLEN[self.family]

    @property
    def icmp_type(self) -> int:
        return self.frame[self.l4]

    @property
    def icmp_checksum(self) -> int:
        return struct.unpack_from("!H", self.frame, self.l4 + 2)[0]

    @property
    def addresses(self) -> tuple[bytes, bytes]:
        size = 4 if self.family == "ipv4" else 16
        at = self.l3 + (12 if self.family == "ipv4" else 8)
        return self.frame[at:at + size], self.frame[at + size:at + 2 * size]

    def with_icmp_checksum(self, value: int) -> bytes:
        out = bytearray(self.frame)
        struct.pack_into("!H", out, self.l4 + 2, value)
        return bytes(out)


def recomputed_reply(family: str, request: bytes) -> bytes:
    """The oracle: MACs and addresses swapped, the reply type, and the ICMP and
    IPv4 header checksums computed from scratch (nothing incremental)."""
    req = EchoFrame(family, request)
    out = bytearray(request)
    out[0:6], out[6:12] = request[6:12], request[0:6]
    src, dst = req.addresses
    size = len(src)
    at = req.l3 + (12 if family == "ipv4" else 8)
    out[at:at + size], out[at + size:at + 2 * size] = dst, src
    if family == "ipv4":
        total = struct.unpack_from("!H", request, req.l3 + 2)[0]
        end = req.l3 + total
        out[req.l3 + 10:req.l3 + 12] = b"\0\0"
        struct.pack_into("!H", out, req.l3 + 10, checksum(bytes(out[req.l3:req.l4])))
        pseudo = 0
    else:
        length = struct.unpack_from("!H", request, req.l3 + 4)[0]
        end = req.l4 + length
        pseudo = pseudo_sum_v6(dst, src, ICMP_PROTO[family], length)
    out[req.l4] = ECHO_TYPES[family][1]
    out[req.l4 + 2:req.l4 + 4] = b"\0\0"
    struct.pack_into("!H", out, req.l4 + 2, checksum(bytes(out[req.l4:end]), pseudo))
    return bytes(out)


def expected_reply(variant: str, family: str, request: bytes) -> bytes:
    """What ``variant`` must make of ``request``: the oracle's reply with the
    ICMP checksum the variant's table entry says."""
    full = recomputed_reply(family, request)
    wire = VARIANTS[variant].reply_checksum(EchoFrame(family, request).icmp_checksum,
                                            EchoFrame(family, full).icmp_checksum)
    return EchoFrame(family, full).with_icmp_checksum(wire)


# -- the topology ---------------------------------------------------------------------
@dataclass
class XdpResponder:
    lab: "Lab"
    variant: str
    mode: str
    client: "Node"
    responder: "Node"
    client_end: "Iface"
    responder_end: "Iface"
    obj: "BpfObject"

    def client_addr(self, family: str) -> str:
        return ADDRESSES[family][0]

    def responder_addr(self, family: str) -> str:
        return ADDRESSES[family][1]

    def counter(self, name: str) -> int:
        value = self.obj.map("counters").lookup(COUNTERS[name])
        return int.from_bytes(value, "little")


KNOBS = {"variant": tuple(VARIANTS), "mode": MODES}


@dataclass(frozen=True)
class Config(KnobConfig):
    KNOBS = KNOBS

    variant: str = "icmp-ip-csum"
    mode: str = "native"


def build(lab: "Lab", config: Config) -> XdpResponder:
    """Client and responder on one veth (both families), the variant's build on
    the responder in the configured XDP mode."""
    nodes = topology_file.build(lab, BASE)
    client, responder = nodes["client"], nodes["responder"]
    client_end, responder_end = client.iface("eth0"), responder.iface("eth0")
    obj = bpf.load(lab, SOURCE, defines=VARIANTS[config.variant].defines)
    if config.mode == "native":
        # The client's own pass program (it never sends XDP_TX), so that
        # attach_xdp finds the responder's peer ready and adds none of its own.
        bpf.attach_xdp(client_end, obj.program("xdp_pass"), "native", xdp_tx_peer=False)
    bpf.attach_xdp(responder_end, obj.program("xdp_echo"), config.mode)
    return XdpResponder(lab, config.variant, config.mode, client, responder, client_end,
                        responder_end, obj)
