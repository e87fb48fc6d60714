"""Traffic from kernel sockets inside nodes, every wait bounded.

The kernel builds every header and checksum here: ICMP datagram ("ping")
sockets for echo, UDP and TCP sockets for the rest. Servers are threads of
this process holding sockets created inside the server node.

A wait ends on an event, never on a guess about time: the answer came, or the
kernel counted what was awaited as lost (``dropped=`` / ``lost=``, fed by
e.g. :func:`counter_growth` of the peer's ``Udp.InCsumErrors``). A timeout is
only the upper bound of a wait gone wrong: generous (``ANSWER_BOUND``), since
a healthy answer returns at once and a loaded machine must not turn a late
answer into a failure.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

from ..errors import LabError
from .wakeup import Wakeup

if TYPE_CHECKING:
    from .node import Node

IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_PMTUDISC_DONT = 10, 2, 0
IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO, IPV6_PMTUDISC_DONT = 23, 2, 0
ICMP_ECHO, ICMP_ECHOREPLY = 8, 0
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129
ANSWER_BOUND = 5.0   # s: the default bound on awaiting an answer that is expected
POLL = 0.01          # s: how often a wait asks whether the kernel counted a loss
# How many of the requests sent so far the kernel is known to have dropped.
Dropped = Optional[Callable[[], int]]


def counter_growth(node: "Node", *keys: str) -> Callable[[], int]:
    """How much ``node``'s SNMP counters ``keys`` (e.g. "Udp.InCsumErrors")
    have grown, together, since this call: what the kernel counted, for
    ``dropped=`` and ``lost=``."""
    def total() -> int:
        counters = node.snmp()
        return sum(counters[key] for key in keys)
    start = total()
    return lambda: total() - start


def _wait(sock: socket.socket, deadline: float, given_up: Optional[Callable[[], bool]] = None,
          *, write: bool = False) -> bool:
    """True once ``sock`` is readable (or writable); False when ``deadline``
    passes or ``given_up()`` says what is awaited will never come."""
    ready = ([], [sock]) if write else ([sock], [])
    while (left := deadline - time.monotonic()) > 0:
        if any(select.select(*ready, [], min(left, POLL) if given_up else left)[:2]):
            return True
        if given_up and given_up():
            return False
    return False


def _await_datagram(sock: socket.socket, wanted: Callable[[bytes], bool], deadline: float,
                    given_up: Optional[Callable[[], bool]]) -> bool:
    """Read ``sock`` until a datagram ``wanted`` accepts comes (True) or the
    wait ends (False); others (a late answer to an earlier request) are skipped."""
    while _wait(sock, deadline, given_up):
        try:
            if wanted(sock.recv(65536)):
                return True
        except BlockingIOError:   # readable, but the datagram failed its checksum
            continue
    return False


def _all_dropped(dropped: Dropped, unanswered: Callable[[], int]) -> Optional[Callable[[], bool]]:
    """``given_up`` for a request/response helper: every request that left and
    was not answered is counted dropped."""
    if dropped is None:
        return None
    return lambda: dropped() >= unanswered()


def family_of(addr: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def set_df(sock: socket.socket, family: int, df: bool) -> None:
    """DF on IPv4 (and no local fragmentation on IPv6): path-MTU discovery 'do'."""
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER,
                        IPV6_PMTUDISC_DO if df else IPV6_PMTUDISC_DONT)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER,
                        IP_PMTUDISC_DO if df else IP_PMTUDISC_DONT)


# -- ping ----------------------------------------------------------------------
@dataclass
class PingResult:
    sent: int = 0
    received: int = 0
    rtts: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 1.0


def ping(src: "Node", dst: str, *, count: int = 3, size: int = 56, df: bool = False,
         timeout: float = ANSWER_BOUND, payload: Optional[bytes] = None,
         ident: Optional[int] = None, dropped: Dropped = None) -> PingResult:
    """Echo requests from an ICMP datagram socket; ``size`` bytes of payload
    (or exactly ``payload``). Each reply is awaited at most ``timeout`` s, or
    until ``dropped()`` counts every unanswered request as dropped (a reply
    the kernel drops never comes: stop waiting when it says so).
    ``ident`` fixes the echo identifier (a ping socket's port), e.g. to steer
    the request's checksum to a chosen value."""
    family = family_of(dst)
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    echo = ICMPV6_ECHO_REQUEST if family == socket.AF_INET6 else ICMP_ECHO
    reply = ICMPV6_ECHO_REPLY if family == socket.AF_INET6 else ICMP_ECHOREPLY
    data = payload if payload is not None else bytes((i & 0xFF for i in range(size)))
    result, left_node = PingResult(), 0
    given_up = _all_dropped(dropped, lambda: left_node - result.received)
    with src.socket(family, socket.SOCK_DGRAM, proto) as sock:
        set_df(sock, family, df)
        sock.setblocking(False)
        if ident is not None:
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", ident))
        for seq in range(1, count + 1):
            # The kernel owns the identifier (the socket's "port") and the checksum.
            message = struct.pack("!BBHHH", echo, 0, 0, 0, seq) + data
            result.sent += 1
            start = time.monotonic()
            try:
                sock.sendto(message, (dst, 0))
                left_node += 1
                if _await_datagram(sock, lambda got: _is_reply(got, reply, seq),
                                   start + timeout, given_up):
                    result.received += 1
                    result.rtts.append(time.monotonic() - start)
            except OSError as exc:
                result.errors.append(f"seq {seq}: {exc.strerror}")
    return result


def _is_reply(got: bytes, reply_type: int, seq: int) -> bool:
    return len(got) >= 8 and got[0] == reply_type and struct.unpack("!H", got[6:8])[0] == seq


# -- servers -------------------------------------------------------------------
class _Server:
    """A thread serving a socket created inside a node; stopped on lab cleanup."""

    def __init__(self, node: "Node", sock: socket.socket):
        self.node, self.sock = node, sock
        self.port = sock.getsockname()[1]
        self._stop = Wakeup()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"{type(self).__name__}-{node.name}")
        self._thread.start()
        self._undo = node.lab.defer(self.stop, what=f"{type(self).__name__} in {node.name}")

    def _loop(self) -> None:
        while True:
            ready = select.select([self.sock, self._stop], [], [])[0]
            if self._stop in ready:
                return
            self.serve_one()

    def serve_one(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._undo.cancel()
        self._stop.set()
        self._thread.join(timeout=5)
        if not self._thread.is_alive():    # else a stuck serve_one still selects on it
            self._stop.close()
        self.sock.close()


class UdpEchoServer(_Server):
    """Answers every datagram with its own payload."""

    def __init__(self, node: "Node", addr: str, port: int = 0):
        sock = node.socket(family_of(addr), socket.SOCK_DGRAM)
        sock.bind((addr, port))
        self.requests = 0
        super().__init__(node, sock)

    def serve_one(self) -> None:
        data, peer = self.sock.recvfrom(65536)
        self.requests += 1
        self.sock.sendto(data, peer)


class TcpSinkServer(_Server):
    """Accepts connections, reads each to EOF, answers with the byte count."""

    def __init__(self, node: "Node", addr: str, port: int = 0):
        sock = node.socket(family_of(addr), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr, port))
        sock.listen(64)
        self.connections = 0
        self.received: list[int] = []
        super().__init__(node, sock)

    def serve_one(self) -> None:
        conn, _ = self.sock.accept()
        self.connections += 1
        threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        total = 0
        conn.settimeout(60)
        try:
            with conn:
                while chunk := conn.recv(1 << 16):
                    total += len(chunk)
                conn.sendall(struct.pack("!Q", total))
        except OSError:
            pass
        self.received.append(total)


