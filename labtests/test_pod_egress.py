"""S-LXC: pod egress with and without Cilium's redundant L3 rewrite (seed 004,
Cilium PR 42926), over veth and over netkit.

Live: the pod pings the remote node through the host. Both variants deliver;
the remote sees TTL / hop limit 62 with ``l3-rewrite`` (the program and the
host's forwarding each take one) and 63 with ``no-rewrite``; every IP header
checksum on the way is valid. Known-bad ``ttl-no-csum``: the host's ip_rcv
drops every IPv4 packet as a header checksum error (the remote never sees
one); IPv6 has no header checksum, so there it is as harmless as the rewrite.

On veth the gateway is resolved by the program alone (ARP reply / NA with the
host side's MAC); without the program it never resolves. On netkit (L3 mode)
the pod sends neither ARP nor NS and every frame carries zero MACs. netkit
needs CONFIG_NETKIT: those tests skip with the reason where it is missing.

BPF_PROG_TEST_RUN: the rewrite equals a from-scratch recomputation
(hypothesis), the known-bad one leaves the old checksum (the frame a veth
capture cannot show: taps run before tc ingress), and the ARP and NA replies
are well formed with valid checksums.
"""
from __future__ import annotations

import ipaddress
import os
import struct

import pytest

from topologies import Unsupported, bpf, traffic
from topologies.bpf import libbpf
from topologies.capture import kernel_chatter
from topologies.scenarios import pod_egress as pe
from topologies.verdict import Status, checksum, verify

PINGS = 3
ETHERTYPE = {"ipv4": 0x0800, "ipv6": 0x86DD}
ECHO_REQUEST = {"ipv4": (1, 8), "ipv6": (58, 128)}      # (IP protocol, ICMP type)
ETH_P_ARP = 0x0806
NDISC_NS = 135
NUD_FAILED, NUD_NOARP = 0x20, 0x40
# ms between the pod's ARP / NS probes for its gateway (default 1000): after
# mcast_solicit (3) of them the kernel gives up and marks the entry FAILED.
NEIGHBOUR_PROBE_INTERVAL = "100"
# Does a capture on the host side (lxc0) show the frame after the program?
# veth: no, tc ingress runs after the packet taps; netkit: yes, the program
# runs in the pod side's transmit, before the primary receives the frame.
TAP_AFTER_PROGRAM = {"veth": False, "netkit": True}
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF)")


def build_or_skip(lab, link: str, variant: str, **knobs) -> pe.PodEgress:
    try:
        return pe.build(lab, pe.Config(link, variant, **knobs))
    except Unsupported as exc:      # netkit without CONFIG_NETKIT
        pytest.skip(str(exc))


def echo_requests(result, family: str, src: str, direction: str = "in") -> list:
    """(frame, verdict) of the pod's echo requests in a capture."""
    proto, kind = ECHO_REQUEST[family]
    packed = ipaddress.ip_address(src).packed
    found = []
    for _pkt, verdict in result.verdicts(direction):
        f = verdict.frame
        if struct.unpack_from("!H", f, 12)[0] != ETHERTYPE[family]:
            continue
        if family == "ipv4":
            ihl = (f[14] & 0x0F) * 4
            fields = (f[23], f[26:30], f[14 + ihl])
        else:
            fields = (f[20], f[22:38], f[54])
        if fields == (proto, packed, kind):
            found.append((f, verdict))
    return found


def ip_header_status(verdict, family: str) -> Status:
    """IPv6 has no header checksum: count it as valid."""
    return verdict.layer("ipv4").status if family == "ipv4" else Status.VALID


