"""nslab up / ls / exec / capture / down, as a person would type them."""
import os
import secrets
import subprocess
import sys

import pytest

from topologies.lab import netns, owner
from topologies.paths import PROJECT_ROOT
from topologies.scenarios import TOPOLOGIES

REPO = str(PROJECT_ROOT)


def nslab(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "topologies.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def lab_name(root_required):
    name = f"t-{secrets.token_hex(3)}"
    yield name
    nslab("down", name)   # in case the test failed half-way


def records_named(name):
    return [r for r in owner.all_records() if r.name == name]


FRAMES = 5   # enough that the overlay's own UDP shows even if the underlay ARPs first
# DNS-like queries from node_a over the overlay until stopped (paced, not timed).
QUERY_LOOP = ("import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "while True:\n    s.sendto(b'q', ('10.244.1.2', 53))\n    time.sleep(0.1)\n")


def nslab_popen(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "topologies.cli", *args], cwd=REPO,
                            text=True, **kwargs)


@pytest.mark.parametrize("argv, message", [
    (["up", "nope"], "unknown topology 'nope'; topologies: " + ", ".join(sorted(TOPOLOGIES))),
    (["up", "vxlan_overlay", "--set", "colour=red"], "unknown knob 'colour'; knobs: udpcsum"),
    (["up", "vxlan_overlay", "--set", "nat=bogus"], "nat='bogus' is not one of nat_none"),
    (["up", "vxlan_overlay", "--set", "nat"], "expected knob=value"),
])
def test_bad_up_is_one_line_exit_2_and_creates_nothing(lab_name, argv, message):
    result = nslab(*argv, "--name", lab_name)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert records_named(lab_name) == []


def test_up_ls_exec_capture_down(lab_name, tmp_path):
    up = nslab("up", "vxlan_overlay", "--name", lab_name, "--set", "nat=masq_random_fully")
    assert up.returncode == 0, up.stderr
    [record] = records_named(lab_name)
    assert record.owner_alive() and record.pid != os.getpid()

    listing = nslab("ls", lab_name).stdout
    for expected in ("node node_a", "vxlan0", "10.244.0.1/24", "nat = masq_random_fully"):
        assert expected in listing

    inside = nslab("exec", lab_name, "pod", "--", "ip", "-br", "addr", "show", "eth0")
    assert inside.returncode == 0 and "10.244.1.2/24" in inside.stdout

    capture = nslab_popen("capture", lab_name, "node_b", "eth0", "--count", str(FRAMES),
                          "--seconds", "60", "--pcapng", str(tmp_path / "c.pcapng"),
                          stdout=subprocess.PIPE)
    ready = capture.stdout.readline()   # the socket is bound: traffic from now on shows
    assert ready.startswith("capturing on node_b:eth0"), ready
    sender = nslab_popen("exec", lab_name, "node_a", "--", sys.executable, "-c", QUERY_LOOP,
                         stdout=subprocess.DEVNULL)
    try:
        out, _ = capture.communicate(timeout=90)
    finally:
        sender.kill()
        sender.wait()
    assert "outer UDP" in out and "frames; kernel dropped 0" in out
    # Exactly --count frames (issue 15: --count 4 printed 5).
    assert len([line for line in out.splitlines() if line[:3] in ("in ", "out")]) == FRAMES
    assert f"-- {FRAMES} frames" in out
    assert "machine-wide" in out or "drop reasons off" in out
    assert f"written to {tmp_path / 'c.pcapng'}" in out
    assert (tmp_path / "c.pcapng").read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"   # a pcapng SHB

    down = nslab("down", lab_name)
    assert down.returncode == 0 and records_named(lab_name) == []
    assert netns.names(record.prefix) == []


def test_exec_into_unknown_lab_or_node_is_one_line(lab_name):
    result = nslab("exec", lab_name, "node_a", "--", "true")
    assert result.returncode == 2 and f"no lab '{lab_name}'" in result.stderr


@pytest.mark.parametrize("topology", sorted(TOPOLOGIES))
def test_every_named_topology_comes_up_and_goes_down(lab_name, topology):
    up = nslab("up", topology, "--name", lab_name)
    assert up.returncode == 0, up.stderr
    [record] = records_named(lab_name)
    listing = nslab("ls", lab_name).stdout
    assert all(f"node {node}" in listing for node in record.description["nodes"])
    assert nslab("down", lab_name).returncode == 0
    assert netns.names(record.prefix) == []
