"""The lab core: namespaces, nodes, links, offloads, firewall rules and kernel traffic,
owned by a lab (prefix, owner record, cleanup stack) and removed with it.
"""
from . import conntrack, firewall, netns, offloads, owner, rootstate, session, snmp, sweep, traffic
from .cleanup import CleanupStack, Deferred
from .iface import Iface
from .lab import LAB_NAME_RULE, Lab, check_name, raise_on_termination
from .links import vxlan_info
from .node import Node
from .session import SESSION_ENV

__all__ = [
    "Lab", "Node", "Iface", "check_name", "LAB_NAME_RULE", "CleanupStack", "Deferred",
    "SESSION_ENV", "raise_on_termination",
    "vxlan_info", "conntrack", "firewall", "netns", "offloads", "owner", "rootstate", "session",
    "snmp", "sweep", "traffic",
]
