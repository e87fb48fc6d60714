"""ethtool features of a device inside a namespace, by their ethtool names.

pyroute2's ``Ethtool`` has no netns argument: its sockets belong to the
namespace of the thread that builds it, so it is built on the node's thread.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from ..errors import LabError

if TYPE_CHECKING:
    from pyroute2 import Ethtool

    from .node import Node

# ethtool -K shorthands (as in `ethtool --offload dev rx off tx off`).
ALIASES = {
    "tx": ("tx-checksum-ipv4", "tx-checksum-ip-generic", "tx-checksum-ipv6",
           "tx-checksum-fcoe-crc", "tx-checksum-sctp"),
    "rx": ("rx-checksum",),
    "sg": ("tx-scatter-gather",),
    "tso": ("tx-tcp-segmentation", "tx-tcp-ecn-segmentation", "tx-tcp-mangleid-segmentation",
            "tx-tcp6-segmentation"),
    "gso": ("tx-generic-segmentation",),
    "gro": ("rx-gro",),
    "lro": ("large-receive-offload",),
}


def _ethtool(node: "Node") -> "Ethtool":
    tool = getattr(node, "_ethtool", None)
    if tool is None:
        from pyroute2 import Ethtool   # on first use: see rtnl on pyroute2's import
        tool = node._ethtool = node.call(Ethtool)
        node.lab.defer(tool.close, what=f"ethtool socket of {node.name}")
    return tool


def _read(node: "Node", ifname: str):
    return node.call(_ethtool(node).get_features, ifname).features


def get_features(node: "Node", ifname: str) -> dict[str, bool]:
    """Every feature of the device: name → enabled."""
    return {name: bool(f.enable) for name, f in _read(node, ifname).items()}


def expand(settings: Mapping[str, bool], changeable: Mapping[str, bool]) -> dict[str, bool]:
    """Resolve shorthands to the device's changeable features (as ``ethtool -K``
    does); a named feature must exist, a shorthand needs one changeable member."""
    out: dict[str, bool] = {}
    for name, on in settings.items():
        if name in ALIASES:
            names = [n for n in ALIASES[name] if changeable.get(n)]
        else:
            names = [name] if name in changeable else []
        if not names:
            raise LabError(f"unknown ethtool feature {name!r}; "
                           f"known: {', '.join(sorted(changeable))}")
        out.update((n, bool(on)) for n in names)
    return out


def set_features(node: "Node", ifname: str, settings: Mapping[str, bool]) -> dict[str, bool]:
    """Set features (names or ethtool -K shorthands); return what actually changed.

    A feature the driver keeps fixed raises, rather than letting a lab believe
    an offload is off while the kernel keeps it on.
    """
    tool = _ethtool(node)
    feats = node.call(tool.get_features, ifname)    # one read: state and what can change
    before = {name: bool(f.enable) for name, f in feats.features.items()}
    wanted = expand(settings, {name: bool(f.available) for name, f in feats.features.items()})

    def apply():
        for name, on in wanted.items():
            feats.features[name].enable = on
        tool.set_features(ifname, feats)
    from pyroute2.ethtool.ioctl import NotSupportedError
    try:
        node.call(apply)
    except NotSupportedError:
        pass  # the driver refused one of them: reported below as stuck
    after = get_features(node, ifname)
    stuck = [n for n, on in wanted.items() if after[n] != on]
    if stuck:
        raise LabError(f"{ifname} in node {node.name}: could not set "
                       + ", ".join(f"{n} {'on' if wanted[n] else 'off'}" for n in stuck)
                       + " (fixed by the driver)")
    return {n: after[n] for n in after if after[n] != before[n]}
