"""Named topologies for ``nslab up``: each is a scenario module with
``KNOBS`` (knob → allowed values), ``Config(**knobs)`` and ``build(lab, config)``."""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import LabError

TOPOLOGIES = {
    "vxlan_overlay": "topologies.scenarios.vxlan_overlay",
    "lb_snat": "topologies.scenarios.lb_snat",
    "xdp_responder": "topologies.scenarios.xdp_responder",
    "pod_egress": "topologies.scenarios.pod_egress",
}


def load(name: str) -> ModuleType:
    """A named topology's module, or a topology file (``*.yaml``) validated and
    wrapped to look like one."""
    from . import topology_file   # its builder imports the lab (pyroute2): only when used
    if topology_file.is_topology_file(name):
        return topology_file.FileTopology(topology_file.load(name))   # type: ignore
    if name not in TOPOLOGIES:
        raise LabError(f"unknown topology {name!r}; topologies: {', '.join(sorted(TOPOLOGIES))} "
                       f"(or a topology file, *.yaml)")
    return importlib.import_module(TOPOLOGIES[name])


def parse_settings(items: list[str]) -> dict[str, str]:
    settings = {}
    for item in items:
        knob, sep, value = item.partition("=")
        if not sep or not knob or not value:
            raise LabError(f"--set {item!r}: expected knob=value")
        settings[knob] = value
    return settings


def config_for(module: ModuleType, settings: dict[str, str]):
    """The module's Config from ``knob=value`` settings; one-line errors naming
    the valid knobs or values."""
    name = module.__name__.rsplit(".", 1)[1]
    for knob, value in settings.items():
        if knob not in module.KNOBS:
            raise LabError(f"{name}: unknown knob {knob!r}; knobs: {', '.join(module.KNOBS)}")
        if value not in module.KNOBS[knob]:
            raise LabError(f"{name}: {knob}={value!r} is not one of "
                           f"{', '.join(map(str, module.KNOBS[knob]))}")
    return module.Config(**settings)
