"""A package's exports, imported on first use (PEP 562 module ``__getattr__``).

Every ``nslab`` command and every pytest process starts a Python: importing
the whole library up front (pyroute2 alone is a tenth of a second) made a
``nslab down`` cost a quarter of a second of CPU. A package lists what it
exports and from where; ``from topologies import Lab`` then imports only the
modules ``Lab`` needs. Submodules are imported the usual way (``from
topologies.lab import traffic`` finds them without help).

    __getattr__, __dir__, __all__ = lazy.exports(__name__, {
        "lab": ["Lab", "raise_on_termination"],  # from .lab import Lab, raise_on_termination
        "describe": [("describe_lab", "describe")],   # ... import describe as describe_lab
    }, submodules=["rows", "traffic"])
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Iterable, Union

Export = Union[str, tuple[str, str]]     # a name, or (exported name, name in the module)


def exports(package: str, sources: dict[str, list[Export]], submodules: Iterable[str] = ()
            ) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``: each name in
    ``sources[module]`` comes from ``package.module``; ``submodules`` are exported
    as themselves."""
    where: dict[str, tuple[str, str]] = {name: (name, "") for name in submodules}
    for module, names in sources.items():
        for entry in names:
            exported, attr = (entry, entry) if isinstance(entry, str) else entry
            where[exported] = (module, attr)

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = where[name]
        value = importlib.import_module(f"{package}.{module}")
        if attr:
            value = getattr(value, attr)
        setattr(sys.modules[package], name, value)   # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(where) | set(vars(sys.modules[package])))

    return __getattr__, __dir__, list(where)
