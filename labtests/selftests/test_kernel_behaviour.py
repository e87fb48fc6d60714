"""Probes of kernel behaviour that changes between releases (the table in
``topologies/scenarios/kernel_behaviour.py``): each measures its fact on the
running kernel and holds it to the table. On a kernel the table says nothing
about, the probe skips with what it measured — never a silent pass.

Kept light (no scapy, no hypothesis): ``nslab matrix`` runs it in VMs.
"""

import pytest

from topologies import Unsupported, bpf, traffic
from topologies.bpf import libbpf
from topologies.kernels import version
from topologies.paths import PROJECT_ROOT
from topologies.scenarios import kernel_behaviour
from topologies.scenarios import vxlan_overlay as vx

README = PROJECT_ROOT / "README.md"
PORT = 9


def holds(fact_id: str, measured: str) -> None:
    fact = kernel_behaviour.fact(fact_id)
    expected = fact.expected()
    if expected is None:
        pytest.skip(f"{fact_id}: no expectation for kernel {version.running()}; "
                    f"measured: {measured}")
    assert measured == expected, (f"{fact_id} on {version.running()}: measured {measured!r}, "
                                  f"the table says {expected!r}")


def test_bpf_csum_diff_folding(lab):
    obj = bpf.load(lab, "bpf/kernel_probes.c")
    retval = bpf.test_run(obj.program("csum_diff_probe"), bytes(64)).retval & 0xFFFFFFFF
    holds("bpf-csum-diff-folded", "folded" if retval <= 0xFFFF else "unfolded")


def test_netkit_link_kind(lab):
    a, b = lab.add_node("a"), lab.add_node("b")
    try:
        lab.netkit(a, "nk0", b, "eth0")
        present = "present"
    except Unsupported:         # the kernel has no such link kind
        present = "absent"
    expected = kernel_behaviour.fact("netkit").expected()
    if expected == "present if CONFIG_NETKIT":      # the rule can't know the config
        pytest.skip(f"netkit on {version.running()}: measured {present} (config-dependent)")
    holds("netkit", present)


def test_tcx_hooks(root_required):
    holds("tcx", "present" if libbpf.tcx_supported() else "absent")


def test_vxlan_udpcsum_default(lab):
    holds("vxlan-udpcsum-default",
          "udpcsum" if vx.kernel_udpcsum_default(lab) else "noudpcsum")


XDP_TX_ALL = """#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int xdp_tx_all(struct xdp_md *ctx) { return XDP_TX; }
char _license[] SEC("license") = "GPL";
"""






def test_veth_xdp_tx_without_a_peer_program(pair, tmp_path):
    """Reflect 3 datagrams with XDP_TX on the server's end, the client's end running
    no XDP program: the sender's xdp_tx_errors, or the client's receive counter,
    says where they went (an event either way, no fixed wait)."""
    client, server = pair
    source = tmp_path / "xdp_tx_all.c"
    source.write_text(XDP_TX_ALL)
    prog = bpf.load(server.lab, source).program("xdp_tx_all")
    bpf.attach_xdp(server.iface("eth0"), prog, "native", xdp_tx_peer=False)
    client.ipr.neigh("add", dst="10.0.0.2", lladdr=server.iface("eth0").mac,
                     ifindex=client.iface("eth0").index, state=0x80)   # NUD_PERMANENT
    before = client.iface("eth0").stats()["rx_packets"]
    with client.socket() as sock:
        for i in range(3):
            sock.sendto(b"probe %d" % i, ("10.0.0.2", PORT))

    def fate():
        if server.iface("eth0").driver_stats()["rx_queue_0_xdp_tx_errors"] >= 3:
            return "dropped"
        if client.iface("eth0").stats()["rx_packets"] - before >= 3:
            return "delivered"
        return None
    holds("veth-xdp-tx-needs-peer-xdp",
          traffic.wait_for(fate, timeout=10, interval=0.05, what="the 3 frames"))


def test_readme_shows_the_current_table():
    assert kernel_behaviour.markdown_table() in README.read_text(), \
        "README's kernel-behaviour table is stale: paste kernel_behaviour.markdown_table()"


@pytest.mark.parametrize("release, fact_id, expected", [
    ("6.12.117+deb12-amd64", "bpf-csum-diff-folded", "unfolded"),  # measured
    ("6.1.0-56-amd64", "netkit", "absent"), ("6.12.1170", "netkit", "present if CONFIG_NETKIT"),
    ("6.5.0", "tcx", "absent"), ("6.6.1", "tcx", "present"),       # the rule
    ("6.6.1", "netkit", "absent"), ("6.9.0", "netkit", "present if CONFIG_NETKIT"),
    ("6.15.0", "vxlan-udpcsum-default", None),                     # neither: unknown
])
def test_expectations_come_from_measurements_then_rules(release, fact_id, expected):
    assert kernel_behaviour.fact(fact_id).expected(release) == expected
