"""Topology files: every section builds into a real lab, every mistake is one line
naming the file, the line and the valid choices, and ``nslab up FILE`` keeps one."""
import os
import subprocess
import sys
import textwrap

import pytest

from topologies import bpf, traffic
from topologies.lab import netns, owner
from topologies.paths import PROJECT_ROOT
from topologies.scenarios import topology_file
from topologies.scenarios.topology_file import TopologyFileError

HERE = os.path.dirname(os.path.abspath(__file__))
EVERYTHING = os.path.join(HERE, "topologies", "everything.yaml")


def test_every_section_builds_into_the_lab(topology):
    nodes = topology("topologies/everything.yaml")
    client, router, server = nodes["client"], nodes["router"], nodes["server"]
    assert traffic.ping(client, "198.51.100.2", count=2).received == 2      # routed
    assert router.iface("eth0").mtu == 1400 and client.iface("eth0").mtu == 1400
    assert client.iface("eth0").feature("tx-checksum-ip-generic") is False
    assert "10.99.0.1/24" in router.iface("vx0").addresses()
    assert router.sysctl("net.ipv4.ip_forward") == "1"
    assert "--dport 9 -j DROP" in router.run(["iptables-save"]).stdout
    assert [f["name"] for f in bpf.tc_filters(server.iface("eth0"), "ingress")] != []


def test_a_file_parses_into_its_spec():
    spec = topology_file.load(EVERYTHING)
    assert spec.name == "everything" and list(spec.nodes) == ["client", "router", "server"]
    assert [link.kind for link in spec.links] == ["veth", "veth", "vxlan"]
    assert spec.links[2].options == {"vni": 42, "local": "198.51.100.1",
                                     "remote": "198.51.100.2", "underlay": "eth1",
                                     "udpcsum": True}
    assert spec.programs[0].hook == "tc-ingress"


BASE = """\
topology:
  nodes:
    a: {}
    b: {}
  links:
    - endpoints: [a:eth0, b:eth0]
"""


@pytest.mark.parametrize("text, line, message", [
    ("topolgy:\n  nodes: {a: {}}\n", 1, "unknown key 'topolgy'; valid: name, topology, bpf"),
    ("name: x\n", 1, "top level: missing topology"),
    (BASE + "    - endpoints: [a:eth1, c:eth0]\n", 7, "no node 'c'; nodes: a, b"),
    (BASE + "    - endpoints: [a:eth1]\n", 7, "a veth link has two endpoints, not 1"),
    (BASE + "    - {kind: gre, endpoints: [a:eth1, b:eth1]}\n", 7,
     "'gre' is not one of veth, vxlan, netkit"),
    (BASE + "    - {kind: vxlan, endpoint: a:vx0, vni: 1}\n", 7,
     "missing local, remote, underlay, udpcsum"),
    (BASE.replace("a: {}", "a: {interfaces: {eth0: {addresses: [10.0.0.300/24]}}}"), 3,
     "'10.0.0.300/24' is not an address/prefix"),
    (BASE.replace("a: {}", "a: {interfaces: {eth0: {mtu: big}}}"), 3,
     "expected a whole number, not 'big'"),
    (BASE.replace("a: {}", "a: {firewall: {pf: x}}"), 3,
     "unknown key 'pf'; valid: iptables, ip6tables, nft"),
    (BASE + "bpf:\n  - {file: x.c, program: p, attach: a:eth0, hook: xdp-native}\n", 8,
     "'xdp-native' is not one of xdp, xdp-generic, tc-ingress"),
    ("topology: [\n", 2, "not YAML"),
    ("", 1, "empty topology file"),
])
def test_a_mistake_is_one_line_with_the_file_line_and_choices(text, line, message):
    with pytest.raises(TopologyFileError) as caught:
        topology_file.parse(text, "lab.yaml")
    error = str(caught.value)
    assert error.startswith(f"lab.yaml:{line}: ") and message in error, error
    assert "\n" not in error


def nslab(*args, cwd=PROJECT_ROOT):
    return subprocess.run([sys.executable, "-m", "topologies.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_nslab_up_keeps_a_topology_file_and_down_removes_it(root_required, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(BASE.replace("a: {}", "a: {interfaces: {eth0: {addresses: [10.7.0.1/24]}}}"))
    name = f"file-{os.urandom(3).hex()}"
    up = nslab("up", "mine.yaml", "--name", name, cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    [record] = [r for r in owner.all_records() if r.name == name]
    try:
        assert "10.7.0.1/24" in nslab("ls", name).stdout
        assert len(netns.names(record.prefix)) == 2
    finally:
        assert nslab("down", name).returncode == 0
    assert netns.names(record.prefix) == []


def test_nslab_up_with_a_bad_file_is_one_line_and_creates_nothing(root_required, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(BASE) + "    - endpoints: [a:eth1, nowhere:eth0]\n")
    name = f"bad-{os.urandom(3).hex()}"
    up = nslab("up", str(path), "--name", name)
    assert up.returncode == 2
    assert up.stderr.strip() == f"nslab: {path}:7: topology.links[1].endpoints[1]: no node " \
                                f"'nowhere'; nodes: a, b"
    assert [r for r in owner.all_records() if r.name == name] == []   # no lab, no keeper
