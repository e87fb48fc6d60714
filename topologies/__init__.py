"""nslab: network-namespace labs for kernel datapath and checksum verdicts."""
from .errors import LabError, Unsupported
from .iface import Iface
from .lab import Lab
from .node import Node

__all__ = ["Lab", "Node", "Iface", "LabError", "Unsupported"]
