"""A ctypes binding to libbpf.so.1 (API of libbpf 1.1), plus raw ``bpf()`` calls.

libbpf opens, relocates and loads objects and gives map access. What libbpf
1.1 predates (tcx and netkit links, the mprog query that lists them) goes
through the ``bpf()`` syscall with ``union bpf_attr`` laid out as in the
kernel's include/uapi/linux/bpf.h (checked against the running 6.18's BTF).

libbpf reports through a print callback; it is captured per thread, so an
error carries libbpf's warnings and, for a verifier rejection, the verifier's
last lines (:class:`VerifierError` keeps the whole log).
"""
from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import platform
import re
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Union

from ..errors import LabError, Unsupported

log = logging.getLogger(__name__)

# enum bpf_cmd
BPF_PROG_QUERY = 16
BPF_LINK_CREATE = 28
# enum bpf_prog_type
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_PROG_TYPE_SCHED_ACT = 4
BPF_PROG_TYPE_XDP = 6
PROG_TYPE_NAMES = {BPF_PROG_TYPE_SCHED_CLS: "sched_cls", BPF_PROG_TYPE_SCHED_ACT: "sched_act",
                   BPF_PROG_TYPE_XDP: "xdp"}
# enum bpf_attach_type (6.6+: tcx; 6.7+: netkit)
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47
BPF_NETKIT_PRIMARY = 54
BPF_NETKIT_PEER = 55
# map update flags
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2
# map types whose values are one slot per possible CPU
PERCPU_MAP_TYPES = {5, 6, 10, 21}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, PERCPU_CGROUP_STORAGE
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2
SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
VA_LIST_SIZE = {"x86_64": 24, "aarch64": 32}  # bytes copied to emulate va_copy()

Key = Union[bytes, int]

_libc = ctypes.CDLL(None, use_errno=True)
try:
    _lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
except OSError as exc:  # pragma: no cover - depends on the machine
    raise Unsupported(f"libbpf.so.1 not found ({exc}): apt-get install libbpf1") from None

_c = ctypes  # short aliases keep the C signatures below on one line each
_vp, _cp, _int, _u32, _sz = _c.c_void_p, _c.c_char_p, _c.c_int, _c.c_uint32, _c.c_size_t


def bind(name: str, restype, *argtypes):
    """A libbpf function with its C signature declared."""
    fn = getattr(_lib, name)
    fn.restype, fn.argtypes = restype, list(argtypes)
    return fn


PRINT_FN = _c.CFUNCTYPE(_int, _int, _cp, _vp)
_set_print = bind("libbpf_set_print", _vp, _vp)   # takes and returns a callback
_strerror = bind("libbpf_strerror", _int, _int, _cp, _sz)
_num_possible_cpus = bind("libbpf_num_possible_cpus", _int)
_obj_open_file = bind("bpf_object__open_file", _vp, _cp, _vp)
_obj_load = bind("bpf_object__load", _int, _vp)
_obj_close = bind("bpf_object__close", None, _vp)
_obj_next_program = bind("bpf_object__next_program", _vp, _vp, _vp)
_obj_next_map = bind("bpf_object__next_map", _vp, _vp, _vp)
_prog_fd = bind("bpf_program__fd", _int, _vp)
_prog_name = bind("bpf_program__name", _cp, _vp)
_prog_section = bind("bpf_program__section_name", _cp, _vp)
_prog_type = bind("bpf_program__type", _int, _vp)
_map_fd = bind("bpf_map__fd", _int, _vp)
_map_name = bind("bpf_map__name", _cp, _vp)
_map_type = bind("bpf_map__type", _int, _vp)
_map_key_size = bind("bpf_map__key_size", _u32, _vp)
_map_value_size = bind("bpf_map__value_size", _u32, _vp)
_map_max_entries = bind("bpf_map__max_entries", _u32, _vp)
_map_lookup = bind("bpf_map_lookup_elem", _int, _int, _vp, _vp)
_map_update = bind("bpf_map_update_elem", _int, _int, _vp, _vp, _c.c_uint64)
_map_delete = bind("bpf_map_delete_elem", _int, _int, _vp)
_map_next_key = bind("bpf_map_get_next_key", _int, _int, _vp, _vp)
_prog_get_fd_by_id = bind("bpf_prog_get_fd_by_id", _int, _u32)
_prog_get_next_id = bind("bpf_prog_get_next_id", _int, _u32, _c.POINTER(_u32))
_obj_get_info_by_fd = bind("bpf_obj_get_info_by_fd", _int, _int, _vp, _c.POINTER(_u32))
_prog_load = bind("bpf_prog_load", _int, _int, _cp, _cp, _vp, _sz, _vp)
_raw_tp_open = bind("bpf_raw_tracepoint_open", _int, _cp, _int)
_vsnprintf = _libc.vsnprintf
_vsnprintf.restype, _vsnprintf.argtypes = _int, [_vp, _sz, _cp, _vp]
_syscall = _libc.syscall
_syscall.restype, _syscall.argtypes = _c.c_long, [_c.c_long, _int, _vp, _c.c_uint]


