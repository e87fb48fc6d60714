"""The known-bug table: version logic, condition matching, and the README in step."""

import pytest

from topologies.errors import LabError
from topologies.kernels import version
from topologies.paths import PROJECT_ROOT
from topologies.scenarios import known_bugs
from topologies.scenarios import vxlan_overlay as vx

README = str(PROJECT_ROOT / "README.md")
FIX_2020 = ("5.7", "5.4.41", "4.19.123", "4.14.181")


@pytest.mark.parametrize("release, fixed", [
    ("5.4.40-1-amd64", False), ("5.4.41", True), ("4.19.122", False), ("4.19.123", True),
    ("4.14.180", False), ("5.6.19", False), ("5.7.0", True), ("6.1.0-56-amd64", True),
    ("4.9.337", False), ("6.18.44-fc-v595", True),
])
def test_fix_versions_follow_stable_branches(release, fixed):
    assert version.is_fixed(release, FIX_2020) is fixed


def test_an_open_bug_affects_every_kernel():
    bug = next(b for b in known_bugs.BUGS if b.id == "vxlan-lco-nat-sport")
    assert version.is_fixed("6.18.44", bug.fixed_in) is None
    assert bug.affects("4.19.0") and bug.affects("6.18.44")


def test_conditions_pick_exactly_the_broken_cells_of_the_matrix():
    def broken(check):
        return {c.id for c in vx.matrix()
                if known_bugs.expectation(vx.SCENARIO, c.knobs(), check, release="6.18.44")}
    assert broken("wire") == {
        f"udpcsum-vxtx_on-{ul}-{nat}-none" for ul in ("ultx_on", "ultx_off")
        for nat in ("masq_random_fully", "kube_proxy_pre_1_19")}
    assert broken("delivery") == {
        f"udpcsum-vxtx_on-ultx_off-{nat}-none"
        for nat in ("masq_random_fully", "kube_proxy_pre_1_19")}
    # On a 5.4.40 kernel the 2020 bug comes back for noudpcsum where NAT changes the
    # outer source: the cells that failed on 6.1.192 built with its fix reverted.
    old = {c.id for c in vx.matrix() if c.udpcsum == "noudpcsum"
           and known_bugs.expectation(vx.SCENARIO, c.knobs(), "wire", release="5.4.40")}
    assert old == {f"noudpcsum-vxtx_on-{ul}-{nat}-none" for ul in ("ultx_on", "ultx_off")
                   for nat in ("masq_random_fully", "kube_proxy_pre_1_19")}


def test_readme_shows_the_current_table():
    with open(README) as f:
        assert known_bugs.markdown_table() in f.read(), \
            "README's known-bug table is stale: paste known_bugs.markdown_table()"


def test_the_ipv4_underlay_keeps_the_seed_ids():
    """The underlay knob came later: its IPv4 value leaves the ids as they were."""
    seed = list(vx.matrix())
    assert len(seed) == 44 and all(c.underlay == "ul4" for c in seed)
    assert all(c.id == "-".join((c.udpcsum, c.vxlan_tx, c.underlay_tx, c.nat, c.workaround))
               for c in seed)
    assert vx.Config("noudpcsum", nat="snat_addr", underlay="ul6").id == \
        "noudpcsum-vxtx_on-ultx_on-ul6-snat_addr-none"
    # A -k naming a seed cell's words in a row selects no IPv6 cell.
    assert not [c.id for c in vx.underlay_and_snat_matrix()
                if "udpcsum-vxtx_on-ultx_on-nat_none" in c.id]
    assert set(vx.Config.ID_ORDER) == set(vx.KNOBS)
    added = [c.id for c in vx.underlay_and_snat_matrix()]
    assert len(added) == len(set(added)) == 56 and not set(added) & {c.id for c in seed}


def test_kube_proxy_rules_are_ipv4_only():
    with pytest.raises(LabError, match="kube_proxy_pre_1_19 does not apply to underlay=ul6"):
        vx.Config(nat="kube_proxy_pre_1_19", underlay="ul6")
    assert {c.nat for c in vx.underlay_and_snat_matrix() if c.underlay == "ul6"} == {
        "nat_none", "masquerade", "masq_random_fully", "snat_addr_port", "snat_addr"}


def test_conditions_pick_exactly_the_broken_new_cells():
    """The IPv6 underlay and the SNAT cells, as measured on 6.18: the live bug
    wherever NAT changes the outer source port or address, over either underlay."""
    def broken(check):
        return {c.id for c in vx.underlay_and_snat_matrix()
                if known_bugs.expectation(vx.SCENARIO, c.knobs(), check, release="6.18.44")}
    cells = [("", nat) for nat in ("snat_addr_port", "snat_addr")] + \
        [("-ul6", nat) for nat in ("masq_random_fully", "snat_addr_port", "snat_addr")]
    assert broken("wire") == {f"udpcsum-vxtx_on-{ul}{family}-{nat}-none"
                              for ul in ("ultx_on", "ultx_off") for family, nat in cells}
    assert broken("delivery") == {f"udpcsum-vxtx_on-ultx_off{family}-{nat}-none"
                                  for family, nat in cells}
    assert {known_bugs.expectation(vx.SCENARIO, vx.Config(nat=nat, underlay=ul).knobs(),
                                   "wire", release="6.18.44").id
            for nat, ul in (("snat_addr", "ul4"), ("masq_random_fully", "ul6"))} == \
        {"vxlan-lco-nat-sport"}
    # On a 5.4.40 kernel the 2020 bug comes back for noudpcsum here too (as measured
    # with its fix reverted): the SNATs, and over IPv6 every NAT but plain MASQUERADE.
    old = {c.id for c in vx.underlay_and_snat_matrix() if c.udpcsum == "noudpcsum"
           and known_bugs.expectation(vx.SCENARIO, c.knobs(), "wire", release="5.4.40")}
    assert old == {f"noudpcsum-vxtx_on-{ul}{family}-{nat}-none"
                   for ul in ("ultx_on", "ultx_off") for family, nat in cells}
