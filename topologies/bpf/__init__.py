"""BPF for scenario code, from one import: build, load, attach, test-run.
Built with clang (cached by content), loaded with libbpf, undone when the lab closes.

    from topologies import bpf
    obj = bpf.load(lab, "bpf/core_probe.c", defines={"VARIANT_NO_CSUM_UPDATE": 1})
    bpf.attach_tc(iface, obj.program("tc_count"), "ingress")
    run = bpf.test_run(obj.program("tc_count"), packet_bytes)
"""
from . import libbpf
from .attach import (
                     Attachment,
                     LinkAttachment,
                     TcAttachment,
                     XdpAttachment,
                     XdpState,
                     attach_netkit,
                     attach_tc,
                     attach_tcx,
                     attach_xdp,
                     link_prog_ids,
                     tc_filters,
                     tcx_prog_ids,
                     xdp_state,
)
from .compiler import BuildResult, build, prebuild, variants_of
from .libbpf import (
                     BpfObject,
                     Map,
                     Program,
                     VerifierError,
                     btf_available,
                     netkit_supported,
                     prog_exists,
                     tcx_supported,
)
from .loader import label, load, prog_id
from .testrun import TestRun, action_name, test_run

__all__ = [
    "load", "label", "build", "prebuild", "variants_of", "BuildResult",
    "BpfObject", "Program", "Map", "VerifierError", "libbpf",
    "attach_tc", "attach_xdp", "attach_tcx", "attach_netkit",
    "Attachment", "TcAttachment", "XdpAttachment", "LinkAttachment", "XdpState",
    "tc_filters", "xdp_state", "tcx_prog_ids", "link_prog_ids",
    "test_run", "TestRun", "action_name",
    "btf_available", "tcx_supported", "netkit_supported", "prog_exists", "prog_id",
]
