"""The lab's BPF core on a real kernel: build cache, libbpf loading and maps,
tc / XDP / tcx / netkit attach with real traffic, BPF_PROG_TEST_RUN, verifier
errors, and that nothing of ours survives ``lab.close()``.

The program under test is ``bpf/core_probe.c`` (the lab's self-test, not a
scenario), with its known-bad variant ``VARIANT_NO_CSUM_UPDATE``.
"""
from __future__ import annotations

import ctypes
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2 import IPRoute
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from topologies import LabError, Unsupported, bpf, traffic
from topologies.bpf import build, compiler, libbpf, prebuild, variants_of
from topologies.lab import netns
from topologies.report import describe_lab

CORE = "bpf/core_probe.c"
NO_CSUM = {"VARIANT_NO_CSUM_UPDATE": 1}
UDP_SLOT, NOT_IPV4_SLOT = 17, 255
PORT = 4242
RECEIVE_BOUND = 10.0   # s: datagrams arrive in ms; this only ends a wait gone wrong
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF, namespaces)")

# The TTL rewrite's expected outcome per build: is the IPv4 header checksum valid after it?
TTL_REWRITE = {"csum_update": ({}, True), "no_csum_update": (NO_CSUM, False)}


# -- helpers -------------------------------------------------------------------------
def ipv4_header_checksum_ok(frame: bytes) -> bool:
    """RFC 1071: the one's-complement sum of a valid header (checksum included) is 0xffff."""
    ihl = (frame[14] & 0x0F) * 4
    header = frame[14:14 + ihl]
    total = sum(struct.unpack(f"!{ihl // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def udp_frame(ttl: int = 64, tos: int = 0, payload: bytes = b"nslab") -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                 / IP(src="10.0.0.1", dst="10.0.0.2", ttl=ttl, tos=tos)
                 / UDP(sport=1234, dport=PORT) / payload)


def with_ttl_recomputed(frame: bytes, ttl: int) -> bytes:
    """What a correct TTL rewrite gives: scapy recomputes the header checksum in full."""
    pkt = Ether(frame)
    pkt[IP].ttl = ttl
    del pkt[IP].chksum
    return bytes(pkt)


def settings_value(tc_dec_ttl: int = 0, tc_drop: int = 0, xdp_drop: int = 0) -> bytes:
    return bytes([tc_dec_ttl, tc_drop, xdp_drop, 0])  # struct probe_settings


def counter(obj: libbpf.BpfObject, map_name: str, slot: int) -> int:
    return int.from_bytes(obj.map(map_name).lookup(slot), "little")


@dataclass
class Wire:
    """Two nodes on one veth, with a UDP socket on each side."""
    a_end: object
    b_end: object
    tx: socket.socket
    rx: socket.socket

    def send(self, count: int, dropped: Optional[Callable[[], bool]] = None) -> int:
        """Send ``count`` datagrams a -> b; return how many b received: each is
        awaited (up to RECEIVE_BOUND), unless ``dropped()`` says the program
        already decided on all of them (see ``decided``)."""
        for i in range(count):
            self.tx.sendto(b"probe %d" % i, ("10.0.0.2", PORT))
        received, deadline = 0, time.monotonic() + RECEIVE_BOUND
        while received < count and time.monotonic() < deadline:
            if select.select([self.rx], [], [], 0.01)[0]:
                self.rx.recv(64, socket.MSG_DONTWAIT)
                received += 1
            elif dropped and dropped():
                break
        return received


def decided(obj: libbpf.BpfObject, map_name: str, count: int) -> Callable[[], bool]:
    """True once the program counted ``count`` more UDP frames: it has passed or
    dropped each, so a frame not received by then never will be."""
    start = counter(obj, map_name, UDP_SLOT)
    return lambda: counter(obj, map_name, UDP_SLOT) - start >= count


@pytest.fixture
def wire(lab):
    a, b = lab.add_node("a"), lab.add_node("b")
    a_end, b_end = lab.veth(a, "eth0", b, "eth0")
    a_end.add_addr("10.0.0.1/24")
    b_end.add_addr("10.0.0.2/24")
    rx, tx = b.socket(), a.socket()
    lab.defer(rx.close, what="rx socket")
    lab.defer(tx.close, what="tx socket")
    rx.bind(("10.0.0.2", PORT))
    return Wire(a_end, b_end, tx, rx)


@pytest.fixture
def probe(lab):
    return bpf.load(lab, CORE)


@pytest.fixture(scope="module")
def builds():
    """Both builds loaded once for the test runs (no lab: nothing is attached)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (BPF)")
    objs = {name: libbpf.BpfObject.open(build(CORE, defines=defines).path, name=name)
            for name, (defines, _valid) in TTL_REWRITE.items()}
    yield objs
    for obj in objs.values():
        obj.close()


# -- build ----------------------------------------------------------------------------
def test_build_is_cached_by_content(tmp_path):
    first = build(CORE, cache=tmp_path)
    again = build(CORE, cache=tmp_path)
    assert (first.cache_hit, again.cache_hit) == (False, True)
    assert again.path == first.path and first.path.read_bytes()[:4] == b"\x7fELF"
    assert first.digest in first.path.name


def test_a_define_is_another_object(tmp_path):
    plain = build(CORE, cache=tmp_path)
    variant = build(CORE, defines=NO_CSUM, cache=tmp_path)
    assert not variant.cache_hit
    assert variant.digest != plain.digest
    assert variant.path.read_bytes() != plain.path.read_bytes()


def test_an_included_header_is_part_of_the_key(tmp_path):
    src, header = tmp_path / "prog.c", tmp_path / "local.h"
    src.write_text('#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n#include "local.h"\n'
                   'SEC("xdp") int verdict(struct xdp_md *ctx) { return VERDICT; }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    header.write_text("#define VERDICT 2\n")
    before = build(src, cache=tmp_path / "cache")
    header.write_text("#define VERDICT 1\n")
    after = build(src, cache=tmp_path / "cache")
    assert not after.cache_hit and after.digest != before.digest


def test_an_include_added_later_is_part_of_the_key(tmp_path):
    """The dependency scan is remembered in the process and redone when a file it found
    changed: a header that starts including another makes that one part of the key."""
    src, header, more = tmp_path / "prog.c", tmp_path / "local.h", tmp_path / "more.h"
    src.write_text('#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n#include "local.h"\n'
                   'SEC("xdp") int verdict(struct xdp_md *ctx) { return VERDICT; }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    header.write_text("#define VERDICT 2\n")
    more.write_text("#define UNUSED 1\n")
    build(src, cache=tmp_path / "cache")
    header.write_text('#include "more.h"\n#define VERDICT 2\n')
    including = build(src, cache=tmp_path / "cache")
    more.write_text("#define UNUSED 2\n")
    assert build(src, cache=tmp_path / "cache").digest != including.digest


def test_a_scan_is_remembered_until_a_header_could_be_another(tmp_path, monkeypatch):
    """The dependency scan is remembered on disk (every process of a suite builds the
    same programs) and redone when a header appears in a directory searched before
    the one it was found in."""
    first, later, source = tmp_path / "first", tmp_path / "later", tmp_path / "source"
    first.mkdir(), later.mkdir(), source.mkdir()
    src = source / "prog.c"
    src.write_text('#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n#include <verdict.h>\n'
                   'SEC("xdp") int verdict(struct xdp_md *ctx) { return VERDICT; }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    (later / "verdict.h").write_text("#define VERDICT 2\n")
    scans = []
    run_clang = compiler._run_clang
    monkeypatch.setattr(compiler, "_run_clang",
                        lambda argv, *rest: scans.append("-M" in argv) or run_clang(argv, *rest))
    cache = tmp_path / "cache"
    before = build(src, includes=[first, later], cache=cache)
    assert build(src, includes=[first, later], cache=cache).cache_hit
    assert scans == [True, False]              # scan, compile; then neither
    (first / "verdict.h").write_text("#define VERDICT 1\n")
    after = build(src, includes=[first, later], cache=cache)
    assert scans[2:] == [True, False] and after.digest != before.digest


def test_compile_error_names_the_first_error(tmp_path):
    src = tmp_path / "broken.c"
    src.write_text("int f(void) { return undeclared_thing; }\n")
    with pytest.raises(LabError, match=r"broken\.c:1:\d+: error: use of undeclared identifier"):
        build(src, cache=tmp_path)


def test_prebuild_builds_every_declared_variant(tmp_path):
    assert variants_of(CORE) == [{}, NO_CSUM]
    built = prebuild([CORE], cache=tmp_path)
    assert [b.defines for b in built] == [(), (("VARIANT_NO_CSUM_UPDATE", "1"),)]


# -- load, maps -------------------------------------------------------------------------
def test_load_exposes_programs_and_maps_by_name(lab, probe):
    assert probe.program("tc_count").type_name == "sched_cls"
    assert probe.program("xdp_count").type_name == "xdp"
    counts = probe.map("tc_counts")
    assert (counts.key_size, counts.value_size, counts.max_entries) == (4, 8, 256)
    with pytest.raises(LabError, match="no map 'nope'"):
        probe.map("nope")


def test_map_read_write_delete_and_iterate(lab, probe):
    settings_map = probe.map("settings")
    assert settings_map.lookup(0) == settings_value()
    settings_map.update(0, settings_value(xdp_drop=1))
    assert settings_map.lookup(0) == settings_value(xdp_drop=1)
    counts = probe.map("tc_counts")
    counts.update(7, struct.pack("=Q", 41))
    assert counter(probe, "tc_counts", 7) == 41
    assert len(list(counts.keys())) == 256            # an array has every key
    assert dict(counts.items())[struct.pack("=I", 7)] == struct.pack("=Q", 41)
    with pytest.raises(LabError, match="key is 2 bytes, needs 4"):
        counts.lookup(b"\0\0")
    with pytest.raises(LabError, match="tc_counts: delete"):
        counts.delete(7)                              # arrays cannot delete: EINVAL


# -- attach: tc ---------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_tc_counts_real_traffic_until_detached(wire, probe, direction):
    # ingress on the receiver, egress on the sender: both see the a -> b datagrams
    iface = wire.b_end if direction == "ingress" else wire.a_end
    attachment = bpf.attach_tc(iface, probe.program("tc_count"), direction, prio=7)
    assert bpf.tc_filters(iface, direction) == [{"name": "tc_count", "prio": 7, "handle": 1}]

    assert wire.send(5) == 5
    assert counter(probe, "tc_counts", UDP_SLOT) == 5

    attachment.detach()
    assert bpf.tc_filters(iface, direction) == []
    assert wire.send(3) == 3
    assert counter(probe, "tc_counts", UDP_SLOT) == 5
    attachment.detach()  # idempotent


def test_tc_drop_set_through_the_map_stops_traffic(wire, probe):
    bpf.attach_tc(wire.b_end, probe.program("tc_count"), "ingress")
    assert wire.send(1) == 1                          # ARP resolved before dropping starts
    probe.map("settings").update(0, settings_value(tc_drop=1))
    assert wire.send(3, dropped=decided(probe, "tc_counts", 3)) == 0
    probe.map("settings").update(0, settings_value())
    assert wire.send(3) == 3


# -- attach: XDP ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["native", "generic"])
def test_xdp_attach_is_real_drop_controlled_by_map(wire, probe, mode):
    attachment = bpf.attach_xdp(wire.b_end, probe.program("xdp_count"), mode)
    assert attachment.mode == mode
    assert bpf.xdp_state(wire.b_end) == bpf.XdpState(mode, probe.program("xdp_count").id)

    assert wire.send(4) == 4
    assert counter(probe, "xdp_counts", UDP_SLOT) == 4

    probe.map("settings").update(0, settings_value(xdp_drop=1))
    assert wire.send(4, dropped=decided(probe, "xdp_counts", 4)) == 0   # it ran and dropped
    assert counter(probe, "xdp_counts", UDP_SLOT) == 8

    probe.map("settings").update(0, settings_value())
    attachment.detach()
    assert bpf.xdp_state(wire.b_end) == bpf.XdpState(None, 0)
    assert wire.send(2) == 2
    assert counter(probe, "xdp_counts", UDP_SLOT) == 8


def test_native_xdp_fails_loudly_where_the_driver_has_none(lab, probe):
    lo = lab.add_node("solo").iface("lo")
    with pytest.raises(Unsupported, match="no xdp native"):
        bpf.attach_xdp(lo, probe.program("xdp_count"), "native")
    assert bpf.xdp_state(lo).mode is None             # and no generic fallback happened


# -- attach: tcx and netkit -------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_tcx_link_counts_until_closed(wire, probe, direction):
    if not libbpf.tcx_supported():
        pytest.skip(f"tcx needs kernel >= 6.6 (running {os.uname().release})")
    iface = wire.b_end if direction == "ingress" else wire.a_end
    prog = probe.program("tc_count")
    attachment = bpf.attach_tcx(iface, prog, direction)
    assert bpf.tcx_prog_ids(iface, direction) == [prog.id]

    assert wire.send(5) == 5
    assert counter(probe, "tc_counts", UDP_SLOT) == 5

    attachment.detach()
    assert bpf.tcx_prog_ids(iface, direction) == []
    assert wire.send(2) == 2
    assert counter(probe, "tc_counts", UDP_SLOT) == 5


@pytest.mark.parametrize("end", ["primary", "peer"])
def test_netkit_link_attaches_through_the_primary(lab, probe, end):
    a, b = lab.add_node("host"), lab.add_node("pod")
    try:
        primary, _peer = lab.netkit(a, "nk0", b, "eth0")
        attachment = bpf.attach_netkit(primary, probe.program("tc_count"), end)
    except Unsupported as exc:
        pytest.skip(str(exc))
    attach_type = libbpf.BPF_NETKIT_PRIMARY if end == "primary" else libbpf.BPF_NETKIT_PEER
    assert bpf.link_prog_ids(primary, attach_type) == [probe.program("tc_count").id]
    attachment.detach()
    assert bpf.link_prog_ids(primary, attach_type) == []


def test_netkit_attach_refuses_a_device_that_is_not_netkit(wire, probe):
    # Without CONFIG_NETKIT the probe says so before any attempt; with it, the kernel
    # refuses the veth (ENXIO) and the error says why.
    expected = "is not a netkit device" if libbpf.netkit_supported() else "needs CONFIG_NETKIT"
    with pytest.raises(LabError, match=expected):
        bpf.attach_netkit(wire.a_end, probe.program("tc_count"))


@needs_root
def test_tcx_probe_matches_the_kernel_version():
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    assert libbpf.tcx_supported() == ((major, minor) >= (6, 6))


def test_netkit_probe_agrees_with_the_link_kind(lab):
    try:
        lab.netkit(lab.add_node("host"), "nk0", lab.add_node("pod"), "eth0")
        has_netkit = True
    except Unsupported:
        has_netkit = False
    assert libbpf.netkit_supported() == has_netkit


# -- BPF_PROG_TEST_RUN ----------------------------------------------------------------------------
@pytest.mark.parametrize("build_name", list(TTL_REWRITE))
def test_ttl_rewrite_and_ipv4_header_checksum(builds, build_name):
    _defines, checksum_stays_valid = TTL_REWRITE[build_name]
    obj = builds[build_name]
    obj.map("settings").update(0, settings_value(tc_dec_ttl=1))
    frame = udp_frame(ttl=64)
    run = bpf.test_run(obj.program("tc_count"), frame)
    assert run.action == "TC_ACT_OK"
    assert Ether(run.data_out)[IP].ttl == 63
    assert ipv4_header_checksum_ok(run.data_out) is checksum_stays_valid
    if checksum_stays_valid:
        assert run.data_out == with_ttl_recomputed(frame, 63)
    else:  # the known-bad build: the old checksum is still there
        assert run.data_out[24:26] == frame[24:26]


@needs_root
@settings(max_examples=60, deadline=None)
@given(ttl=st.integers(0, 255), tos=st.integers(0, 255), payload=st.binary(max_size=80))
def test_incremental_ttl_update_equals_full_recomputation(builds, ttl, tos, payload):
    obj = builds["csum_update"]
    obj.map("settings").update(0, settings_value(tc_dec_ttl=1))
    frame = udp_frame(ttl=ttl, tos=tos, payload=payload)
    run = bpf.test_run(obj.program("tc_count"), frame)
    expected = with_ttl_recomputed(frame, ttl - 1) if ttl > 1 else frame  # TTL <= 1 is left
    assert run.data_out == expected


@pytest.mark.parametrize("prog_name, counts, knob, verdict", [
    ("tc_count", "tc_counts", {}, "TC_ACT_OK"),
    ("tc_count", "tc_counts", {"tc_drop": 1}, "TC_ACT_SHOT"),
    ("xdp_count", "xdp_counts", {}, "XDP_PASS"),
    ("xdp_count", "xdp_counts", {"xdp_drop": 1}, "XDP_DROP"),
])
def test_test_run_names_the_verdict(builds, prog_name, counts, knob, verdict):
    obj = builds["csum_update"]
    obj.map("settings").update(0, settings_value(**knob))
    before = counter(obj, counts, UDP_SLOT)
    run = bpf.test_run(obj.program(prog_name), udp_frame(), repeat=3)
    assert run.action == verdict
    assert counter(obj, counts, UDP_SLOT) == before + 3


def test_test_run_of_tc_needs_an_ethernet_header(builds):
    with pytest.raises(LabError, match="14-byte Ethernet header"):
        bpf.test_run(builds["csum_update"].program("tc_count"), b"\x45\x00")


# -- verifier ------------------------------------------------------------------------------------
@needs_root
def test_verifier_rejection_carries_the_verifier_message(tmp_path):
    src = tmp_path / "unchecked.c"
    src.write_text('#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
                   'SEC("tc") int reads_unchecked(struct __sk_buff *skb)\n'
                   '{ return *(__u8 *)(long)skb->data; /* no data_end check */ }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    built = build(src, cache=tmp_path / "cache")
    with pytest.raises(libbpf.VerifierError) as caught:
        libbpf.BpfObject.open(built.path, name="unchecked.c")
    err = caught.value
    assert isinstance(err, LabError) and "\n" not in str(err)
    assert "'reads_unchecked' rejected by the verifier" in str(err)
    assert "invalid access to packet" in str(err)
    assert "processed" in err.log                     # the whole log is kept


# -- lab close ----------------------------------------------------------------------
def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, netns.CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def _inspect_pinned(ns_fd: int, ifname: str) -> dict:
    """Hooks of ``ifname`` in a namespace we still hold open after its lab closed."""
    def inside() -> dict:
        _setns(ns_fd)  # a fresh thread: setns is per thread
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
        with IPRoute(fileno=sock.detach(), flags=0) as ipr:
            index = ipr.link_lookup(ifname=ifname)[0]
            xdp = ipr.link("get", index=index)[0].get_attr("IFLA_XDP")
            return {
                "xdp_prog_id": (xdp.get_attr("IFLA_XDP_PROG_ID") or 0) if xdp else 0,
                "tc": [msg.get_attr("TCA_KIND") for parent in (0xFFFFFFF2, 0xFFFFFFF3)
                       for msg in ipr.get_filters(index=index, parent=parent)],
                "tcx": [libbpf.mprog_query(index, t).prog_ids
                        for t in (libbpf.BPF_TCX_INGRESS, libbpf.BPF_TCX_EGRESS)]
                       if libbpf.tcx_supported() else [[], []],   # no tcx before 6.6
            }
    return netns.on_fresh_thread(inside)


@needs_root
def test_lab_close_detaches_everything_and_frees_our_programs(lab, wire, probe):
    tc, xdp = probe.program("tc_count"), probe.program("xdp_count")
    bpf.attach_tc(wire.b_end, tc, "ingress")
    bpf.attach_tc(wire.b_end, tc, "egress")
    bpf.attach_xdp(wire.b_end, xdp, "generic")
    bpf.attach_xdp(wire.a_end, xdp, "native", xdp_tx_peer=False)   # never XDP_TX
    if libbpf.tcx_supported():
        bpf.attach_tcx(wire.b_end, tc, "ingress")
    ids = [tc.id, xdp.id]
    # Keep the namespaces (and their devices) alive past close, to look inside.
    pins = [os.open(netns.path_of(node.netns), os.O_RDONLY) for node in lab.nodes.values()]
    try:
        lab.close()
        hooks = _inspect_pinned(pins[1], "eth0")     # node b
        assert hooks == {"xdp_prog_id": 0, "tc": [], "tcx": [[], []]}
        assert _inspect_pinned(pins[0], "eth0")["xdp_prog_id"] == 0
        deadline = time.monotonic() + 5               # tc frees its programs after RCU
        while any(map(libbpf.prog_exists, ids)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [i for i in ids if libbpf.prog_exists(i)] == []
    finally:
        for fd in pins:
            os.close(fd)


# -- XDP_TX on veth ---------------------------------------------------------------------------
XDP_TX_ALL = """#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int xdp_tx_all(struct xdp_md *ctx) { return XDP_TX; }
char _license[] SEC("license") = "GPL";
"""






def reflected(result) -> int:
    """UDP frames to our port that came back in on the client's end."""
    return sum(1 for pkt in result if not pkt.outgoing and len(pkt.frame) > 37
               and pkt.frame[23] == socket.IPPROTO_UDP
               and struct.unpack_from("!H", pkt.frame, 36)[0] == PORT)


@needs_root
@pytest.mark.parametrize("peer_pass", [True, False], ids=["peer-pass", "no-peer-program"])
def test_native_xdp_on_veth_gives_the_peer_a_pass_program_so_xdp_tx_is_received(
        lab, wire, capture, tmp_path, peer_pass):
    """Without a native XDP program on the peer, veth drops every XDP_TX frame and
    counts it only in its own xdp_tx_errors (the no-peer-program case shows the
    kernel fact the guard exists for)."""
    source = tmp_path / "xdp_tx_all.c"
    source.write_text(XDP_TX_ALL)
    prog = bpf.load(lab, source).program("xdp")          # found by its section
    bpf.attach_xdp(wire.b_end, prog, "native", xdp_tx_peer=peer_pass)
    peer = bpf.xdp_state(wire.a_end)
    wire.a_end.node.ipr.neigh("add", dst="10.0.0.2", lladdr=wire.b_end.mac,
                              ifindex=wire.a_end.index, state=0x80)   # NUD_PERMANENT
    cap = capture(wire.a_end.node, "eth0")
    before = wire.a_end.stats()["rx_packets"]
    for i in range(3):
        wire.tx.sendto(b"probe %d" % i, ("10.0.0.2", PORT))
    if peer_pass:
        traffic.wait_for(lambda: wire.a_end.stats()["rx_packets"] - before >= 3, timeout=10,
                         what="3 frames back on the client's end")
        assert reflected(cap.stop()) == 3
        assert peer.mode == "native" and libbpf.prog_name(peer.prog_id) == "xdp_tx_peer"
        assert wire.b_end.driver_stats()["rx_queue_0_xdp_tx_errors"] == 0
        assert "xdp/native:xdp_tx_peer" in " ".join(
            p for link in describe_lab(lab)["nodes"][wire.a_end.node.name]["links"]
            for p in link["programs"])
    else:
        traffic.wait_for(lambda: wire.b_end.driver_stats()["rx_queue_0_xdp_tx_errors"] >= 3,
                         timeout=10, what="3 XDP_TX errors")
        assert peer.mode is None and reflected(cap.stop()) == 0


@needs_root
def test_native_xdp_on_veth_is_refused_when_the_peer_runs_generic_xdp(lab, wire, probe):
    bpf.attach_xdp(wire.a_end, probe.program("xdp_count"), "generic")
    with pytest.raises(LabError, match="generic XDP on its peer .* xdp_tx_peer=False"):
        bpf.attach_xdp(wire.b_end, probe.program("xdp_count"), "native")
    assert bpf.xdp_state(wire.b_end).mode is None
