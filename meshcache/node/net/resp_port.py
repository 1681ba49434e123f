"""The RESP port: Redis clients (redis-cli, redis-benchmark, redis-py, ...) on a node.

It is built like the data port (:mod:`meshcache.node.net.dataport`), because the same costs
apply: one reactor task owns a level-triggered ``select.epoll`` whose descriptor trio watches;
each time it is readable the reactor reads what the kernel has for every ready connection into
one reused buffer, answers every complete command in place (pipelining), and once all of them
are read writes each connection's replies with one ``send``. After a bounded number of rounds,
once a wake-up has held the loop for ``ROUND_BUDGET`` seconds, or when none is ready, it
returns to trio so gossip, config and expiry tasks run in between. Every connection epoll
reported in a round is served (one left out would be left out again); a connection answers at
most ``TURN_COMMANDS`` commands per turn, and only ``TURN_CHECK`` once the budget is spent; one
that holds more is *deferred* and answered on a later turn after the others, so a bulk load
cannot hold the loop.

Commands run through the node's routing: :class:`meshcache.resp.session.Server` is given the
coordinator's ``execute`` and the op routes the dispatcher gets, so any node serves any key
(a request for a key owned elsewhere is forwarded inside ``execute``). Replies are always
written in command order. A command whose op must wait (a forward, a quorum write) runs in its
own task and the connection enters *ordered* mode, exactly as on the data port: later commands
are still read and answered, but every reply is queued behind the ones before it; commands on
the same key start in order; a command that fans out (a many-key split, FLUSH, a composed
command that had to wait) pauses the connection until it is done. Ordered mode holds at most
``MAX_PENDING`` waiting replies and ``max_buffered_bytes`` (capped) of ready ones.

What a connection may cost is bounded: a command that breaks the grammar or a reader limit
(:class:`meshcache.resp.reader.ReaderLimits`: bulks and whole commands up to
``max_frame_bytes``, 1 Mi arguments, 64 KiB inline lines) is answered with Redis's
``-ERR Protocol error: ...`` and the connection closed (framing is lost); replies are written
once ``max_buffered_bytes`` of them pile up and a client that does not read stops being read
(backpressure); a connection over ``max_connections`` is told
``-ERR max number of clients reached`` (over TLS on a TLS port) and closed; one idle longer
than ``idle_timeout`` is closed. Commands are counted by name and bad input by kind in the
session server (``server.calls``, ``server.refused``); connections, bytes and closes by reason in
:attr:`RespPort.stats`. :mod:`meshcache.node.admin.resp_metrics` exports them.

QUIT is answered ``+OK`` and closes the connection once the replies before it are written. A
client that shuts its write side (``nc -N``, a script that sends then half-closes) has every
command it sent answered, forwarded ones included, and the connection closes after the last
reply.
"""

from __future__ import annotations

import contextlib
import errno
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog
import trio

from meshcache.node.net.dataport import open_listener
from meshcache.node.net.reactor import MAX_PENDING as MAX_PENDING
from meshcache.node.net.reactor import READ, WRITE, Conn, Reactor
from meshcache.node.net.reactor import ROUND_BUDGET as ROUND_BUDGET
from meshcache.node.net.tls import PLAINTEXT_PORT_ALERT, TlsRefused, TlsRefuser, TlsSocket
from meshcache.resp.reader import CommandReader, ReaderLimits, RespProtocolError
from meshcache.resp.session import Counters, Executor, Route, Server, Session
from meshcache.security.tls import NodeTls
from meshcache.settings import LimitSettings
from meshcache.wire.ops import Limits
from meshcache.wire.pending import Pending

if TYPE_CHECKING:
    from meshcache.node.assembly import Assembly
    from meshcache.node.net.peer_pool import PeerPool
    from meshcache.security.guard import Guard

log = structlog.get_logger("meshcache.resp")

RECV_SIZE = 64 * 1024  # under glibc's mmap threshold, as on the data port
#: Commands one connection has answered per turn before the others get theirs; a turn also ends
#: early, after ``TURN_CHECK`` commands at least, once the wake-up's budget is spent.
TURN_COMMANDS = 64
TURN_CHECK = 16
TOO_MANY_CLIENTS = b"-ERR max number of clients reached\r\n"
_TRANSIENT_ACCEPT = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENOBUFS, errno.ENOMEM}
_OUT_OF_FDS = {errno.EMFILE, errno.ENFILE}
_READ, _WRITE = READ, WRITE


