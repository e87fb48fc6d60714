"""A node: one lab namespace with its netlink socket and a thread inside it."""
from __future__ import annotations

import errno
import ipaddress
import shlex
import socket
import subprocess
from concurrent.futures import BrokenExecutor
from typing import TYPE_CHECKING, Optional, Sequence, Union

from ..errors import LabError
from . import ifflags, netns, rtnl, snmp
from .iface import Iface
from .rtnl import NetlinkError, netlink_errors

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from .lab import Lab

Command = Union[str, Sequence[str]]

# Set in every new namespace, before any link exists: labs must not wait for
# IPv6 duplicate address detection, and ICMP datagram ("ping") sockets must be
# allowed for the traffic helpers.
NODE_SYSCTLS = {
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv4.ping_group_range": "0 2147483647",
}


def _prepare_inside() -> tuple[rtnl.Rtnl, rtnl.LinkEvents]:
    """On the node's thread, in one go: sysctls, loopback up, and the bare
    rtnetlink sockets of the namespace."""
    for key, value in NODE_SYSCTLS.items():
        with open(_sysctl_path(key), "w") as f:
            f.write(value)
    ifflags.set_up("lo")
    return _open_sockets()


def _open_sockets() -> tuple[rtnl.Rtnl, rtnl.LinkEvents]:
    return rtnl.Rtnl.here(), rtnl.LinkEvents.here()


def _netlink_socket() -> int:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0).detach()


def _argv(command: Command) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


