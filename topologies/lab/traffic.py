"""Traffic from kernel sockets inside nodes, every wait bounded.

The kernel builds every header and checksum here: ICMP datagram ("ping")
sockets for echo, UDP and TCP sockets for the rest. Servers are threads of
this process holding sockets created inside the server node.
"""
from __future__ import annotations

import ipaddress
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from ..errors import LabError

if TYPE_CHECKING:
    from .node import Node

IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_PMTUDISC_DONT = 10, 2, 0
IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO, IPV6_PMTUDISC_DONT = 23, 2, 0
ICMP_ECHO, ICMP_ECHOREPLY = 8, 0
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129


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
         timeout: float = 1.0, payload: Optional[bytes] = None,
         ident: Optional[int] = None) -> PingResult:
    """Echo requests from an ICMP datagram socket; ``size`` bytes of payload
    (or exactly ``payload``). Each reply is awaited at most ``timeout`` s.
    ``ident`` fixes the echo identifier (a ping socket's port), e.g. to steer
    the request's checksum to a chosen value."""
    family = family_of(dst)
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    echo = ICMPV6_ECHO_REQUEST if family == socket.AF_INET6 else ICMP_ECHO
    reply = ICMPV6_ECHO_REPLY if family == socket.AF_INET6 else ICMP_ECHOREPLY
    data = payload if payload is not None else bytes((i & 0xFF for i in range(size)))
    result = PingResult()
    with src.socket(family, socket.SOCK_DGRAM, proto) as sock:
        set_df(sock, family, df)
        if ident is not None:
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", ident))
        for seq in range(1, count + 1):
            # The kernel owns the identifier (the socket's "port") and the checksum.
            message = struct.pack("!BBHHH", echo, 0, 0, 0, seq) + data
            result.sent += 1
            start = time.monotonic()
            try:
                sock.sendto(message, (dst, 0))
            except OSError as exc:
                result.errors.append(f"seq {seq}: {exc.strerror}")
                continue
            deadline = start + timeout
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                got = sock.recv(65536)
                if len(got) >= 8 and got[0] == reply and struct.unpack("!H", got[6:8])[0] == seq:
                    result.received += 1
                    result.rtts.append(time.monotonic() - start)
                    break
    return result


# -- servers -------------------------------------------------------------------
class _Server:
    """A thread serving a socket created inside a node; stopped on lab cleanup."""

    def __init__(self, node: "Node", sock: socket.socket):
        self.node, self.sock = node, sock
        self.port = sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"{type(self).__name__}-{node.name}")
        self._thread.start()
        self._undo = node.lab.defer(self.stop, what=f"{type(self).__name__} in {node.name}")

    def _loop(self) -> None:
        while not self._stop.is_set():
            if select.select([self.sock], [], [], 0.05)[0]:
                self.serve_one()

    def serve_one(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._undo.cancel()
        self._stop.set()
        self._thread.join(timeout=5)
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
                df: bool = False, timeout: float = 1.0, payload: Optional[bytes] = None,
                sport: int = 0) -> UdpResult:
    """``count`` request/response exchanges; each answer awaited ``timeout`` s."""
    family = family_of(dst)
    result = UdpResult()
    with src.socket(family, socket.SOCK_DGRAM) as sock:
        set_df(sock, family, df)
        if sport:
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
        sock.settimeout(timeout)
        for i in range(count):
            data = payload if payload is not None else struct.pack("!I", i) + bytes(size - 4)
            result.sent += 1
            start = time.monotonic()
            try:
                sock.sendto(data, (dst, port))
                while True:
                    got = sock.recv(65536)
                    if got == data:
                        break
                result.answered += 1
                result.rtts.append(time.monotonic() - start)
            except socket.timeout:
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


def tcp_connect(src: "Node", dst: str, port: int, *, timeout: float = 3.0) -> TcpResult:
    """Connect and close (``connect_seconds`` shows SYN retransmissions)."""
    return tcp_transfer(src, dst, port, nbytes=0, timeout=timeout)


def tcp_transfer(src: "Node", dst: str, port: int, *, nbytes: int, df: bool = True,
                 timeout: float = 10.0, mss: Optional[int] = None) -> TcpResult:
    """Send ``nbytes`` to a :class:`TcpSinkServer` and wait for its byte count.

    With ``df`` the socket does path-MTU discovery 'do': DF set, and a
    frag-needed / Packet Too Big must reach the kernel for the transfer to
    finish — a black hole stalls it until ``timeout``."""
    family = family_of(dst)
    result = TcpResult()
    start = time.monotonic()
    with src.socket(family, socket.SOCK_STREAM) as sock:
        set_df(sock, family, df)
        if mss:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        sock.settimeout(timeout)
        try:
            sock.connect((dst, port))
            result.connected = True
            result.connect_seconds = time.monotonic() - start
            chunk = bytes(range(256)) * 256
            while result.sent < nbytes:
                sock.settimeout(max(0.01, timeout - (time.monotonic() - start)))
                n = min(len(chunk), nbytes - result.sent)
                result.sent += sock.send(chunk[:n])
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(max(0.01, timeout - (time.monotonic() - start)))
            answer = b""
            while len(answer) < 8 and (got := sock.recv(8 - len(answer))):
                answer += got
            if len(answer) == 8:
                result.acknowledged = struct.unpack("!Q", answer)[0]
            else:
                result.error = "server closed without a byte count"
        except socket.timeout:
            result.error = f"timed out after {timeout}s"
        except OSError as exc:
            result.error = exc.strerror or str(exc)
    result.seconds = time.monotonic() - start
    return result


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
