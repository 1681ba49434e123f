"""The data port: every client connection served by one reactor task on a private epoll
(:class:`meshcache.node.net.reactor.Reactor`; this module is its msgpack codec).

Why not a trio task per connection: trio re-arms a one-shot epoll registration for every
``wait_readable`` and switches tasks for every request, which measured as most of the cost of an
unpipelined GET. Here one task owns a level-triggered ``select.epoll`` whose descriptor trio
watches; each time it is readable the reactor drains the ready sockets, in rounds: it reads what
the kernel has for every ready connection into one reused buffer, answers every complete frame
in place, and when all of them are read writes each connection's answers with one ``send``
(the clients then wake once per burst rather than once per answer, which measured as a third of
the CPU per unpipelined request). After a bounded number of rounds, once the wake-up has held
the loop for ``ROUND_BUDGET`` seconds, or when none is ready, the reactor returns to trio, so
gossip, config and expiry tasks run in between: a busy node must never look dead.

A connection answers at most ``TURN_FRAMES`` frames per turn. A pipelining client whose read
holds more (a bulk load sends thousands of requests at once) keeps the rest in its reader and is
*deferred*: it is not read again until a later turn has answered what it holds, in order, after
the other connections had theirs (and after trio ran other tasks, if the wake-up's budget is
spent). So one wake-up holds the loop for about ``ROUND_BUDGET`` plus one turn, whatever the
clients send.

What a connection may cost is bounded: a frame over ``max_frame_bytes`` ends it — once the
start of its body is read, it is answered ``TOO_LARGE`` with the request's id (after the answers
before it), the write side is shut (the client reads its answers, then the end of the stream),
and the rest of the body is read and dropped before the socket is closed, so the client's send
completes and no reset destroys the answer it has not read yet; answers are written once
``max_buffered_bytes`` of them pile up, and a connection whose client does not read stops being
read until its answers drain (backpressure, no unbounded buffer); a connection over
``max_connections`` is told ``TOO_MANY_CONNECTIONS`` (over TLS on a TLS port) and closed; one
idle longer than ``idle_timeout`` is closed by a reaper task.

Answers are always written in request order. A request whose op must wait (a forward to the
key's owner, a quorum write waiting for acks, a config change through Raft) runs in its own
task, and the connection enters *ordered* mode: its frames are still read and answered — the
forwarded requests of one connection run concurrently — but every answer, including one
computed at once, is queued behind the answers before it and written when they are. So a
pipelining client that talks to a non-owner gets its depth back. What ordered mode may hold
is bounded too: at most ``MAX_PENDING`` waiting answers and ``max_buffered_bytes`` (capped as
for writes) of ready ones queued behind them; beyond either the connection stops being read
until its head answer is written.

Waiting requests of one connection on the same key *start* in request order: such a task
starts its op only after the one before it reached its first wait, when a single-key op has
done its local part and handed its request to the peer connection (which sends in order), so a
pipelined SET then GET of one key through a non-owner reads the write; ops on other keys start
at once. A forward submitted to its peer connection without a task (:attr:`Pending.later`) was
queued there in order as it was read, so it waits for nothing and starts nothing: its answer
arrives by callback and is stored in its place in the queue. A GET that misses in a namespace
with a loader is answered the same way (a forwarded one too): its load was started or joined
as it was read, and the load's end settles it. The reactor writes that forward
itself, with the others of its round for the same peer, and reads the owner's answers in a later
round; the connections whose head answers landed are written at the end of that round — one
``send`` per client connection per batch, no task per request (see
:mod:`meshcache.node.net.reactor`). An op that fans out later (a many-key split, FLUSH, a
config change: :attr:`Pending.fans_out`) pauses the connection until it is done. The head
answer of a task, once done, yields to the scheduler once before it is written, so answers that
complete together leave in one ``send``. A connection that closes cancels its waiting ops;
their answers are dropped.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
import trio

from meshcache.errors import ErrorCode
from meshcache.node.net.dispatch import Dispatcher
from meshcache.node.net.reactor import HEAVY_FRAME, READ, WRITE, Conn, Reactor
from meshcache.node.net.reactor import MAX_PENDING as MAX_PENDING
from meshcache.node.net.tls import PLAINTEXT_PORT_ALERT, TlsRefused, TlsRefuser, TlsSocket
from meshcache.security.guard import Session
from meshcache.security.tls import NodeTls
from meshcache.settings import LimitSettings
from meshcache.wire.frame import HEADER, FrameReader, FrameTooLarge, encode_error

if TYPE_CHECKING:
    from meshcache.node.net.peer_pool import PeerPool

log = structlog.get_logger("meshcache.dataport")

# Under glibc malloc's mmap threshold (128 KiB): a larger recv buffer costs an mmap, mremap
# and munmap per read, which measured slower than the read itself.
RECV_SIZE = 64 * 1024
# Frames one connection has answered per turn before the others get theirs (~1 ms of SETs on a
# mesh node; an unpipelined or depth-16 client never reaches it). A turn also ends early, after
# TURN_CHECK frames at least, once the wake-up's budget is spent, or right after a heavy frame
# (HEAVY_FRAME bytes or more: MSET, BULK, REPL) that spent it.
TURN_FRAMES = 64
TURN_CHECK = 16
# Accept errors that mean "this one connection failed" rather than "the listener is broken".
_TRANSIENT_ACCEPT = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENOBUFS, errno.ENOMEM}
_OUT_OF_FDS = {errno.EMFILE, errno.ENFILE}
_READ, _WRITE = READ, WRITE


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


class _Conn(Conn):
    """One client connection's state; only the reactor, its answer tasks and the reaper touch
    it."""

    __slots__ = ("discard", "peer", "reader", "session", "shut")

    def __init__(
        self,
        sock: socket.socket | TlsSocket,
        peer: str,
        now: float,
        max_frame: int,
        session: Session,
    ) -> None:
        super().__init__(sock, now)
        self.session = session  # who the client is (AUTH) and what it may send
        self.peer = peer
        self.reader = FrameReader(max_frame, requests=True)
        # A frame over the limit came (``doomed``): the ``discard`` bytes left of that frame's
        # body are read and dropped before it closes, once ``queue`` is written.
        self.discard = 0
        self.shut = False  # its write side is shut: everything it will say was written


class DataPort(Reactor[_Conn]):
    """Serves the data protocol on a listening socket until cancelled.

    ``peers``: the node's peer pool, whose forwards the reactor writes and whose answers it
    reads in its own rounds (:mod:`meshcache.node.net.reactor`); None: the pool runs alone.
    """

    def __init__(
        self,
        listener: socket.socket,
        dispatcher: Dispatcher,
        limits: LimitSettings,
        *,
        clock: Callable[[], float] = trio.current_time,
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
        # With TLS every accepted socket is wrapped (the context read at accept, so a SIGHUP
        # reload applies to the connections after it); without, sockets are served as they are.
        self._tls = tls
        self._refuser = TlsRefuser()
        self._dispatch = dispatcher
        self._handle = dispatcher.handle
        self._limits = limits
        self._counters = dispatcher.counters
        # Every read lands in this one buffer and frames are parsed in place (a reader copies
        # only what a read leaves unparsed): no 64 KiB allocation per recv.
        self._recv_buf = bytearray(RECV_SIZE)
        self._recv_view = memoryview(self._recv_buf)

    def _count_close(self, conn: _Conn, reason: str) -> None:
        # A connection that sent a frame over the limit is counted as closed for it, whoever
        # ends it while it winds down.
        self._counters.connections_closed[conn.doomed or reason] += 1
        self._counters.connections_current = len(self._conns)

    # --- the reactor ---------------------------------------------------------------------------

    async def _accept_all(self) -> None:
        listener = self._listener
        while True:
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _TRANSIENT_ACCEPT:
                    continue
                if exc.errno in _OUT_OF_FDS:
                    log.warning("accept_failed", error=str(exc))
                    self._counters.bad_input["accept_out_of_fds"] += 1
                    await trio.sleep(0.05)  # back off until a descriptor is freed
                    return
                raise
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self._conns) >= self._limits.max_connections:
                self._refuse(sock)
                continue
            peer = f"{addr[0]}:{addr[1]}" if addr else "?"
            session = self._dispatch.guard.session(addr[0] if addr else "?")
            served: socket.socket | TlsSocket = sock
            if self._tls is not None:
                served = TlsSocket(
                    sock,
                    self._tls.server,
                    refusal=_TLS_REQUIRED,
                    bad_input=self._counters.bad_input,
                )
            conn = _Conn(served, peer, self._clock(), self._limits.max_frame_bytes, session)
            self._conns[conn.fd] = conn
            assert self._epoll is not None
            self._epoll.register(conn.fd, _READ)
            self._counters.connections_opened += 1
            self._counters.connections_current = len(self._conns)

    def _refuse(self, sock: socket.socket) -> None:
        self._counters.bad_input["too_many_connections"] += 1
        # Accepted, then closed at once: counted both ways, so opened less closed stays the
        # connections open.
        self._counters.connections_opened += 1
        self._counters.connections_closed["too_many_connections"] += 1
        if self._tls is not None and self._nursery is not None:
            # Told in TLS, by a short task of its own: it holds no slot of the port.
            self._refuser.refuse(self._nursery, sock, self._tls.server, _TOO_MANY)
            return
        with contextlib.suppress(OSError):
            sock.send(_TOO_MANY)
        sock.close()

    def _read(self, conn: _Conn) -> None:
        if conn.busy:
            self._read_ordered(conn)
            return
        if conn.doomed is not None:
            self._skip(conn)
            return
        try:
            n = conn.sock.recv_into(self._recv_buf)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(conn, _reason(exc))
            return
        if not n:
            self._close(conn, "client_closed")
            return
        self._counters.bytes_received += n
        conn.last_active = self._now
        reader = conn.reader
        view = self._recv_view
        if (
            n > 4
            and not reader.buffered
            and HEADER.unpack_from(view)[0] == n - 4
            and n - 4 <= reader.max_frame
        ):
            # Exactly one whole frame, nothing before it: the unpipelined request. Answer it
            # without the reader's bookkeeping.
            answer = self._handle(view[4:n].tobytes(), conn.session)
            if isinstance(answer, bytes):
                self._round_out.append((conn, answer))
            else:
                self._start(conn, answer)
                self._pause_if_full(conn)
            return
        reader.borrow(view[:n])
        try:
            self._answer(conn, at_round_end=True)
        finally:
            reader.release()

    def _answer(self, conn: _Conn, *, at_round_end: bool = False) -> None:
        """Answer the complete frames buffered for ``conn`` until it must wait or pause.

        With ``at_round_end`` (only inside a reactor round) the last answers are written with
        the round's others.
        """
        if conn.busy:
            self._answer_ordered(conn)
            return
        handle = self._dispatch.handle
        session = conn.session
        reader = conn.reader
        out: list[bytes] = []
        pending = 0
        left, checks = TURN_CHECK, TURN_FRAMES // TURN_CHECK
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
                body = reader.next_body()
            except FrameTooLarge as exc:
                if exc.length >> 16 == _TLS_HELLO_LENGTH and self._tls is None:
                    self._tls_on_plaintext_port(conn)
                    return
                out.append(self._dispatch.frame_too_large(str(exc), exc.request_id))
                self._flush_round()  # answers of this round to this connection go first
                self._send(conn, b"".join(out))
                self._doom(conn, exc.rest)
                return
            if body is None:
                break
            answer = handle(body, session)
            if len(body) >= HEAVY_FRAME and time.perf_counter() >= self._until:
                left, checks = 0, 1  # a heavy frame spent the budget: the turn ends here
            if not isinstance(answer, bytes):
                if out:
                    self._flush_round()  # a backlog turn's answers of this round go first
                    self._send(conn, b"".join(out))
                self._start(conn, answer)
                self._answer_ordered(conn)
                return
            out.append(answer)
            pending += len(answer)
            if pending >= self._flush_at:
                self._flush_round()
                if not self._send(conn, b"".join(out)):
                    return  # the client is not reading: resume when its answers drain
                out.clear()
                pending = 0
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            if at_round_end:
                self._round_out.append((conn, data))
            else:
                self._send(conn, data)

    def _tls_on_plaintext_port(self, conn: _Conn) -> None:
        """A TLS handshake reached this plaintext port (its first bytes read as a frame length
        of 0x1603....): a fatal TLS alert tells the client's library, and the connection ends."""
        self._counters.bad_input["tls_on_plaintext_port"] += 1
        with contextlib.suppress(OSError):
            conn.sock.send(PLAINTEXT_PORT_ALERT)
        self._close(conn, "tls_on_plaintext_port")

    def _send(self, conn: _Conn, data: bytes) -> bool:
        """Write ``data``; keep what the kernel refuses and pause reading. True if all went."""
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
        self._counters.bytes_sent += sent
        conn.last_active = self._now
        if sent == len(data):
            if unsent:
                conn.unsent = b""
            return True
        conn.unsent = data[sent:]
        # A doomed connection goes on dropping the oversize body: its client may be blocked
        # sending it and read nothing until it is through.
        self._set_mask(conn, _WRITE | _READ if conn.discard else _WRITE)
        return False

    def _resume(self, conn: _Conn) -> None:
        """Its answers are all written: read it again and answer the frames it has buffered,
        unless ordered mode holds as much as it may."""
        if conn.doomed is not None:
            self._wind_down(conn)
            return
        if self._pause_if_full(conn):
            return
        self._set_mask(conn, _READ)
        self._answer(conn)  # frames that arrived while it was paused

    # --- ordered mode --------------------------------------------------------------------------

    def _read_ordered(self, conn: _Conn) -> None:
        if conn.doomed is not None:
            self._skip(conn)
            return
        try:
            n = conn.sock.recv_into(self._recv_buf)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(conn, _reason(exc))
            return
        if not n:
            self._close(conn, "client_closed")
            return
        self._counters.bytes_received += n
        conn.last_active = self._now
        conn.reader.borrow(self._recv_view[:n])
        try:
            self._answer_ordered(conn)
        finally:
            conn.reader.release()

    def _answer_ordered(self, conn: _Conn) -> None:
        """Answer ``conn``'s buffered frames into its queue until none is left or it is full."""
        handle = self._handle
        session = conn.session
        reader = conn.reader
        queue = conn.queue
        left, checks = TURN_CHECK, TURN_FRAMES // TURN_CHECK
        flush_at = self._flush_at
        # Reactor._full, inline (asked once per frame).
        while not (
            conn.unsent
            or conn.fanning_out
            or conn.streaming
            or conn.waiting >= MAX_PENDING
            or conn.held >= flush_at
        ):
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
                body = reader.next_body()
            except FrameTooLarge as exc:
                # The error goes after the answers before it, then the connection winds down.
                error = self._dispatch.frame_too_large(str(exc), exc.request_id)
                queue.append(bytearray(error))
                conn.held += len(error)
                self._doom(conn, exc.rest)
                return
            if body is None:
                return
            answer = handle(body, session)
            if len(body) >= HEAVY_FRAME and time.perf_counter() >= self._until:
                left, checks = 0, 1  # a heavy frame spent the budget: the turn ends here
            if isinstance(answer, bytes):
                tail = queue[-1]
                if type(tail) is bytearray:
                    tail += answer
                else:
                    queue.append(bytearray(answer))
                conn.held += len(answer)
            else:
                self._start(conn, answer)
        if not conn.unsent:
            self._set_mask(conn, 0)  # full: read on once its head answer is written

    # --- a frame over the limit ----------------------------------------------------------------

    def _doom(self, conn: _Conn, rest: int) -> None:
        """``conn`` sent a frame over the limit, ``rest`` bytes of whose body are still to come,
        and its answer is written or queued: read nothing more from it but that body."""
        conn.doomed = "frame_too_large"
        conn.discard = rest
        self._wind_down(conn)

    def _wind_down(self, conn: _Conn) -> None:
        """Take a doomed connection one step towards its close.

        While answers are still to be written it keeps dropping the oversize body; once all are
        written its write side is shut, so the client reads them and then the end of the stream;
        once the body is dropped too it is closed (with nothing unread, which would send a reset
        that destroys answers the client has not read).
        """
        if self._conns.get(conn.fd) is not conn:
            return
        if conn.busy or conn.unsent:
            self._set_mask(conn, (_READ if conn.discard else 0) | (_WRITE if conn.unsent else 0))
            return
        if not conn.shut:
            conn.shut = True
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
        if conn.discard:
            self._set_mask(conn, _READ)
        else:
            assert conn.doomed is not None
            self._close(conn, conn.doomed)

    def _skip(self, conn: _Conn) -> None:
        """Read and drop what is left of a doomed connection's oversize body."""
        if not conn.discard:
            return  # its mask is no longer _READ: a stale event
        try:
            n = conn.sock.recv_into(self._recv_buf, min(conn.discard, RECV_SIZE))
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(conn, _reason(exc))
            return
        if not n:
            self._close(conn, "client_closed")
            return
        self._counters.bytes_received += n
        conn.last_active = self._now
        conn.discard -= n
        if not conn.discard:
            self._wind_down(conn)


# What a client over max_connections is told (over TLS on a TLS port) before the close.
_TOO_MANY = encode_error(0, ErrorCode.TOO_MANY_CONNECTIONS, "the node is at max_connections")
# What a plaintext client on a TLS port is told, in this port's protocol, before the close.
_TLS_REQUIRED = encode_error(
    0, ErrorCode.TLS_REQUIRED, "this port speaks TLS: connect with tls=True (meshcaches://)"
)
# A TLS record header read as a frame length: 0x16 (handshake), 0x03 (major version).
_TLS_HELLO_LENGTH = 0x1603


def _reason(exc: OSError) -> str:
    if type(exc) is TlsRefused:
        return exc.reason
    return "reset" if exc.errno in (errno.ECONNRESET, errno.EPIPE) else "socket_error"