def reader_limits(limits: LimitSettings) -> ReaderLimits:
    """The reader limits of a node's settings: bulks and commands up to ``max_frame_bytes``
    (the data port's frame limit), Redis's defaults for the rest."""
    return ReaderLimits(
        max_bulk_bytes=limits.max_frame_bytes, max_command_bytes=limits.max_frame_bytes
    )


class _Conn(Conn):
    """One client connection; only the reactor, its reply tasks and the reaper touch it."""

    __slots__ = ("reader", "session")

    def __init__(
        self,
        sock: socket.socket | TlsSocket,
        session: Session,
        now: float,
        limits: ReaderLimits,
    ) -> None:
        super().__init__(sock, now)
        self.session = session
        self.reader = CommandReader(limits)


class RespPort(Reactor[_Conn]):
    """Serves RESP on a listening socket until cancelled.

    Args:
        listener: a bound, listening, non-blocking socket (:func:`open_listener`).
        execute: the coordinator's ``execute`` (any key; forwards to the owner).
        routes: the node's op routes (``Routes.table()``).
        limits: the node's limit settings (connections, buffers, idle time, frame size).
        op_limits: key, value and argument limits checked before an op runs.
        counters: the node's counters (ops run, op errors by code).
        node_id: this node, for INFO.
        wall_clock: seconds since the epoch (EXPIREAT, TIME).
        rng: randomness for SPOP and SRANDMEMBER.
        clock: trio's clock (idle timeouts).
        guard: the node's users and permissions, shared with the data port (``AUTH``,
            ``NOAUTH``, ``NOPERM``); None: every command allowed.
        tls: the node's TLS: every connection is TLS (``rediss://``); None: plaintext.
        peers: the node's peer pool, whose forwards the reactor writes and whose answers it
            reads in its own rounds (:mod:`meshcache.node.net.reactor`); None: it runs alone.
    """

    def __init__(
        self,
        listener: socket.socket,
        *,
        execute: Executor,
        routes: Mapping[str, Route],
        limits: LimitSettings,
        op_limits: Limits,
        counters: Counters,
        node_id: str = "",
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        clock: Callable[[], float] = trio.current_time,
        guard: Guard | None = None,
        tls: NodeTls | None = None,
        peers: PeerPool | None = None,
    ) -> None:
        super().__init__(
            listener,
            max_buffered_bytes=limits.max_buffered_bytes,
            idle_timeout=limits.idle_timeout,
            clock=clock,
            peers=peers,
        )
        self._tls = tls
        self._refuser = TlsRefuser()
        self._limits = limits
        self._reader_limits = reader_limits(limits)
        #: Connections opened, closed by reason (``closed_<reason>``), bytes in and out.
        self.stats: Counter[str] = Counter()
        self.server = Server(
            execute=execute,
            routes=routes,
            limits=op_limits,
            counters=counters,
            wall_clock=wall_clock,
            rng=rng,
            node_id=node_id,
            port=self.address[1],
            connections=lambda: len(self._conns),
            guard=guard,
            max_reply_bytes=limits.max_buffered_bytes,
        )
        self._laddr = _address(listener.getsockname())
        self._recv_buf = bytearray(RECV_SIZE)
        self._recv_view = memoryview(self._recv_buf)

    def _count_close(self, conn: _Conn, reason: str) -> None:
        self.stats[f"closed_{reason}"] += 1

    @classmethod
    def for_parts(
        cls,
        listener: socket.socket,
        parts: Assembly,
        *,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        tls: NodeTls | None = None,
    ) -> RespPort:
        """The RESP port of an assembled node: its coordinator, routes, limits, counters and
        the data port's guard (users, permissions, the slow-down of failed ``AUTH``\\ s)."""
        port = cls(
            listener,
            execute=parts.coordinator.execute,
            routes=parts.routes.table(),
            limits=parts.settings.limits,
            op_limits=parts.limits,
            counters=parts.counters,
            node_id=parts.node_id,
            wall_clock=wall_clock,
            rng=rng,
            guard=parts.dispatcher.guard,
            tls=tls,
            peers=parts.pool,
        )
        port.server.relay = parts.coordinator.execute_or_relay
        return port

    # --- the reactor ---------------------------------------------------------------------------

    async def _accept_all(self) -> None:
        listener = self._listener
        while True:
            try:
                sock, peer = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _TRANSIENT_ACCEPT:
                    continue
                if exc.errno in _OUT_OF_FDS:
                    log.warning("resp_accept_failed", error=str(exc))
                    self.server.refused["accept_out_of_fds"] += 1
                    await trio.sleep(0.05)  # back off until a descriptor is freed
                    return
                raise
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self._conns) >= self._limits.max_connections:
                self._refuse(sock)
                continue
            host = peer[0] if isinstance(peer, tuple) else ""
            session = self.server.session(_address(peer), self._laddr, host)
            served: socket.socket | TlsSocket = sock
            if self._tls is not None:
                served = TlsSocket(
                    sock, self._tls.server, refusal=_TLS_REQUIRED, bad_input=self.server.refused
                )
            conn = _Conn(served, session, self._clock(), self._reader_limits)
            self._conns[conn.fd] = conn
            assert self._epoll is not None
            self._epoll.register(conn.fd, _READ)
            self.stats["connections_opened"] += 1

    def _refuse(self, sock: socket.socket) -> None:
        self.server.refused["too_many_connections"] += 1
        self.stats["connections_opened"] += 1  # accepted, then closed at once
        self.stats["closed_too_many_connections"] += 1
        if self._tls is not None and self._nursery is not None:
            # Told in TLS, by a short task of its own: it holds no slot of the port.
            self._refuser.refuse(self._nursery, sock, self._tls.server, TOO_MANY_CLIENTS)
            return
        with contextlib.suppress(OSError):
            sock.send(TOO_MANY_CLIENTS)
        sock.close()

    def _read(self, conn: _Conn) -> None:
        try:
            n = conn.sock.recv_into(self._recv_buf)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(conn, _reason(exc))
            return
        if not n:
            self._input_ended(conn)
            return
        # A TLS handshake record (0x16, TLS_HANDSHAKE as a literal: no global lookup per read)
        # at the start of a command: no RESP command starts with that byte.
        if self._recv_buf[0] == 0x16 and self._tls is None and not conn.reader.buffered:
            self._tls_on_plaintext_port(conn)
            return
        self.stats["bytes_received"] += n
        conn.last_active = self._now
        conn.reader.feed(self._recv_view[:n])
        if conn.busy:
            self._answer_ordered(conn)
        else:
            self._answer(conn, at_round_end=True)

    def _input_ended(self, conn: _Conn) -> None:
        """The client sent all it will (it closed, or shut its write side only): the commands
        it sent are still answered, as Redis answers them, and the connection closes once their
        replies are written. A command it left incomplete is dropped."""
        self._flush_round()  # replies of this round's earlier turn for it go first
        if self._conns.get(conn.fd) is not conn:
            return  # that write failed: closed
        if not (conn.busy or conn.unsent):
            self._close(conn, "client_closed")
            return
        conn.doomed = "client_closed"
        if not conn.unsent:
            self._set_mask(conn, 0)  # nothing more to read: woken by its replies

    def _tls_on_plaintext_port(self, conn: _Conn) -> None:
        """A TLS handshake reached this plaintext port: a fatal TLS alert tells the client's
        library, and the connection ends."""
        self.server.refused["tls_on_plaintext_port"] += 1
        with contextlib.suppress(OSError):
            conn.sock.send(PLAINTEXT_PORT_ALERT)
        self._close(conn, "tls_on_plaintext_port")

    def _protocol_error(self, conn: _Conn, exc: RespProtocolError) -> bytes:
        self.server.refused[f"protocol_{exc.kind}"] += 1
        self.server.error_replies += 1
        conn.doomed = "protocol_error"
        return exc.reply

    def _answer(self, conn: _Conn, *, at_round_end: bool = False) -> None:
        """Answer the complete commands buffered for ``conn`` until it must wait or pause.

        With ``at_round_end`` (only inside a reactor round) the last replies are written with
        the round's others.
        """
        if conn.busy:
            self._answer_ordered(conn)
            return
        handle = conn.session.handle
        reader = conn.reader
        out: list[bytes] = []
        pending = 0
        left, checks = TURN_CHECK, TURN_COMMANDS // TURN_CHECK
        while True:
            if not left:
                if not reader.buffered:
                    break  # all answered (a depth-16 read ends exactly here)
                checks -= 1
                if not checks or time.perf_counter() >= self._until:
                    self._defer(conn)  # its turn is over: the rest waits in its reader
                    break
                left = TURN_CHECK
            left -= 1
            try:
                argv = reader.next_command()
            except RespProtocolError as exc:
                out.append(self._protocol_error(conn, exc))
                break
            if argv is None:
                break
            answer = handle(argv)
            if type(answer) is not bytes:
                assert isinstance(answer, Pending)
                if out:
                    self._flush_round()  # a backlog turn's replies of this round go first
                    self._send(conn, b"".join(out))
                self._start(conn, answer)
                self._answer_ordered(conn)
                return
            out.append(answer)
            if conn.session.closing:
                conn.doomed = "quit"
                break
            pending += len(answer)
            if pending >= self._flush_at:
                self._flush_round()
                if not self._send(conn, b"".join(out)):
                    return  # the client is not reading: resume when its replies drain
                out.clear()
                pending = 0
        if conn.doomed is not None:
            self._flush_round()
            if self._send(conn, b"".join(out)):
                self._close(conn, conn.doomed)
            else:
                self._set_mask(conn, _WRITE)  # closed once the rest is written
            return
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            if at_round_end:
                self._round_out.append((conn, data))
            else:
                self._send(conn, data)

    def _send(self, conn: _Conn, data: bytes) -> bool:
        """Write ``data``; keep what the kernel refuses and wait for EPOLLOUT. True if all went."""
        unsent = conn.unsent
        if unsent:
            data = unsent + data
        elif not data:
            return True
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._close(conn, _reason(exc))
            return False
        self.stats["bytes_sent"] += sent
        conn.last_active = self._now
        if sent == len(data):
            if unsent:
                conn.unsent = b""
            return True
        conn.unsent = data[sent:]
        self._set_mask(conn, _WRITE)
        return False

    def _resume(self, conn: _Conn) -> None:
        """Its replies are all written: read it again and answer what it has buffered, unless
        ordered mode holds as much as it may, or it is to be closed."""
        if conn.doomed is not None:
            if conn.busy:
                self._set_mask(conn, 0)
            else:
                self._close(conn, conn.doomed)
            return
        if self._pause_if_full(conn):
            return
        self._set_mask(conn, _READ)
        self._answer(conn)

    # --- ordered mode --------------------------------------------------------------------------

    def _answer_ordered(self, conn: _Conn) -> None:
        """Answer ``conn``'s buffered commands into its queue until none is left or it is full."""
        handle = conn.session.handle
        reader = conn.reader
        queue = conn.queue
        left, checks = TURN_CHECK, TURN_COMMANDS // TURN_CHECK
        while not conn.unsent and not self._full(conn) and conn.doomed is None:
            if not left:
                if not reader.buffered:
                    return  # all answered
                checks -= 1
                if not checks or time.perf_counter() >= self._until:
                    self._defer(conn)
                    return
                left = TURN_CHECK
            left -= 1
            try:
                argv = reader.next_command()
            except RespProtocolError as exc:
                answer: bytes | Pending = self._protocol_error(conn, exc)
            else:
                if argv is None:
                    return
                answer = handle(argv)
                if conn.session.closing:
                    conn.doomed = "quit"
            if type(answer) is bytes:
                tail = queue[-1]
                if type(tail) is bytearray:
                    tail += answer
                else:
                    queue.append(bytearray(answer))
                conn.held += len(answer)
            else:
                assert isinstance(answer, Pending)
                self._start(conn, answer)
        if conn.doomed is not None or not conn.unsent:
            self._set_mask(conn, 0)  # full or closing: read on once its head reply is written


def _address(addr: Any) -> str:
    """``host:port`` of a socket address (``[host]:port`` for IPv6)."""
    if not isinstance(addr, tuple) or len(addr) < 2:
        return str(addr)
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# What a plaintext client on a TLS port is told, in RESP, before the close.
_TLS_REQUIRED = b"-ERR this port speaks TLS: connect with TLS (rediss://, redis-cli --tls)\r\n"


def _reason(exc: OSError) -> str:
    if type(exc) is TlsRefused:
        return exc.reason
    return "reset" if exc.errno in (errno.ECONNRESET, errno.EPIPE) else "socket_error"


def figures(port: RespPort) -> dict[str, Any]:
    """The port's figures for INFO or metrics: open connections and its counters."""
    return {"connections": port.connection_count, **port.stats}


__all__ = [
    "MAX_PENDING",
    "ROUND_BUDGET",
    "TOO_MANY_CLIENTS",
    "TURN_CHECK",
    "TURN_COMMANDS",
    "RespPort",
    "figures",
    "open_listener",
    "reader_limits",
]
