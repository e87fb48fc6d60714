"""netkit through netlink: pyroute2 has no netkit kind, so it is registered here.

Attribute numbers from include/uapi/linux/if_link.h (IFLA_NETKIT_*). The peer
is a nested ifinfomsg, like veth's VETH_INFO_PEER.
"""
from __future__ import annotations

from pyroute2.netlink import nla
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg, ifinfveth

MODES = {"l2": 0, "l3": 1}                 # NETKIT_L2, NETKIT_L3
POLICIES = {"forward": 0, "blackhole": 2}  # NETKIT_PASS, NETKIT_DROP
SCRUB = {"none": 0, "default": 1}          # NETKIT_SCRUB_NONE, NETKIT_SCRUB_DEFAULT


class netkit_data(nla):
    prefix = "IFLA_"
    nla_map = (
        ("IFLA_NETKIT_UNSPEC", "none"),
        ("IFLA_NETKIT_PEER_INFO", "peer_info"),
        ("IFLA_NETKIT_PRIMARY", "uint8"),
        ("IFLA_NETKIT_POLICY", "uint32"),
        ("IFLA_NETKIT_PEER_POLICY", "uint32"),
        ("IFLA_NETKIT_MODE", "uint32"),
        ("IFLA_NETKIT_SCRUB", "uint32"),
        ("IFLA_NETKIT_PEER_SCRUB", "uint32"),
        ("IFLA_NETKIT_HEADROOM", "uint16"),
        ("IFLA_NETKIT_TAILROOM", "uint16"),
    )

    @staticmethod
    def peer_info(self, *argv, **kwarg):
        return ifinfveth


def register() -> None:
    ifinfmsg.ifinfo.data_map.setdefault("netkit", netkit_data)


def link_spec(peer_name: str, peer_netns_fd: int, *, mode: str, policy: str,
              peer_policy: str, scrub: str = "default", peer_scrub: str = "default") -> dict:
    """Keyword arguments for ``IPRoute.link("add", kind="netkit", ...)``."""
    register()
    return {
        "netkit_peer_info": {"attrs": [["IFLA_IFNAME", peer_name],
                                       ["IFLA_NET_NS_FD", peer_netns_fd]]},
        "netkit_mode": MODES[mode],
        "netkit_policy": POLICIES[policy],
        "netkit_peer_policy": POLICIES[peer_policy],
        "netkit_scrub": SCRUB[scrub],
        "netkit_peer_scrub": SCRUB[peer_scrub],
    }