# -- live: pod -> host -> remote ----------------------------------------------------------
@pytest.mark.parametrize("family", pe.FAMILIES)
@pytest.mark.parametrize("variant", pe.KNOBS["variant"])
@pytest.mark.parametrize("link", pe.KNOBS["link"])
def test_pod_reaches_remote(lab, capture, report_row, link, variant, family):
    knobs = {"link": link, "variant": variant, "family": family, "check": "ttl"}
    report_row(pe.SCENARIO, knobs)        # a row even when netkit skips
    topo = build_or_skip(lab, link, variant)
    expect = pe.VARIANTS[variant]
    delivered = pe.delivered(variant, family)
    host_before, remote_before = topo.host.snmp(), topo.remote.snmp()
    at_host, at_remote = capture(topo.host, "lxc0"), capture(topo.remote, "eth0")
    # A request the host drops for its header checksum is never answered: the
    # host's count says so (the known-bad variant), not a deadline.
    ping = traffic.ping(topo.pod, topo.remote_addr(family), count=PINGS,
                        dropped=traffic.counter_growth(topo.host, "IpExt.InCsumErrors"))
    host_view = echo_requests(at_host.stop(), family, topo.pod_addr(family))
    remote_view = echo_requests(at_remote.stop(), family, topo.pod_addr(family))
    host_delta = topo.host.snmp().delta(host_before)
    remote_delta = topo.remote.snmp().delta(remote_before)
    host_errors = {k: host_delta.get(k, 0) for k in ("Ip.InHdrErrors", "IpExt.InCsumErrors")}
    report_row(pe.SCENARIO, knobs,
               delivered=f"{ping.received}/{PINGS}",
               remote_ttl=",".join(sorted({str(pe.ip_ttl(f)) for f, _ in remote_view})) or "-",
               remote_ip_csum=",".join(sorted({ip_header_status(v, family).value
                                               for _, v in remote_view})) or "-",
               host_drops=host_errors["IpExt.InCsumErrors"],
               rewritten=topo.counter(f"rewritten_{family}"))

    # Delivery, and the TTL / hop limit the remote sees with valid headers.
    assert ping.received == (PINGS if delivered else 0), ping
    assert len(remote_view) == (PINGS if delivered else 0)
    assert {pe.ip_ttl(f) for f, _ in remote_view} <= {pe.remote_ttl(variant)}
    assert all(v.ok for _, v in remote_view), [v.summary() for _, v in remote_view]
    # The program's rewrites, and where a missing checksum update is dropped:
    # at the host's ip_rcv, as a header checksum error; the remote sees nothing.
    assert topo.counter(f"rewritten_{family}") == PINGS * expect.bpf_decrements
    dropped = 0 if delivered else PINGS
    assert host_errors == {"Ip.InHdrErrors": dropped, "IpExt.InCsumErrors": dropped}
    assert remote_delta.get("Ip.InHdrErrors", 0) == 0
    # The host side's tap: the frame as the pod sent it (veth), or as the program left it.
    after = TAP_AFTER_PROGRAM[link]
    assert len(host_view) == PINGS
    assert {pe.ip_ttl(f) for f, _ in host_view} == \
        {pe.START_TTL - (expect.bpf_decrements if after else 0)}
    bad_on_tap = after and family == "ipv4" and not expect.ipv4_header_valid
    assert {ip_header_status(v, family) for _, v in host_view} == \
        {Status.INVALID if bad_on_tap else Status.VALID}


# -- the gateway's MAC ------------------------------------------------------------------------
GATEWAY_QUERY = {"ipv4": "arp_replies", "ipv6": "na_replies"}


def gateway_answers(result, family: str, gateway: str) -> list:
    """ARP replies / neighbour advertisements for the gateway the pod received."""
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr
    from scapy.layers.l2 import ARP, Ether
    out = []
    for _pkt, verdict in result.verdicts("in"):
        pkt = Ether(verdict.frame)
        if family == "ipv4" and ARP in pkt and pkt[ARP].op == 2 and pkt[ARP].psrc == gateway:
            out.append((pkt[ARP].hwsrc, verdict))
        if family == "ipv6" and ICMPv6ND_NA in pkt and pkt[ICMPv6ND_NA].tgt == gateway:
            out.append((pkt[ICMPv6NDOptDstLLAddr].lladdr, verdict))
    return out


@pytest.mark.parametrize("family", pe.FAMILIES)
def test_veth_gateway_is_answered_by_the_program(lab, capture, report_row, family):
    topo = pe.build(lab, pe.Config("veth", "no-rewrite"))
    at_pod = capture(topo.pod, "eth0")
    assert traffic.ping(topo.pod, topo.remote_addr(family), count=1).received == 1
    answers = gateway_answers(at_pod.stop(), family, topo.gateway(family))
    neighbour = topo.gateway_neighbour(family)
    report_row(pe.SCENARIO, {"link": "veth", "variant": "no-rewrite", "family": family,
                              "check": "gateway"},
               gateway_mac=neighbour and neighbour["lladdr"],
               answered_by_program=topo.counter(GATEWAY_QUERY[family]))

    # No device owns the gateway address: the program's answer is the only one.
    assert topo.counter(GATEWAY_QUERY[family]) >= 1
    assert neighbour is not None and neighbour["lladdr"] == topo.host_end.mac == topo.router_mac
    assert answers and {mac for mac, _ in answers} == {topo.host_end.mac}
    assert all(v.ok for _, v in answers), [v.summary() for _, v in answers]  # NA's ICMPv6 csum


