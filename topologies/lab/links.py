"""Links between and inside nodes: veth, vxlan, netkit.

Links are created directly where they belong (a veth's peer straight into the
other namespace), never in the root namespace, so xdist workers cannot collide
on interface names.
"""
from __future__ import annotations

import contextlib
import errno
import os
import time
from typing import TYPE_CHECKING, Callable, Optional, Tuple

from ..errors import LabError, Unsupported
from . import ifflags, netns, rtnl, wakeup
from .iface import Iface
from .rtnl import NetlinkError, netlink_errors

if TYPE_CHECKING:
    from .node import Node


def _netns_fd(node: "Node") -> int:
    return os.open(netns.path_of(node.netns), os.O_RDONLY)


def _create(node: "Node", ifname: str, kind: str, add: Callable[[], None]) -> Iface:
    """Run ``add`` (the request that makes the link) and register the link's undo."""
    try:
        add()
    except netlink_errors() as exc:
        if exc.code == errno.EOPNOTSUPP:
            raise Unsupported(f"kernel {os.uname().release} has no {kind} link kind "
                              f"(CONFIG_{kind.upper()} not set)") from None
        raise LabError(f"{kind} {ifname} in node {node.name}: {exc.args[1]}") from None
    iface = Iface(node, ifname)
    node.lab.defer_within(_delete_link, node, ifname, what=f"{kind} {ifname} in {node.name}")
    return iface


def _create_with_pyroute2(node: "Node", ifname: str, kind: str, **spec) -> Iface:
    return _create(node, ifname, kind,
                   lambda: node.ipr.link("add", ifname=ifname, kind=kind, **spec))


def _delete_link(node: "Node", ifname: str) -> None:
    try:
        node.rtnl.delete_link(ifname)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:  # gone with its peer or namespace
            raise


def veth(a: "Node", a_name: str, b: "Node", b_name: str, *,
         mtu: Optional[int] = None, up: bool = True) -> Tuple[Iface, Iface]:
    """A veth pair with one end in each node, made in one request (the peer
    straight into b); with ``up``, returns once both ends are operational."""
    fd = _netns_fd(b)
    try:
        with LinkWatch(a, b) if up else contextlib.nullcontext() as watch:
            # This end comes up with the creation itself (ifinfomsg flags).
            request = rtnl.veth_request(a_name, b_name, fd, up=up, mtu=mtu)
            end_a = _create(a, a_name, "veth", lambda: a.rtnl.add_link(request))
            end_b = Iface(b, b_name)
            a.veth_peers[a_name], b.veth_peers[b_name] = end_b, end_a
            if up:
                end_b.up()
                watch.wait_operational(end_a, end_b)
    finally:
        os.close(fd)
    return end_a, end_b


class LinkWatch:
    """The link notifications of some nodes, subscribed before a change (the
    creation of a link, bringing it up), so none can slip past the wait.

    Without waiting, the first packets are dropped: an end opened before its
    peer has no carrier yet, and its qdisc is activated later by the kernel's
    link watcher (a workqueue, which a loaded machine delays). The kernel
    announces every end that is up with carrier only after its activation."""

    def __init__(self, *nodes: "Node"):
        # One order for every watch: two watches over the same nodes cannot deadlock.
        unique = {id(n.link_events): n.link_events for n in nodes}
        self._events = [unique[key] for key in sorted(unique)]

    def __enter__(self) -> "LinkWatch":
        with contextlib.ExitStack() as undo:
            for events in self._events:
                events.lock.acquire()
                undo.callback(events.lock.release)
                events.subscribe()
                undo.callback(events.unsubscribe)
            undo.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        for events in reversed(self._events):
            events.unsubscribe()
            events.lock.release()

    def wait_operational(self, *ends: Iface, timeout: float = 5.0,
                         ask_first: bool = False) -> None:
        """Wait for each end's announcement; ``ask_first``: the ends may have
        been announced before this watch began, ask the kernel first."""
        pending = {(id(end.node.link_events), end.name): end for end in ends}
        if ask_first:
            _drop_settled(pending)
        by_fd = {events.fileno(): events for events in self._events}
        poller = wakeup.poller(by_fd)
        deadline = time.monotonic() + timeout
        while pending:
            ready = wakeup.readable(poller, deadline)
            if ready is None:
                raise LabError(f"{', '.join(map(str, pending.values()))} did not become "
                               f"operational in {timeout}s")
            for fd in ready:
                events = by_fd[fd]
                try:
                    messages = events.read()
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    _drop_settled(pending)   # announcements were lost: ask instead
                    continue
                for msg in messages:
                    _note(pending, id(events), msg)


