"""The data port: a TCP accept loop and per-connection loops on raw non-blocking sockets.

Written at the socket level rather than on ``trio.SocketStream`` because that measured about
twice as fast on the target machine (design.md): each wake-up reads what the kernel has, answers
every complete frame in the buffer, and writes all the answers with one ``send``.

What a connection may cost is bounded: a frame over ``max_frame_bytes`` closes it (framing is
lost); answers are flushed once ``max_buffered_bytes`` of them pile up; a connection over
``max_connections`` is told ``TOO_MANY_CONNECTIONS`` and closed; one idle longer than
``idle_timeout`` is closed by a reaper task.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable

import structlog
import trio

from meshcache.node.dispatch import Dispatcher
from meshcache.settings import LimitSettings
from meshcache.wire.frame import FrameReader, FrameTooLarge, encode_error

log = structlog.get_logger("meshcache.dataport")

# Under glibc malloc's mmap threshold (128 KiB): a larger recv buffer costs an mmap, mremap
# and munmap per read, which measured slower than the read itself.
RECV_SIZE = 64 * 1024
# Accept errors that mean "this one connection failed" rather than "the listener is broken".
_TRANSIENT_ACCEPT = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENOBUFS, errno.ENOMEM}
_OUT_OF_FDS = {errno.EMFILE, errno.ENFILE}


def open_listener(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A bound, listening, non-blocking TCP socket (IPv4 or IPv6 by ``host``)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Conn:
    __slots__ = ("last_active", "peer", "sock")

    def __init__(self, sock: socket.socket, peer: str, now: float) -> None:
        self.sock = sock
        self.peer = peer
        self.last_active = now


class DataPort:
    """Serves the data protocol on a listening socket until cancelled."""

    def __init__(
        self,
        listener: socket.socket,
        dispatcher: Dispatcher,
        limits: LimitSettings,
        *,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._listener = listener
        self._dispatch = dispatcher
        self._limits = limits
        self._clock = clock
        self._conns: set[_Conn] = set()
        self._counters = dispatcher.counters

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return host, port

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept and serve connections until cancelled; closes every socket on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reap_idle)
                task_status.started()
                await self._accept_loop(nursery)
        finally:
            self._listener.close()
            for conn in list(self._conns):
                conn.sock.close()

    async def _accept_loop(self, nursery: trio.Nursery) -> None:
        listener = self._listener
        while True:
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(listener)
                continue
            except OSError as exc:
                if exc.errno in _TRANSIENT_ACCEPT:
                    continue
                if exc.errno in _OUT_OF_FDS:
                    log.warning("accept_failed", error=str(exc))
                    self._counters.bad_input["accept_out_of_fds"] += 1
                    await trio.sleep(0.05)  # back off until a descriptor is freed
                    continue
                raise
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self._conns) >= self._limits.max_connections:
                self._refuse(sock)
                continue
            conn = _Conn(sock, f"{addr[0]}:{addr[1]}" if addr else "?", self._clock())
            self._conns.add(conn)
            self._counters.connections_opened += 1
            self._counters.connections_current = len(self._conns)
            nursery.start_soon(self._serve_conn, conn)

    def _refuse(self, sock: socket.socket) -> None:
        self._counters.bad_input["too_many_connections"] += 1
        self._counters.connections_closed["too_many_connections"] += 1
        with contextlib.suppress(OSError):
            sock.send(encode_error(0, "TOO_MANY_CONNECTIONS", "the node is at max_connections"))
        sock.close()

    async def _serve_conn(self, conn: _Conn) -> None:
        reason = "client_closed"
        try:
            reason = await self._conn_loop(conn)
        except trio.ClosedResourceError:
            reason = "idle_timeout"
        except OSError as exc:
            reason = "reset" if exc.errno in (errno.ECONNRESET, errno.EPIPE) else "socket_error"
        finally:
            self._conns.discard(conn)
            conn.sock.close()
            self._counters.connections_closed[reason] += 1
            self._counters.connections_current = len(self._conns)

    async def _conn_loop(self, conn: _Conn) -> str:
        sock = conn.sock
        reader = FrameReader(self._limits.max_frame_bytes)
        handle = self._dispatch.handle
        flush_at = max(64 * 1024, min(self._limits.max_buffered_bytes, 4 * 1024 * 1024))
        counters = self._counters
        clock = self._clock
        recv = sock.recv
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = recv(RECV_SIZE)
            except BlockingIOError:
                continue
            if not data:
                return "client_closed"
            counters.bytes_received += len(data)
            conn.last_active = clock()
            reader.feed(data)
            out: list[bytes] = []
            pending = 0
            while True:
                try:
                    body = reader.next_body()
                except FrameTooLarge as exc:
                    out.append(self._dispatch.frame_too_large(str(exc)))
                    await self._send(conn, b"".join(out))
                    return "frame_too_large"
                if body is None:
                    break
                answer = handle(body)
                if not isinstance(answer, bytes):
                    answer = await answer  # a node op that waits (config changes)
                out.append(answer)
                pending += len(answer)
                if pending >= flush_at:
                    await self._send(conn, b"".join(out))
                    out.clear()
                    pending = 0
            if out:
                await self._send(conn, out[0] if len(out) == 1 else b"".join(out))

    async def _send(self, conn: _Conn, data: bytes) -> None:
        sock = conn.sock
        view = memoryview(data)
        total = len(data)
        sent = 0
        while sent < total:
            try:
                sent += sock.send(view[sent:])
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                continue
            conn.last_active = self._clock()
        self._counters.bytes_sent += total

    async def _reap_idle(self) -> None:
        """Close connections that neither sent nor accepted bytes for ``idle_timeout``."""
        timeout = self._limits.idle_timeout
        period = max(0.05, min(timeout / 4, 5.0))
        while True:
            await trio.sleep(period)
            deadline = self._clock() - timeout
            for conn in [c for c in self._conns if c.last_active < deadline]:
                # Wakes the connection's wait_readable/wait_writable with ClosedResourceError.
                trio.lowlevel.notify_closing(conn.sock)
