"""Attach loaded programs to a node's devices: tc (clsact), XDP, tcx and netkit.

Every attach registers its undo on the lab's cleanup stack right away and
returns an :class:`Attachment` whose ``detach()`` runs that undo early.
Detaching runs on lab close too (``defer``, not ``defer_within``): a program
must not outlive its lab because something else still pins the namespace.
tc and XDP go through the node's bare rtnetlink socket (``lab.rtnl``: no
pyroute2 import for a test that attaches a program; listing tc filters still
uses pyroute2); tcx and netkit are BPF links made with ``BPF_LINK_CREATE`` on
the node's thread, because the kernel looks the ifindex up in the caller's
namespace. A link lives as long as its fd: detaching is closing it.
"""
from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from ..errors import LabError, Unsupported
from ..lab import rtnl
from ..lab.rtnl import netlink_errors
from . import libbpf
from .loader import load

if TYPE_CHECKING:
    from ..lab.cleanup import Deferred
    from ..lab.iface import Iface
    from .libbpf import Program

log = logging.getLogger(__name__)

TC_PARENT_IDS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}  # clsact's two hooks
XDP_FLAGS_UPDATE_IF_NOEXIST = 1
XDP_FLAGS_REPLACE = 16
XDP_MODE_FLAGS = {"generic": 2, "native": 4}   # XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE
XDP_ATTACHED = {0: None, 1: "native", 2: "generic", 3: "offload", 4: "multi"}
TCX_TYPES = {"ingress": libbpf.BPF_TCX_INGRESS, "egress": libbpf.BPF_TCX_EGRESS}
NETKIT_TYPES = {"primary": libbpf.BPF_NETKIT_PRIMARY, "peer": libbpf.BPF_NETKIT_PEER}
GONE = (errno.ENODEV, errno.ENOENT)


@dataclass
class Attachment:
    """A program on a hook; ``detach()`` is idempotent and also runs on lab close."""
    hook: str                 # e.g. "tc ingress", "xdp generic", "tcx egress"
    iface: "Iface"
    prog: "Program"
    _undo: Optional["Deferred"] = field(default=None, repr=False)

    @property
    def attached(self) -> bool:
        return self._undo is not None

    def detach(self) -> None:
        undo, self._undo = self._undo, None
        if undo is not None:
            undo.run_now()


@dataclass
class TcAttachment(Attachment):
    prio: int = 1
    handle: int = 1


@dataclass
class XdpAttachment(Attachment):
    mode: str = "native"      # the mode the kernel reports, read back after attaching


@dataclass
class LinkAttachment(Attachment):
    link_fd: int = -1
    attach_type: int = 0


def _check(value: str, table: dict, what: str) -> None:
    if value not in table:
        raise LabError(f"{what} must be one of {', '.join(map(str, table))}, not {value!r}")


def _netlink_error(what: str, exc: OSError) -> LabError:
    return LabError(f"{what}: {exc.args[1] if len(exc.args) > 1 else os.strerror(exc.code)}")


def _tolerate_gone(fn, *args, codes=GONE, **kwargs) -> None:
    """An undo that is fine with its object gone already (e.g. with its device)."""
    try:
        fn(*args, **kwargs)
    except netlink_errors() as exc:
        if exc.code not in codes:
            raise


# -- tc (clsact) -----------------------------------------------------------------
def _ensure_clsact(iface: "Iface", index: int) -> None:
    """Add clsact unless present; only a qdisc we added is ours to remove. It holds
    nothing of ours once our filters are gone, so on lab close it simply goes
    with the namespace (``defer_within``)."""
    node = iface.node
    try:
        node.rtnl.add_clsact(index)
    except rtnl.NetlinkError as exc:
        if exc.code == errno.EEXIST:
            return
        raise _netlink_error(f"{iface}: add clsact", exc) from None
    node.lab.defer_within(_tolerate_gone, node.rtnl.delete_clsact, index,
                          codes=GONE + (errno.EINVAL,), what=f"clsact on {iface}")


