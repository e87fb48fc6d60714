"""Other kernels: version arithmetic, kernel images (Debian packages, built trees),
VM guests under virtme-ng, the kernel matrix and the bisection of Debian versions.
"""
from .. import lazy

__getattr__, __dir__, __all__ = lazy.exports(__name__, {
    "images": ["Kernel"],
}, submodules=["bisect", "images", "matrix", "version", "vm"])