def _note(pending: dict, events_id: int, msg: rtnl.LinkMessage) -> None:
    end = pending.get((events_id, msg.ifname))
    if end is None:
        return
    if msg.type == rtnl.RTM_DELLINK:
        raise LabError(f"{end} was deleted while waiting for it to become operational")
    end.cache_index(msg.index)   # announced anyway: spares a lookup later
    if msg.operational:
        del pending[(events_id, msg.ifname)]


def _drop_settled(pending: dict) -> None:
    """Drop the ends the kernel reports up with carrier and an activated qdisc.
    The report may be read while the activation is still under way (RTNL held):
    a no-op flags change takes RTNL too, so it returns once that is done."""
    settled = []
    for key, end in list(pending.items()):
        try:
            state = end.node.rtnl.link(end.name)
        except NetlinkError as exc:
            raise LabError(f"{end}: {exc.args[1]}") from None
        end.cache_index(state.index)
        if state.operational and state.qdisc not in (None, "noop"):
            settled.append(end)
            del pending[key]
    for end in settled:
        end.node.call(ifflags.set_up, end.name)   # the RTNL barrier


def wait_operational(*ends: Iface, timeout: float = 5.0) -> None:
    """Wait until each end (brought up earlier) is operational."""
    with LinkWatch(*(end.node for end in ends)) as watch:
        watch.wait_operational(*ends, timeout=timeout, ask_first=True)


def vxlan(node: "Node", ifname: str, *, vni: int, local: str, remote: str, underlay: str,
          udpcsum: bool, port: int = 4789, mtu: Optional[int] = None,
          learning: bool = False, up: bool = True) -> Iface:
    """A unicast VXLAN device. ``udpcsum`` is always explicit: the kernel's
    default for the outer UDP checksum has changed over the years."""
    request = rtnl.vxlan_request(ifname, vni=vni, port=port, link=node.ifindex(underlay),
                                 local=local, remote=remote, udpcsum=udpcsum,
                                 learning=learning, mtu=mtu)
    dev = _create(node, ifname, "vxlan", lambda: node.rtnl.add_link(request))
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
    from . import netkit as _netkit   # registers the kind with pyroute2, which it imports
    for value, table in ((mode, _netkit.MODES), (policy, _netkit.POLICIES),
                         (peer_policy, _netkit.POLICIES), (scrub, _netkit.SCRUB),
                         (peer_scrub, _netkit.SCRUB)):
        if value not in table:
            raise LabError(f"netkit: {value!r} is not one of {', '.join(table)}")
    fd = _netns_fd(peer)
    try:
        spec = _netkit.link_spec(peer_name, fd, mode=mode, policy=policy,
                                 peer_policy=peer_policy, scrub=scrub, peer_scrub=peer_scrub)
        with LinkWatch(primary, peer) if up else contextlib.nullcontext() as watch:
            end_primary = _create_with_pyroute2(primary, primary_name, "netkit", **spec)
            end_peer = Iface(peer, peer_name)
            if up:
                end_primary.up()
                end_peer.up()
                watch.wait_operational(end_primary, end_peer)
    finally:
        os.close(fd)
    return end_primary, end_peer