def attach_tc(iface: "Iface", prog: "Program", direction: str = "ingress", *,
              prio: int = 1, handle: int = 1) -> TcAttachment:
    """A direct-action cls_bpf filter on clsact ingress or egress."""
    _check(direction, TC_PARENT_IDS, "tc direction")
    index, node = iface.index, iface.node
    _ensure_clsact(iface, index)
    hook, parent = f"tc {direction}", TC_PARENT_IDS[direction]
    try:
        node.rtnl.add_filter(rtnl.bpf_filter_request(index, parent, handle=handle, prio=prio,
                                                     fd=prog.fd, name=prog.name))
    except rtnl.NetlinkError as exc:
        raise _netlink_error(f"{iface}: {hook} filter {prog.name} (prio {prio})", exc) from None
    undo = node.lab.defer(_tolerate_gone, node.rtnl.delete_filter,
                          rtnl.bpf_filter_delete_request(index, parent, handle=handle, prio=prio),
                          what=f"{hook} filter {prog.name} on {iface}")
    return TcAttachment(hook, iface, prog, undo, prio=prio, handle=handle)


def tc_filters(iface: "Iface", direction: str = "ingress") -> list[dict]:
    """The cls_bpf filters on a clsact hook: name, prio and handle of each."""
    _check(direction, TC_PARENT_IDS, "tc direction")
    out = []
    try:
        msgs = iface.node.ipr.get_filters(index=iface.index, parent=TC_PARENT_IDS[direction])
    except netlink_errors() as exc:
        if exc.code in (errno.EINVAL, errno.ENOENT):  # no clsact, so no filters
            return []
        raise _netlink_error(f"{iface}: list tc filters", exc) from None
    for msg in msgs:
        if msg.get_attr("TCA_KIND") == "bpf" and msg["handle"]:
            options = msg.get_attr("TCA_OPTIONS")
            out.append({"name": options.get_attr("TCA_BPF_NAME") if options else None,
                        "prio": msg["info"] >> 16, "handle": msg["handle"]})
    return out


# -- XDP -------------------------------------------------------------------------
@dataclass(frozen=True)
class XdpState:
    mode: Optional[str]       # None, "native", "generic", "offload", "multi"
    prog_id: int


def xdp_state(iface: "Iface") -> XdpState:
    link = iface.node.rtnl.details(iface.index)
    return XdpState(XDP_ATTACHED.get(link.xdp_attached, "unknown"), link.xdp_prog_id)


def _detach_xdp(iface: "Iface", index: int, mode_flag: int, prog_fd: int) -> None:
    """Remove our program only: XDP_FLAGS_REPLACE with the expected fd refuses
    to remove a program someone attached after us."""
    try:
        _tolerate_gone(iface.node.rtnl.set_xdp, rtnl.xdp_request(
            index, -1, mode_flag | XDP_FLAGS_REPLACE, expected_fd=prog_fd))
    finally:
        os.close(prog_fd)


def attach_xdp(iface: "Iface", prog: "Program", mode: str = "native", *,
               xdp_tx_peer: bool = True) -> XdpAttachment:
    """XDP in ``native`` (driver) or ``generic`` (skb) mode; never a silent fallback:
    the mode flag is explicit and the mode the kernel reports is checked.

    Native XDP on a veth: frames the program sends back with XDP_TX reach the peer
    only when the peer runs a native XDP program too; without one the kernel
    drops every one of them silently. So, unless ``xdp_tx_peer=False`` (the
    program never uses XDP_TX), the peer gets ``xdp_tx_peer`` (a pass program,
    ``bpf/xdp_tx_peer.c``) when it has no XDP program, and the attach is refused,
    with the fix, when the peer cannot get one."""
    _check(mode, XDP_MODE_FLAGS, "XDP mode")
    if mode == "native" and xdp_tx_peer:
        _make_peer_receive_xdp_tx(iface)
    index, flag, hook = iface.index, XDP_MODE_FLAGS[mode], f"xdp {mode}"
    try:
        iface.node.rtnl.set_xdp(rtnl.xdp_request(index, prog.fd,
                                                 flag | XDP_FLAGS_UPDATE_IF_NOEXIST))
    except rtnl.NetlinkError as exc:
        if exc.code == errno.EOPNOTSUPP:
            raise Unsupported(f"{iface}: the driver has no {hook} "
                              f"({exc.args[1] if len(exc.args) > 1 else 'EOPNOTSUPP'})") from None
        raise _netlink_error(f"{iface}: {hook} {prog.name}", exc) from None
    # The undo owns a duplicate of the program fd: it names the program it may remove.
    undo = iface.node.lab.defer(_detach_xdp, iface, index, flag, os.dup(prog.fd),
                                what=f"{hook} {prog.name} on {iface}")
    attachment = XdpAttachment(hook, iface, prog, undo, mode=mode)
    state = xdp_state(iface)
    if state.mode != mode or state.prog_id != prog.id:
        attachment.detach()
        raise LabError(f"{iface}: asked for {hook} of {prog.name} (id {prog.id}), "
                       f"kernel reports {state.mode} with program id {state.prog_id}")
    return attachment