def strerror(err: int) -> str:
    """libbpf's text for ``err`` (either sign; knows libbpf's own 4000+ codes)."""
    buf = _c.create_string_buffer(256)
    _strerror(abs(err), buf, len(buf))
    return buf.value.decode(errors="replace")


# -- libbpf's print callback ----------------------------------------------------
_capture = threading.local()


def _format(fmt: bytes, ap: int) -> str:
    """vsnprintf twice (size, then text); the first pass works on a copy of ap."""
    size = VA_LIST_SIZE.get(platform.machine())
    if size is None:  # unknown va_list layout: one pass into a generous buffer
        buf = _c.create_string_buffer(1 << 16)
        _vsnprintf(buf, len(buf), fmt, ap)
        return buf.value.decode(errors="replace")
    copy = _c.create_string_buffer(size)
    _c.memmove(copy, ap, size)
    need = _vsnprintf(None, 0, fmt, _c.addressof(copy))
    buf = _c.create_string_buffer(max(need, 0) + 1)
    _vsnprintf(buf, len(buf), fmt, ap)
    return buf.value.decode(errors="replace")


@PRINT_FN
def _on_libbpf_print(level: int, fmt: bytes, ap: int) -> int:
    try:
        if level == LIBBPF_DEBUG and not os.environ.get("NSLAB_LIBBPF_DEBUG"):
            return 0  # debug output is large; formatted only on request
        lines = getattr(_capture, "lines", None)
        text = _format(fmt, ap)
        if lines is not None:
            lines.append(text)
        log.debug("libbpf: %s", text.rstrip())
    except Exception:  # never let an exception cross back into C
        pass
    return 0


@contextmanager
def captured_log() -> Iterator[list[str]]:
    """Collect libbpf's messages on this thread for the duration of the block.

    The print callback is libbpf's one global, and other users of libbpf.so.1
    in the process (bcc, for one) install their own whenever they load a
    program: ours is (re)installed for the block and the previous one put back."""
    previous = getattr(_capture, "lines", None)
    _capture.lines = lines = []
    previous_print = _set_print(_c.cast(_on_libbpf_print, _vp))
    try:
        yield lines
    finally:
        _capture.lines = previous
        _set_print(previous_print)


VERIFIER_LOG = re.compile(r"prog '([^']*)': -- BEGIN PROG LOAD LOG --\n(.*?)-- END PROG LOAD LOG --",
                          re.S)
VERIFIER_STATS = ("processed ", "verification time", "stack depth", "max_states_per_insn")


class VerifierError(LabError):
    """The kernel verifier rejected a program; ``log`` is the whole verifier log."""

    def __init__(self, message: str, program: str, log_text: str):
        super().__init__(message)
        self.program, self.log = program, log_text


def verifier_reason(log_text: str, lines: int = 3) -> str:
    """The verifier's last lines, without its closing statistics, joined on one line."""
    kept = [line.strip() for line in log_text.splitlines()
            if line.strip() and not line.strip().startswith(VERIFIER_STATS)]
    return " | ".join(kept[-lines:])


def _last_warning(messages: list[str]) -> str:
    lines = [m.strip() for m in messages if m.strip() and "PROG LOAD LOG" not in m]
    return lines[-1] if lines else ""


# -- objects, programs, maps ------------------------------------------------------
@dataclass(frozen=True)
class Program:
    fd: int
    name: str
    type: int          # enum bpf_prog_type
    section: str

    @property
    def type_name(self) -> str:
        return PROG_TYPE_NAMES.get(self.type, str(self.type))

    @property
    def id(self) -> int:
        return prog_id(self.fd)


