"""Loading a BPF object into a lab: built (or reused) from source, or a prebuilt
``.o`` as it is; closed with the lab."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Union

from ..errors import LabError
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


def object_path(path: Union[str, Path]) -> Path:
    """A prebuilt object: as given, relative paths from the current directory."""
    found = Path(path).resolve()
    if not found.is_file():
        raise LabError(f"BPF object {path} not found (looked at {found})")
    return found


def load(lab: "Lab", source: Union[str, Path], *,
         defines: Optional[Mapping[str, "Define"]] = None, cflags: Iterable[str] = (),
         includes: Iterable[Union[str, Path]] = ()) -> BpfObject:
    """Load ``source`` into the kernel for the lab's lifetime: a ``.c`` is built first
    (or taken from the cache) with ``defines``, extra ``cflags`` and ``includes``; a
    ``.o`` is loaded as it is. Relative paths are taken from the current directory
    (``bpf/NAME`` also finds nslab's own programs)."""
    if Path(source).suffix == ".o":
        if defines or cflags or includes:
            raise LabError(f"{source}: a prebuilt object takes no defines, cflags or includes")
        path = object_path(source)
    else:
        path = build(source, defines=defines, cflags=cflags, includes=includes).path
    name = label(source, defines)
    obj = BpfObject.open(path, name=name)
    lab.defer(obj.close, what=f"BPF object {name}")
    return obj


def prog_id(prog: Union[Program, int]) -> int:
    """The kernel's id of a loaded program (given as a Program or a program fd)."""
    return libbpf.prog_id(prog.fd if isinstance(prog, Program) else prog)
