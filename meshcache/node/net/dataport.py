"""The data port: every client connection served by one reactor task on a private epoll.

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
arrives by callback, is stored in its place in the queue, and the connections whose head
answers arrived are written by one drainer task once the peer's answers of one read are all
in — one ``send`` per client connection per batch, no task per request. An op that fans out
later (a many-key split, FLUSH, a config change: :attr:`Pending.fans_out`) pauses the
connection until it is done, as before. The head answer, once done, yields to the scheduler
once before it is written, so answers that complete together leave in one ``send``. A
connection that closes cancels its waiting ops; their answers are dropped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import time
from collections import deque
from collections.abc import Callable

import structlog
import trio

from meshcache.errors import ErrorCode
from meshcache.node.net.dispatch import Dispatcher
from meshcache.node.net.tls import PLAINTEXT_PORT_ALERT, TlsRefused, TlsRefuser, TlsSocket
from meshcache.security.guard import Session
from meshcache.security.tls import NodeTls
from meshcache.settings import LimitSettings
from meshcache.wire.frame import HEADER, FrameReader, FrameTooLarge, encode_error
from meshcache.wire.pending import Pending

log = structlog.get_logger("meshcache.dataport")

# Under glibc malloc's mmap threshold (128 KiB): a larger recv buffer costs an mmap, mremap
# and munmap per read, which measured slower than the read itself.
RECV_SIZE = 64 * 1024
# Connections served per round: with the shortest turn each takes once the budget is spent
# (TURN_CHECK frames), a round stays within a few milliseconds.
MAX_EVENTS = 128
BUSY_ROUNDS = 16
# Seconds of work after which a reactor wake-up returns to trio (checked between rounds, and by
# each connection's turn): one wake-up stays within a few milliseconds.
ROUND_BUDGET = 0.002
# Frames one connection has answered per turn before the others get theirs (~1 ms of SETs on a
# mesh node; an unpipelined or depth-16 client never reaches it). A turn also ends early, after
# TURN_CHECK frames at least, once the wake-up's budget is spent (heavy frames: MSET, BULK).
TURN_FRAMES = 64
TURN_CHECK = 16
# Waiting answers one connection may have at once (one task each); beyond it the connection
# stops being read until the oldest is written.
MAX_PENDING = 128
# Accept errors that mean "this one connection failed" rather than "the listener is broken".
_TRANSIENT_ACCEPT = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENOBUFS, errno.ENOMEM}
_OUT_OF_FDS = {errno.EMFILE, errno.ENFILE}
_READ = select.EPOLLIN | select.EPOLLRDHUP
_WRITE = select.EPOLLOUT
_BROKEN = select.EPOLLHUP | select.EPOLLERR


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


class _Waiting:
    """One answer of an ordered connection that waits on a node op: run by a task, or (with
    ``task`` False) delivered by a callback, which needs neither a scope nor an event."""

    __slots__ = ("data", "scope", "started")

    def __init__(self, task: bool = True) -> None:
        self.data: bytes | None = None
        # Cancelled when the connection closes.
        self.scope = trio.CancelScope() if task else None
        # Its op ran to its first wait: the next one may start.
        self.started = trio.Event() if task else None


class _Conn:
    """One client connection's state; only the reactor, its answer tasks and the reaper touch
    it."""

    __slots__ = (
        "busy",
        "deferred",
        "discard",
        "doomed",
        "fanning_out",
        "fd",
        "held",
        "last_active",
        "mask",
        "peer",
        "queue",
        "reader",
        "session",
        "shut",
        "sock",
        "unsent",
        "unstarted",
        "waiting",
    )

    def __init__(
        self,
        sock: socket.socket | TlsSocket,
        peer: str,
        now: float,
        max_frame: int,
        session: Session,
    ) -> None:
        self.sock = sock
        self.session = session  # who the client is (AUTH) and what it may send
        self.fd = sock.fileno()
        self.peer = peer
        self.last_active = now
        self.reader = FrameReader(max_frame, requests=True)
        self.unsent = b""  # answers the kernel did not take yet
        self.mask = _READ
        # Ordered mode: answers not written yet, oldest first — runs of ready answers
        # (bytearray) and answers that wait on a node op. ``busy`` is True iff it is not empty.
        self.queue: deque[bytearray | _Waiting] = deque()
        self.busy = False
        self.waiting = 0  # entries of ``queue`` still waiting on their op
        self.held = 0  # bytes of ready answers in ``queue``
        # The newest waiting entry of each key whose op has not reached its first wait yet.
        self.unstarted: dict[tuple[str, bytes], _Waiting] = {}
        self.fanning_out = False  # a fan-out op is running: read nothing until it is done
        # A frame over the limit came: the reason it closes with, once ``queue`` is written and
        # the ``discard`` bytes left of that frame's body are read and dropped.
        self.doomed: str | None = None
        self.discard = 0
        self.shut = False  # its write side is shut: everything it will say was written
        # Complete frames wait in ``reader`` for a later turn (the reactor's backlog): not read
        # from the socket until they are answered.
        self.deferred = False


class DataPort:
    """Serves the data protocol on a listening socket until cancelled."""

    def __init__(
        self,
        listener: socket.socket,
        dispatcher: Dispatcher,
        limits: LimitSettings,
        *,
        clock: Callable[[], float] = trio.current_time,
        tls: NodeTls | None = None,
    ) -> None:
        self._listener = listener
        # With TLS every accepted socket is wrapped (the context read at accept, so a SIGHUP
        # reload applies to the connections after it); without, sockets are served as they are.
        self._tls = tls
        self._refuser = TlsRefuser()
        self._dispatch = dispatcher
        self._handle = dispatcher.handle
        self._limits = limits
        self._clock = clock
        self._conns: dict[int, _Conn] = {}
        self._counters = dispatcher.counters
        self._epoll: select.epoll | None = None
        self._nursery: trio.Nursery | None = None
        self._flush_at = max(64 * 1024, min(limits.max_buffered_bytes, 4 * 1024 * 1024))
        # Every read lands in this one buffer and frames are parsed in place (a reader copies
        # only what a read leaves unparsed): no 64 KiB allocation per recv.
        self._recv_buf = bytearray(RECV_SIZE)
        self._recv_view = memoryview(self._recv_buf)
        # The last answers of each read of a round, written once every ready connection was
        # read: the clients' wake-ups then come in a burst, and fewer of our sends must wake a
        # sleeping reader. At most one entry per connection, each under ``_flush_at`` bytes.
        self._round_out: list[tuple[_Conn, bytes]] = []
        # The time of the current reactor round: one clock read per round, not two per request.
        self._now = clock()
        # Connections with frames left over from their last turn, oldest first.
        self._backlog: deque[_Conn] = deque()
        # Written to wake the reactor when a connection is deferred while it waits for epoll.
        self._poke_fd = -1
        self._idle = False
        # When the current wake-up's budget ends (time.perf_counter); outside the reactor it is
        # in the past, so a connection resumed by an answer task takes short turns.
        self._until = 0.0
        # Connections whose head answer arrived by callback, written by the drainer task, which
        # ``_landed`` is set to wake.
        self._landed_conns: dict[_Conn, None] = {}
        self._landed = trio.Event()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return host, port

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept and serve connections until cancelled; closes every socket on the way out."""
        epoll = select.epoll()
        self._epoll = epoll
        epoll.register(self._listener.fileno(), select.EPOLLIN)
        self._poke_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        epoll.register(self._poke_fd, select.EPOLLIN)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._reap_idle)
                nursery.start_soon(self._write_landed)
                task_status.started()
                await self._reactor(epoll)
        finally:
            for conn in list(self._conns.values()):
                self._close(conn, "node_stopping")
            self._listener.close()
            epoll.close()
            os.close(self._poke_fd)
            self._poke_fd = -1

    # --- the reactor ---------------------------------------------------------------------------

    async def _reactor(self, epoll: select.epoll) -> None:
        listener_fd = self._listener.fileno()
        poke_fd = self._poke_fd
        conns = self._conns
        poll = epoll.poll
        epoll_fd = epoll.fileno()
        clock = self._clock
        read = self._read
        backlog = self._backlog
        perf = time.perf_counter
        write_flag, broken = _WRITE, _BROKEN
        while True:
            if backlog:
                await trio.lowlevel.checkpoint()  # others run; then on with the leftovers
            else:
                self._idle = True
                try:
                    await trio.lowlevel.wait_readable(epoll_fd)
                finally:
                    self._idle = False
            # While requests keep arriving, poll again at once rather than going round trio's
            # run loop for every batch; a bounded number of rounds and of time, then other
            # tasks run.
            self._until = until = perf() + ROUND_BUDGET
            for _ in range(BUSY_ROUNDS):
                if backlog:
                    self._now = clock()
                    self._serve_backlog(until)
                events = poll(0, MAX_EVENTS)
                if not events:
                    if self._round_out:
                        self._flush_round()
                    if not backlog or perf() >= until:
                        break
                    continue
                self._now = clock()
                for fd, mask in events:
                    if fd == listener_fd:
                        self._flush_round()  # other tasks may run while it accepts
                        await self._accept_all()
                        continue
                    conn = conns.get(fd)
                    if conn is None:
                        if fd == poke_fd:
                            with contextlib.suppress(BlockingIOError):
                                os.eventfd_read(poke_fd)
                        continue
                    if conn.deferred and not mask & (broken | write_flag):
                        continue  # its buffered frames come first, on its backlog turn
                    if conn.busy:
                        # Ordered mode; epoll reports hang-ups even while it is paused (mask 0).
                        if mask & broken:
                            self._close(conn, "reset")
                        elif mask & write_flag:
                            self._write_unsent(conn)
                        else:
                            self._read_ordered(conn)
                    elif mask & write_flag:
                        self._write_unsent(conn)
                    else:
                        read(conn)
                    # No break here once the budget is spent: a connection left out would be
                    # left out again (epoll reports the same ones first), which measured as a
                    # 3x p99 at depth 16. Past the budget each one takes a short turn instead.
                if self._round_out:
                    self._flush_round()
                if perf() >= until:
                    break

    def _defer(self, conn: _Conn) -> None:
        """``conn`` used its turn with frames left: answer them on a later turn."""
        if conn.deferred:
            return
        conn.deferred = True
        self._backlog.append(conn)
        if self._idle and self._poke_fd >= 0:
            # Deferred from another task (an answer task resuming the connection) while the
            # reactor waits for epoll: wake it.
            os.eventfd_write(self._poke_fd, 1)

    def _serve_backlog(self, until: float) -> None:
        """Give each deferred connection, oldest first, one more turn until ``until``
        (``time.perf_counter``); one deferred again goes to the back."""
        backlog = self._backlog
        conns = self._conns
        perf = time.perf_counter
        for _ in range(len(backlog)):
            conn = backlog.popleft()
            conn.deferred = False
            if conns.get(conn.fd) is not conn or conn.unsent or conn.doomed is not None:
                continue  # closed, or paused: its resume answers what it holds
            self._answer(conn, at_round_end=True)
            if perf() >= until:
                break

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
        self._counters.connections_closed["too_many_connections"] += 1
        if self._tls is not None and self._nursery is not None:
            # Told in TLS, by a short task of its own: it holds no slot of the port.
            self._refuser.refuse(self._nursery, sock, self._tls.server, _TOO_MANY)
            return
        with contextlib.suppress(OSError):
            sock.send(_TOO_MANY)
        sock.close()

    def _read(self, conn: _Conn) -> None:
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
            if not isinstance(answer, bytes):
                if out:
                    self._send(conn, b"".join(out))
                self._start(conn, answer)
                self._answer_ordered(conn)
                return
            out.append(answer)
            pending += len(answer)
            if pending >= self._flush_at:
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

    def _flush_round(self) -> None:
        out = self._round_out
        conns = self._conns
        for conn, data in out:
            if conns.get(conn.fd) is conn:  # not closed (nor its descriptor reused) meanwhile
                self._send(conn, data)
        out.clear()

    def _write_unsent(self, conn: _Conn) -> None:
        """Called by the reactor (``_now`` is this round's time)."""
        if self._send(conn, b""):
            self._resume(conn)

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

    def _full(self, conn: _Conn) -> bool:
        return conn.fanning_out or conn.waiting >= MAX_PENDING or conn.held >= self._flush_at

    def _pause_if_full(self, conn: _Conn) -> bool:
        if conn.busy and self._full(conn):
            self._set_mask(conn, 0)
            return True
        return False

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
        while not conn.unsent and not self._full(conn):
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

    def _start(self, conn: _Conn, pending: Pending) -> None:
        """Queue a waiting answer (entering ordered mode) and start its task, or have its
        answer delivered by callback."""
        later = pending.later
        if later is not None:
            entry = _Waiting(task=False)
            conn.queue.append(entry)
            conn.busy = True
            conn.waiting += 1
            later.then(lambda data, _error: self._arrived(conn, entry, data))
            return
        entry = _Waiting()
        after = None
        key = pending.key
        if key is not None:
            before = conn.unstarted.get(key)
            if before is not None:
                after = before.started
            conn.unstarted[key] = entry
        assert entry.scope is not None and entry.started is not None
        conn.queue.append(entry)
        conn.busy = True
        conn.waiting += 1
        if pending.fans_out:
            conn.fanning_out = True
        assert self._nursery is not None
        self._nursery.start_soon(self._run, conn, entry, after, pending)

    def _arrived(self, conn: _Conn, entry: _Waiting, data: bytes) -> None:
        """A callback-delivered answer is in: store it; its connection is written by the
        drainer if it is the head answer (never from here: this runs inside a peer
        connection's reader, or inside ``_start`` itself)."""
        if self._conns.get(conn.fd) is not conn:
            return  # closed while it waited
        entry.data = data
        conn.waiting -= 1
        conn.held += len(data)
        if conn.queue[0] is entry:
            self._landed_conns[conn] = None
            if not self._landed.is_set():
                self._landed.set()

    async def _write_landed(self) -> None:
        """Write the connections whose head answers arrived by callback, a batch at a time."""
        while True:
            await self._landed.wait()
            self._landed = trio.Event()
            landed, self._landed_conns = self._landed_conns, {}
            self._now = self._clock()
            for conn in landed:
                if self._conns.get(conn.fd) is conn and conn.queue:
                    self._drain(conn)

    async def _run(
        self, conn: _Conn, entry: _Waiting, after: trio.Event | None, pending: Pending
    ) -> None:
        assert entry.scope is not None and entry.started is not None
        with entry.scope:
            if after is not None:
                # Prompt even when cancelled: the op before it only has to reach its first wait.
                with trio.CancelScope(shield=True):
                    await after.wait()
            entry.started.set()
            key = pending.key
            if key is not None and conn.unstarted.get(key) is entry:
                del conn.unstarted[key]
            # Awaited even when the connection closed meanwhile (it is cancelled at its first
            # wait then): an op is never dropped unawaited.
            assert pending.answer is not None
            data = await pending.answer
        if self._conns.get(conn.fd) is not conn or entry.scope.cancelled_caught:
            return  # closed while it waited
        entry.data = data
        conn.waiting -= 1
        conn.held += len(data)
        if pending.fans_out:
            conn.fanning_out = False
        if conn.queue[0] is not entry:
            return  # written with the answers before it
        # Answers of one peer read complete in the same scheduler batch: let them, and write
        # them all with one send (each send wakes the client and costs a syscall).
        await trio.lowlevel.cancel_shielded_checkpoint()
        if self._conns.get(conn.fd) is conn:
            self._now = self._clock()  # the reactor's round time may be old: it may have slept
            self._drain(conn)

    def _drain(self, conn: _Conn) -> None:
        """Write the ready answers at the head of ``conn``'s queue; leave ordered mode when it
        empties; read on if it was paused and its answers went."""
        queue = conn.queue
        out: list[bytes | bytearray] = []
        while queue:
            head = queue[0]
            if type(head) is bytearray:
                out.append(head)
            else:
                assert type(head) is _Waiting
                if head.data is None:
                    break
                out.append(head.data)
            queue.popleft()
        data = b"".join(out)
        conn.held -= len(data)
        if not queue:
            conn.busy = False
        if self._send(conn, data) and (conn.mask != _READ or conn.doomed is not None):
            self._resume(conn)

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

    def _set_mask(self, conn: _Conn, mask: int) -> None:
        if conn.mask != mask and self._epoll is not None and self._conns.get(conn.fd) is conn:
            self._epoll.modify(conn.fd, mask)
            conn.mask = mask

    def _close(self, conn: _Conn, reason: str) -> None:
        if self._conns.get(conn.fd) is not conn:
            return
        del self._conns[conn.fd]
        for entry in conn.queue:
            if type(entry) is _Waiting and entry.scope is not None:
                entry.scope.cancel()
        if self._epoll is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(conn.fd)
        conn.sock.close()
        # A connection that sent a frame over the limit is counted as closed for it, whoever
        # ends it while it winds down.
        self._counters.connections_closed[conn.doomed or reason] += 1
        self._counters.connections_current = len(self._conns)

    async def _reap_idle(self) -> None:
        """Close connections that neither sent nor accepted bytes for ``idle_timeout``."""
        timeout = self._limits.idle_timeout
        period = max(0.05, min(timeout / 4, 5.0))
        while True:
            await trio.sleep(period)
            deadline = self._clock() - timeout
            for conn in [c for c in self._conns.values() if c.last_active < deadline]:
                if not conn.busy:
                    self._close(conn, "idle_timeout")


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
