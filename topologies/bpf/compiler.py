"""Build ``bpf/*.c`` into BPF ELF objects, cached by content.

The cache key is a sha256 over: the source bytes, the bytes of every header
the source includes (as ``clang -M`` lists them: the lab's own headers, libbpf's
and the kernel UAPI ones, so a ``libbpf-dev`` or ``linux-libc-dev`` upgrade
rebuilds too), the clang version, the flags and the defines. Objects are
written to a temporary file and renamed into place, so parallel xdist workers
may build the same object at once: the last rename wins with identical bytes.

Variants are defines: ``build("bpf/core_probe.c", defines={"VARIANT_BAD": 1})``.
A program of your own builds the same way, with its own ``cflags`` and include
directories; warnings are fatal (``-Werror``) only for nslab's own programs.
A source declares its known variants in comment lines such as
``// nslab-variant: VARIANT_NO_CSUM_UPDATE`` so ``prebuild()`` can build every
object the suite uses before a slow VM boots.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Union

from ..errors import LabError, Unsupported
from ..paths import BPF_SOURCES
from . import prebuilt

BPF_DIR = BPF_SOURCES
INCLUDE_DIR = BPF_DIR / "include"
CFLAGS = ("-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall")
OWN_CFLAGS = ("-Werror",)    # nslab's own programs: a warning is a bug here

Define = Union[int, str, bool, None]
DEFINE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VARIANT_LINE = re.compile(r"^\s*(?://|/?\*)\s*nslab-variant:\s*(.+?)\s*(?:\*/)?\s*$", re.M)


@dataclass(frozen=True)
class BuildResult:
    path: Path          # the ELF object in the cache
    source: Path
    defines: tuple[tuple[str, str], ...]
    digest: str         # sha256 hex: the cache key
    cache_hit: bool     # True when the object was already there
    cflags: tuple[str, ...] = ()


def cache_dir() -> Path:
    """``$NSLAB_CACHE/bpf``, else ``$XDG_CACHE_HOME/nslab/bpf``, else ``~/.cache/nslab/bpf``."""
    if os.environ.get("NSLAB_CACHE"):
        root = Path(os.environ["NSLAB_CACHE"])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nslab"
    return root / "bpf"


def clang() -> str:
    found = shutil.which(os.environ.get("NSLAB_CLANG", "clang"))
    if not found:
        raise Unsupported("clang not found: BPF programs cannot be built (apt-get install clang)")
    return found


@functools.lru_cache(maxsize=None)
def clang_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0].strip()


@functools.lru_cache(maxsize=None)
def multiarch_include() -> str:
    """Where ``asm/types.h`` lives (Debian keeps it under the multiarch triplet)."""
    try:
        triplet = subprocess.run(["gcc", "-print-multiarch"], capture_output=True,
                                 text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        triplet = ""
    return f"/usr/include/{triplet or platform.machine() + '-linux-gnu'}"


def candidates(source: Union[str, Path]) -> list[Path]:
    """Where a source may be: as given (a relative path from the current
    directory), then — for ``bpf/NAME`` — among nslab's own programs."""
    path = Path(source)
    if path.is_absolute():
        return [path]
    tried = [Path.cwd() / path]
    if path.parts[:1] == ("bpf",) and len(path.parts) > 1:
        tried.append(BPF_SOURCES.joinpath(*path.parts[1:]))
    return tried


def resolve_source(source: Union[str, Path]) -> Path:
    """The file ``source`` names; a one-line error with every place tried."""
    tried = candidates(source)
    found = next((p for p in tried if p.is_file()), None)
    if found is None:
        raise LabError(f"BPF source {source} not found (looked at {', '.join(map(str, tried))})")
    return found.resolve()


def is_own(source: Path) -> bool:
    """One of nslab's own programs (built with -Werror)."""
    return source.resolve().is_relative_to(BPF_SOURCES.resolve())


def normalise_defines(defines: Optional[Mapping[str, Define]]) -> tuple[tuple[str, str], ...]:
    """Sorted ``(name, value)`` pairs. ``True``/``None`` mean ``1``, as a bare ``-DNAME``
    does; ``False`` leaves the name undefined."""
    out = []
    for name, value in sorted((defines or {}).items()):
        if not DEFINE_NAME.match(name):
            raise LabError(f"bad define name {name!r}")
        if value is False:
            continue
        out.append((name, "1" if value is True or value is None else str(value)))
    return tuple(out)


def _define_flags(defines: tuple[tuple[str, str], ...]) -> list[str]:
    return [f"-D{name}={value}" for name, value in defines]


