"""Topology files: a lab described in YAML, the way containerlab users write one.

    name: xdp-echo
    topology:
      nodes:
        client:
          interfaces:
            eth0: {addresses: [192.0.2.1/24, "fd00::1/64"]}
        responder:
          interfaces:
            eth0: {addresses: [192.0.2.2/24], mtu: 1500, offloads: {tx: off}}
          sysctls: {net.ipv4.ip_forward: 1}
          routes: [{dst: 10.0.0.0/8, via: 192.0.2.1}]
          firewall: {iptables: "*filter\\n-A INPUT -p udp --dport 9 -j DROP\\nCOMMIT\\n"}
      links:
        - endpoints: [client:eth0, responder:eth0]                  # a veth pair
        - {kind: vxlan, endpoint: client:vx0, vni: 42, local: 10.0.0.1,
           remote: 10.0.0.2, underlay: eth0, udpcsum: true}
        - {kind: netkit, endpoints: [host:nk0, pod:eth0], mode: l3}
    bpf:
      - file: bpf/xdp_echo.c      # from the topology file's directory (bpf/NAME: nslab's too)
        program: xdp_echo_reply   # a function name or a section
        attach: responder:eth0
        hook: xdp                 # see HOOKS
        defines: {VARIANT_X: 1}

``load(path)`` validates the whole file first: an error names the file, the
line and the valid choices, and nothing is built. ``build(lab, spec)`` builds it
into a lab: nodes, links, interfaces (addresses, MTU, offloads), sysctls,
routes, firewall rules, BPF programs — in that order.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import yaml

from .. import bpf
from ..errors import LabError
from ..lab import firewall

if TYPE_CHECKING:
    from ..lab import Lab, Node

SUFFIXES = (".yaml", ".yml")
TOP = "top level"
LINK_KINDS = ("veth", "vxlan", "netkit")
FIREWALLS = ("iptables", "ip6tables", "nft")
# hook → how a program is attached to an interface
HOOKS: dict[str, Callable] = {
    "xdp": lambda iface, prog: bpf.attach_xdp(iface, prog, "native"),
    "xdp-generic": lambda iface, prog: bpf.attach_xdp(iface, prog, "generic"),
    "tc-ingress": lambda iface, prog: bpf.attach_tc(iface, prog, "ingress"),
    "tc-egress": lambda iface, prog: bpf.attach_tc(iface, prog, "egress"),
    "tcx-ingress": lambda iface, prog: bpf.attach_tcx(iface, prog, "ingress"),
    "tcx-egress": lambda iface, prog: bpf.attach_tcx(iface, prog, "egress"),
    "netkit-primary": lambda iface, prog: bpf.attach_netkit(iface, prog, "primary"),
    "netkit-peer": lambda iface, prog: bpf.attach_netkit(iface, prog, "peer"),
}


class TopologyFileError(LabError):
    """A topology file that cannot be built: ``FILE:LINE: what, and the valid choices``."""


# -- the validated form ---------------------------------------------------------------------
@dataclass
class InterfaceSpec:
    addresses: list[str] = field(default_factory=list)
    mtu: Optional[int] = None
    offloads: dict[str, bool] = field(default_factory=dict)


@dataclass
class RouteSpec:
    dst: str
    via: Optional[str] = None
    dev: Optional[str] = None
    mtu: Optional[int] = None


@dataclass
class NodeSpec:
    interfaces: dict[str, InterfaceSpec] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    routes: list[RouteSpec] = field(default_factory=list)
    firewall: dict[str, str] = field(default_factory=dict)    # FIREWALLS → rule text


@dataclass
class LinkSpec:
    kind: str
    endpoints: list[tuple[str, str]]                  # (node, interface)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProgramSpec:
    file: Path
    program: str
    attach: tuple[str, str]
    hook: str
    defines: dict[str, Any] = field(default_factory=dict)
    cflags: list[str] = field(default_factory=list)
    includes: list[Path] = field(default_factory=list)


@dataclass
class TopologySpec:
    path: Path
    name: str
    nodes: dict[str, NodeSpec]
    links: list[LinkSpec]
    programs: list[ProgramSpec]


# -- reading YAML with line numbers -----------------------------------------------------------
class _At:
    """A YAML node with where it is, for errors that name the file and line."""

    def __init__(self, node: yaml.Node, path: Path, where: str):
        self.node, self.path, self.where = node, path, where

    def fail(self, message: str) -> TopologyFileError:
        return TopologyFileError(f"{self.path}:{self.node.start_mark.line + 1}: {self.where}: "
                                 f"{message}")

    def _child(self, key: str) -> str:
        return key if self.where == TOP else f"{self.where}.{key}"

    def value(self) -> Any:
        return yaml.SafeLoader("").construct_object(self.node, deep=True)

    def text(self) -> str:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.value == "":
            raise self.fail("expected a non-empty string")
        return str(self.value())

    def integer(self) -> int:
        value = self.value()
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"expected a whole number, not {value!r}")
        return value

    def flag(self) -> bool:
        value = self.value()
        if isinstance(value, bool):
            return value
        if value in ("on", "off"):     # as ethtool says it
            return value == "on"
        raise self.fail(f"expected true/false (or on/off), not {value!r}")

    def items(self, allowed: Optional[tuple[str, ...]] = None) -> list[tuple[str, "_At"]]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.fail("expected a mapping (key: value)")
        out, seen = [], set()
        for key_node, value_node in self.node.value:
            key = _At(key_node, self.path, self.where).text()
            if allowed is not None and key not in allowed:
                raise _At(key_node, self.path, self.where).fail(
                    f"unknown key {key!r}; valid: {', '.join(allowed)}")
            if key in seen:
                raise _At(key_node, self.path, self.where).fail(f"{key!r} given twice")
            seen.add(key)
            out.append((key, _At(value_node, self.path, self._child(key))))
        return out

    def mapping(self, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, "_At"]:
        found = dict(self.items(allowed))
        missing = [k for k in required if k not in found]
        if missing:
            raise self.fail(f"missing {', '.join(missing)}")
        return found

    def sequence(self) -> list["_At"]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.fail("expected a list")
        return [_At(n, self.path, f"{self.where}[{i}]") for i, n in enumerate(self.node.value)]

    def choice(self, choices) -> str:
        value = self.text()
        if value not in choices:
            raise self.fail(f"{value!r} is not one of {', '.join(choices)}")
        return value

    def endpoint(self, nodes: dict[str, NodeSpec]) -> tuple[str, str]:
        node, sep, ifname = self.text().partition(":")
        if not sep or not node or not ifname:
            raise self.fail(f"expected node:interface, not {self.text()!r}")
        if node not in nodes:
            raise self.fail(f"no node {node!r}; nodes: {', '.join(nodes) or '(none)'}")
        return node, ifname

    def address(self) -> str:
        text = self.text()
        try:
            ipaddress.ip_interface(text)
        except ValueError:
            raise self.fail(f"{text!r} is not an address/prefix") from None
        return text


# -- validation --------------------------------------------------------------------------------
def _interface(at: _At) -> InterfaceSpec:
    keys = at.mapping(("addresses", "mtu", "offloads"))
    return InterfaceSpec(
        addresses=[a.address() for a in keys["addresses"].sequence()] if "addresses" in keys
        else [],
        mtu=keys["mtu"].integer() if "mtu" in keys else None,
        offloads={k: v.flag() for k, v in keys["offloads"].items()} if "offloads" in keys
        else {})


def _route(at: _At) -> RouteSpec:
    keys = at.mapping(("dst", "via", "dev", "mtu"), required=("dst",))
    dst = keys["dst"].text()
    if dst != "default":
        try:
            ipaddress.ip_network(dst, strict=False)
        except ValueError:
            raise keys["dst"].fail(f"{dst!r} is not a network (or 'default')") from None
    return RouteSpec(dst=dst, via=keys["via"].address() if "via" in keys else None,
                     dev=keys["dev"].text() if "dev" in keys else None,
                     mtu=keys["mtu"].integer() if "mtu" in keys else None)


def _node(at: _At) -> NodeSpec:
    if at.node.tag == "tag:yaml.org,2002:null":
        return NodeSpec()
    keys = at.mapping(("interfaces", "sysctls", "routes", "firewall"))
    return NodeSpec(
        interfaces={k: _interface(v) for k, v in keys["interfaces"].items()}
        if "interfaces" in keys else {},
        sysctls={k: str(v.value()) for k, v in keys["sysctls"].items()}
        if "sysctls" in keys else {},
        routes=[_route(r) for r in keys["routes"].sequence()] if "routes" in keys else [],
        firewall={k: v.text() for k, v in keys["firewall"].items(FIREWALLS)}
        if "firewall" in keys else {})


LINK_KEYS = {
    "veth": ("kind", "endpoints", "mtu"),
    "vxlan": ("kind", "endpoint", "vni", "local", "remote", "underlay", "udpcsum", "port",
              "mtu", "learning"),
    "netkit": ("kind", "endpoints", "mode", "policy", "peer_policy", "scrub", "peer_scrub"),
}
LINK_REQUIRED = {"veth": ("endpoints",), "netkit": ("endpoints",),
                 "vxlan": ("endpoint", "vni", "local", "remote", "underlay", "udpcsum")}
INTEGER_OPTIONS, FLAG_OPTIONS = {"vni", "port", "mtu"}, {"udpcsum", "learning"}


def _link(at: _At, nodes: dict[str, NodeSpec]) -> LinkSpec:
    kind_at = dict(at.items()).get("kind")
    kind = kind_at.choice(LINK_KINDS) if kind_at else "veth"
    keys = at.mapping(LINK_KEYS[kind], required=LINK_REQUIRED[kind])
    if "endpoints" in keys:
        endpoints = [e.endpoint(nodes) for e in keys["endpoints"].sequence()]
        if len(endpoints) != 2:
            raise keys["endpoints"].fail(f"a {kind} link has two endpoints, not {len(endpoints)}")
    else:
        endpoints = [keys["endpoint"].endpoint(nodes)]
    options = {}
    for name, value in keys.items():
        if name in ("kind", "endpoints", "endpoint"):
            continue
        options[name] = (value.integer() if name in INTEGER_OPTIONS else
                         value.flag() if name in FLAG_OPTIONS else
                         value.address().split("/")[0] if name in ("local", "remote") else
                         value.text())
    return LinkSpec(kind, endpoints, options)


def _program(at: _At, nodes: dict[str, NodeSpec], base: Path) -> ProgramSpec:
    keys = at.mapping(("file", "program", "attach", "hook", "defines", "cflags", "includes"),
                      required=("file", "program", "attach", "hook"))
    file = Path(keys["file"].text())
    if not file.is_absolute() and (base / file).exists():
        file = base / file            # from the topology file's directory first
    return ProgramSpec(
        file=file, program=keys["program"].text(), attach=keys["attach"].endpoint(nodes),
        hook=keys["hook"].choice(HOOKS),
        defines={k: v.value() for k, v in keys["defines"].items()} if "defines" in keys else {},
        cflags=[c.text() for c in keys["cflags"].sequence()] if "cflags" in keys else [],
        includes=[base / i.text() for i in keys["includes"].sequence()]
        if "includes" in keys else [])


def parse(text: str, path: Union[str, Path] = "<topology>") -> TopologySpec:
    path = Path(path)
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}" if mark else "?"
        raise TopologyFileError(f"{path}:{line}: not YAML: "
                                f"{getattr(exc, 'problem', None) or exc}") from None
    if document is None:
        raise TopologyFileError(f"{path}:1: empty topology file")
    root = _At(document, path, TOP).mapping(("name", "topology", "bpf"),
                                               required=("topology",))
    topology = root["topology"].mapping(("nodes", "links"), required=("nodes",))
    nodes = {name: _node(spec) for name, spec in topology["nodes"].items()}
    if not nodes:
        raise topology["nodes"].fail("a topology needs at least one node")
    links = [_link(link, nodes) for link in topology["links"].sequence()] \
        if "links" in topology else []
    programs = [_program(p, nodes, path.parent) for p in root["bpf"].sequence()] \
        if "bpf" in root else []
    name = root["name"].text() if "name" in root else path.stem
    return TopologySpec(path, name, nodes, links, programs)


def load(path: Union[str, Path]) -> TopologySpec:
    """Read and validate a topology file (nothing is built)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TopologyFileError(f"{path}: cannot read: {exc.strerror}") from None
    return parse(text, path)