class Map:
    """A loaded map; keys and values are raw bytes (an int key is packed native-endian)."""

    def __init__(self, fd: int, name: str, type: int, key_size: int, value_size: int,
                 max_entries: int):
        self.fd, self.name, self.type = fd, name, type
        self.key_size, self.value_size, self.max_entries = key_size, value_size, max_entries

    def __repr__(self) -> str:
        return f"Map({self.name!r}, key={self.key_size}B, value={self.value_size}B)"

    @property
    def per_cpu(self) -> bool:
        return self.type in PERCPU_MAP_TYPES

    @property
    def value_buffer_size(self) -> int:
        """Bytes a lookup returns: per-CPU maps give one 8-aligned slot per possible CPU."""
        if self.per_cpu:
            return (self.value_size + 7) // 8 * 8 * _num_possible_cpus()
        return self.value_size

    def _key(self, key: Key) -> _c.Array:
        raw = key.to_bytes(self.key_size, sys.byteorder) if isinstance(key, int) else bytes(key)
        if len(raw) != self.key_size:
            raise LabError(f"map {self.name}: key is {len(raw)} bytes, needs {self.key_size}")
        return _c.create_string_buffer(raw, len(raw))

    def _fail(self, what: str, ret: int) -> LabError:
        return LabError(f"map {self.name}: {what}: {strerror(ret)}")

    def lookup(self, key: Key) -> Optional[bytes]:
        value = _c.create_string_buffer(self.value_buffer_size)
        ret = _map_lookup(self.fd, self._key(key), value)
        if ret == -errno.ENOENT:
            return None
        if ret:
            raise self._fail("lookup", ret)
        return value.raw

    def update(self, key: Key, value: bytes, flags: int = BPF_ANY) -> None:
        if len(value) != self.value_buffer_size:
            raise LabError(f"map {self.name}: value is {len(value)} bytes, "
                           f"needs {self.value_buffer_size}")
        ret = _map_update(self.fd, self._key(key), _c.create_string_buffer(value, len(value)),
                          flags)
        if ret:
            raise self._fail("update", ret)

    def delete(self, key: Key) -> None:
        ret = _map_delete(self.fd, self._key(key))
        if ret:
            raise self._fail("delete", ret)

    def keys(self) -> Iterator[bytes]:
        key = None
        next_key = _c.create_string_buffer(self.key_size)
        while True:
            ret = _map_next_key(self.fd, key, next_key)
            if ret == -errno.ENOENT:
                return
            if ret:
                raise self._fail("next key", ret)
            yield next_key.raw
            key = _c.create_string_buffer(next_key.raw, self.key_size)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:  # deleted meanwhile
                yield key, value


class BpfObject:
    """An ELF object opened and loaded by libbpf; ``close()`` frees it all."""

    def __init__(self, handle: int, path: str, name: str = ""):
        self._handle, self.path = handle, path
        self.name = name or os.path.basename(path)
        self.programs: dict[str, Program] = {}
        self.maps: dict[str, Map] = {}
        prog = _obj_next_program(handle, None)
        while prog:
            name = _prog_name(prog).decode()
            self.programs[name] = Program(_prog_fd(prog), name, _prog_type(prog),
                                          _prog_section(prog).decode())
            prog = _obj_next_program(handle, prog)
        m = _obj_next_map(handle, None)
        while m:
            name = _map_name(m).decode()
            self.maps[name] = Map(_map_fd(m), name, _map_type(m), _map_key_size(m),
                                  _map_value_size(m), _map_max_entries(m))
            m = _obj_next_map(handle, m)

    @classmethod
    def open(cls, path: Union[str, os.PathLike], *, name: str = "") -> "BpfObject":
        """Open and load; ``name`` (e.g. the source file) labels error messages."""
        path = os.fspath(path)
        name = name or os.path.basename(path)
        with captured_log() as messages:
            handle = _obj_open_file(path.encode(), None)
            if not handle:
                err = _c.get_errno()
                raise LabError(f"open {name}: {strerror(err)}: {_last_warning(messages)}")
            ret = _obj_load(handle)
            if ret:
                _obj_close(handle)
                raise _load_error(name, ret, messages)
        return cls(handle, path, name)

    def __repr__(self) -> str:
        return f"BpfObject({self.name}, programs={list(self.programs)})"

    def __enter__(self) -> "BpfObject":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._handle is None

    def program(self, name: str) -> Program:
        """A program by its function name, or by its section (``xdp``, ``tc``,
        ``xdp/echo``) when exactly one program sits there."""
        if name in self.programs:
            return self.programs[name]
        in_section = [p for p in self.programs.values() if p.section == name]
        if len(in_section) == 1:
            return in_section[0]
        known = ", ".join(f"{p.name} (SEC {p.section})" for p in self.programs.values())
        what = "several programs in section" if in_section else "no program or section"
        raise LabError(f"{self}: {what} {name!r}; programs: {known or 'none'}")

    def map(self, name: str) -> Map:
        try:
            return self.maps[name]
        except KeyError:
            raise LabError(f"{self}: no map {name!r}; maps: {', '.join(self.maps)}") from None

    def close(self) -> None:
        """Close every fd libbpf holds; attachments made elsewhere keep their own reference."""
        if self._handle is not None:
            _obj_close(self._handle)
            self._handle = None


