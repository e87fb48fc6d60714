"""The lab core on a real kernel: namespaces, links, addresses, routes,
offloads, firewall rule sets and traffic helpers."""
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from topologies import LabError, Unsupported, firewall, traffic
from topologies.lab import netns
from topologies.lab.links import vxlan_info


def test_namespaces_carry_the_lab_prefix_and_go_with_the_lab(lab):
    node = lab.add_node("solo")
    assert node.netns.startswith(lab.prefix + "-")
    assert node.netns in netns.names(lab.prefix)
    assert node.links() == ["lo"]
    lab.close()
    assert netns.names(lab.prefix) == []


def test_a_node_interrupted_while_being_made_leaves_no_namespace(lab, monkeypatch):
    """An exception (a signal turned into one) can land after the namespace's name
    is reserved and before its removal is registered: the lab removes it anyway."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(netns, "ThreadPoolExecutor", interrupted)
    with pytest.raises(KeyboardInterrupt):
        lab.add_node("half")
    monkeypatch.undo()
    assert netns.names(lab.prefix + "-") == [f"{lab.prefix}-half"]
    lab.close()
    assert netns.names(lab.prefix + "-") == []


def test_bad_node_name_is_a_one_line_error(lab):
    with pytest.raises(LabError, match="bad node name"):
        lab.add_node("Bad Name!")


@pytest.mark.parametrize("dst", ["10.0.0.2", "fd00::2"], ids=["ipv4", "ipv6"])
def test_veth_pair_carries_ping(pair, dst):
    client, _ = pair
    result = traffic.ping(client, dst, count=3)
    assert (result.sent, result.received) == (3, 3), result.errors


# Pairs of fresh nodes. Without a wait, about a quarter of first frames are lost;
# the old wait (polling IFF_RUNNING) lost some under load (35 of 600 once, 0 of 400
# on a quiet machine): this catches a missing wait, a racy one only sometimes.
FIRST_FRAME_PAIRS = 60
ETH_P_LOCAL_EXPERIMENTAL = 0x88B5
FIRST_FRAME = (b"\xff" * 6 + bytes.fromhex("020000000001")
               + ETH_P_LOCAL_EXPERIMENTAL.to_bytes(2, "big") + b"first frame".ljust(46, b"\0"))


def test_a_frame_sent_as_soon_as_veth_returns_arrives(lab):
    """``lab.veth`` returns once both ends are operational: until the kernel has
    activated an end's qdisc, what it sends is dropped."""
    lost, sockets = [], []
    for i in range(FIRST_FRAME_PAIRS):
        a, b = lab.add_node(f"a{i}"), lab.add_node(f"b{i}")
        # Ready before the link exists, so the frames leave the moment veth() returns.
        pair = {node: node.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                  socket.htons(ETH_P_LOCAL_EXPERIMENTAL)) for node in (a, b)}
        sockets += pair.values()
        lab.veth(a, "eth0", b, "eth0")
        for sock in pair.values():
            sock.sendto(FIRST_FRAME, ("eth0", ETH_P_LOCAL_EXPERIMENTAL))
        for sender, receiver in ((a, b), (b, a)):
            if not _received(pair[receiver]):
                lost.append(f"{sender.name} -> {receiver.name}")
    # Each close of a packet socket waits for an RCU grace period: together, one wait.
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda sock: sock.close(), sockets))
    assert lost == []


def _received(sock: socket.socket) -> bool:
    """Whether the other end's frame came in (a bound on a wait gone wrong: an
    arriving frame takes microseconds)."""
    sock.settimeout(2.0)
    try:
        while True:
            _frame, address = sock.recvfrom(2048)
            if address[2] != socket.PACKET_OUTGOING:
                return True
    except TimeoutError:
        return False


def test_sysctl_and_snmp_are_per_namespace(pair):
    client, server = pair
    client.sysctl("net.ipv4.ip_forward", "1")
    assert client.sysctl("net.ipv4.ip_forward") == "1"
    assert server.sysctl("net.ipv4.ip_forward") == "0"
    before_c, before_s = client.snmp(), server.snmp()
    traffic.ping(client, "10.0.0.2", count=4)
    assert client.snmp().delta(before_c).get("Icmp.OutEchos") == 4
    assert server.snmp().delta(before_s).get("Icmp.InEchos") == 4


def test_routes_neighbours_and_mtu(lab):
    """client — router — server: a route through the router, an MTU per link."""
    client, router, server = (lab.add_node(n) for n in ("client", "router", "server"))
    c0, r0 = lab.veth(client, "eth0", router, "eth0")
    r1, s0 = lab.veth(router, "eth1", server, "eth0")
    c0.add_addr("10.1.0.1/24"); r0.add_addr("10.1.0.254/24")
    r1.add_addr("10.2.0.254/24"); s0.add_addr("10.2.0.1/24")
    r1.set_mtu(1400); s0.set_mtu(1400)
    router.sysctl("net.ipv4.ip_forward", "1")
    client.add_route("10.2.0.0/24", via="10.1.0.254")
    server.add_route("10.1.0.0/24", via="10.2.0.254")
    assert client.route_get("10.2.0.1")["gateway"] == "10.1.0.254"
    assert r1.mtu == 1400
    assert traffic.ping(client, "10.2.0.1", count=1).received == 1
    gateway = [n for n in client.neighbours("eth0") if n["dst"] == "10.1.0.254"]
    assert gateway and gateway[0]["lladdr"] == r0.mac


