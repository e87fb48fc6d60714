"""A bare rtnetlink layer for building a lab, without pyroute2.

pyroute2 costs about 0.3 ms of Python per request (an event loop run, request
objects); the kernel needs 10-20 microseconds for most of them. So every build
uses, per namespace, a bare rtnetlink socket for requests (:class:`Rtnl`) and
one for link notifications (:class:`LinkEvents`). The steps a lab takes for its
tests (veth and vxlan devices, addresses, MTU, routes, neighbours, XDP, tc
clsact and cls_bpf) go this way only, so such a test never imports pyroute2,
whose package imports every netlink family it knows (0.1 s here, ~6 s in a VM
guest under TCG). Errors are raised as :class:`NetlinkError`; ``except
netlink_errors()`` also catches pyroute2's.

One module per message family: ``wire`` (encoding, errors), ``link``, ``addr``,
``route``, ``neigh``, ``tc``; ``sockets`` holds the two sockets.
"""
from .addr import address_request
from .link import RTM_DELLINK, LinkDetails, LinkMessage, veth_request, vxlan_request, xdp_request
from .neigh import Neighbour
from .route import RouteTaken, route_change_request
from .sockets import LinkEvents, Rtnl
from .tc import bpf_filter_delete_request, bpf_filter_request
from .wire import NetlinkError, netlink_errors

__all__ = ["address_request", "RTM_DELLINK", "LinkDetails", "LinkMessage", "veth_request",
           "vxlan_request", "xdp_request", "Neighbour", "RouteTaken", "route_change_request",
           "LinkEvents", "Rtnl", "bpf_filter_delete_request", "bpf_filter_request",
           "NetlinkError", "netlink_errors"]