def _load_error(name: str, ret: int, messages: list[str]) -> LabError:
    found = VERIFIER_LOG.search("".join(messages))
    if found:
        program, text = found.group(1), found.group(2)
        return VerifierError(f"{name}: program {program!r} rejected by the verifier "
                             f"({strerror(ret)}): {verifier_reason(text)}", program, text)
    return LabError(f"load {name}: {strerror(ret)}: {_last_warning(messages)}")


# -- raw bpf() -------------------------------------------------------------------
class LinkCreateAttr(_c.Structure):
    """``union bpf_attr.link_create`` with its tcx/netkit member."""
    _fields_ = [("prog_fd", _u32), ("target_ifindex", _u32), ("attach_type", _u32),
                ("flags", _u32), ("relative_fd", _u32), ("_pad", _u32),
                ("expected_revision", _c.c_uint64)]


class MprogQueryAttr(_c.Structure):
    """``union bpf_attr.query`` as tcx/netkit fill it (6.6+)."""
    _fields_ = [("target_ifindex", _u32), ("attach_type", _u32), ("query_flags", _u32),
                ("attach_flags", _u32), ("prog_ids", _c.c_uint64), ("count", _u32),
                ("_pad", _u32), ("prog_attach_flags", _c.c_uint64),
                ("link_ids", _c.c_uint64), ("link_attach_flags", _c.c_uint64),
                ("revision", _c.c_uint64)]


def sys_bpf(cmd: int, attr: _c.Structure) -> int:
    """``bpf(cmd, &attr, sizeof attr)``; raises OSError with the kernel's errno."""
    number = SYS_BPF.get(platform.machine())
    if number is None:
        raise Unsupported(f"bpf() syscall number unknown on {platform.machine()}")
    ret = _syscall(number, cmd, _c.byref(attr), _c.sizeof(attr))
    if ret < 0:
        err = _c.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def link_create(prog_fd: int, target_ifindex: int, attach_type: int, *, flags: int = 0,
                relative_fd: int = 0, expected_revision: int = 0) -> int:
    """BPF_LINK_CREATE; returns the link fd. The ifindex is looked up in the calling
    thread's network namespace: call it on the node's thread (``node.call``)."""
    attr = LinkCreateAttr(prog_fd=prog_fd, target_ifindex=target_ifindex,
                          attach_type=attach_type, flags=flags, relative_fd=relative_fd,
                          expected_revision=expected_revision)
    return sys_bpf(BPF_LINK_CREATE, attr)


@dataclass(frozen=True)
class MprogQuery:
    prog_ids: list[int]
    link_ids: list[int]
    revision: int


def mprog_query(target_ifindex: int, attach_type: int, capacity: int = 64) -> MprogQuery:
    """Programs on a tcx/netkit hook, in run order (call on the node's thread too)."""
    progs, links = (_u32 * capacity)(), (_u32 * capacity)()
    attr = MprogQueryAttr(target_ifindex=target_ifindex, attach_type=attach_type,
                          prog_ids=_c.addressof(progs), link_ids=_c.addressof(links),
                          count=capacity)
    sys_bpf(BPF_PROG_QUERY, attr)
    n = min(attr.count, capacity)
    return MprogQuery(list(progs[:n]), list(links[:n]), attr.revision)