def test_routes_reach_the_kernel_with_gateway_device_and_mtu(pair):
    """What ``ip route`` shows of each route nslab adds, both families and
    ``default``; the MTU is the one ``route_get`` reports for the path."""
    client, _ = pair
    client.add_route("198.51.100.0/24", via="10.0.0.2", mtu=1300)
    client.add_route("default", dev="eth0")
    client.add_route("2001:db8::/64", via="fd00::2", mtu=1280)
    client.add_route("::/0", via="fd00::2", dev="eth0")
    shown = [line.strip() for family in ("-4", "-6")
             for line in client.run(["ip", family, "route", "show"]).stdout.splitlines()]
    assert "198.51.100.0/24 via 10.0.0.2 dev eth0 proto static mtu 1300" in shown
    assert "default dev eth0 proto static" in shown
    assert "2001:db8::/64 via fd00::2 dev eth0 proto static metric 1024 mtu 1280 pref medium" \
        in shown
    assert "default via fd00::2 dev eth0 proto static metric 1024 pref medium" in shown
    assert client.route_get("198.51.100.7")["mtu"] == 1300
    assert client.route_get("2001:db8::7") == {
        "dst": "2001:db8::7", "gateway": "fd00::2", "prefsrc": "fd00::1",
        "oif": client.ifindex("eth0"), "dev": "eth0", "mtu": 1280}
    with pytest.raises(LabError, match="route add 198.51.100.0/24 in node client: File exists"):
        client.add_route("198.51.100.0/24", via="10.0.0.2")
    with pytest.raises(LabError, match="route add 198.51.100/24 in node client: .*not appear"):
        client.add_route("198.51.100/24", via="10.0.0.2")
    with pytest.raises(LabError, match="route get 203.0.113 in node client: .*not appear"):
        client.route_get("203.0.113")


def test_tcp_bulk_with_df_learns_the_path_mtu(lab):
    """A DF upload through a 1400-byte link completes only because the router's
    frag-needed reaches the client kernel, which then caches the path MTU."""
    client, router, server = (lab.add_node(n) for n in ("client", "router", "server"))
    c0, r0 = lab.veth(client, "eth0", router, "eth0")
    r1, s0 = lab.veth(router, "eth1", server, "eth0")
    c0.add_addr("10.1.0.1/24"); r0.add_addr("10.1.0.254/24")
    r1.add_addr("10.2.0.254/24"); s0.add_addr("10.2.0.1/24")
    r1.set_mtu(1400)   # the server keeps 1500: its MSS does not hide the small hop
    router.sysctl("net.ipv4.ip_forward", "1")
    client.add_route("10.2.0.0/24", via="10.1.0.254")
    server.add_route("10.1.0.0/24", via="10.2.0.254")
    sink = traffic.TcpSinkServer(server, "10.2.0.1", 5001)
    result = traffic.tcp_transfer(client, "10.2.0.1", sink.port, nbytes=2 << 20, timeout=20)
    assert result.completed, result.error
    assert client.route_get("10.2.0.1")["mtu"] == 1400


def test_udp_and_tcp_helpers(pair):
    client, server = pair
    echo = traffic.UdpEchoServer(server, "::", 5353)
    for dst in ("10.0.0.2", "fd00::2"):
        result = traffic.udp_request(client, dst, echo.port, count=3)
        assert result.answered == 3, result.errors
    sink = traffic.TcpSinkServer(server, "::", 5002)
    assert traffic.tcp_connect(client, "fd00::2", sink.port).connected
    assert traffic.tcp_transfer(client, "10.0.0.2", sink.port, nbytes=100_000).completed


def test_unanswered_traffic_is_reported_within_the_bound(pair):
    client, _ = pair
    udp = traffic.udp_request(client, "10.0.0.2", 9999, count=2, timeout=0.2)
    assert udp.answered == 0 and len(udp.errors) == 2
    tcp = traffic.tcp_connect(client, "10.0.0.3", 80, timeout=0.5)
    assert not tcp.connected and tcp.error


