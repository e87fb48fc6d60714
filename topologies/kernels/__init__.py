"""Other kernels: version arithmetic, kernel images (Debian packages, built trees),
VM guests under virtme-ng, the kernel matrix and the bisection of Debian versions.
"""
from . import bisect, images, matrix, version, vm
from .images import Kernel

__all__ = ["Kernel", "bisect", "images", "matrix", "version", "vm"]