class _ProgInfoHead(_c.Structure):
    """The first fields of ``struct bpf_prog_info`` (up to ``name``); the kernel
    fills what fits."""
    _fields_ = [("type", _u32), ("id", _u32), ("tag", _c.c_uint8 * 8),
                ("jited_prog_len", _u32), ("xlated_prog_len", _u32),
                ("jited_prog_insns", _c.c_uint64), ("xlated_prog_insns", _c.c_uint64),
                ("load_time", _c.c_uint64), ("created_by_uid", _u32), ("nr_map_ids", _u32),
                ("map_ids", _c.c_uint64), ("name", _c.c_char * 16)]


def raw_tracepoint_open(name: str, prog_fd: int) -> int:
    """Attach a raw tracepoint program to tracepoint ``name``; close the returned
    fd to detach it."""
    fd = _raw_tp_open(name.encode(), prog_fd)
    if fd < 0:
        raise LabError(f"attaching to raw tracepoint {name}: {strerror(fd)}")
    return fd


def prog_id(fd: int) -> int:
    info = _ProgInfoHead()
    size = _u32(_c.sizeof(info))
    ret = _obj_get_info_by_fd(fd, _c.byref(info), _c.byref(size))
    if ret:
        raise LabError(f"program info of fd {fd}: {strerror(ret)}")
    return info.id


def prog_name(id: int) -> str:
    """The name the kernel keeps for program ``id`` (its function name, 15 characters
    at most), or "" when it is gone."""
    fd = _prog_get_fd_by_id(id)
    if fd < 0:
        return ""
    try:
        info = _ProgInfoHead()
        size = _u32(_c.sizeof(info))
        if _obj_get_info_by_fd(fd, _c.byref(info), _c.byref(size)):
            return ""
        return info.name.decode(errors="replace")
    finally:
        os.close(fd)


def prog_ids() -> list[int]:
    """The ids of every BPF program the kernel holds now (BPF_PROG_GET_NEXT_ID)."""
    ids, next_id = [], _u32(0)
    while _prog_get_next_id(next_id.value, _c.byref(next_id)) == 0:
        ids.append(next_id.value)
    return ids


def prog_exists(id: int) -> bool:
    """True while the kernel still has a program with this id (BPF_PROG_GET_FD_BY_ID)."""
    fd = _prog_get_fd_by_id(id)
    if fd >= 0:
        os.close(fd)
        return True
    if fd == -errno.ENOENT:
        return False
    raise LabError(f"program id {id}: {strerror(fd)}")


# -- kernel feature probes --------------------------------------------------------
def btf_available() -> bool:
    return os.path.exists("/sys/kernel/btf/vmlinux")


@functools.lru_cache(maxsize=None)
def _link_create_errno(attach_type: int) -> int:
    """Errno of a link create of ``attach_type`` onto ifindex 0 (never a device).

    A kernel that knows the attach type looks the device up and says ENODEV;
    one that does not (or lacks the driver: netkit's stub) says EINVAL.
    """
    insns = _c.create_string_buffer(bytes([0xB7, 0, 0, 0, 0, 0, 0, 0,    # r0 = 0
                                           0x95, 0, 0, 0, 0, 0, 0, 0]), 16)  # exit
    fd = _prog_load(BPF_PROG_TYPE_SCHED_CLS, b"nslab_probe", b"GPL", insns, 2, None)
    if fd < 0:
        raise LabError(f"probe program load: {strerror(fd)}")
    try:
        os.close(link_create(fd, 0, attach_type))
        return 0
    except OSError as exc:
        return exc.errno
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=None)   # a property of the running kernel
def tcx_supported() -> bool:
    return _link_create_errno(BPF_TCX_INGRESS) == errno.ENODEV


@functools.lru_cache(maxsize=None)
def netkit_supported() -> bool:
    return _link_create_errno(BPF_NETKIT_PRIMARY) == errno.ENODEV


def require_tcx() -> None:
    if not tcx_supported():
        raise Unsupported(f"tcx needs kernel >= 6.6 (running {os.uname().release})")


def require_netkit() -> None:
    if not netkit_supported():
        raise Unsupported(f"netkit attach needs CONFIG_NETKIT (kernel >= 6.7; "
                          f"running {os.uname().release} has none)")