def test_a_wait_ends_when_the_kernel_counts_the_loss(pair):
    """Requests to a closed port are never answered: the server's Udp NoPorts
    ends each wait, far inside the bound. A connection whose SYNs a firewall
    drops ends at its first SYN retransmission, as the client counts it."""
    client, server = pair
    start = time.monotonic()
    udp = traffic.udp_request(client, "10.0.0.2", 9999, count=2, timeout=30,
                              dropped=traffic.counter_growth(server, "Udp.NoPorts"))
    assert udp.answered == 0 and len(udp.errors) == 2 and "dropped" in udp.errors[0]
    firewall.apply_iptables(server, "*filter\n-A INPUT -p tcp --dport 7001 -j DROP\nCOMMIT\n")
    resent = traffic.counter_growth(client, "Tcp.RetransSegs")
    tcp = traffic.tcp_connect(client, "10.0.0.2", 7001, timeout=30, lost=lambda: resent() >= 1)
    assert not tcp.connected and "given up" in tcp.error
    assert time.monotonic() - start < 10    # not the 30 s bounds


def test_offloads_are_read_and_set_by_ethtool_name(pair):
    client, _ = pair
    eth0 = client.iface("eth0")
    assert eth0.feature("tx-checksum-ip-generic") is True
    changed = eth0.set_offloads({"tx-checksum-ip-generic": False})
    assert changed["tx-checksum-ip-generic"] is False
    assert eth0.feature("tx-checksum-ip-generic") is False
    eth0.set_offloads({"tx": True})
    assert eth0.feature("tx-checksum-ip-generic") is True
    with pytest.raises(LabError, match="unknown ethtool feature"):
        eth0.set_offloads({"no-such-feature": False})
    assert eth0.feature("loopback") is False     # not a veth's to change
    with pytest.raises(LabError, match="could not set loopback on .fixed by the driver"):
        eth0.set_offloads({"loopback": True})


# kind → (the drop rule listed with its packet count, where the count is)
RULE_COUNTERS = {
    "iptables": (["iptables", "-w", "5", "-L", "LAB-IN", "-v", "-x", "-n"],
                 r"^\s*(\d+)\s+\d+\s+DROP"),
    "nft": (["nft", "list", "chain", "inet", "lab", "input"], r"counter packets (\d+)"),
}


def dropped_by_rule(node, kind: str) -> int:
    command, count = RULE_COUNTERS[kind]
    return sum(int(n) for n in re.findall(count, node.run(command).stdout, flags=re.M))


@pytest.mark.parametrize("kind", ["iptables", "nft"])
def test_firewall_rule_sets_apply_and_remove(pair, kind):
    client, server = pair
    echo = traffic.UdpEchoServer(server, "10.0.0.2", 7000)
    rules = {
        "iptables": "*filter\n:LAB-IN - [0:0]\n-A INPUT -j LAB-IN\n"
                    "-A LAB-IN -p udp --dport 7000 -j DROP\nCOMMIT\n",
        "nft": "table inet lab { chain input { type filter hook input priority 0; "
               "udp dport 7000 counter drop; }; }\n",
    }[kind]
    apply = firewall.apply_iptables if kind == "iptables" else firewall.apply_nft
    before = firewall.rules(server)
    applied = apply(server, rules)
    assert firewall.rules(server) != before
    # The request is not answered because the rule dropped it, as its counter says.
    assert traffic.udp_request(client, "10.0.0.2", echo.port, count=1,
                               dropped=lambda: dropped_by_rule(server, kind)).answered == 0
    applied.remove()
    assert traffic.udp_request(client, "10.0.0.2", echo.port, count=1).answered == 1
    assert firewall.rules(server) == before


def test_bad_firewall_text_is_a_one_line_error(pair):
    _, server = pair
    with pytest.raises(LabError, match="iptables-restore"):
        firewall.apply_iptables(server, "*filter\n-A NOPE -j DROP\nCOMMIT\n")


@pytest.mark.parametrize("udpcsum", [True, False], ids=["udpcsum", "noudpcsum"])
def test_vxlan_link_carries_traffic(pair, lab, udpcsum):
    client, server = pair
    for node, local, remote, overlay in ((client, "10.0.0.1", "10.0.0.2", "10.244.0.1/24"),
                                         (server, "10.0.0.2", "10.0.0.1", "10.244.0.2/24")):
        vx = lab.vxlan(node, "vx0", vni=42, local=local, remote=remote, underlay="eth0",
                       udpcsum=udpcsum)
        vx.add_addr(overlay)
    assert vxlan_info(client, "vx0")["IFLA_VXLAN_UDP_CSUM"] == int(udpcsum)
    result = traffic.ping(client, "10.244.0.2", count=3)
    assert result.received == 3, result.errors


def test_netkit_pair_carries_traffic_in_l3_mode(lab):
    a, b = lab.add_node("host"), lab.add_node("pod")
    try:
        primary, peer = lab.netkit(a, "nk0", b, "nk1", mode="l3")
    except Unsupported as exc:
        pytest.skip(str(exc))
    primary.add_addr("10.3.0.1/24")
    peer.add_addr("10.3.0.2/24")
    assert peer.info()["flags"] & 0x80  # IFF_NOARP in L3 mode
    assert traffic.ping(b, "10.3.0.1", count=2).received == 2


def test_sockets_are_created_inside_the_node(pair):
    client, _ = pair
    with client.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("10.0.0.1", 0))   # only exists inside the client namespace
