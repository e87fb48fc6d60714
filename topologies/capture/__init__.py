"""What the kernel saw: offload-aware AF_PACKET captures, pcapng files, drop reasons.
A capture runs inside a lab node and hands its frames to the verdict engine.
"""
from .. import lazy

__getattr__, __dir__, __all__ = lazy.exports(__name__, {
    "af_packet": ["Capture", "CaptureResult", "Captured", "kernel_chatter"],
    "drop_reasons": ["DropMonitor"],
}, submodules=["pcapng"])
