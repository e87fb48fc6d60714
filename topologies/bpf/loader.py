"""Loading a BPF object into a lab: built (or reused) from source, closed with the lab."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Union

from . import libbpf
from .compiler import build
from .libbpf import BpfObject, Program

if TYPE_CHECKING:
    from ..lab.lab import Lab
    from .compiler import Define


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
