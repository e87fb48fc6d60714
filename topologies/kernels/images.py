"""Kernel specs for ``nslab matrix`` and ``nslab bisect``, and where their files are.

A spec is one of:

- ``host``: the running kernel, no VM;
- ``deb:<version>``: a Debian kernel package (``deb:6.1.0-56`` is
  ``linux-image-6.1.0-56-amd64-unsigned``, ``deb:6.12.117`` is
  ``linux-image-6.12.117+deb12-amd64-unsigned``), fetched with
  ``apt-get download`` and unpacked with ``dpkg-deb -x`` into a cache. Nothing is
  installed into the system;
- a path to a kernel image (``bzImage``/``vmlinuz``), optionally with its modules
  directory: ``/src/linux/arch/x86/boot/bzImage`` or
  ``/boot/vmlinuz-6.9.0,modules=/lib/modules/6.9.0``. An image inside a kernel
  build tree brings its own modules (virtme-ng finds them).

Debian versions order as ``(major, minor, patch, abi)``, so a list can mix
series: 6.1.0-47 < 6.1.0-56 < 6.12.107 < 6.12.117.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..errors import LabError

HOST = "host"
DEB_PREFIX = "deb:"
# linux-image-<version>[+debNN]-<flavour>-unsigned; version 6.1.0-56 or 6.12.117
_DEB_PACKAGE = re.compile(r"^linux-image-(?P<version>\d+\.\d+\.\d+(?:-\d+)?)"
                          r"(?:\+deb\d+)?-(?P<flavour>amd64|arm64)-unsigned$")
_DEB_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:-\d+)?$")


@dataclass(frozen=True)
class Kernel:
    """A parsed spec; ``prepare()`` fills ``image``/``modules``/``release``."""
    spec: str
    kind: str                       # "host" | "deb" | "path"
    name: str                       # how tables and logs call it: host, 6.1.0-56, vmlinuz-6.9
    package: str = ""               # the Debian package (deb)
    image: Optional[Path] = None    # kernel image to boot (deb, path)
    modules: Optional[Path] = None  # its modules directory, when known
    release: str = ""               # uname -r of that kernel, when known

    @property
    def is_host(self) -> bool:
        return self.kind == "host"

    @property
    def slug(self) -> str:
        """A file-name-safe label for results directories."""
        return re.sub(r"[^A-Za-z0-9._+-]+", "_", self.name).strip("_") or "kernel"


# -- parsing ------------------------------------------------------------------------
def parse(spec: str) -> Kernel:
    """``host`` / ``deb:<version>`` / ``IMAGE[,modules=DIR]`` → Kernel (no I/O but stat)."""
    spec = spec.strip()
    if spec == HOST:
        return Kernel(spec, "host", HOST, release=os.uname().release)
    if spec.startswith(DEB_PREFIX):
        version = spec[len(DEB_PREFIX):]
        match = _DEB_PACKAGE.match(version)
        if match:                               # deb:linux-image-...-unsigned
            return Kernel(spec, "deb", match["version"], package=version)
        if not _DEB_VERSION.match(version):
            raise LabError(f"kernel spec {spec!r}: expected deb:<version> such as "
                           f"deb:6.1.0-56 or deb:6.12.117")
        return Kernel(spec, "deb", version)
    image, _, extra = spec.partition(",")
    modules = None
    if extra:
        key, _, value = extra.partition("=")
        if key != "modules" or not value:
            raise LabError(f"kernel spec {spec!r}: expected IMAGE[,modules=DIR]")
        modules = Path(value).resolve()
        if not modules.is_dir():
            raise LabError(f"kernel spec {spec!r}: no modules directory {value}")
    path = Path(image).resolve()
    if not path.is_file():
        raise LabError(f"kernel spec {spec!r} is not host, deb:<version>, "
                       f"nor an existing kernel image")
    return Kernel(spec, "path", short_name(path), image=path, modules=modules)


def short_name(image: Path) -> str:
    """``vmlinuz-6.9.0`` for an installed image; ``linux@bzImage`` for a tree's."""
    if image.name == "bzImage" and image.parent.parts[-3:] == ("arch", "x86", "boot"):
        return f"{image.parents[3].name}@bzImage"
    return image.name


def version_key(version: str) -> tuple[int, int, int, int]:
    """``6.1.0-56`` → (6, 1, 0, 56); ``6.12.117`` → (6, 12, 117, 0)."""
    match = re.match(r"^(\d+)\.(\d+)\.(\d+)(?:-(\d+))?$", version)
    if not match:
        raise LabError(f"not a Debian kernel version: {version!r}")
    return tuple(int(g or 0) for g in match.groups())  # type: ignore[return-value]


