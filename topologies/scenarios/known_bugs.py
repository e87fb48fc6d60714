"""The lab's known-bug table: expected failures as data, not ``if`` chains.

A bug has the conditions (knob values) under which it shows, the kernels it
affects (fixed-in versions, or none known) and its links. A scenario asks
``expectation(scenario, knobs)``: on an affected kernel a matching test is a
strict xfail with the reason, so the day a kernel fixes the bug the suite
reports an XPASS failure instead of passing quietly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from ..kernels import version


@dataclass(frozen=True)
class KnownBug:
    id: str
    scenario: str
    title: str
    conditions: Mapping[str, tuple]          # knob → values under which it shows
    # What breaks: check name → extra knob conditions for that check ({} = always).
    breaks: Mapping[str, Mapping[str, tuple]] = field(default_factory=dict)
    fixed_in: tuple[str, ...] = ()           # mainline release, then stable backports
    measured: Mapping[str, str] = field(default_factory=dict)   # kernel → outcome seen
    links: tuple[str, ...] = ()
    symptom: str = ""

    def matches(self, knobs: Mapping[str, object], check: Optional[str] = None) -> bool:
        """Whether ``knobs`` meet the bug's conditions (and, given a ``check``,
        whether that check is one the bug breaks under these knobs)."""
        conditions = dict(self.conditions)
        if check is not None:
            if check not in self.breaks:
                return False
            conditions.update(self.breaks[check])
        return all(knobs.get(k) in values for k, values in conditions.items())

    def affects(self, release: Optional[str] = None) -> bool:
        return not version.is_fixed(release or version.running(), self.fixed_in)

    @property
    def status(self) -> str:
        return f"fixed in {', '.join(self.fixed_in)}" if self.fixed_in else "open (no fix upstream)"

    def reason(self) -> str:
        return f"known bug {self.id}: {self.title} [{self.status}; {' '.join(self.links)}]"


# S-VXLAN's knob values (see topologies/scenarios/vxlan_overlay.py).
_NATS_CHANGING_SPORT = ("masq_random_fully", "kube_proxy_pre_1_19")
_SNATS = ("snat_addr_port", "snat_addr")
# NATs that change the outer source address or port (plain MASQUERADE keeps both)
_NATS_CHANGING_SOURCE = _NATS_CHANGING_SPORT + _SNATS
_UNDERLAYS = ("ul4", "ul6")
# Where the vxlan matrix was measured (nslab matrix for the Debian kernels).
_KERNELS = ("6.1.0-56 (Debian 6.1)", "6.12.117 (Debian)", "6.18.44")

BUGS: tuple[KnownBug, ...] = (
    KnownBug(
        id="vxlan-nat-zero-udp-csum-2020",
        scenario="vxlan_overlay",
        title="NAT of a VXLAN packet with outer UDP checksum 0 writes a bogus non-zero checksum "
              "when the vxlan device offloads tx checksums",
        # Every NAT that rewrites the outer packet, over either underlay: the
        # old __udp_manip_pkt updated the checksum whenever the skb was
        # CHECKSUM_PARTIAL, zero or not. Measured on 6.1.192 built with the fix
        # reverted (ci/bisect-demo): plain MASQUERADE keeps the outer tuple, so
        # NAT never touches the packet and its zero checksum stays.
        conditions={"udpcsum": ("noudpcsum",), "vxlan_tx": ("vxtx_on",),
                    "nat": _NATS_CHANGING_SOURCE, "workaround": ("none",)},
        breaks={"wire": {}, "delivery": {"underlay_tx": ("ultx_off",)}},
        fixed_in=("5.7", "5.4.41", "4.19.123", "4.14.181"),
        measured={**{k: "fixed: noudpcsum stays 0 through every NAT (all 40 cells pass), SNAT "
                        "and the IPv6 underlay too (zero tunnel checksum, accepted with "
                        "udp6zerocsumrx)" for k in _KERNELS},
                  "6.1.192 with the fix reverted (ci/bisect-demo)":
                      "affected: every NAT that changes the outer source (MASQUERADE "
                      "--random-fully, kube-proxy pre-1.19, SNAT address and port, SNAT "
                      "address) turns the zero outer checksum into a wrong one (0xffff, 0x0002, "
                      "...) over both underlays, and the peer drops them with ultx_off; plain "
                      "MASQUERADE and kube-proxy post-92035 leave the packet alone"},
        links=("netfilter: nat: never update the UDP checksum when it's 0",
               "https://github.com/kubernetes/kubernetes/pull/92035"),
        symptom="outer UDP checksum non-zero and wrong; peer drops: 1 s / 63 s DNS delays",
    ),
    KnownBug(
        id="vxlan-lco-nat-sport",
        scenario="vxlan_overlay",
        title="outer UDP checksum stale after NAT by the port change plus twice the address "
              "change: local checksum offload precomputes it, and NAT of a CHECKSUM_PARTIAL "
              "skb skips the port and folds the address in as if into a seed",
        conditions={"udpcsum": ("udpcsum",), "vxlan_tx": ("vxtx_on",),
                    "nat": _NATS_CHANGING_SOURCE, "workaround": ("none",),
                    "underlay": _UNDERLAYS},
        # The wire carries the stale checksum either way; the peer only drops it
        # when the underlay finished the checksum in software (as a NIC would).
        breaks={"wire": {}, "delivery": {"underlay_tx": ("ultx_off",)}},
        fixed_in=(),
        # nslab matrix: the matching cells are strict xfails on each kernel; the
        # staleness tests hold every stale frame to vxlan_overlay.predicted_staleness.
        measured={k: "affected over the IPv4 and the IPv6 underlay alike: outer UDP stale by "
                     "exactly the port change plus twice the address change (MASQUERADE "
                     "--random-fully, SNAT address and port, SNAT address only: +4 for .1 → .3 "
                     "and ::1 → ::3); plain MASQUERADE keeps both and stays right; ultx_off: "
                     "MASQUERADE --random-fully and both SNATs drop all, kube-proxy 1 s SYN delay"
                  for k in _KERNELS},
        links=("https://github.com/flannel-io/flannel/issues/1929",
               "fix: ci/patches/0001-netfilter-nat-update-a-tunnel-s-final-outer-UDP-chec.patch"),
        symptom="peer counts Udp (Udp6) InCsumErrors and drops every overlay packet once the "
                "checksum is finished in software",
    ),
)


def expectation(scenario: str, knobs: Mapping[str, object], check: Optional[str] = None,
                release: Optional[str] = None) -> Optional[KnownBug]:
    """The known bug this combination hits on ``release`` (running kernel by
    default), for one ``check`` of the scenario or for any."""
    for bug in BUGS:
        if bug.scenario == scenario and bug.matches(knobs, check) and bug.affects(release):
            return bug
    return None


def for_scenario(scenario: str) -> list[KnownBug]:
    return [bug for bug in BUGS if bug.scenario == scenario]


def markdown_table() -> str:
    """The table the README shows (a test keeps the two in step)."""
    lines = ["| bug | scenario | shows when | fixed in | measured | links |",
             "|---|---|---|---|---|---|"]
    for bug in BUGS:
        when = ", ".join(f"{k} ∈ {{{', '.join(v)}}}" if len(v) > 1 else f"{k}={v[0]}"
                         for k, v in bug.conditions.items())
        measured = "; ".join(f"{k}: {v}" for k, v in bug.measured.items())
        lines.append(f"| `{bug.id}`: {bug.title} | {bug.scenario} | {when} | "
                     f"{', '.join(bug.fixed_in) or 'no fix upstream'} | {measured} | "
                     f"{'; '.join(bug.links)} |")
    return "\n".join(lines)