def gateway_failed(topo: pe.PodEgress, family: str) -> int:
    """1 once the pod's kernel gave up resolving its gateway (entry FAILED)."""
    neighbour = topo.gateway_neighbour(family)
    return int(bool(neighbour and neighbour["state"] & NUD_FAILED))


@pytest.mark.parametrize("family", pe.FAMILIES)
def test_veth_gateway_never_resolves_without_the_program(lab, capture, family):
    topo = pe.build(lab, pe.Config("veth", "no-rewrite"))
    topo.attachment.detach()
    topo.pod.sysctl(f"net.{family}.neigh.eth0.retrans_time_ms", NEIGHBOUR_PROBE_INTERVAL)
    at_pod = capture(topo.pod, "eth0")
    # "Never" as the pod's kernel decides it: its probes went unanswered.
    assert traffic.ping(topo.pod, topo.remote_addr(family), count=1,
                        dropped=lambda: gateway_failed(topo, family)).received == 0
    assert gateway_answers(at_pod.stop(), family, topo.gateway(family)) == []
    neighbour = topo.gateway_neighbour(family)
    assert neighbour is None or neighbour["lladdr"] is None


@pytest.mark.parametrize("family", pe.FAMILIES)
def test_netkit_pod_sends_no_arp_and_zero_macs(lab, capture, report_row, family):
    knobs = {"link": "netkit", "variant": "l3-rewrite", "family": family, "check": "gateway"}
    report_row(pe.SCENARIO, knobs)
    topo = build_or_skip(lab, "netkit", "l3-rewrite")
    at_pod = capture(topo.pod, "eth0")
    assert traffic.ping(topo.pod, topo.remote_addr(family), count=PINGS).received == PINGS
    # Not the kernel's own MLD reports (to 33:33:00:00:00:16): IPv6 sends them
    # even on an IFF_NOARP device with zero MACs.
    frames = [v.frame for _, v in at_pod.stop().verdicts(ignore=kernel_chatter)]
    resolution = [f for f in frames
                  if struct.unpack_from("!H", f, 12)[0] == ETH_P_ARP
                  or (f[12:14] == b"\x86\xdd" and f[20] == 58 and f[54] == NDISC_NS)]
    neighbour = topo.gateway_neighbour(family)
    report_row(pe.SCENARIO, knobs,
               gateway_mac=neighbour and neighbour["lladdr"],
               arp_or_ns_frames=len(resolution))

    assert topo.pod_end.mac == topo.host_end.mac == pe.ZERO_MAC
    assert resolution == []
    assert topo.counter("arp_replies") == topo.counter("na_replies") == 0
    assert len(frames) >= 2 * PINGS and {f[:12] for f in frames} == {bytes(12)}
    assert neighbour is not None and neighbour["state"] == NUD_NOARP


def test_netkit_primary_hook_sees_host_to_pod_traffic(lab, capture):
    """BPF_NETKIT_PRIMARY runs on the primary's transmit: the rewrite then hits
    the replies on their way into the pod, never the pod's own requests."""
    family = "ipv4"
    topo = build_or_skip(lab, "netkit", "l3-rewrite", netkit_end="primary")
    at_remote, at_pod = capture(topo.remote, "eth0"), capture(topo.pod, "eth0")
    assert traffic.ping(topo.pod, topo.remote_addr(family), count=PINGS).received == PINGS
    requests = echo_requests(at_remote.stop(), family, topo.pod_addr(family))
    replies = [v.frame for _, v in at_pod.stop().verdicts("in")
               if v.frame[12:14] == b"\x08\x00" and v.frame[23] == 1 and v.frame[34] == 0]
    assert {pe.ip_ttl(f) for f, _ in requests} == {pe.START_TTL - 1}
    assert len(replies) == PINGS and {pe.ip_ttl(f) for f in replies} == {pe.START_TTL - 2}
    assert topo.counter("rewritten_ipv4") == PINGS


# -- BPF_PROG_TEST_RUN ----------------------------------------------------------------------
ROUTER_MAC, POD_MAC = "02:00:00:00:01:01", "02:00:00:00:01:02"


