"""Build ``bpf/*.c`` into BPF ELF objects, cached by content.

The cache key is a sha256 over: the source bytes, the bytes of every header
the source includes (as ``clang -M`` lists them: the lab's own headers, libbpf's
and the kernel UAPI ones, so a ``libbpf-dev`` or ``linux-libc-dev`` upgrade
rebuilds too), the clang version, the flags and the defines. The scan and the
clang version are remembered in the cache too, checked against file stamps, so a
process that finds its objects built runs no clang at all. Objects are
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
import json
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
    stamp = os.stat(binary)       # the binary an upgrade replaces
    memo = cache_dir() / "clang" / _hex(binary, stamp.st_mtime_ns, stamp.st_size)
    with contextlib.suppress(OSError):
        return memo.read_text()
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    version = out.stdout.splitlines()[0].strip()
    with contextlib.suppress(OSError):        # a read-only cache (a VM guest) only costs time
        _write_atomically(memo, version)
    return version


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


def _hex(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def _write_atomically(path: Path, text: str) -> None:
    """Written whole or not at all: parallel workers may write the same file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _stamps(paths: list[str]) -> list[list[int]]:
    out = []
    for path in paths:
        st = os.stat(path)
        out.append([st.st_mtime_ns, st.st_size])
    return out


def _watched(source: Path, flags: list[str], deps: list[str]) -> list[str]:
    """What a scan depends on: the files it found and the directories a new header
    could appear in to shadow one of them (each -I directory, each file's own)."""
    dirs = {str(source.parent), *(os.path.dirname(d) for d in deps)}
    dirs.update(flags[i + 1] for i, flag in enumerate(flags[:-1]) if flag == "-I")
    return deps + sorted(dirs)


def dependencies(source: Path, flags: list[str], memo_dir: Path) -> list[Path]:
    """Every file the preprocessor reads for ``source`` (``clang -M``), source first.
    The scan is remembered in ``memo_dir`` and redone only when a file it found, or
    a directory a header is looked up in, changed: every process of a suite builds
    the same programs (a new ``#include`` changes the file that has it)."""
    memo = memo_dir / "deps" / f"{source.stem}-{_hex(str(source), flags)}.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        known = json.loads(memo.read_text())
        if _stamps(known["watched"]) == known["stamps"]:
            return [Path(p) for p in known["deps"]]
    proc = _run_clang([clang(), *flags, "-M", str(source)], source, "dependency scan of")
    # Make syntax: "target: dep dep \<newline> dep ..."; paths here have no spaces.
    text = proc.stdout.replace("\\\n", " ")
    _target, _, deps = text.partition(":")
    found = shlex.split(deps)
    watched = _watched(source, flags, found)
    with contextlib.suppress(OSError):
        _write_atomically(memo, json.dumps({"deps": found, "watched": watched,
                                            "stamps": _stamps(watched)}))
    return [Path(p) for p in found]


def digest_of(source: Path, flags: list[str], memo_dir: Path) -> str:
    h = hashlib.sha256()
    for part in (clang_version(clang()), "\0".join(flags)):
        h.update(part.encode() + b"\0")
    for dep in dependencies(source, flags, memo_dir):
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
    out_dir = Path(cache) if cache else cache_dir()
    digest = digest_of(src, flags, out_dir)
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