# -- clients -------------------------------------------------------------------
@dataclass
class UdpResult:
    sent: int = 0
    answered: int = 0
    rtts: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def udp_request(src: "Node", dst: str, port: int, *, count: int = 5, size: int = 64,
                df: bool = False, timeout: float = ANSWER_BOUND,
                payload: Optional[bytes] = None, sport: int = 0,
                dropped: Dropped = None) -> UdpResult:
    """``count`` request/response exchanges; each answer awaited at most
    ``timeout`` s, or until ``dropped()`` (e.g. the peer's Udp InCsumErrors,
    see :func:`counter_growth`) counts every unanswered request as dropped."""
    family = family_of(dst)
    result, left_node = UdpResult(), 0
    given_up = _all_dropped(dropped, lambda: left_node - result.answered)
    with src.socket(family, socket.SOCK_DGRAM) as sock:
        set_df(sock, family, df)
        if sport:
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
        sock.setblocking(False)
        for i in range(count):
            data = payload if payload is not None else struct.pack("!I", i) + bytes(size - 4)
            result.sent += 1
            start = time.monotonic()
            try:
                sock.sendto(data, (dst, port))
                left_node += 1
                if _await_datagram(sock, data.__eq__, start + timeout, given_up):
                    result.answered += 1
                    result.rtts.append(time.monotonic() - start)
                elif given_up and given_up():
                    result.errors.append(f"request {i}: dropped, as the kernel counted")
                else:
                    result.errors.append(f"request {i}: no answer in {timeout}s")
            except OSError as exc:
                result.errors.append(f"request {i}: {exc.strerror}")
    return result


