"""BPF_PROG_TEST_RUN: run a loaded tc or XDP program on bytes, without a device.

The kernel builds an skb (tc: ``data`` must start with an Ethernet header) or
an xdp_buff from ``data``, runs the program ``repeat`` times and hands back
the verdict, the packet as the program left it and the mean time per run.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Optional

from ..errors import LabError
from . import libbpf

ETH_HLEN = 14
TC_ACTIONS = {0xFFFFFFFF: "TC_ACT_UNSPEC", 0: "TC_ACT_OK", 1: "TC_ACT_RECLASSIFY",
              2: "TC_ACT_SHOT", 3: "TC_ACT_PIPE", 4: "TC_ACT_STOLEN", 5: "TC_ACT_QUEUED",
              6: "TC_ACT_REPEAT", 7: "TC_ACT_REDIRECT", 8: "TC_ACT_TRAP"}
XDP_ACTIONS = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}
ACTIONS_BY_PROG_TYPE = {libbpf.BPF_PROG_TYPE_SCHED_CLS: TC_ACTIONS,
                        libbpf.BPF_PROG_TYPE_SCHED_ACT: TC_ACTIONS,
                        libbpf.BPF_PROG_TYPE_XDP: XDP_ACTIONS}
SLACK = 4096  # room for a program that grows the packet (encapsulation, ICMP replies)


class TestRunOpts(ctypes.Structure):
    """``struct bpf_test_run_opts`` of libbpf 1.1; ``sz`` tells libbpf which fields we know."""
    _fields_ = [("sz", ctypes.c_size_t), ("data_in", ctypes.c_void_p),
                ("data_out", ctypes.c_void_p), ("data_size_in", ctypes.c_uint32),
                ("data_size_out", ctypes.c_uint32), ("ctx_in", ctypes.c_void_p),
                ("ctx_out", ctypes.c_void_p), ("ctx_size_in", ctypes.c_uint32),
                ("ctx_size_out", ctypes.c_uint32), ("retval", ctypes.c_uint32),
                ("repeat", ctypes.c_int), ("duration", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32),
                ("batch_size", ctypes.c_uint32)]


_run = libbpf.bind("bpf_prog_test_run_opts", ctypes.c_int, ctypes.c_int,
                    ctypes.POINTER(TestRunOpts))


@dataclass(frozen=True)
class TestRun:
    __test__ = False  # not a pytest class, despite the name

    retval: int
    data_out: bytes
    duration_ns: int
    action: str        # e.g. "TC_ACT_OK", "XDP_TX"; the number when it has no name
    ctx_out: Optional[bytes] = None


def action_name(prog_type: int, retval: int) -> str:
    return ACTIONS_BY_PROG_TYPE.get(prog_type, {}).get(retval, str(retval))


def test_run(prog: libbpf.Program, data: bytes, *, repeat: int = 1, ctx: Optional[bytes] = None,
             data_size_out: Optional[int] = None) -> TestRun:
    """Run ``prog`` once (or ``repeat`` times) on ``data``."""
    if prog.type in (libbpf.BPF_PROG_TYPE_SCHED_CLS, libbpf.BPF_PROG_TYPE_SCHED_ACT) \
            and len(data) < ETH_HLEN:
        raise LabError(f"test run of {prog.name}: a tc packet starts with a 14-byte "
                       f"Ethernet header, got {len(data)} bytes")
    size_out = data_size_out if data_size_out is not None else len(data) + SLACK
    data_in = ctypes.create_string_buffer(bytes(data), len(data))
    data_out = ctypes.create_string_buffer(size_out)
    opts = TestRunOpts(sz=ctypes.sizeof(TestRunOpts), data_in=ctypes.addressof(data_in),
                       data_out=ctypes.addressof(data_out), data_size_in=len(data),
                       data_size_out=size_out, repeat=repeat)
    ctx_in = ctx_out = None
    if ctx is not None:
        ctx_in = ctypes.create_string_buffer(bytes(ctx), len(ctx))
        ctx_out = ctypes.create_string_buffer(len(ctx))
        opts.ctx_in, opts.ctx_size_in = ctypes.addressof(ctx_in), len(ctx)
        opts.ctx_out, opts.ctx_size_out = ctypes.addressof(ctx_out), len(ctx)
    ret = _run(prog.fd, ctypes.byref(opts))
    if ret:
        raise LabError(f"test run of {prog.name}: {libbpf.strerror(ret)}")
    return TestRun(retval=opts.retval, data_out=data_out.raw[:opts.data_size_out],
                   duration_ns=opts.duration, action=action_name(prog.type, opts.retval),
                   ctx_out=ctx_out.raw[:opts.ctx_size_out] if ctx_out is not None else None)