def _include_flags(includes: Iterable[Union[str, Path]] = ()) -> list[str]:
    flags = []
    for directory in includes:
        path = Path(directory).resolve()
        if not path.is_dir():
            raise LabError(f"BPF include directory {directory} not found (looked at {path})")
        flags += ["-I", str(path)]
    return flags + ["-I", multiarch_include(), "-I", str(INCLUDE_DIR)]


def compile_flags(source: Path, defines: tuple[tuple[str, str], ...],
                  cflags: Iterable[str] = (), includes: Iterable[Union[str, Path]] = ()
                  ) -> list[str]:
    own = OWN_CFLAGS if is_own(source) else ()
    return [*CFLAGS, *own, *cflags, *_include_flags(includes), *_define_flags(defines)]


def _first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            return line
    return lines[0] if lines else "no output"


def _run_clang(argv: list[str], source: Path, what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"{what} {source} failed: {_first_error(proc.stderr)}")
    return proc


# (source, flags) -> (its dependencies, their modification stamps) in this process
_scanned: dict[tuple[str, tuple[str, ...]], tuple[list[Path], list[tuple[int, int]]]] = {}


def _stamps(paths: list[Path]) -> list[tuple[int, int]]:
    out = []
    for path in paths:
        st = path.stat()
        out.append((st.st_mtime_ns, st.st_size))
    return out


def dependencies(source: Path, flags: list[str]) -> list[Path]:
    """Every file the preprocessor reads for ``source`` (``clang -M``), source first.
    Scanned again only when one of them changed since this process last scanned
    (a new ``#include`` changes the file that has it): a suite builds the same
    program for many tests."""
    key = (str(source), tuple(flags))
    known = _scanned.get(key)
    if known is not None:
        with contextlib.suppress(OSError):
            if _stamps(known[0]) == known[1]:
                return known[0]
    proc = _run_clang([clang(), *flags, "-M", str(source)], source, "dependency scan of")
    # Make syntax: "target: dep dep \<newline> dep ..."; paths here have no spaces.
    text = proc.stdout.replace("\\\n", " ")
    _target, _, deps = text.partition(":")
    found = [Path(p) for p in shlex.split(deps)]
    _scanned[key] = (found, _stamps(found))
    return found


def digest_of(source: Path, flags: list[str]) -> str:
    h = hashlib.sha256()
    for part in (clang_version(clang()), "\0".join(flags)):
        h.update(part.encode() + b"\0")
    for dep in dependencies(source, flags):
        h.update(str(dep).encode() + b"\0")
        h.update(hashlib.sha256(dep.read_bytes()).digest())
    return h.hexdigest()


def build(source: Union[str, Path], *, defines: Optional[Mapping[str, Define]] = None,
          cflags: Iterable[str] = (), includes: Iterable[Union[str, Path]] = (),
          cache: Optional[Path] = None) -> BuildResult:
    """Compile ``source`` with ``defines``, extra ``cflags`` and ``includes`` (directories)
    unless the cache has it; return where it is."""
    src = resolve_source(source)
    defs, extra = normalise_defines(defines), tuple(cflags)
    shipped = None if cache or extra or includes else prebuilt.lookup(src, defs)  # in a VM
    if shipped:
        return BuildResult(shipped[0], src, defs, shipped[1], cache_hit=True)
    flags = compile_flags(src, defs, extra, includes)
    digest = digest_of(src, flags)
    out_dir = Path(cache) if cache else cache_dir()
    target = out_dir / f"{src.stem}-{digest}.o"
    if target.is_file():
        return BuildResult(target, src, defs, digest, cache_hit=True, cflags=extra)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{src.stem}-", suffix=".tmp")
    os.close(fd)
    try:
        _run_clang([clang(), *flags, "-c", str(src), "-o", tmp], src, "compiling")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return BuildResult(target, src, defs, digest, cache_hit=False, cflags=extra)


def variants_of(source: Union[str, Path]) -> list[dict[str, Define]]:
    """The plain build plus one define set per ``nslab-variant:`` line in the source."""
    text = resolve_source(source).read_text()
    found: list[dict[str, Define]] = [{}]
    for match in VARIANT_LINE.finditer(text):
        variant: dict[str, Define] = {}
        for word in match.group(1).split():
            name, _, value = word.partition("=")
            variant[name] = value or 1
        found.append(variant)
    return found


def prebuild(sources: Optional[Iterable[Union[str, Path]]] = None,
             cache: Optional[Path] = None) -> list[BuildResult]:
    """Build every variant of every ``bpf/*.c`` (or of ``sources``)."""
    paths = list(sources) if sources is not None else sorted(BPF_DIR.glob("*.c"))
    return [build(path, defines=variant, cache=cache)
            for path in paths for variant in variants_of(path)]
