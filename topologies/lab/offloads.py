"""ethtool features of a device inside a namespace, by their ethtool names.

Read and set with the ``SIOCETHTOOL`` ioctl (ETHTOOL_GFEATURES / SFEATURES, the
names from the ETH_SS_FEATURES string set), as ``ethtool -k/-K`` does, on a
socket made inside the namespace: the kernel looks the device up in the
socket's namespace, so the calls may come from any thread.
"""
from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
from typing import TYPE_CHECKING, Mapping, NamedTuple

from ..errors import LabError

if TYPE_CHECKING:
    from .node import Node

SIOCETHTOOL = 0x8946
ETHTOOL_GSTRINGS, ETHTOOL_GSSET_INFO, ETHTOOL_GFEATURES, ETHTOOL_SFEATURES = \
    0x1B, 0x37, 0x3A, 0x3B
ETH_SS_FEATURES, ETH_GSTRING_LEN = 4, 32
_IFREQ = struct.Struct("16sP")          # ifr_name, ifr_data (the union's pointer)
_GET_BLOCK = struct.Struct("=IIII")     # available, requested, active, never_changed
_SET_BLOCK = struct.Struct("=II")       # valid, requested

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


class Feature(NamedTuple):
    bit: int
    enabled: bool
    changeable: bool      # in the device's hw_features: ethtool may turn it on and off


def _ethtool(sock: socket.socket, ifname: str, data: ctypes.Array) -> None:
    """One SIOCETHTOOL call; ``data`` is the command buffer the kernel reads and fills."""
    request = _IFREQ.pack(ifname.encode(), ctypes.addressof(data)) + b"\0" * 16
    try:
        fcntl.ioctl(sock, SIOCETHTOOL, request)
    except OSError as exc:
        raise LabError(f"ethtool on {ifname}: {exc.strerror}") from None


def _names(sock: socket.socket, ifname: str) -> list[str]:
    """The kernel's feature names, by bit (ETH_SS_FEATURES)."""
    info = ctypes.create_string_buffer(struct.pack("=IIQI", ETHTOOL_GSSET_INFO, 0,
                                                   1 << ETH_SS_FEATURES, 0))
    _ethtool(sock, ifname, info)
    count = struct.unpack_from("=I", info, 16)[0]
    strings = ctypes.create_string_buffer(struct.pack("=III", ETHTOOL_GSTRINGS, ETH_SS_FEATURES,
                                                      count) + b"\0" * count * ETH_GSTRING_LEN)
    _ethtool(sock, ifname, strings)
    raw = strings.raw[12:12 + count * ETH_GSTRING_LEN]
    return [raw[i:i + ETH_GSTRING_LEN].split(b"\0", 1)[0].decode()
            for i in range(0, len(raw), ETH_GSTRING_LEN)]


def _read(sock: socket.socket, ifname: str, names: list[str]
          ) -> tuple[dict[str, Feature], int]:
    """Every named feature (``names``: :func:`_names`), and the kernel's number of
    feature words."""
    named = (len(names) + 31) // 32
    buf = ctypes.create_string_buffer(struct.pack("=II", ETHTOOL_GFEATURES, named)
                                      + b"\0" * named * _GET_BLOCK.size)
    _ethtool(sock, ifname, buf)
    words = struct.unpack_from("=I", buf, 4)[0]      # the kernel's count, which SFEATURES wants
    blocks = [_GET_BLOCK.unpack_from(buf, 8 + i * _GET_BLOCK.size) for i in range(named)]
    features = {}
    for bit, name in enumerate(names):
        available, _requested, active, _never = blocks[bit // 32]
        mask = 1 << (bit % 32)
        if name:     # a retired feature keeps its bit with an empty name
            features[name] = Feature(bit, bool(active & mask), bool(available & mask))
    return features, words


def _write(sock: socket.socket, ifname: str, words: int, features: dict[str, Feature],
           wanted: Mapping[str, bool]) -> None:
    blocks = [[0, 0] for _ in range(words)]
    for name, on in wanted.items():
        bit = features[name].bit
        blocks[bit // 32][0] |= 1 << (bit % 32)
        if on:
            blocks[bit // 32][1] |= 1 << (bit % 32)
    buf = ctypes.create_string_buffer(struct.pack("=II", ETHTOOL_SFEATURES, words)
                                      + b"".join(_SET_BLOCK.pack(*b) for b in blocks))
    _ethtool(sock, ifname, buf)   # what the driver refused is found by reading back


def _socket(node: "Node") -> socket.socket:
    return node.socket(socket.AF_INET, socket.SOCK_DGRAM)


def get_features(node: "Node", ifname: str) -> dict[str, bool]:
    """Every feature of the device: name → enabled."""
    with _socket(node) as sock:
        features, _ = _read(sock, ifname, _names(sock, ifname))
        return {name: f.enabled for name, f in features.items()}


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
    with _socket(node) as sock:
        names = _names(sock, ifname)             # the same before and after: read once
        features, words = _read(sock, ifname, names)    # state and what can change
        wanted = expand(settings, {name: f.changeable for name, f in features.items()})
        _write(sock, ifname, words, features, wanted)
        after = {name: f.enabled for name, f in _read(sock, ifname, names)[0].items()}
    stuck = [n for n, on in wanted.items() if after[n] != on]
    if stuck:
        raise LabError(f"{ifname} in node {node.name}: could not set "
                       + ", ".join(f"{n} {'on' if wanted[n] else 'off'}" for n in stuck)
                       + " (fixed by the driver)")
    return {n: on for n, on in after.items() if on != features[n].enabled}