@pytest.fixture(scope="module")
def builds():
    if os.geteuid() != 0:
        pytest.skip("needs root (BPF)")
    objs = {}
    for name, variant in pe.VARIANTS.items():
        obj = libbpf.BpfObject.open(bpf.build(pe.SOURCE, defines=variant.defines).path,
                                    name=f"pod_egress[{name}]")
        obj.map("config").update(0, pe.config_value(ROUTER_MAC))
        objs[name] = obj
    yield objs
    for obj in objs.values():
        obj.close()


def run(builds, variant: str, frame: bytes) -> bpf.TestRun:
    return bpf.test_run(builds[variant].program("from_pod"), frame)


def rewritten(frame: bytes, family: str, variant: str) -> bytes:
    """The oracle: what the variant must make of a routed packet, every
    checksum computed from scratch (ttl-no-csum: the old one left in place)."""
    expect = pe.VARIANTS[variant]
    out = bytearray(frame)
    if not expect.bpf_decrements or pe.ip_ttl(frame) <= 1:
        return frame
    out[0:6] = bytes.fromhex(ROUTER_MAC.replace(":", ""))
    if family == "ipv6":
        out[14 + 7] -= 1
        return bytes(out)
    out[14 + 8] -= 1
    if expect.ipv4_header_valid:
        ihl = (out[14] & 0x0F) * 4
        out[24:26] = b"\0\0"
        out[24:26] = struct.pack("!H", checksum(bytes(out[14:14 + ihl])))
    return bytes(out)


def routed_packets():
    """Any routed UDP packet from the pod: a hypothesis strategy, made by the
    test that uses it. Collecting this file imports neither hypothesis nor scapy
    (~12 s in a VM guest under TCG), which the live tests do not need."""
    from hypothesis import strategies as st
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    @st.composite
    def routed_packet_frames(draw):
        family = draw(st.sampled_from(pe.FAMILIES))
        ttl, tos = draw(st.integers(0, 255)), draw(st.integers(0, 255))
        payload = draw(st.binary(max_size=64))
        eth = Ether(src=POD_MAC, dst=draw(st.sampled_from([ROUTER_MAC, "02:00:00:00:09:09"])))
        if family == "ipv4":
            ip = IP(src="10.1.0.2", dst=str(draw(st.ip_addresses(v=4).filter(
                lambda a: int(a) >> 24 != 127 and int(a) >> 28 < 14))), ttl=ttl, tos=tos,
                id=draw(st.integers(0, 0xFFFF)), flags=draw(st.sampled_from(["", "DF"])))
        else:
            ip = IPv6(src="fd00:1::2", dst=str(draw(st.ip_addresses(v=6).filter(
                lambda a: not (a.is_multicast or a.is_link_local)))), hlim=ttl, tc=tos)
        return family, bytes(eth / ip / UDP(sport=1000, dport=2000) / payload)
    return routed_packet_frames()


@needs_root
@pytest.mark.parametrize("variant", list(pe.VARIANTS))
def test_rewrite_equals_recomputation(builds, variant):
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(packet=routed_packets())
    def rewrite_is_the_recomputation(packet):
        family, frame = packet
        result = run(builds, variant, frame)
        assert result.action == "TC_ACT_OK"
        assert result.data_out == rewritten(frame, family, variant)
        header_valid = pe.delivered(variant, family) or pe.ip_ttl(frame) <= 1
        assert ip_header_status(verify(result.data_out)[0], family) is \
            (Status.VALID if header_valid else Status.INVALID)
    rewrite_is_the_recomputation()


def link_local_only(kind: str) -> bytes:
    """Frames only the pod's link may see, by name."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import ICMPv6ND_NA, IPv6
    from scapy.layers.l2 import Ether
    frames = {
        "mld_report": Ether(src=POD_MAC, dst="33:33:00:00:00:16")
        / IPv6(src="fe80::1", dst="ff02::16", hlim=1) / b"x",
        "na_to_host": Ether(src=POD_MAC, dst=ROUTER_MAC)
        / IPv6(src="fd00:1::2", dst="fe80::2", hlim=255) / ICMPv6ND_NA(tgt="fd00:1::2"),
        "ipv4_multicast": Ether(src=POD_MAC, dst="01:00:5e:00:00:16")
        / IP(src="10.1.0.2", dst="224.0.0.22", ttl=1) / b"x",
        "ipv4_broadcast": Ether(src=POD_MAC, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="10.1.0.2", dst="255.255.255.255") / UDP(),
    }
    assert set(frames) == set(LINK_LOCAL_ONLY)
    return bytes(frames[kind])


LINK_LOCAL_ONLY = ("mld_report", "na_to_host", "ipv4_multicast", "ipv4_broadcast")


@needs_root
@pytest.mark.parametrize("kind", LINK_LOCAL_ONLY)
def test_link_local_traffic_is_never_rewritten(builds, kind):
    """What only this link may see is left alone: an NA with hop limit 254
    would be dropped by the host's ND (it insists on 255)."""
    frame = link_local_only(kind)
    result = run(builds, "l3-rewrite", frame)
    assert (result.action, result.data_out) == ("TC_ACT_OK", frame)


