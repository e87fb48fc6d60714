"""A device inside a node: state, MTU, addresses and offloads."""
from __future__ import annotations

import ipaddress
import socket
import time
from typing import TYPE_CHECKING, Mapping, Optional

from ..errors import LabError
from . import offloads, rtnl
from .rtnl import NetlinkError

if TYPE_CHECKING:
    from .node import Node

IFA_F_NODAD = 0x02
RTN_LOCAL = 2


class Iface:
    def __init__(self, node: "Node", name: str):
        self.node, self.name = node, name
        self._index: Optional[int] = None

    def __repr__(self) -> str:
        return f"{self.node.name}:{self.name}"

    @property
    def peer(self) -> Optional["Iface"]:
        """The other end, for a veth this lab made (whichever Iface object asks)."""
        return self.node.veth_peers.get(self.name)

    @property
    def index(self) -> int:
        # An ifindex never changes while the device lives in this namespace.
        if self._index is None:
            self._index = self.node.ifindex(self.name)
        return self._index

    def cache_index(self, index: int) -> None:
        """Remember the ifindex a kernel message gave (spares the lookup)."""
        self._index = index

    def _set(self, **attrs) -> "Iface":
        try:
            self.node.rtnl.set_link(self.index, **attrs)
        except NetlinkError as exc:
            raise LabError(f"{self}: set {attrs}: {exc.args[1]}") from None
        return self

    def up(self) -> "Iface":
        try:
            self.node.rtnl.set_up(self.name)
        except NetlinkError as exc:
            raise LabError(f"{self}: set up: {exc.args[1]}") from None
        return self

    def down(self) -> "Iface":
        return self._set(up=False)

    def set_mtu(self, mtu: int) -> "Iface":
        return self._set(mtu=mtu)

    def info(self) -> dict:
        try:
            link = self.node.rtnl.details(self.index)
        except NetlinkError as exc:
            raise LabError(f"{self}: {exc.args[1]}") from None
        return {"ifname": self.name, "index": link.index, "flags": link.flags,
                "mtu": link.mtu, "mac": link.mac, "state": link.state, "kind": link.kind}

    def stats(self) -> dict[str, int]:
        """The device's counters (IFLA_STATS64: rx_packets, tx_dropped, ...)."""
        msg = self.node.ipr.link("get", index=self.index)[0]
        return dict(msg.get_attr("IFLA_STATS64") or {})

    def driver_stats(self) -> dict[str, int]:
        """The driver's own counters, as ``ethtool -S`` lists them (veth:
        ``rx_queue_0_xdp_tx_errors``, ...)."""
        out = self.node.run(["ethtool", "-S", self.name]).stdout
        return {name.strip(): int(value) for name, _, value in
                (line.partition(":") for line in out.splitlines()[1:]) if value.strip().isdigit()}

    @property
    def mac(self) -> str:
        return self.info()["mac"]

    @property
    def mtu(self) -> int:
        return self.info()["mtu"]

    def add_addr(self, cidr: str) -> "Iface":
        """Add ``addr/len`` (IPv4 or IPv6; IPv6 skips duplicate address detection)."""
        iface = ipaddress.ip_interface(cidr)
        family = socket.AF_INET6 if iface.version == 6 else socket.AF_INET
        request = rtnl.address_request(self.index, family, iface.ip.packed,
                                       iface.network.prefixlen,
                                       IFA_F_NODAD if iface.version == 6 else 0)
        try:
            self.node.rtnl.add_address(request)
        except NetlinkError as exc:
            raise LabError(f"{self}: address {cidr}: {exc.args[1]}") from None
        if iface.version == 6:
            self._wait_local_route(str(iface.ip))
        return self

    def _wait_local_route(self, address: str, timeout: float = 5.0) -> None:
        """IPv6 finishes an address on a workqueue (even without DAD): only then
        is its local route in place and its solicited-node group joined. Until
        then packets to it, neighbour solicitations included, are dropped."""
        deadline, packed = time.monotonic() + timeout, ipaddress.IPv6Address(address).packed
        while True:
            if self.node.rtnl.route_type(socket.AF_INET6, packed) == RTN_LOCAL:
                return
            if time.monotonic() > deadline:
                raise LabError(f"{self}: {address} not usable after {timeout}s")
            time.sleep(0.001)

    def addresses(self) -> list[str]:
        return [f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}"
                for m in self.node.ipr.addr("dump", index=self.index)]

    def features(self) -> dict[str, bool]:
        return offloads.get_features(self.node, self.name)

    def set_offloads(self, settings: Mapping[str, bool]) -> dict[str, bool]:
        """``iface.set_offloads({"tx-checksum-ip-generic": False})``; returns what changed."""
        return offloads.set_features(self.node, self.name, settings)

    def feature(self, name: str) -> Optional[bool]:
        return self.features().get(name)
