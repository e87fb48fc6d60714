"""BPF for scenario code, from one import: build, load, attach, test-run.

    from topologies import bpf
    obj = bpf.load(lab, "bpf/core_probe.c", defines={"VARIANT_NO_CSUM_UPDATE": 1})
    bpf.attach_tc(iface, obj.program("tc_count"), "ingress")
    run = bpf.test_run(obj.program("tc_count"), packet_bytes)

Everything loaded or attached here is undone when the lab closes.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Union

from .bpf_attach import (Attachment, LinkAttachment, TcAttachment, XdpAttachment, XdpState,
                         attach_netkit, attach_tc, attach_tcx, attach_xdp, link_prog_ids,
                         tc_filters, tcx_prog_ids, xdp_state)
from .bpf_build import BuildResult, build, prebuild, variants_of
from .bpf_testrun import TestRun, action_name, test_run
from . import libbpf
from .libbpf import (BpfObject, Map, Program, VerifierError, btf_available, netkit_supported,
                     prog_exists, tcx_supported)

if TYPE_CHECKING:
    from .bpf_build import Define
    from .lab import Lab

__all__ = [
    "load", "build", "prebuild", "variants_of", "BuildResult",
    "BpfObject", "Program", "Map", "VerifierError",
    "attach_tc", "attach_xdp", "attach_tcx", "attach_netkit",
    "Attachment", "TcAttachment", "XdpAttachment", "LinkAttachment", "XdpState",
    "tc_filters", "xdp_state", "tcx_prog_ids", "link_prog_ids",
    "test_run", "TestRun", "action_name",
    "btf_available", "tcx_supported", "netkit_supported", "prog_exists", "prog_id",
]


def label(source: Union[str, Path], defines: Optional[Mapping[str, "Define"]] = None) -> str:
    """``core_probe.c[VARIANT_NO_CSUM_UPDATE]``: how a build is named in messages."""
    names = ",".join(f"{k}={v}" if v not in (1, True, None) else k
                     for k, v in sorted((defines or {}).items()) if v is not False)
    return Path(source).name + (f"[{names}]" if names else "")


def load(lab: "Lab", source: Union[str, Path], *,
         defines: Optional[Mapping[str, "Define"]] = None) -> BpfObject:
    """Build (or reuse) and load ``source``; the object is closed when the lab closes."""
    built = build(source, defines=defines)
    name = label(source, defines)
    obj = BpfObject.open(built.path, name=name)
    lab.defer(obj.close, what=f"BPF object {name}")
    return obj


def prog_id(prog: Union[Program, int]) -> int:
    """The kernel's id of a loaded program (given as a Program or a program fd)."""
    return libbpf.prog_id(prog.fd if isinstance(prog, Program) else prog)
