"""The lab core: namespaces, nodes, links, offloads, firewall rules and kernel traffic,
owned by a lab (prefix, owner record, cleanup stack) and removed with it.
"""
from .. import lazy

__getattr__, __dir__, __all__ = lazy.exports(__name__, {
    "lab": ["Lab", "raise_on_termination"],
    "names": ["check_name", "LAB_NAME_RULE"],
    "node": ["Node"],
    "iface": ["Iface"],
    "cleanup": ["CleanupStack", "Deferred"],
    "session": ["SESSION_ENV"],
    "links": ["vxlan_info"],
}, submodules=["conntrack", "firewall", "netns", "offloads", "owner", "rootstate", "session",
               "snmp", "sweep", "traffic"])