def sort_versions(versions: Iterable[str]) -> list[str]:
    return sorted(set(versions), key=version_key)


def versions_between(good: str, bad: str, available: Iterable[str]) -> list[str]:
    """The ordered versions from ``good`` to ``bad``, both included."""
    ordered = sort_versions([*available, good, bad])
    lo, hi = ordered.index(good), ordered.index(bad)
    if lo >= hi:
        raise LabError(f"the good version {good} must be older than the bad one {bad}")
    return ordered[lo:hi + 1]


# -- Debian packages ------------------------------------------------------------------
def dpkg_arch() -> str:
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "amd64")


def apt_package_names(prefix: str = "linux-image-") -> list[str]:
    """Package names apt knows (from its local lists: no network)."""
    try:
        out = subprocess.run(["apt-cache", "pkgnames", prefix], capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LabError(f"apt-cache pkgnames failed ({exc}): deb: kernels need apt") from None
    return out.split()


def deb_versions(names: Iterable[str], arch: Optional[str] = None) -> dict[str, str]:
    """version → package, for the plain ``<arch>-unsigned`` flavour."""
    arch = arch or dpkg_arch()
    found = {}
    for name in names:
        match = _DEB_PACKAGE.match(name)
        if match and match["flavour"] == arch:
            found[match["version"]] = name
    return found


def available_deb_versions(names: Optional[Iterable[str]] = None) -> list[str]:
    """Every Debian kernel version apt can download here, oldest first."""
    return sort_versions(deb_versions(apt_package_names() if names is None else names))


def deb_package(version: str, names: Optional[Iterable[str]] = None) -> str:
    packages = deb_versions(apt_package_names() if names is None else names)
    if version not in packages:
        known = ", ".join(sort_versions(packages)) or "none (run apt-get update)"
        raise LabError(f"no Debian kernel package for {version}; apt knows: {known}")
    return packages[version]


def candidate_version(package: str) -> str:
    """The Debian version apt would download (``6.1.192-2``)."""
    out = subprocess.run(["apt-cache", "show", "--no-all-versions", package],
                         capture_output=True, text=True).stdout
    match = re.search(r"^Version: (\S+)$", out, re.M)
    if not match:
        raise LabError(f"apt-cache has no candidate for {package} (run apt-get update)")
    return match[1]


# -- the cache --------------------------------------------------------------------------
def cache_root() -> Path:
    """``$NSLAB_CACHE``, else ``$XDG_CACHE_HOME/nslab``, else ``~/.cache/nslab``."""
    if os.environ.get("NSLAB_CACHE"):
        return Path(os.environ["NSLAB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nslab"


def kernel_cache() -> Path:
    return cache_root() / "kernels"


def cached_deb_versions(cache: Optional[Path] = None) -> set[str]:
    """Debian kernel versions already unpacked in the cache (``<package>_<version>``)."""
    root = cache or kernel_cache()
    found = set()
    for entry in root.glob("linux-image-*") if root.is_dir() else ():
        match = _DEB_PACKAGE.match(entry.name.split("_", 1)[0])
        if match:
            found.add(match["version"])
    return found


def check_specs(specs: Iterable[str], names: Optional[Iterable[str]] = None,
                cache: Optional[Path] = None) -> list[Kernel]:
    """Every spec parsed, and every ``deb:`` version one apt offers or the cache holds:
    the one-line LabError comes before anything is built, fetched or written."""
    kernels = [parse(spec) for spec in specs]
    debs = [k for k in kernels if k.kind == "deb"]
    if not debs:
        return kernels
    try:
        offered = deb_versions(apt_package_names() if names is None else names)
    except LabError:
        offered = {}   # no apt here: the cache may still hold what is asked for
    known = sort_versions(set(offered) | cached_deb_versions(cache))
    for kernel in debs:
        if kernel.name not in known:
            shown = ", ".join(known) if len(known) <= 12 else \
                f"{', '.join(known[:3])}, ..., {', '.join(known[-3:])} ({len(known)} versions)"
            raise LabError(f"kernel spec {kernel.spec!r}: no Debian kernel {kernel.name}; "
                           f"available (apt, cache): {shown or 'none (run apt-get update)'}")
    return kernels


def _run(argv: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise LabError(f"{what} failed: {last}")


def unpacked_kernel(root: Path) -> tuple[Path, Path, str]:
    """(image, modules dir, release) of an unpacked linux-image package."""
    for moddir in sorted(root.glob("lib/modules/*")) + sorted(root.glob("usr/lib/modules/*")):
        release = moddir.name
        for image in (root / "boot" / f"vmlinuz-{release}", moddir / "vmlinuz"):
            if image.is_file():
                return image, moddir, release
    raise LabError(f"{root}: no boot/vmlinuz-<release> with lib/modules/<release>")


def fetch_deb(package: str, cache: Optional[Path] = None,
              progress: Callable[[str], None] = lambda _: None) -> Path:
    """Unpack ``package`` into the cache (once) and return its root directory."""
    version = candidate_version(package)
    dest = (cache or kernel_cache()) / re.sub(r"[^\w.+-]", "_", f"{package}_{version}")
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = dest.parent / f".{dest.name}.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        progress(f"downloading {package} {version}")
        # The download runs as root here: keep apt from trying its _apt sandbox user.
        _run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
              f"{package}={version}"], work, f"apt-get download {package}")
        debs = list(work.glob("*.deb"))
        if len(debs) != 1:
            raise LabError(f"apt-get download {package}: expected one .deb, got {len(debs)}")
        root = work / "root"
        _run(["dpkg-deb", "-x", str(debs[0]), str(root)], work, f"dpkg-deb -x {debs[0].name}")
        _image, _moddir, release = unpacked_kernel(root)
        # Debian generates modules.dep in postinst, which we never run.
        _run(["depmod", "-b", str(root), release], work, f"depmod for {release}")
        os.replace(root, dest)        # atomic: a half-unpacked kernel is never seen
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


# -- images -----------------------------------------------------------------------------
def image_release(image: Path) -> str:
    """The release string an x86 bzImage carries (boot protocol ``kernel_version``)."""
    with open(image, "rb") as f:
        header = f.read(0x4000)
    if len(header) < 0x210 or header[0x202:0x206] != b"HdrS":
        raise LabError(f"{image}: not an x86 bzImage (no HdrS boot header)")
    (offset,) = struct.unpack_from("<H", header, 0x20E)
    with open(image, "rb") as f:
        f.seek(offset + 0x200)
        text = f.read(256).split(b"\0", 1)[0].decode(errors="replace")
    if not text:
        raise LabError(f"{image}: no kernel_version string in the boot header")
    return text.split()[0]


def stage_modules(image: Path, modules: Path, release: str,
                  cache: Optional[Path] = None) -> Path:
    """A tree ``boot/vmlinuz-R`` + ``lib/modules/R`` (symlinks) in the cache, the layout
    virtme-ng looks for modules in, for an image given with a separate modules dir."""
    tag = hashlib.sha256(f"{image}\0{modules}".encode()).hexdigest()[:12]
    safe = re.sub(r"[^\w.+-]", "_", release)
    stage = (cache or kernel_cache()) / "staged" / f"{safe}-{tag}"
    (stage / "boot").mkdir(parents=True, exist_ok=True)
    (stage / "lib" / "modules").mkdir(parents=True, exist_ok=True)
    for link, target in ((stage / "boot" / f"vmlinuz-{release}", image),
                         (stage / "lib" / "modules" / release, modules)):
        if link.is_symlink() and Path(os.readlink(link)) != target:
            link.unlink()
        if not link.is_symlink():
            link.symlink_to(target)
    return stage / "boot" / f"vmlinuz-{release}"


def prepare(kernel: Kernel, progress: Callable[[str], None] = lambda _: None,
            cache: Optional[Path] = None) -> Kernel:
    """Make the kernel bootable: fetch and unpack a deb, find an image's release."""
    if kernel.is_host:
        return kernel
    if kernel.kind == "deb":
        package = kernel.package or deb_package(kernel.name)
        root = fetch_deb(package, cache, progress)
        image, moddir, release = unpacked_kernel(root)
        return Kernel(kernel.spec, "deb", kernel.name, package, image, moddir, release)
    assert kernel.image is not None
    release = image_release(kernel.image)
    image = kernel.image
    if kernel.modules is not None:
        image = stage_modules(kernel.image, kernel.modules, release, cache)
    return Kernel(kernel.spec, "path", kernel.name, image=image,
                  modules=kernel.modules, release=release)


def read_list(path: str) -> list[str]:
    """Kernel specs from a file: one per line, ``#`` comments."""
    specs = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                specs.append(line)
    return specs
