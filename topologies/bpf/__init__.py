"""BPF for scenario code, from one import: build, load, attach, test-run.
Built with clang (cached by content), loaded with libbpf, undone when the lab closes.

    from topologies import bpf
    obj = bpf.load(lab, "bpf/core_probe.c", defines={"VARIANT_NO_CSUM_UPDATE": 1})
    bpf.attach_tc(iface, obj.program("tc_count"), "ingress")
    run = bpf.test_run(obj.program("tc_count"), packet_bytes)
"""
from .. import lazy

__getattr__, __dir__, __all__ = lazy.exports(__name__, {
    "compiler": ["build", "prebuild", "variants_of", "BuildResult"],
    "loader": ["load", "label", "prog_id"],
    "libbpf": ["BpfObject", "Program", "Map", "VerifierError", "btf_available",
               "tcx_supported", "netkit_supported", "prog_exists"],
    "attach": ["attach_tc", "attach_xdp", "attach_tcx", "attach_netkit", "Attachment",
               "TcAttachment", "XdpAttachment", "LinkAttachment", "XdpState", "tc_filters",
               "xdp_state", "tcx_prog_ids", "link_prog_ids"],
    "testrun": ["test_run", "TestRun", "action_name"],
}, submodules=["libbpf"])
