"""BPF objects built on the host, used as they are inside a VM.

Under TCG every ``clang -M`` (the dependency scan behind the cache key) costs
seconds. So ``nslab matrix`` builds every variant on the host
(``bpf.prebuild()``), writes a manifest next to the objects, and points the
guest at it with ``$NSLAB_BPF_PREBUILT``. ``compiler.build()`` then takes an
object from the manifest without running clang, as long as the source file
still has the bytes it was built from; anything else (a define set no
``nslab-variant:`` line declares, an edited source) falls back to the normal,
correct, slower build. The headers are not re-hashed in the guest: it shares the
host's root file system, and the manifest is written right before the VMs boot.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Optional

MANIFEST_ENV = "NSLAB_BPF_PREBUILT"
MANIFEST_NAME = "prebuilt.json"


def key(source: Path, defines: tuple[tuple[str, str], ...]) -> str:
    return f"{source}|" + "&".join(f"{name}={value}" for name, value in defines)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(results: Iterable, path: Path) -> Path:
    """The manifest of ``bpf.prebuild()``'s results (a list of BuildResult)."""
    entries = {key(r.source, r.defines): {"object": str(r.path), "digest": r.digest,
                                          "source_sha256": _sha256(r.source)}
               for r in results}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path


@functools.lru_cache(maxsize=4)
def _load(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def lookup(source: Path, defines: tuple[tuple[str, str], ...]) -> Optional[tuple[Path, str]]:
    """(object, digest) from the manifest named by ``$NSLAB_BPF_PREBUILT``, or None."""
    manifest = os.environ.get(MANIFEST_ENV)
    if not manifest:
        return None
    entry = _load(manifest).get(key(source, defines))
    if not entry:
        return None
    obj = Path(entry["object"])
    if not obj.is_file() or _sha256(source) != entry["source_sha256"]:
        return None
    return obj, entry["digest"]
