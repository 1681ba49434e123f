"""The reactor shared by a node's client ports: the msgpack data port and the RESP port.

One task owns a level-triggered ``select.epoll`` whose descriptor trio watches. Each time it is
readable the reactor drains the ready sockets, in rounds: it reads what the kernel has for every
ready connection, answers every complete request in place, and at the end of the round writes
each connection's answers with one ``send``. After ``BUSY_ROUNDS`` rounds, once the wake-up has
held the loop for ``ROUND_BUDGET`` seconds, or when none is ready, it returns to trio, so
gossip, config and expiry tasks run in between: a busy node must never look dead. A connection
that used its turn with requests left is *deferred* to a later turn (the backlog, served oldest
first at the start of each round). A turn looks at the clock every few light requests and right
after each heavy one (``HEAVY_FRAME`` bytes or more), so once the budget is spent it ends within
one request: a wake-up holds the loop for about its budget, plus one short turn per connection
that was ready.

Answers are always written in request order. A request whose op must wait enters the
connection's *ordered* mode: its later requests are still read and answered, but every answer
is queued behind the ones before it (:class:`Waiting` entries) and written when they are; an
answer in :class:`Parts` (a ``RELAY``'s long answer) is written a part at a time, each made
once the kernel took the one before it, and the connection is not read meanwhile. A
waiting answer is either run by a task (a quorum write, a config change, a forward that must
connect or fail over) or delivered by callback: a forward *submitted* to its peer connection
(:attr:`Pending.later`), which costs no task.

The peer pool's forwards ride the same rounds. The reactor holds the pool (:meth:`PeerPool.hold`)
while a round runs, so the forwards its requests submit are written at the end of the round,
each peer's in one write, by the reactor itself; the pool's epoll is then registered in the
reactor's (:meth:`PeerPool.drive`), so the owners' answers are read by the same reactor in a
later round, land in their connections' queues, and those connections are written at the end of
that round. A pump hands out answers within the wake-up's budget too; those it leaves in a
peer connection's reader (:attr:`PeerPool.behind`) are handed out at the start of the next
round, after the backlog, and the reactor does not wait for epoll while there are any. An
answer that lands from anywhere else (another port's reactor, a fail-over task, a time-out) is
written by the drainer task.

A protocol subclasses :class:`Reactor` with its codec: accepting (``_accept_all``), reading and
answering a connection's requests (``_read``, ``_answer``, ``_answer_ordered``), writing
(``_send``, ``_resume``) and counting a close (``_count_close``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import struct
import termios
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

import trio

from meshcache.wire.pending import Parts, Pending

if TYPE_CHECKING:
    from meshcache.node.net.peer_pool import PeerPool
    from meshcache.node.net.tls import TlsSocket

# Connections served per round: with the shortest turn each takes once the budget is spent,
# a round stays within a few milliseconds.
MAX_EVENTS = 128
BUSY_ROUNDS = 16
# Seconds of work after which a reactor wake-up returns to trio (checked between rounds, and by
# each connection's turn): one wake-up stays within a few milliseconds. Under a pipelined
# preload, 1 ms rather than 2 took the loop's own lag p99 from 6.6-8.4 ms to 5.1-5.9 ms, at no
# throughput cost that runs could tell apart (docs/benchmarks.md).
ROUND_BUDGET = 0.001
# Body bytes from which a request counts as heavy: a protocol's turn looks at the clock right
# after answering one, and ends there once the budget is spent. A frame's cost ranges over three
# orders of magnitude (a GET some microseconds, a BULK of 2,000 values 3 ms), and its size tells
# them apart; a turn's light frames, checked every few, stay well under a millisecond.
HEAVY_FRAME = 1024
# Waiting answers one connection may have at once; beyond it the connection stops being read
# until the oldest is written.
MAX_PENDING = 128
READ = select.EPOLLIN | select.EPOLLRDHUP
WRITE = select.EPOLLOUT
BROKEN = select.EPOLLHUP | select.EPOLLERR


class Waiting:
    """One answer of an ordered connection that waits on a node op: run by a task, or (with
    ``task`` False) delivered by a callback, which needs neither a scope nor an event. An
    answer in :class:`Parts` keeps its ``rest`` here: ``data`` is its next part, made once
    the part before it went."""

    __slots__ = ("data", "rest", "scope", "started")

    def __init__(self, task: bool = True) -> None:
        self.data: bytes | None = None
        self.rest: Iterator[bytes] | None = None
        # Cancelled when the connection closes.
        self.scope = trio.CancelScope() if task else None
        # Its op ran to its first wait: the next one may start.
        self.started = trio.Event() if task else None


class Conn:
    """What the reactor keeps of every client connection; a protocol adds its reader."""

    __slots__ = (
        "busy",
        "deferred",
        "doomed",
        "fanning_out",
        "fd",
        "held",
        "last_active",
        "mask",
        "queue",
        "queued",
        "sock",
        "streaming",
        "unsent",
        "unstarted",
        "waiting",
    )

    def __init__(self, sock: socket.socket | TlsSocket, now: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.last_active = now
        self.unsent = b""  # answers the kernel did not take yet
        self.queued = -1  # bytes the kernel held for the client at the reaper's last look
        self.mask = READ
        # Ordered mode: answers not written yet, oldest first — runs of ready answers
        # (bytearray) and answers that wait on a node op. ``busy`` is True iff it is not empty.
        self.queue: deque[bytearray | Waiting] = deque()
        self.busy = False
        self.waiting = 0  # entries of ``queue`` still waiting on their op
        self.held = 0  # bytes of ready answers in ``queue``
        # The newest waiting entry of each key whose op has not reached its first wait yet.
        self.unstarted: dict[tuple[str, bytes], Waiting] = {}
        self.fanning_out = False  # a fan-out op is running: read nothing until it is done
        self.streaming = False  # an answer in parts is being written: read nothing meanwhile
        self.doomed: str | None = None  # the reason it closes with, once its answers are out
        # Complete requests wait in its reader for a later turn (the reactor's backlog): not
        # read from the socket until they are answered.
        self.deferred = False


C = TypeVar("C", bound=Conn)


class Reactor(Generic[C]):
    """Accept, read, answer in order and write, for one listening socket, until cancelled."""

    def __init__(
        self,
        listener: socket.socket,
        *,
        max_buffered_bytes: int,
        idle_timeout: float,
        clock: Callable[[], float],
        peers: PeerPool | None,
    ) -> None:
        self._listener = listener
        self._clock = clock
        self._idle_timeout = idle_timeout
        # The node's peer pool: held during rounds, driven by the reactor that forwards.
        self._peers = peers
        self._conns: dict[int, C] = {}
        self._epoll: select.epoll | None = None
        self._nursery: trio.Nursery | None = None
        self._flush_at = max(64 * 1024, min(max_buffered_bytes, 4 * 1024 * 1024))
        # The last answers of each read of a round, written once every ready connection was
        # read: the clients' wake-ups then come in a burst, and fewer of our sends must wake a
        # sleeping reader. At most one entry per connection, each under ``_flush_at`` bytes.
        self._round_out: list[tuple[C, bytes]] = []
        # The time of the current reactor round: one clock read per round, not two per request.
        self._now = clock()
        # Connections with requests left over from their last turn, oldest first.
        self._backlog: deque[C] = deque()
        # Written to wake the reactor when a connection is deferred while it waits for epoll.
        self._poke_fd = -1
        self._idle = False
        # When the current wake-up's budget ends (time.perf_counter); outside the reactor it is
        # in the past, so a connection resumed by an answer task takes short turns.
        self._until = 0.0
        # A wake-up of the reactor is running: answers that land are written at its rounds' ends.
        self._in_round = False
        # Connections whose head answer arrived by callback: written at the end of the round,
        # or by the drainer task, which ``_landed`` is set to wake, when none runs.
        self._landed_conns: dict[C, None] = {}
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
            if self._peers is not None:
                self._peers.undrive(epoll)
            for conn in list(self._conns.values()):
                self._close(conn, "node_stopping")
            self._listener.close()
            epoll.close()
            os.close(self._poke_fd)
            self._poke_fd = -1

    # --- what a protocol provides --------------------------------------------------------------

    async def _accept_all(self) -> None:
        raise NotImplementedError

    def _read(self, conn: C) -> None:
        """Read ``conn`` and answer what it sent (ordered mode included)."""
        raise NotImplementedError

    def _answer(self, conn: C, *, at_round_end: bool = False) -> None:
        """Answer the requests buffered for ``conn`` until it must wait or pause."""
        raise NotImplementedError

    def _send(self, conn: C, data: bytes) -> bool:
        """Write ``data`` after what waits; True if all of it went."""
        raise NotImplementedError

    def _resume(self, conn: C) -> None:
        """``conn``'s answers are all written: read it again (or wind it down)."""
        raise NotImplementedError

    def _count_close(self, conn: C, reason: str) -> None:
        raise NotImplementedError

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
        peers = self._peers
        perf = time.perf_counter
        write_flag, broken = WRITE, BROKEN
        while True:
            if backlog or (peers is not None and peers.behind):
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
            self._in_round = True
            if peers is not None:
                peers.hold()
            try:
                for _ in range(BUSY_ROUNDS):
                    if backlog:
                        self._now = clock()
                        self._serve_backlog(until)
                    if peers is not None and peers.behind:
                        peers.pump(until)  # answers a pump left in the peers' readers
                    events = poll(0, MAX_EVENTS)
                    if not events:
                        self._round_end()
                        if not (backlog or (peers is not None and peers.behind)):
                            break
                        if perf() >= until:
                            break
                        continue
                    self._now = clock()
                    for fd, mask in events:
                        if fd == listener_fd:
                            self._round_end()  # other tasks may run while it accepts
                            await self._accept_all()
                            continue
                        conn = conns.get(fd)
                        if conn is None:
                            if fd == poke_fd:
                                with contextlib.suppress(BlockingIOError):
                                    os.eventfd_read(poke_fd)
                            elif peers is not None and fd == peers.fileno():
                                peers.pump(until)  # the owners' answers land in their queues
                            continue
                        if conn.deferred and not mask & (broken | write_flag):
                            continue  # its buffered requests come first, on its backlog turn
                        # Ordered mode; epoll reports hang-ups even while it is paused (mask 0).
                        if mask & broken and conn.busy:
                            self._close(conn, "reset")
                        elif mask & write_flag:
                            self._write_unsent(conn)
                        else:
                            read(conn)
                        # No break here once the budget is spent: a connection left out would
                        # be left out again (epoll reports the same ones first), which measured
                        # as a 3x p99 at depth 16. Past the budget each one takes a short turn.
                    self._round_end()
                    if perf() >= until:
                        break
            finally:
                self._in_round = False
                if peers is not None:
                    peers.release()
                if self._landed_conns and not self._landed.is_set():
                    # Answers that landed during the last round's end (an answer in parts
                    # started by a read its writing resumed): the drainer writes them.
                    self._landed.set()

    def _round_end(self) -> None:
        """Write what the round produced: the forwards it submitted (each peer's in one write,
        the owners' answers then read by this reactor), the connections whose answers landed,
        and the answers of every read."""
        peers = self._peers
        if peers is not None:
            peers.flush(self._epoll)
        # A connection's answers in ``_round_out`` come before those in its queue.
        if self._round_out:
            self._flush_round()
        if self._landed_conns:
            landed, self._landed_conns = self._landed_conns, {}
            conns = self._conns
            for conn in landed:
                if conns.get(conn.fd) is conn and conn.queue:
                    self._drain(conn)

    def _defer(self, conn: C) -> None:
        """``conn`` used its turn with requests left: answer them on a later turn."""
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

    def _flush_round(self) -> None:
        out = self._round_out
        conns = self._conns
        for conn, data in out:
            if conns.get(conn.fd) is conn:  # not closed (nor its descriptor reused) meanwhile
                self._send(conn, data)
        out.clear()

    def _write_unsent(self, conn: C) -> None:
        """Called by the reactor (``_now`` is this round's time)."""
        if self._send(conn, b""):
            queue = conn.queue
            if queue and type(queue[0]) is Waiting and queue[0].rest is not None:
                self._drain(conn)  # an answer in parts goes on
            else:
                self._resume(conn)

    # --- ordered mode --------------------------------------------------------------------------

    def _full(self, conn: C) -> bool:
        return (
            conn.fanning_out
            or conn.streaming
            or conn.waiting >= MAX_PENDING
            or conn.held >= self._flush_at
        )

    def _pause_if_full(self, conn: C) -> bool:
        if conn.busy and self._full(conn):
            self._set_mask(conn, 0)
            return True
        return False

    def _start(self, conn: C, pending: Pending | Parts) -> None:
        """Queue a waiting answer (entering ordered mode) and start its task, or have its
        answer delivered by callback (a forward already queued on its peer connection, in
        order); or queue an answer in parts, its first part ready."""
        if type(pending) is Parts:
            entry = Waiting(task=False)
            entry.rest = pending.rest
            conn.queue.append(entry)
            conn.busy = True
            conn.waiting += 1
            # Nothing more is read from the connection until its last part is made: what the
            # answer holds until then is not counted in ``held``.
            conn.streaming = True
            self._arrived(conn, entry, pending.first)
            return
        assert type(pending) is Pending
        later = pending.later
        if later is not None:
            entry = Waiting(task=False)
            conn.queue.append(entry)
            conn.busy = True
            conn.waiting += 1
            finish = pending.finish
            if finish is None:
                later.then(lambda data, _error: self._arrived(conn, entry, data))
            else:
                later.then(lambda value, error: self._arrived(conn, entry, finish(value, error)))
            return
        entry = Waiting()
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

    def _arrived(self, conn: C, entry: Waiting, data: bytes) -> None:
        """A callback-delivered answer is in: store it. If it is its connection's head
        answer, the connection is written at the end of this reactor's round, or by the
        drainer when no round runs (never from here: this runs inside a peer connection's
        read, or inside ``_start`` itself)."""
        if self._conns.get(conn.fd) is not conn:
            return  # closed while it waited
        entry.data = data
        conn.waiting -= 1
        conn.held += len(data)
        if conn.queue[0] is entry:
            self._landed_conns[conn] = None
            if not self._in_round and not self._landed.is_set():
                self._landed.set()

    async def _write_landed(self) -> None:
        """Write the connections whose head answers landed outside a round, a batch at a
        time."""
        while True:
            await self._landed.wait()
            self._landed = trio.Event()
            landed, self._landed_conns = self._landed_conns, {}
            self._now = self._clock()
            for conn in landed:
                if self._conns.get(conn.fd) is conn and conn.queue:
                    self._drain(conn)

    async def _run(
        self, conn: C, entry: Waiting, after: trio.Event | None, pending: Pending
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
            answer = await pending.answer
        if self._conns.get(conn.fd) is not conn or entry.scope.cancelled_caught:
            return  # closed while it waited
        if isinstance(answer, Parts):
            entry.rest = answer.rest
            data = answer.first
            conn.streaming = True  # until its last part is made (see ``_start``)
        else:
            data = answer
        if pending.fans_out:
            conn.fanning_out = False
        entry.data = data
        conn.waiting -= 1
        conn.held += len(data)
        if conn.queue[0] is not entry:
            return  # written with the answers before it
        # Answers of one peer read complete in the same scheduler batch: let them, and write
        # them all with one send (each send wakes the client and costs a syscall).
        await trio.lowlevel.cancel_shielded_checkpoint()
        if self._conns.get(conn.fd) is conn:
            self._now = self._clock()  # the reactor's round time may be old: it may have slept
            self._drain(conn)

    def _drain(self, conn: C) -> None:
        """Write the ready answers at the head of ``conn``'s queue; leave ordered mode when it
        empties; read on if it was paused (or wind down if doomed) once its answers went.

        An answer in parts is written a part at a time: the next part is made once the kernel
        took the one before it (here, or in :meth:`_write_unsent` once there is room)."""
        queue = conn.queue
        while True:
            out: list[bytes | bytearray] = []
            parted = None
            while queue:
                head = queue[0]
                if type(head) is bytearray:
                    out.append(head)
                else:
                    assert type(head) is Waiting
                    if head.rest is not None:  # an answer in parts: its part, if one is made
                        parted = head
                        if head.data is not None:
                            out.append(head.data)
                            head.data = None
                        break
                    if head.data is None:
                        break
                    out.append(head.data)
                queue.popleft()
            data = b"".join(out)
            conn.held -= len(data)
            if not queue:
                conn.busy = False
            if not self._send(conn, data):
                return  # closed, or paused until the kernel has room
            if parted is None:
                break
            self._next_part(conn, parted)
        if conn.mask != READ or conn.doomed is not None:
            self._resume(conn)

    def _next_part(self, conn: C, entry: Waiting) -> None:
        """The next part of the answer in parts at the head of ``conn``'s queue, made now; or,
        when it has no more, the answer leaves the queue."""
        assert entry.rest is not None
        part = next(entry.rest, None)
        if part is None:
            entry.rest = None
            conn.streaming = False
            conn.queue.popleft()
            if not conn.queue:
                conn.busy = False
            return
        entry.data = part
        conn.held += len(part)

    # --- connections ---------------------------------------------------------------------------

    def _set_mask(self, conn: C, mask: int) -> None:
        if conn.mask != mask and self._epoll is not None and self._conns.get(conn.fd) is conn:
            self._epoll.modify(conn.fd, mask)
            conn.mask = mask

    def _close(self, conn: C, reason: str) -> None:
        if self._conns.get(conn.fd) is not conn:
            return
        del self._conns[conn.fd]
        for entry in conn.queue:
            if type(entry) is Waiting and entry.scope is not None:
                entry.scope.cancel()
        if self._epoll is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(conn.fd)
        conn.sock.close()
        self._count_close(conn, reason)

    async def _reap_idle(self) -> None:
        """Close connections that neither sent nor accepted bytes for ``idle_timeout``: a
        client that sent nothing (unless its requests are still running) or one that read
        nothing of its answers. A client that reads, however slowly, is active: the bytes the
        kernel holds for it went down (or changed) since the last look."""
        timeout = self._idle_timeout
        period = max(0.05, min(timeout / 4, 5.0))
        while True:
            await trio.sleep(period)
            now = self._clock()
            deadline = now - timeout
            for conn in list(self._conns.values()):
                if conn.unsent:
                    queued = _queued(conn.fd)
                    if queued != conn.queued:
                        conn.queued = queued
                        conn.last_active = now
                if conn.last_active < deadline and (not conn.busy or conn.unsent):
                    self._close(conn, "idle_timeout")


def _queued(fd: int) -> int:
    """Bytes written to socket ``fd`` that its peer has not taken yet (-1: unknown)."""
    try:
        queued: int = struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return -1
    return queued


__all__ = [
    "BROKEN",
    "HEAVY_FRAME",
    "MAX_PENDING",
    "READ",
    "ROUND_BUDGET",
    "WRITE",
    "Conn",
    "Reactor",
    "Waiting",
]
