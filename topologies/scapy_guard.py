"""scapy never resolves a MAC address from the root namespace.

An ``Ether()`` without ``dst`` makes scapy send ARP or neighbour solicitations
from the namespace of the process: the root one. The resolvers are replaced
where scapy defines them, the moment it executes those modules (a meta-path
hook), so every module importing them afterwards (``scapy.layers.inet`` binds
its own ``getmacbyip``) gets the refusing one: the guard holds wherever a test
imports scapy — module level, fixture, test body. nslab itself never imports it.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

RESOLVERS = {"scapy.layers.l2": "getmacbyip", "scapy.layers.inet6": "getmacbyip6"}


def must_not_resolve(*args, **kwargs):
    raise RuntimeError("scapy wanted to resolve a MAC address, which sends ARP/ND from the "
                       "root namespace: give Ether() an explicit dst")


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in RESOLVERS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module      # the loader is this spec's own

        def exec_and_patch(module):
            run(module)
            setattr(module, RESOLVERS[name], must_not_resolve)
        spec.loader.exec_module = exec_and_patch
        return spec


def install() -> None:
    """Patch scapy's modules loaded so far, and the resolver modules when loaded."""
    if not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
    for name, module in list(sys.modules.items()):
        if name.startswith("scapy.") and module is not None:
            for resolver in RESOLVERS.values():
                if getattr(module, resolver, must_not_resolve) is not must_not_resolve:
                    setattr(module, resolver, must_not_resolve)