@dataclass
class TcpResult:
    connected: bool = False
    connect_seconds: float = 0.0   # to established: SYN retransmissions show as 1 s, 3 s, ...
    seconds: float = 0.0           # the whole exchange
    sent: int = 0
    acknowledged: int = 0     # bytes the server says it read
    error: str = ""

    @property
    def completed(self) -> bool:
        return self.connected and not self.error and self.acknowledged == self.sent


def tcp_connect(src: "Node", dst: str, port: int, *, timeout: float = ANSWER_BOUND,
                lost: Optional[Callable[[], bool]] = None) -> TcpResult:
    """Connect and close (``connect_seconds`` shows SYN retransmissions)."""
    return tcp_transfer(src, dst, port, nbytes=0, timeout=timeout, lost=lost)


def tcp_transfer(src: "Node", dst: str, port: int, *, nbytes: int, df: bool = True,
                 timeout: float = 10.0, mss: Optional[int] = None,
                 lost: Optional[Callable[[], bool]] = None) -> TcpResult:
    """Send ``nbytes`` to a :class:`TcpSinkServer` and wait for its byte count.

    With ``df`` the socket does path-MTU discovery 'do': DF set, and a
    frag-needed / Packet Too Big must reach the kernel for the transfer to
    finish — a black hole stalls it until ``timeout``, or until ``lost()``
    says from what the kernel counted that it cannot finish (e.g. the peer
    dropped the SYN and its retransmission). A connection given up is reset,
    so that it does not go on retransmitting into the test's next step."""
    family = family_of(dst)
    result = TcpResult()
    with src.socket(family, socket.SOCK_STREAM) as sock:
        set_df(sock, family, df)
        if mss:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        sock.setblocking(False)
        start = time.monotonic()
        progress = _Progress(sock, start + timeout, timeout, lost)
        try:
            _connect(sock, (dst, port), progress)
            result.connected = True
            result.connect_seconds = time.monotonic() - start
            chunk = bytes(range(256)) * 256
            while result.sent < nbytes:
                progress.wait(write=True)
                result.sent += _nonblocking(sock.send, chunk[:nbytes - result.sent], 0)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while len(answer) < 8:
                progress.wait()
                got = _nonblocking(sock.recv, 8 - len(answer), None)
                if got == b"":
                    break
                answer += got or b""
            if len(answer) == 8:
                result.acknowledged = struct.unpack("!Q", answer)[0]
            else:
                result.error = "server closed without a byte count"
        except _Stalled as exc:
            result.error = str(exc)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError as exc:
            result.error = exc.strerror or str(exc)
        result.seconds = time.monotonic() - start
    return result


class _Stalled(Exception):
    """A TCP wait ended without progress: its bound passed, or ``lost()`` said so."""


@dataclass
class _Progress:
    """One TCP exchange's waits: they share its deadline and its ``lost()``."""
    sock: socket.socket
    deadline: float
    timeout: float
    lost: Optional[Callable[[], bool]]

    def wait(self, *, write: bool = False) -> None:
        if not _wait(self.sock, self.deadline, self.lost, write=write):
            raise _Stalled("given up: lost, as the kernel counted" if self.lost and self.lost()
                           else f"timed out after {self.timeout}s")


def _connect(sock: socket.socket, address: tuple, progress: _Progress) -> None:
    error = sock.connect_ex(address)
    if error == errno.EINPROGRESS:
        progress.wait(write=True)
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        raise OSError(error, os.strerror(error))


def _nonblocking(call, arg, would_block):
    """``call(arg)`` on a non-blocking socket; ``would_block`` when it has nothing to do."""
    try:
        return call(arg)
    except BlockingIOError:
        return would_block


def wait_for(predicate, *, timeout: float, interval: float = 0.01, what: str = "condition"):
    """Poll ``predicate`` until truthy; raise LabError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
