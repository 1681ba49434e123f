"""Filling the key space before a run, and learning the exact replies the server gives.

Both use one blocking socket: preloading is not measured, only done quickly (pipelined batches,
a few in flight).
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Callable

from tools.bench.protocols import MeshcacheProtocol, Protocol, ReplyKind
from tools.bench.workload import ReplyTemplates, Workload, key


class PreloadError(Exception):
    """The server refused or garbled a preload write or the probe."""


class _Reader:
    """Reads whole replies off a blocking socket."""

    def __init__(self, sock: socket.socket, protocol: Protocol) -> None:
        self.sock = sock
        self.protocol = protocol
        self.buf = bytearray()

    def fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise PreloadError("the server closed the connection")
        self.buf += data

    def reply(self) -> bytes:
        while True:
            end = self.protocol.reply_end(self.buf, 0)
            if end >= 0:
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            self.fill()

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def request(host: str, port: int, protocol: Protocol, frame: bytes, timeout: float = 10.0) -> bytes:
    """Send one request frame and return its whole reply."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(frame)
        return _Reader(sock, protocol).reply()


def preload(
    host: str,
    port: int,
    protocol: Protocol,
    workload: Workload,
    *,
    first: int = 0,
    count: int | None = None,
    batch: int = 1000,
    window: int = 4,
    timeout: float = 120.0,
) -> ReplyTemplates:
    """SET keys ``first .. first+count-1`` (default: the whole key space) to the workload's
    value, then probe one GET; return the replies a SET and a GET of a present key get.

    Raises:
        PreloadError: a SET was refused or a reply was not what the protocol promises.
    """
    total = workload.keys - first if count is None else count
    value = workload.value()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = _Reader(sock, protocol)
        # The first SET alone tells the reply every other SET must get.
        sock.sendall(protocol.set(key(first), value))
        set_reply = reader.reply()
        if protocol.classify(set_reply) != ReplyKind.OK:
            raise PreloadError(f"SET refused: {set_reply[:200]!r}")
        in_flight: deque[int] = deque()
        nxt = first + 1
        stop = first + total
        while nxt < stop or in_flight:
            while nxt < stop and len(in_flight) < window:
                upto = min(stop, nxt + batch)
                sock.sendall(b"".join(protocol.set(key(i), value) for i in range(nxt, upto)))
                in_flight.append(upto - nxt)
                nxt = upto
            n = in_flight.popleft()
            got = reader.exactly(len(set_reply) * n)
            if got != set_reply * n:
                raise PreloadError(f"a preload SET got an unexpected reply: {got[:200]!r}")
        sock.sendall(protocol.get(key(first)))
        get_reply = reader.reply()
    _check_get(protocol, get_reply, value)
    return ReplyTemplates(get=get_reply, set=set_reply)


def _check_get(protocol: Protocol, reply: bytes, value: bytes) -> None:
    if isinstance(protocol, MeshcacheProtocol):
        import msgpack

        obj = msgpack.unpackb(reply[4:], raw=False)
        ok = type(obj) is list and len(obj) == 4 and obj[1] == 0 and obj[2] == value
    else:
        ok = reply == b"$%d\r\n%s\r\n" % (len(value), value)
    if not ok:
        raise PreloadError(f"GET of a preloaded key returned {reply[:200]!r}")


def wait_until_ready(
    host: str,
    port: int,
    protocol: Protocol,
    *,
    timeout: float,
    alive: Callable[[], None] | None = None,
) -> None:
    """Poll until the server answers a PING, or raise TimeoutError after ``timeout`` seconds.

    ``alive``, when given, is called between attempts and should raise if the server process
    has exited (no point waiting for a dead process).
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            reply = request(host, port, protocol, protocol.ping(), timeout=1.0)
            if protocol.classify(reply) == ReplyKind.OK:
                return
            last = PreloadError(f"PING answered {reply[:100]!r}")
        except OSError as exc:
            last = exc
        time.sleep(0.02)  # poll interval between connection attempts, bounded by the deadline
    raise TimeoutError(f"{host}:{port} did not answer PING within {timeout:.0f} s ({last})")
