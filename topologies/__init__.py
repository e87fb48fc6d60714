"""nslab: network-namespace labs for kernel datapath work, and verdicts on every
checksum a real wire would carry.

The public API, kept stable for code built on nslab::

    from topologies import Lab, Capture, verify, bpf, traffic

    with Lab("demo") as lab:
        a, b = lab.add_node("a"), lab.add_node("b")
        a_end, b_end = lab.veth(a, "eth0", b, "eth0")
        ...

Subpackages, lowest layer first (each imports only the ones before it):
``verdict`` (bytes → verdicts), ``lab`` (namespaces, links, traffic), ``bpf``,
``capture``, ``kernels`` (VMs, matrix, bisect), ``scenarios``, ``report``, ``cli``.
"""
from . import bpf
from .capture import Capture, CaptureResult, kernel_chatter
from .errors import LabError, Unsupported
from .lab import Iface, Lab, Node, firewall, offloads, traffic
from .scenarios.topology_file import build as build_topology
from .scenarios.topology_file import load as load_topology
from .verdict import LayerVerdict, PacketVerdict, Status, VnetHdr, verify

__all__ = [
    "Lab", "Node", "Iface", "LabError", "Unsupported",
    "Capture", "CaptureResult", "kernel_chatter", "verify", "PacketVerdict", "LayerVerdict", "Status", "VnetHdr",
    "bpf", "traffic", "firewall", "offloads", "build_topology", "load_topology",
]
