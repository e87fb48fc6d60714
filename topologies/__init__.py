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
Each is imported when first used (``lazy``): a command or a test pays only for what it uses.
"""
from . import lazy

__getattr__, __dir__, __all__ = lazy.exports(__name__, {
    "lab": ["Lab", "Node", "Iface", "traffic", "firewall", "offloads"],
    "errors": ["LabError", "Unsupported"],
    "capture": ["Capture", "CaptureResult", "kernel_chatter"],
    "verdict": ["verify", "PacketVerdict", "LayerVerdict", "Status", "VnetHdr"],
    "scenarios.topology_file": [("build_topology", "build"), ("load_topology", "load")],
}, submodules=["bpf"])
