"""The kernel-behaviour table: facts that change between kernels and that datapath
authors meet, each decided by a probe test, with the value measured per kernel.

Beside the known-bug table: these are not bugs, but a program, a test or a
workaround that is right on one kernel can be wrong on another (a checksum left
unfolded, a hook that does not exist, a default that flipped). A fact has a
version rule where the change is known, and the values measured here; the probe
tests (``labtests/selftests/test_kernel_behaviour.py``) assert the running
kernel agrees, and ``markdown_table()`` is what the README shows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

from ..kernels import version

PROBES = "labtests/selftests/test_kernel_behaviour.py"


@dataclass(frozen=True)
class Change:
    """From ``since`` on the fact reads ``after``; before it, ``before``."""
    since: str
    before: str
    after: str
    by: str = ""             # the upstream change, when known


@dataclass(frozen=True)
class KernelBehaviour:
    id: str
    fact: str                                  # what the probe measures
    matters: str                               # why a datapath author cares
    probe: str                                 # the probe test's name
    change: Optional[Change] = None            # a version rule, where one is known
    # Measured values by kernel release prefix ("6.12.117"): they take precedence
    # over the rule (config options and backports do not follow versions).
    measured: Mapping[str, str] = field(default_factory=dict)

    def expected(self, release: Optional[str] = None) -> Optional[str]:
        """What the fact should read on ``release`` (default: the running kernel);
        None when neither a measurement nor a rule says."""
        release = release or version.running()
        for measured_on, value in self.measured.items():
            # "6.12.117" is 6.12.117+deb12-amd64, not 6.12.1170.
            if re.match(re.escape(measured_on) + r"(?!\d)", release):
                return value
        if self.change is not None:
            return self.change.after if version.parse(release) >= version.parse(
                self.change.since) else self.change.before
        return None


FACTS: tuple[KernelBehaviour, ...] = (
    KernelBehaviour(
        id="bpf-csum-diff-folded",
        fact="what bpf_csum_diff() returns: the 32-bit one's complement sum, or folded to 16 bits",
        matters="a program that forgets to fold (or folds once) is only caught on kernels that "
                "return the unfolded sum (xdp_responder's recomputation tests)",
        probe="test_bpf_csum_diff_folding",
        measured={"6.1.0-56": "unfolded", "6.12.117": "unfolded", "6.18.44": "folded"},
    ),
    KernelBehaviour(
        id="netkit",
        fact="the netkit link kind (CONFIG_NETKIT) exists",
        matters="pod_egress's netkit variants run only there (a VM with `nslab matrix` elsewhere)",
        probe="test_netkit_link_kind",
        change=Change(since="6.7", before="absent", after="present if CONFIG_NETKIT",
                      by="netkit, a BPF-programmable network device (6.7)"),
        measured={"6.1.0-56": "absent", "6.12.117": "present", "6.18.44": "absent"},
    ),
    KernelBehaviour(
        id="tcx",
        fact="tcx hooks (BPF links on the tc ingress/egress path) exist",
        matters="tc BPF attached with bpf_link needs them; cls_bpf works everywhere",
        probe="test_tcx_hooks",
        change=Change(since="6.6", before="absent", after="present",
                      by="bpf: Add fd-based tcx multi-prog infra with link support (6.6)"),
        measured={"6.1.0-56": "absent", "6.12.117": "present", "6.18.44": "present"},
    ),
    KernelBehaviour(
        id="vxlan-udpcsum-default",
        fact="a new IPv4 vxlan device's outer UDP checksum when IFLA_VXLAN_UDP_CSUM is not given",
        matters="whether the live VXLAN + NAT bug can show at all on a default device; "
                "vxlan_overlay always sets it explicitly",
        probe="test_vxlan_udpcsum_default",
        measured={"6.1.0-56": "udpcsum", "6.12.117": "udpcsum", "6.18.44": "udpcsum"},
    ),
    KernelBehaviour(
        id="veth-xdp-tx-needs-peer-xdp",
        fact="native XDP_TX on a veth reaches a peer that runs no XDP program",
        matters="without one the frames are dropped silently (only the sender's "
                "xdp_tx_errors counts them); nslab's attach_xdp gives the peer a pass program",
        probe="test_veth_xdp_tx_without_a_peer_program",
        measured={"6.1.0-56": "dropped", "6.12.117": "dropped", "6.18.44": "dropped"},
    ),
)


def fact(fact_id: str) -> KernelBehaviour:
    return next(f for f in FACTS if f.id == fact_id)


def markdown_table() -> str:
    kernels = sorted({k for f in FACTS for k in f.measured}, key=version.parse)
    lines = [f"| fact | {' | '.join(kernels)} | changed | why it matters |",
             "|" + "---|" * (len(kernels) + 3)]
    for f in FACTS:
        change = (f"{f.change.since}: {f.change.before} → {f.change.after}"
                  if f.change else "not pinned")
        lines.append(f"| `{f.id}`: {f.fact} | "
                     + " | ".join(f.measured.get(k, "-") for k in kernels)
                     + f" | {change} | {f.matters} |")
    return "\n".join(lines)