def arp_request(target: str) -> bytes:
    from scapy.layers.l2 import ARP, Ether
    return bytes(Ether(src=POD_MAC, dst="ff:ff:ff:ff:ff:ff")
                 / ARP(op=1, hwsrc=POD_MAC, psrc="10.1.0.2", pdst=target))


def neighbour_solicitation(target: str, src: str = "fd00:1::2") -> bytes:
    from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
    from scapy.layers.l2 import Ether
    snm = "ff02::1:ff" + ipaddress.IPv6Address(target).exploded[-7:]
    return bytes(Ether(src=POD_MAC, dst="33:33:ff:00:00:01") / IPv6(src=src, dst=snm, hlim=255)
                 / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=POD_MAC))


@needs_root
@pytest.mark.parametrize("variant", list(pe.VARIANTS))
def test_arp_reply_for_the_gateway(builds, variant):
    from scapy.layers.l2 import ARP, Ether
    result = run(builds, variant, arp_request(pe.GATEWAY["ipv4"]))
    assert result.action == "TC_ACT_REDIRECT"
    reply = Ether(result.data_out)
    assert (reply.dst, reply.src) == (POD_MAC, ROUTER_MAC)
    assert (reply[ARP].op, reply[ARP].hwsrc, reply[ARP].psrc, reply[ARP].hwdst,
            reply[ARP].pdst) == (2, ROUTER_MAC, pe.GATEWAY["ipv4"], POD_MAC, "10.1.0.2")


@needs_root
@pytest.mark.parametrize("variant", list(pe.VARIANTS))
def test_neighbour_advertisement_for_the_gateway(builds, variant):
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
    from scapy.layers.l2 import Ether
    result = run(builds, variant, neighbour_solicitation(pe.GATEWAY["ipv6"]))
    assert result.action == "TC_ACT_REDIRECT"
    verdict = verify(result.data_out)[0]
    assert verdict.layer("icmpv6").status is Status.VALID, verdict.summary()
    reply = Ether(result.data_out)
    assert (reply.dst, reply.src) == (POD_MAC, ROUTER_MAC)
    assert (reply[IPv6].src, reply[IPv6].dst, reply[IPv6].hlim) == \
        (pe.GATEWAY["ipv6"], "fd00:1::2", 255)
    na = reply[ICMPv6ND_NA]
    assert (na.tgt, na.R, na.S, na.O, reply[ICMPv6NDOptDstLLAddr].lladdr) == \
        (pe.GATEWAY["ipv6"], 1, 1, 1, ROUTER_MAC)


def not_for_the_gateway(kind: str) -> bytes:
    """Frames the program hands to the stack untouched, by name."""
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import ARP, Ether
    frames = {
        "arp_other_target": arp_request("10.1.0.7"),
        "arp_reply": bytes(Ether(src=POD_MAC, dst=ROUTER_MAC)
                           / ARP(op=2, psrc="10.1.0.2", pdst="10.1.0.1")),
        "ns_other_target": neighbour_solicitation("fd00:1::7"),
        "ns_dad_probe": neighbour_solicitation(pe.GATEWAY["ipv6"], src="::"),
        "echo_to_gateway": bytes(Ether(src=POD_MAC, dst=ROUTER_MAC)
                                 / IPv6(src="fd00:1::2", dst=pe.GATEWAY["ipv6"])
                                 / ICMPv6EchoRequest()),
    }
    assert set(frames) == set(NOT_FOR_THE_GATEWAY)
    return frames[kind]


NOT_FOR_THE_GATEWAY = ("arp_other_target", "arp_reply", "ns_other_target", "ns_dad_probe",
                       "echo_to_gateway")


@needs_root
@pytest.mark.parametrize("kind", NOT_FOR_THE_GATEWAY)
def test_everything_else_goes_to_the_stack(builds, kind):
    frame = not_for_the_gateway(kind)
    result = run(builds, "no-rewrite", frame)
    assert (result.action, result.data_out) == ("TC_ACT_OK", frame)
