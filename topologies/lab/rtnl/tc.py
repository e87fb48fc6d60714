"""tc messages: the clsact qdisc and direct-action cls_bpf filters on it."""
from __future__ import annotations

import socket
import struct

from .wire import attr, nested, string, u32

RTM_NEWQDISC, RTM_DELQDISC, RTM_NEWTFILTER, RTM_DELTFILTER = 36, 37, 44, 45
TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_CLASSID, TCA_BPF_FD, TCA_BPF_NAME, TCA_BPF_FLAGS = 3, 6, 7, 8
TCA_BPF_FLAG_ACT_DIRECT = 1
TC_H_CLSACT = 0xFFFFFFF1
CLSACT_HANDLE = 0xFFFF0000             # TC_H_MAKE(TC_H_CLSACT, 0)
ETH_P_ALL = 0x0003

TCMSG = struct.Struct("=BxxxiIII")     # family, ifindex, handle, parent, info


def clsact_request(index: int) -> bytes:
    """RTM_NEWQDISC / RTM_DELQDISC body of the clsact qdisc."""
    return TCMSG.pack(0, index, CLSACT_HANDLE, TC_H_CLSACT, 0) + attr(TCA_KIND, string("clsact"))


def _info(prio: int) -> int:
    # tcm_info: the filter's priority above, its protocol (network order) below
    return (prio << 16) | socket.htons(ETH_P_ALL)


def bpf_filter_request(index: int, parent: int, *, handle: int, prio: int, fd: int,
                       name: str, classid: int = 1) -> bytes:
    """RTM_NEWTFILTER body of a direct-action cls_bpf filter for every protocol."""
    options = nested(TCA_OPTIONS, attr(TCA_BPF_FD, u32(fd)), attr(TCA_BPF_NAME, string(name)),
                     attr(TCA_BPF_CLASSID, u32(classid)),
                     attr(TCA_BPF_FLAGS, u32(TCA_BPF_FLAG_ACT_DIRECT)))
    return TCMSG.pack(0, index, handle, parent, _info(prio)) + attr(TCA_KIND, string("bpf")) \
        + options


def bpf_filter_delete_request(index: int, parent: int, *, handle: int, prio: int) -> bytes:
    return TCMSG.pack(0, index, handle, parent, _info(prio)) + attr(TCA_KIND, string("bpf"))
