"""The Lab: a run-unique prefix, its namespaces, and the stack that undoes them."""
from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import threading
import weakref
from typing import Optional

from ..errors import LabError
from . import links, netns
from .cleanup import CleanupStack, Deferred
from .names import check_name
from .node import Node
from .owner import OwnerRecord
from .session import current as current_session

log = logging.getLogger(__name__)

PREFIX = "nslab"
NODE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,19}$")
_open_labs: "weakref.WeakSet[Lab]" = weakref.WeakSet()


def new_prefix() -> str:
    """``nslab-<8 hex>``: random, so parallel workers and runs never share one."""
    return f"{PREFIX}-{secrets.token_hex(4)}"


class Lab:
    """Owns everything it creates; ``close()`` (or leaving ``with``) removes it all.

    The owner record (pid + start time) is written before the first namespace
    exists, so a run killed with SIGKILL is found and removed by ``nslab sweep``.
    """

    def __init__(self, name: str = "", *, topology: str = "", description: Optional[dict] = None):
        if name:
            check_name(name)
        self.prefix = new_prefix()
        self.name = name or self.prefix
        self.nodes: dict[str, Node] = {}
        self.captures: list = []   # every Capture started, for failure artifacts
        self._stack = CleanupStack()
        self.record = OwnerRecord.for_this_process(self.prefix, name=name, topology=topology,
                                                   description=dict(description or {}),
                                                   session=current_session())
        self.record.save()
        self._stack.defer(self.record.delete, what="owner record")
        # Just before the record goes: a namespace whose node was interrupted while
        # being made (its name reserved, its removal not yet registered) goes too.
        self._stack.defer(_remove_namespaces, self.prefix, what="namespaces left half-made")
        self.closed = self.closing = False
        _open_labs.add(self)

    def __repr__(self) -> str:
        return f"Lab({self.prefix}, nodes={list(self.nodes)})"

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def defer(self, fn, *args, what: str = "", **kwargs) -> Deferred:
        return self._stack.defer(fn, *args, what=what, **kwargs)

    def defer_within(self, fn, *args, what: str = "", **kwargs) -> Deferred:
        """Register the undo of an object that lives inside a lab namespace.

        It runs when the object is removed on its own (``run_now``) but not on
        ``close()``: removing the namespace takes such objects with it, in the
        kernel's cleanup work, whereas deleting a veth by hand waits for RCU
        (tens of milliseconds each)."""
        def unless_closing(*a, **kw):
            if not self.closing:
                fn(*a, **kw)
        return self._stack.defer(unless_closing, *args, what=what, **kwargs)

    def add_node(self, name: str) -> Node:
        if not NODE_NAME.match(name):
            raise LabError(f"bad node name {name!r}: lowercase letters, digits, _ (max 20)")
        if name in self.nodes:
            raise LabError(f"node {name!r} exists in lab {self.prefix}")
        node = self.nodes[name] = Node(self, name)
        return node

    def attach_node(self, name: str, existing_netns: str) -> Node:
        """Look into a namespace this lab does not own (e.g. a running lab's)."""
        if not os.path.exists(f"/run/netns/{existing_netns}"):
            raise LabError(f"no namespace {existing_netns}")
        node = self.nodes[name] = Node(self, name, existing=existing_netns)
        return node

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise LabError(f"no node {name!r}; nodes: {', '.join(self.nodes)}") from None

    # Links, registered on this lab's stack (see topologies.links).
    veth = staticmethod(links.veth)
    vxlan = staticmethod(links.vxlan)
    netkit = staticmethod(links.netkit)

    def hand_over(self, name: str = "", description: Optional[dict] = None) -> str:
        """Leave the lab running under a keeper process (``nslab ls/down``):
        for a failed test kept for inspection. Process-bound pieces (BPF fds,
        tcx/netkit links, capture sockets) end with this process; namespaces,
        links, addresses, routes, firewall rules and tc/XDP programs stay.
        ``name`` (the lab-name rule) is what ``nslab`` commands call it; the
        keeper takes it with the ownership, so no one can find the lab by that
        name while this process still owns it. ``description`` (what
        ``nslab ls`` shows) is merged into the owner record."""
        import json
        import subprocess
        import sys
        name = check_name(name) if name else self.name
        self.record.description = {**self.record.description, **(description or {})}
        self.record.topology = self.record.topology or "kept"
        self.record.kept = True    # on purpose: its session passes it on when it ends
        self.record.save()
        keeper = subprocess.Popen([sys.executable, "-m", "topologies.lab.keeper", "--adopt",
                                   self.prefix, "--name", name], stdout=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, start_new_session=True, text=True)
        status = json.loads(keeper.stdout.readline() or '{"error": "keeper died"}')
        if "error" in status:
            raise LabError(f"cannot keep lab {self.prefix}: {status['error']}")
        self.closed = True          # the keeper owns it now
        _open_labs.discard(self)
        return self.prefix

    def close(self) -> None:
        """Undo everything, newest first. Safe to call twice."""
        if self.closed:
            return
        self.closed = self.closing = True
        failures = self._stack.unwind()
        _open_labs.discard(self)
        if failures:
            raise LabError(f"lab {self.prefix}: cleanup failed: " + "; ".join(failures))


def _close_all_at_exit() -> None:
    for lab in list(_open_labs):
        try:
            lab.close()
        except Exception as exc:
            log.warning("%s", exc)


# At interpreter exit, before concurrent.futures stops the namespace threads (its
# own hook is registered the same way, earlier, so it runs later): a lab's undo
# may still need them (firewall snapshots are restored from inside the node).
threading._register_atexit(_close_all_at_exit)


def raise_on_termination() -> None:
    """Make SIGTERM/SIGHUP unwind like Ctrl-C, so labs are removed on the way out."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, handler)


def _remove_namespaces(prefix: str) -> None:
    for name in netns.names(prefix + "-"):
        netns.remove(name)
