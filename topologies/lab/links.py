"""Links between and inside nodes: veth, vxlan, netkit.

Links are created directly where they belong (a veth's peer straight into the
other namespace), never in the root namespace, so xdist workers cannot collide
on interface names.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import time
from typing import TYPE_CHECKING, Optional, Tuple

from pyroute2.netlink.exceptions import NetlinkError

from ..errors import LabError, Unsupported
from . import ifflags, netns
from . import netkit as _netkit
from .iface import Iface

IFF_UP = 0x1

if TYPE_CHECKING:
    from .node import Node


def _netns_fd(node: "Node") -> int:
    return os.open(netns.path_of(node.netns), os.O_RDONLY)


def _create(node: "Node", ifname: str, kind: str, **spec) -> Iface:
    try:
        node.ipr.link("add", ifname=ifname, kind=kind, **spec)
    except NetlinkError as exc:
        if exc.code == errno.EOPNOTSUPP:
            raise Unsupported(f"kernel {os.uname().release} has no {kind} link kind "
                              f"(CONFIG_{kind.upper()} not set)") from None
        raise LabError(f"{kind} {ifname} in node {node.name}: {exc.args[1]}") from None
    iface = Iface(node, ifname)
    node.lab.defer_within(_delete_link, node, ifname, what=f"{kind} {ifname} in {node.name}")
    return iface


def _delete_link(node: "Node", ifname: str) -> None:
    try:
        node.ipr.link("del", ifname=ifname)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:  # gone with its peer or namespace
            raise


def veth(a: "Node", a_name: str, b: "Node", b_name: str, *,
         mtu: Optional[int] = None, up: bool = True) -> Tuple[Iface, Iface]:
    """A veth pair with one end in each node."""
    fd = _netns_fd(b)
    state = IFF_UP if up else 0
    try:
        # This end comes up with the creation itself (ifinfomsg flags).
        spec = {"peer": {"ifname": b_name, "net_ns_fd": fd}, "flags": state, "change": IFF_UP}
        if mtu:
            spec["mtu"] = mtu
            spec["peer"]["mtu"] = mtu
        end_a = _create(a, a_name, "veth", **spec)
    finally:
        os.close(fd)
    end_b = Iface(b, b_name)
    a.veth_peers[a_name], b.veth_peers[b_name] = end_b, end_a
    if up:
        b.call(ifflags.set_up, b_name)
        wait_operational(end_a, end_b)
    return end_a, end_b


def wait_operational(*ends: Iface, timeout: float = 5.0) -> None:
    """Wait until the kernel's link watcher has brought each end up: before
    that the qdisc is still the no-op one and the first packets are dropped
    (it runs on a workqueue, which a loaded machine delays).

    IFF_RUNNING (an ioctl, no lock) shows the operational state, which the
    link watcher sets just before it activates the qdisc, both under RTNL; a
    no-op SIOCSIFFLAGS afterwards takes RTNL too, so it returns only once the
    activation is done."""
    deadline = time.monotonic() + timeout
    for end in ends:
        while not end.node.call(ifflags.running, end.name):
            if time.monotonic() > deadline:
                raise LabError(f"{end} did not become operational in {timeout}s")
            time.sleep(0.0002)
    for end in ends[:1]:
        end.node.call(ifflags.set_up, end.name)   # the RTNL barrier


def vxlan(node: "Node", ifname: str, *, vni: int, local: str, remote: str, underlay: str,
          udpcsum: bool, port: int = 4789, mtu: Optional[int] = None,
          learning: bool = False, up: bool = True) -> Iface:
    """A unicast VXLAN device. ``udpcsum`` is always explicit: the kernel's
    default for the outer UDP checksum has changed over the years."""
    spec = dict(vxlan_id=vni, vxlan_port=port, vxlan_link=node.ifindex(underlay),
                vxlan_learning=int(learning))
    if ipaddress.ip_address(local).version == 6:
        spec.update(vxlan_local6=local, vxlan_group6=remote,
                    vxlan_udp_zero_csum6_tx=int(not udpcsum),
                    vxlan_udp_zero_csum6_rx=int(not udpcsum))
    else:
        spec.update(vxlan_local=local, vxlan_group=remote, vxlan_udp_csum=int(udpcsum))
    if mtu:
        spec["mtu"] = mtu
    dev = _create(node, ifname, "vxlan", **spec)
    if up:
        dev.up()
    return dev


def vxlan_info(node: "Node", ifname: str) -> dict:
    """The vxlan attributes the kernel reports (e.g. its udpcsum default)."""
    msg = node.ipr.link("get", index=node.ifindex(ifname))[0]
    data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
    return {name: value for name, value in data["attrs"]} if data else {}


def netkit(primary: "Node", primary_name: str, peer: "Node", peer_name: str, *,
           mode: str = "l3", policy: str = "forward", peer_policy: str = "forward",
           scrub: str = "default", peer_scrub: str = "default",
           up: bool = True) -> Tuple[Iface, Iface]:
    """A netkit pair; the primary end is the one BPF attaches to (BPF_NETKIT_PRIMARY)."""
    for value, table in ((mode, _netkit.MODES), (policy, _netkit.POLICIES),
                         (peer_policy, _netkit.POLICIES), (scrub, _netkit.SCRUB),
                         (peer_scrub, _netkit.SCRUB)):
        if value not in table:
            raise LabError(f"netkit: {value!r} is not one of {', '.join(table)}")
    fd = _netns_fd(peer)
    try:
        spec = _netkit.link_spec(peer_name, fd, mode=mode, policy=policy,
                                 peer_policy=peer_policy, scrub=scrub, peer_scrub=peer_scrub)
        end_primary = _create(primary, primary_name, "netkit", **spec)
    finally:
        os.close(fd)
    end_peer = Iface(peer, peer_name)
    if up:
        end_primary.up()
        end_peer.up()
        wait_operational(end_primary, end_peer)
    return end_primary, end_peer