def _make_peer_receive_xdp_tx(iface: "Iface") -> Optional[XdpAttachment]:
    if iface.info()["kind"] != "veth":
        return None
    fix = "or pass xdp_tx_peer=False if the program never uses XDP_TX"
    peer = iface.peer
    if peer is None:
        raise LabError(f"{iface}: native XDP on a veth whose peer this lab did not make: "
                       f"XDP_TX frames would be dropped unless the peer runs a native XDP "
                       f"program; attach one there, use mode='generic', {fix}")
    state = xdp_state(peer)
    if state.mode == "native":
        return None
    if state.mode is not None:
        raise LabError(f"{iface}: native XDP here but {state.mode} XDP on its peer {peer}: "
                       f"XDP_TX frames would be dropped; attach the peer's program in native "
                       f"mode, {fix}")
    prog = load(iface.node.lab, "bpf/xdp_tx_peer.c").program("xdp_tx_peer")
    log.info("%s: attached xdp_tx_peer to %s so that XDP_TX frames are received", iface, peer)
    return attach_xdp(peer, prog, "native", xdp_tx_peer=False)


# -- BPF links: tcx and netkit --------------------------------------------------------
def _link(iface: "Iface", prog: "Program", attach_type: int, hook: str,
          **link_opts) -> LinkAttachment:
    index = iface.index
    link_fd = iface.node.call(libbpf.link_create, prog.fd, index, attach_type, **link_opts)
    undo = iface.node.lab.defer(os.close, link_fd, what=f"{hook} link {prog.name} on {iface}")
    return LinkAttachment(hook, iface, prog, undo, link_fd=link_fd, attach_type=attach_type)


def attach_tcx(iface: "Iface", prog: "Program", direction: str = "ingress", *,
               flags: int = 0, relative_fd: int = 0,
               expected_revision: int = 0) -> LinkAttachment:
    """A tcx link (kernel >= 6.6); by default appended after the hook's programs."""
    _check(direction, TCX_TYPES, "tcx direction")
    libbpf.require_tcx()
    hook = f"tcx {direction}"
    try:
        return _link(iface, prog, TCX_TYPES[direction], hook, flags=flags,
                     relative_fd=relative_fd, expected_revision=expected_revision)
    except OSError as exc:
        raise LabError(f"{iface}: {hook} {prog.name}: {exc.strerror}") from None


NETKIT_ERRORS = {errno.ENXIO: "is not a netkit device",
                 errno.EACCES: "is a netkit peer; attach on the primary (end='peer' "
                               "puts the program on the peer's side)"}


def attach_netkit(primary: "Iface", prog: "Program", end: str = "primary") -> LinkAttachment:
    """A netkit link: the program runs on the ``primary`` or the ``peer`` side's
    transmit path; both are attached through the primary device."""
    _check(end, NETKIT_TYPES, "netkit end")
    libbpf.require_netkit()
    hook = f"netkit {end}"
    try:
        return _link(primary, prog, NETKIT_TYPES[end], hook)
    except OSError as exc:
        reason = (f"{primary} {NETKIT_ERRORS[exc.errno]}" if exc.errno in NETKIT_ERRORS
                  else exc.strerror)
        raise LabError(f"{primary}: {hook} {prog.name}: {reason}") from None


def link_prog_ids(iface: "Iface", attach_type: int) -> list[int]:
    """Program ids on a tcx or netkit hook of ``iface``, in run order."""
    index = iface.index
    return iface.node.call(libbpf.mprog_query, index, attach_type).prog_ids


def tcx_prog_ids(iface: "Iface", direction: str = "ingress") -> list[int]:
    _check(direction, TCX_TYPES, "tcx direction")
    return link_prog_ids(iface, TCX_TYPES[direction])