def is_topology_file(name: str) -> bool:
    return Path(name).suffix in SUFFIXES


# -- building -----------------------------------------------------------------------------------
def _make_link(lab: "Lab", nodes: dict[str, "Node"], link: LinkSpec) -> None:
    ends = [(nodes[node], ifname) for node, ifname in link.endpoints]
    if link.kind == "veth":
        (a, a_name), (b, b_name) = ends
        lab.veth(a, a_name, b, b_name, **link.options)
    elif link.kind == "netkit":
        (a, a_name), (b, b_name) = ends
        lab.netkit(a, a_name, b, b_name, **link.options)
    else:
        [(node, ifname)] = ends
        lab.vxlan(node, ifname, **link.options)


def build(lab: "Lab", spec: Union[TopologySpec, str, Path]) -> dict[str, "Node"]:
    """Build ``spec`` (or the file it names) into ``lab``; returns its nodes by name."""
    if not isinstance(spec, TopologySpec):
        spec = load(spec)
    nodes = {name: lab.add_node(name) for name in spec.nodes}
    for link in spec.links:
        _make_link(lab, nodes, link)
    for name, node_spec in spec.nodes.items():
        node = nodes[name]
        for ifname, iface_spec in node_spec.interfaces.items():
            iface = node.iface(ifname)
            if iface_spec.mtu:
                iface.set_mtu(iface_spec.mtu)
            if iface_spec.offloads:
                iface.set_offloads(iface_spec.offloads)
            for address in iface_spec.addresses:
                iface.add_addr(address)
        for key, value in node_spec.sysctls.items():
            node.sysctl(key, value)
        for route in node_spec.routes:
            node.add_route(route.dst, via=route.via, dev=route.dev, mtu=route.mtu)
        for kind, text in node_spec.firewall.items():
            if kind == "nft":
                firewall.apply_nft(node, text)
            else:
                firewall.apply_iptables(node, text, family=6 if kind == "ip6tables" else 4)
    for program in spec.programs:
        obj = bpf.load(lab, program.file, defines=program.defines, cflags=program.cflags,
                       includes=program.includes)
        node, ifname = program.attach
        HOOKS[program.hook](nodes[node].iface(ifname), obj.program(program.program))
    return nodes


class FileTopology:
    """A topology file where a named topology is expected (``nslab up FILE``): no
    knobs, ``build(lab, config)`` builds the file."""
    KNOBS: dict[str, tuple] = {}

    class Config:
        def knobs(self) -> dict:
            return {}

    def __init__(self, spec: TopologySpec):
        self.spec = spec
        self.__name__ = f"file.{spec.name}"

    def build(self, lab: "Lab", config=None) -> dict[str, "Node"]:
        return build(lab, self.spec)
