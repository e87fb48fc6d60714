"""What a running lab consists of, read back from the kernel: nodes, links,
addresses, MTUs and attached BPF programs (for ``nslab ls`` and reports)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..lab.lab import Lab


def describe(lab: "Lab") -> dict:
    from .. import bpf
    nodes = {}
    for name, node in lab.nodes.items():
        links = []
        for ifname in node.links():
            iface = node.iface(ifname)
            info = iface.info()
            programs = []
            xdp = bpf.xdp_state(iface)
            if xdp.prog_id:
                # By name: an ``xdp_tx_peer`` here says nslab attached it (see bpf.attach_xdp).
                prog_name = bpf.libbpf.prog_name(xdp.prog_id)
                programs.append(f"xdp/{xdp.mode}:{prog_name or xdp.prog_id}")
            programs += [f"tc/{direction}:{f['name']}" for direction in ("ingress", "egress")
                         for f in bpf.tc_filters(iface, direction)]
            programs += [f"tcx/{direction}:{prog_id}" for direction in ("ingress", "egress")
                         for prog_id in _tcx_ids(iface, direction)]
            links.append({"name": ifname, "kind": info["kind"] or "loopback",
                          "mtu": info["mtu"], "state": info["state"],
                          "addresses": [a for a in iface.addresses()
                                        if not a.startswith(("fe80", "127.", "::1"))],
                          "programs": programs})
        nodes[name] = {"netns": node.netns, "links": links}
    return {"prefix": lab.prefix, "nodes": nodes}


def _tcx_ids(iface, direction: str) -> list[int]:
    from .. import bpf
    from ..bpf import libbpf
    if not libbpf.tcx_supported():   # before 6.6: no tcx hooks to list
        return []
    return bpf.tcx_prog_ids(iface, direction)


def owner_of(record) -> str:
    """Who owns a lab, in words: its process, and the test session it belongs to
    (which ``nslab sweep`` removes it with if that session dies) or a person."""
    from ..lab import session
    process = f"{'keeper' if record.keeper else 'process'} pid {record.pid}"
    if not record.owner_alive():
        process += " (gone: nslab sweep removes the lab)"
    if not record.session:
        return f"{process}, " + ("kept for inspection: yours to remove (nslab down)"
                                 if record.kept else "started by hand")
    tied = session.load(record.session)
    if tied is None or not tied.alive():
        return f"{process}, test session {record.session[:8]} (gone: nslab sweep removes the lab)"
    why = "kept for inspection, " if record.kept else ""
    return f"{process}, {why}test session {record.session[:8]} (pytest pid {tied.pid})"


def render(record) -> str:
    """Human text for one owner record carrying a description."""
    desc = record.description
    lines = [f"{record.name or record.prefix}  ({record.prefix}, topology "
             f"{record.topology or '-'})", f"  owner: {owner_of(record)}"]
    for knob, value in desc.get("knobs", {}).items():
        lines.append(f"  {knob} = {value}")
    for node, info in desc.get("nodes", {}).items():
        lines.append(f"  node {node}  [{info['netns']}]")
        for link in info["links"]:
            if link["name"] == "lo":
                continue
            extra = "  " + " ".join(link["programs"]) if link["programs"] else ""
            lines.append(f"    {link['name']:<8} {link['kind']:<8} mtu {link['mtu']:<5} "
                         f"{' '.join(link['addresses']) or '-'}{extra}")
    return "\n".join(lines)