class Node:
    """A namespace in a lab. ``ipr`` is a pyroute2 ``IPRoute`` bound to it;
    use it from the thread that built the lab (pyroute2 sockets are per thread)."""

    def __init__(self, lab: "Lab", name: str, existing: Optional[str] = None):
        """A new namespace named after the lab, or (``existing``) a namespace
        someone else owns, which this node then only looks into."""
        self.lab, self.name = lab, name
        self.veth_peers: dict[str, Iface] = {}   # ifname → the other end, for veths made here
        self.netns = existing or f"{lab.prefix}-{name}"
        try:
            self._thread = netns.NamespaceThread(
                self.netns, create=existing is None,
                setup=_prepare_inside if existing is None else _open_sockets)
        except BrokenExecutor as exc:
            raise LabError(f"cannot {'enter' if existing else 'create'} namespace "
                           f"{self.netns}: {exc.__cause__ or exc}") from None
        if existing is None:
            lab.defer(netns.remove, self.netns, what=f"namespace {self.netns}")
        lab.defer(self._thread.close, what=f"thread in {self.netns}")
        self.rtnl, self.link_events = self._thread.setup_result
        self._ipr: Optional["IPRoute"] = None
        # Same place on the stack as when ipr was made here: undos registered
        # later may still use it.
        lab.defer(self._close_sockets, what=f"netlink sockets of {self.netns}")

    @property
    def ipr(self) -> "IPRoute":
        """pyroute2's IPRoute in this namespace, made on first use (pyroute2 is
        imported then: most tests never need it, see ``rtnl``)."""
        if self._ipr is None:
            from pyroute2 import IPRoute
            # flags=0: never let a typo create a namespace behind our back.
            self._ipr = IPRoute(fileno=self.call(_netlink_socket), flags=0)
        return self._ipr

    def _close_sockets(self) -> None:
        self.rtnl.close()
        self.link_events.close()
        if self._ipr is not None:
            self._ipr.close()

    def __repr__(self) -> str:
        return f"Node({self.name!r}, netns={self.netns!r})"

    # -- running things inside -------------------------------------------------
    def call(self, fn, *args, **kwargs):
        """Run ``fn`` on this node's thread, inside the namespace."""
        return self._thread.call(fn, *args, **kwargs)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM,
               proto: int = 0) -> socket.socket:
        """A socket created inside the namespace (usable from any thread)."""
        return self.call(socket.socket, family, type, proto)

    def run(self, command: Command, *, check: bool = True, timeout: float = 30,
            input: Optional[str] = None) -> subprocess.CompletedProcess:
        """Run a command inside the namespace; it inherits the thread's netns."""
        argv = _argv(command)
        try:
            proc = self.call(subprocess.run, argv, input=input, capture_output=True,
                             text=True, timeout=timeout)
        except FileNotFoundError:
            raise LabError(f"{argv[0]}: command not found (in node {self.name})") from None
        except subprocess.TimeoutExpired:
            raise LabError(f"{shlex.join(argv)} timed out after {timeout}s in node {self.name}") \
                from None
        if check and proc.returncode != 0:
            raise LabError(f"{shlex.join(argv)} failed in node {self.name} "
                           f"(exit {proc.returncode}): {_first_error(proc)}")
        return proc

    def popen(self, command: Command, **kwargs) -> subprocess.Popen:
        """Start a background process inside the namespace; it is stopped on cleanup."""
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = self.call(subprocess.Popen, _argv(command), **kwargs)
        self.lab.defer(_stop_process, proc, what=f"process {proc.pid} in {self.name}")
        return proc

    # -- state inside ----------------------------------------------------------
    def sysctl(self, key: str, value: Optional[str] = None) -> str:
        """Read, or write then read back, a sysctl of this namespace."""
        path = _sysctl_path(key)

        def access() -> str:
            if value is not None:
                with open(path, "w") as f:
                    f.write(str(value))
            with open(path) as f:
                return f.read().strip()
        try:
            return self.call(access)
        except OSError as exc:
            raise LabError(f"sysctl {key} in node {self.name}: {exc.strerror}") from None

    def snmp(self) -> snmp.Counters:
        return self.call(snmp.read_here)

    def iface(self, name: str) -> Iface:
        return Iface(self, name)

    def ifindex(self, name: str) -> int:
        try:
            return self.rtnl.link(name).index   # bare netlink: no hop to the node's thread
        except NetlinkError:
            raise LabError(f"no device {name!r} in node {self.name}") from None

    def add_route(self, dst: str, *, via: Optional[str] = None, dev: Optional[str] = None,
                  mtu: Optional[int] = None, **extra) -> None:
        """``ip route add dst [via] [dev] [mtu]`` in the main table; ``dst`` is
        ``addr/len`` or ``default`` (``::/0`` for IPv6). ``extra`` (pyroute2's
        route keywords: ``table``, ``scope``...) takes pyroute2's way."""
        if extra:
            return self._add_route_with_pyroute2(dst, via=via, dev=dev, mtu=mtu, **extra)
        try:
            gateway = ipaddress.ip_address(via) if via else None
            ipv6 = ":" in dst or bool(gateway and gateway.version == 6)
            network = ipaddress.ip_interface(("::/0" if ipv6 else "0.0.0.0/0")
                                             if dst == "default" else dst)
        except ValueError as exc:
            raise LabError(f"route add {dst} in node {self.name}: {exc}") from None
        family = socket.AF_INET6 if ipv6 else socket.AF_INET
        request = rtnl.route_change_request(
            family, network.ip.packed, network.network.prefixlen,
            gateway=gateway.packed if gateway else None,
            oif=self.ifindex(dev) if dev else None, mtu=mtu)
        try:
            self.rtnl.add_route(request)
        except NetlinkError as exc:
            raise LabError(f"route add {dst} in node {self.name}: {exc.args[1]}") from None
        self.lab.defer_within(_ignore_gone, self.rtnl.delete_route, request,
                              what=f"route {dst} in {self.name}")

    def _add_route_with_pyroute2(self, dst: str, *, via: Optional[str], dev: Optional[str],
                                 mtu: Optional[int], **extra) -> None:
        spec = dict(dst=dst, **extra)
        if via:
            spec["gateway"] = via
        if dev:
            spec["oif"] = self.ifindex(dev)
        if mtu:
            spec["metrics"] = {"attrs": [("RTAX_MTU", mtu)]}
        if ":" in dst or (via and ":" in via):
            spec["family"] = socket.AF_INET6
        try:
            self.ipr.route("add", **spec)
        except netlink_errors() as exc:
            raise LabError(f"route add {dst} in node {self.name}: {exc.args[1]}") from None
        self.lab.defer_within(_ignore_gone, self.ipr.route, "del",
                              what=f"route {dst} in {self.name}", **spec)

    def route_get(self, dst: str) -> dict:
        """The kernel's route to ``dst``, with the learned path MTU when cached."""
        try:
            address = ipaddress.ip_address(dst)
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            taken = self.rtnl.route_to(family, address.packed)
        except (ValueError, NetlinkError) as exc:
            why = exc.args[1] if isinstance(exc, NetlinkError) else exc
            raise LabError(f"route get {dst} in node {self.name}: {why}") from None
        return {"dst": dst, "gateway": taken.gateway, "prefsrc": taken.prefsrc,
                "oif": taken.oif, "dev": self._ifname(taken.oif) if taken.oif else None,
                "mtu": taken.mtu}

    def neighbours(self, dev: Optional[str] = None) -> list[dict]:
        index = self.ifindex(dev) if dev else None
        return [{"dst": n.dst, "lladdr": n.lladdr, "dev": self._ifname(n.index),
                 "state": n.state}
                for family in (socket.AF_INET, socket.AF_INET6)
                for n in self.rtnl.neighbours(family) if index in (None, n.index)]

    def links(self) -> list[str]:
        return [msg.get_attr("IFLA_IFNAME") for msg in self.ipr.link("dump")]

    def _ifname(self, index: int) -> Optional[str]:
        try:
            return self.rtnl.details(index).ifname
        except NetlinkError:
            return None


GONE = (errno.ENODEV, errno.ESRCH, errno.ENOENT, errno.EADDRNOTAVAIL)


def _first_error(proc: subprocess.CompletedProcess) -> str:
    """The line that says what went wrong (tools put carets and context after it)."""
    lines = [l.strip() for l in (proc.stderr or proc.stdout or "").splitlines() if l.strip()]
    flagged = [l for l in lines if "rror" in l]
    return (flagged or lines or [""])[0]


def _ignore_gone(fn, *args, **kwargs) -> None:
    """Undo that tolerates the object being gone already (e.g. with its device)."""
    try:
        fn(*args, **kwargs)
    except netlink_errors() as exc:
        if exc.code not in GONE:
            raise


def _stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)
