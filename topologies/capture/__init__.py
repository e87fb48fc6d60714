"""What the kernel saw: offload-aware AF_PACKET captures, pcapng files, drop reasons.
A capture runs inside a lab node and hands its frames to the verdict engine.
"""
from . import pcapng
from .af_packet import Capture, Captured, CaptureResult, kernel_chatter
from .drop_reasons import DropMonitor

__all__ = ["Capture", "CaptureResult", "Captured", "DropMonitor", "kernel_chatter", "pcapng"]
