"""Pooled, pipelined connections from this node to other nodes' data ports.

The data plane talks to peers all the time (forwarded requests, replica writes, hand-off,
anti-entropy), so it keeps one long-lived connection per peer and pipelines on it: any number of
requests may be in flight on the same connection, each matched to its response by its request
id. A request is either awaited (:meth:`PeerPool.request`, from a task) or *submitted* with a
callback (:meth:`PeerPool.submit`, from anywhere, no task: how a non-owner forwards a client's
request).

Requests are not written one by one: each is encoded into the connection's outbox, and every
outbox is written with one non-blocking ``send`` when the pool is next flushed. A client port's
reactor holds the pool while its round runs (:meth:`PeerPool.hold`) and flushes it at the end
of the round, so the forwards for one peer that its requests submitted leave in one write, in
the order they were submitted, with no task woken; requests from tasks are written by the
pool's flusher task, once per scheduler batch. The connections' sockets sit on the pool's own
level-triggered epoll. The reactor that flushed forwards registers that epoll in its own
(:meth:`PeerPool.drive`) and reads the peers' answers in its rounds (:meth:`PeerPool.pump`),
each matched by request id to its waiter; when no reactor drives, the pool's pump task does.
A timer task per connection fails each request that has no answer by its deadline. With TLS
the connection is mutual TLS over an ``SSLObject`` and memory BIOs, so the same non-blocking
reads and writes serve it.

A caller may name a **lane**: another kept connection to the same peer, for requests whose
answers must not wait behind the pooled connection's (a peer answers a connection's requests in
order, and a forwarded write's answer may take as long as the writes it waits on). The hot-key
copy updates use one (``meshcache/node/data/hot/keys.py``): each costs a frame on a connection
kept open, not a connect and a close. A lane is opened on first use, replaced when it breaks,
and works as the pooled connection does (``submit`` uses the pooled one only); its connects and
requests are also counted apart (``lane_connects``, ``lane_requests``).

A connection that breaks fails every request in flight on it with
:class:`MeshcacheConnectionError` (the caller decides whether to retry: a replica write becomes a
hint) and is replaced by a new one on the next call. Connecting is bounded by
``connect_timeout``; each request by its own ``timeout``. A request that times out leaves the
connection usable (its late answer is dropped when it arrives) — unless it was submitted with
``abort_on_timeout`` (a forwarded client request): then the connection is reset (``SO_LINGER``
0, so what the kernel has not sent yet is dropped rather than delivered) and every other request
on it fails, so that the peer never applies later a write its client was told failed.

What happens to the requests feeds each peer's circuit breaker (:attr:`PeerPool.breakers`,
:mod:`meshcache.node.net.breakers`): a connection that cannot be made and a request that times
out count against the peer, anything read from it closes its breaker.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import select
import socket
import ssl
import struct
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import structlog
import trio

from meshcache.errors import MeshcacheConnectionError, MeshcacheTimeout, RemoteProtocolError
from meshcache.gossip.keyring import Keyring
from meshcache.node.net.breakers import LATE_TIMEOUT, PeerBreakers
from meshcache.node.net.oneshot import call_once
from meshcache.node.net.relay import Failed, RelayBatch
from meshcache.security.peer import auth_args
from meshcache.security.tls import NodeTls
from meshcache.wire.address import Address
from meshcache.wire.frame import (
    DEFAULT_MAX_FRAME,
    HEADER,
    STATUS_OK,
    FrameReader,
    Response,
    decode_response,
)
from meshcache.wire.pending import Later

log = structlog.get_logger("meshcache.peers")

# Under glibc malloc's mmap threshold, as the ports' read buffers.
RECEIVE_SIZE = 64 * 1024
# Bytes of requests one connection's outbox may hold while its writer waits on the kernel;
# beyond it a submit is refused as if the peer could not be reached (nothing was sent).
MAX_OUTBOX = 16 * 1024 * 1024
# Bytes of requests one write takes from an outbox: joining, encrypting and sending a piece is
# a fraction of a millisecond, where a whole outbox of hand-off batches held the loop for tens.
# The rest is written when epoll next reports room, in the driver's next round.
WRITE_PIECE = 256 * 1024
# Answers a connection hands to their waiters between looks at the clock: once the pump's
# budget is spent (a reactor's wake-up), the rest wait in the connection's reader for the next
# pump. A read of 64 KiB holds thousands of small answers, ~4 us each with their callbacks.
ANSWERS_CHECK = 64
# Seconds of answers the pump task hands out per wake-up when no reactor drives the pool.
PUMP_BUDGET = 0.002
_unpackb = msgpack.unpackb
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_pack_header = HEADER.pack
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset
_READ = select.EPOLLIN | select.EPOLLRDHUP
_WRITE = select.EPOLLOUT

Answered = Callable[["Response | BaseException"], object]
"""What :meth:`PeerPool.submit` calls with a request's response or the error that ended it.
Given a response, it returns True when more response frames follow under the same request id
(a ``RELAY``'s answer in several frames, :class:`~meshcache.node.net.relay.RelayAnswer`): the
request keeps its waiter and its deadline for them."""


class PeerUnreachable(MeshcacheConnectionError):
    """No connection could be made: the request was certainly not delivered."""


class _Waiter:
    """A request that awaits its answer in a task (:meth:`PeerPool.request`, ``AUTH``);
    ``failed``, if given, is called as the request fails (requests that fail together, in the
    order they were sent), before the task that waits is woken."""

    __slots__ = ("event", "failed", "response")

    def __init__(self, failed: Callable[[], None] | None = None) -> None:
        self.event = trio.Event()
        self.failed = failed
        self.response: Response | BaseException | None = None

    def __call__(self, response: Response | BaseException) -> None:
        self.response = response
        if self.failed is not None and isinstance(response, BaseException):
            self.failed()
        self.event.set()


class _Request:
    __slots__ = ("abort", "answered", "deadline", "sent")

    def __init__(self, answered: Answered, sent: float, deadline: float, abort: bool) -> None:
        self.answered = answered
        self.sent = sent
        self.deadline = deadline
        self.abort = abort


def _deliver(answered: Answered, response: Response | BaseException) -> None:
    try:
        answered(response)
    except Exception:  # a waiter's bug must not take the connection down with it
        log.exception("peer_answer_callback_failed")


class _PeerConnection:
    """One pipelined connection: a non-blocking socket on the pool's epoll (reads and writes
    are done by whoever drives the pool), and a timer task in the pool's nursery."""

    def __init__(
        self,
        pool: PeerPool,
        address: Address,
        sock: socket.socket,
        tls: _TlsFilter | None,
        max_frame: int,
        lane: str = "",
    ) -> None:
        self.pool = pool
        self.address = address
        self.lane = lane
        self.sock = sock
        self.fd = sock.fileno()
        self.tls = tls
        self.reader = FrameReader(max_frame)
        self.waiters: dict[int, _Request] = {}
        self.ids = itertools.count(1)
        self.broken: BaseException | None = None
        self.scope = trio.CancelScope()
        # Encoded requests not written yet, oldest first; the head may be the rest of a request
        # larger than a write piece.
        self.outbox: list[bytes | memoryview] = []
        # Bytes of requests not taken by the kernel yet: queued in ``outbox`` or in ``unsent``.
        self.outbox_bytes = 0
        self.unsent = b""  # what the kernel did not take of the last write (encrypted, if TLS)
        self.mask = _READ
        # (deadline, request id), earliest first; entries of answered requests linger until
        # they come up or the heap is rebuilt.
        self.deadlines: list[tuple[float, int]] = []
        self.next_deadline = math.inf
        self.timer: trio.CancelScope | None = None
        self.stats: Counter[str] = pool.stats
        # Reads relayed since the last write, sent as one RELAY frame when the outbox is
        # written or before any other request (which must not overtake them).
        self.batch: RelayBatch | None = None

    def send(
        self,
        op: str,
        namespace: str,
        args: list[Any],
        timeout: float,
        answered: Answered,
        abort: bool,
        rid: int | None = None,
    ) -> int:
        """Queue one request; its answer (or error) goes to ``answered``. It is written with
        the rest of the outbox when the pool next flushes."""
        if self.batch is not None:
            self._close_batch()
        if rid is None:
            rid = next(self.ids)
        body = _pack([rid, op, namespace, args])  # encode_request, inline
        frame = _pack_header(len(body)) + body
        self._wait(rid, answered, timeout, abort)
        if not self.outbox:
            self.pool._dirty(self)
        self.outbox.append(frame)
        self.outbox_bytes += len(frame)
        return rid

    def _wait(self, rid: int, answered: Answered, timeout: float, abort: bool) -> None:
        """Register request ``rid``'s waiter and its deadline."""
        pool = self.pool
        # Inside a held round, the round's time (a deadline a few ms early, for no clock call
        # per request).
        sent = pool._now if pool._held else trio.current_time()
        deadline = sent + timeout
        self.waiters[rid] = _Request(answered, sent, deadline, abort)
        deadlines = self.deadlines
        heapq.heappush(deadlines, (deadline, rid))
        if len(deadlines) > 2 * len(self.waiters) + 64:
            self.deadlines = deadlines = [(r.deadline, i) for i, r in self.waiters.items()]
            heapq.heapify(deadlines)
        if deadline < self.next_deadline:
            self.next_deadline = deadline
            if self.timer is not None:
                self.timer.deadline = deadline

    def relay(self, body: bytes, later: Later, timeout: float, failed: Failed) -> None:
        """Queue a client's read (its frame body) for this round's ``RELAY`` frame
        (:mod:`meshcache.node.net.relay`): ``later`` settles with the owner's response frame,
        or the body goes to ``failed`` if the frame fails."""
        batch = self.batch
        if batch is None or batch.full:
            if batch is not None:
                self._close_batch()
            elif not self.outbox:
                self.pool._dirty(self)
            batch = self.batch = RelayBatch(failed, timeout)
        batch.add(body, later)
        self.outbox_bytes += len(body)

    def _close_batch(self) -> None:
        """Encode the open batch as one ``RELAY`` request at the tail of the outbox."""
        batch = self.batch
        assert batch is not None
        self.batch = None
        rid = next(self.ids)
        body = _pack([rid, "RELAY", "", [batch.bodies]])
        frame = _pack_header(len(body)) + body
        self._wait(rid, batch.answered, batch.timeout, True)
        self.outbox.append(frame)
        self.outbox_bytes += len(frame) - batch.size

    async def run(self) -> None:
        """The connection's timer, until the connection ends."""
        try:
            with self.scope:
                while True:
                    with trio.CancelScope(deadline=self.next_deadline) as scope:
                        self.timer = scope
                        await trio.sleep_forever()
                    self.timer = None
                    self._expire(trio.current_time())
        finally:
            self.fail(MeshcacheConnectionError(f"connection to {self._name()} closed"))

    def write(self) -> None:
        """Write, without blocking, what the kernel refused before, then the oldest requests of
        the outbox, at most ``WRITE_PIECE`` bytes of them. While requests are left the
        connection asks epoll for room, so the next piece goes in the driver's next round
        (other tasks run in between); what the kernel does not take waits for room too."""
        if self.batch is not None:
            self._close_batch()
        if self.unsent and not self._send(self.unsent, len(self.unsent)):
            return  # the kernel is full (or the connection failed)
        outbox = self.outbox
        if outbox:
            if self.outbox_bytes <= WRITE_PIECE:  # all of it: the usual case
                data = b"".join(outbox) if len(outbox) > 1 else bytes(outbox[0])
                outbox.clear()
            else:
                data = self._piece()
            self.outbox_bytes -= len(data)
            if self.tls is not None:
                try:
                    data = self.tls.encrypt(data)
                except OSError as exc:
                    self.fail(MeshcacheConnectionError(f"sending to {self._name()}: {exc}"))
                    return
            self.stats["writes"] += 1
            if not self._send(data, 0):
                return
        mask = _READ | _WRITE if outbox else _READ
        if self.mask != mask:
            self._set_mask(mask)

    def _piece(self) -> bytes:
        """Take ``WRITE_PIECE`` bytes of requests off the head of the outbox: whole requests,
        or a slice of a larger one (its rest stays at the head)."""
        outbox = self.outbox
        taken = count = 0
        for frame in outbox:
            if taken + len(frame) > WRITE_PIECE:
                break
            taken += len(frame)
            count += 1
        if not count:
            head = memoryview(outbox[0])
            outbox[0] = head[WRITE_PIECE:]
            return bytes(head[:WRITE_PIECE])
        data = b"".join(outbox[:count])
        del outbox[:count]
        return data

    def _send(self, data: bytes, counted: int) -> bool:
        """One ``send`` of ``data`` (``counted`` of its bytes are in ``outbox_bytes``); what
        the kernel refuses becomes ``unsent``, and epoll is asked for room. True if all went."""
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.fail(MeshcacheConnectionError(f"sending to {self._name()}: {exc}"))
            return False
        rest = len(data) - sent
        self.outbox_bytes += rest - counted
        if not rest:
            self.unsent = b""
            return True
        self.unsent = data[sent:]
        if self.mask != _READ | _WRITE:
            self._set_mask(_READ | _WRITE)
        return False

    def read(self, buf: bytearray, view: memoryview, until: float = math.inf) -> None:
        """Read what the kernel has and hand its answers to their waiters until ``until``
        (``time.perf_counter``); the rest wait in the reader (:meth:`catch_up`)."""
        try:
            n = self.sock.recv_into(buf)
        except BlockingIOError:
            return
        except OSError as exc:
            self.fail(MeshcacheConnectionError(f"connection to {self._name()} broke: {exc}"))
            return
        if not n:
            self.fail(MeshcacheConnectionError(f"{self._name()} closed the connection"))
            return
        self.pool.breakers.answered(self.address, trio.current_time())
        reader = self.reader
        tls = self.tls
        try:
            if tls is None:
                reader.borrow(view[:n])
            else:
                plain = tls.decrypt(view[:n])
                if tls.out_pending():  # e.g. a KeyUpdate answer
                    extra = tls.take_out()
                    self.unsent += extra
                    self.outbox_bytes += len(extra)
                    self.write()
                reader.feed(plain)
            self._hand_out(until)
        except (MeshcacheConnectionError, RemoteProtocolError) as exc:
            self.fail(exc)
        except OSError as exc:
            self.fail(MeshcacheConnectionError(f"connection to {self._name()} broke: {exc}"))
        finally:
            reader.release()
        if tls is not None and tls.eof and self.broken is None and self not in self.pool._behind:
            self.fail(MeshcacheConnectionError(f"{self._name()} closed the connection"))

    def catch_up(self, until: float) -> None:
        """Hand out the answers a read left in the reader, until ``until``."""
        try:
            self._hand_out(until)
        except RemoteProtocolError as exc:
            self.fail(exc)
        tls = self.tls
        if tls is not None and tls.eof and self.broken is None and self not in self.pool._behind:
            self.fail(MeshcacheConnectionError(f"{self._name()} closed the connection"))

    def _hand_out(self, until: float) -> None:
        reader = self.reader
        waiters = self.waiters
        left = ANSWERS_CHECK
        while self.broken is None and (body := reader.next_body()) is not None:
            try:
                obj = _unpackb(body, raw=False, strict_map_key=False)
            except Exception:
                obj = None
            if (
                type(obj) is list
                and len(obj) == 4
                and obj[1] == STATUS_OK
                and type(obj[0]) is int
                and type(obj[3]) is int
            ):
                response = Response(obj[0], True, obj[2], obj[3])  # the usual answer
            else:
                response = decode_response(body)  # checked in full; raises if malformed
            rid = response.id
            request = waiters.get(rid)
            if request is not None:  # None: it timed out and its caller left
                try:  # _deliver, inline
                    more = request.answered(response) is True  # more frames of it follow
                except Exception:  # a waiter's bug must not take the connection down with it
                    more = False
                    log.exception("peer_answer_callback_failed")
                # Kept in its place until its answer is whole: a break fails the waiters in
                # the order their requests were sent.
                if not more:
                    waiters.pop(rid, None)
            left -= 1
            if not left:
                if time.perf_counter() >= until:
                    if reader.buffered and self.broken is None:
                        self.pool._behind[self] = None
                    return
                left = ANSWERS_CHECK

    def _expire(self, now: float) -> None:
        """Fail the requests whose deadline passed; reset the connection if one asks for it."""
        deadlines = self.deadlines
        waiters = self.waiters
        reset = False
        while deadlines and deadlines[0][0] <= now:
            _, rid = heapq.heappop(deadlines)
            request = waiters.pop(rid, None)
            if request is None:
                continue  # answered already
            self.stats["timeouts"] += 1
            if now - request.deadline < LATE_TIMEOUT:
                self.pool.breakers.failed(self.address, now, request.sent)
            # else this node's loop was held past the deadline (its answer may wait unread in
            # the kernel): not counted against the peer.
            reset = reset or request.abort
            _deliver(request.answered, MeshcacheTimeout(f"{self._name()}: no answer in time"))
        self.next_deadline = deadlines[0][0] if deadlines else math.inf
        if reset:
            self.reset()

    def reset(self) -> None:
        """Close with a reset: requests the kernel still holds are never delivered."""
        self.stats["reset_after_timeout"] += 1
        if self.broken is None:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        self.fail(
            MeshcacheConnectionError(f"connection to {self._name()} reset: a request timed out")
        )

    def fail(self, exc: BaseException) -> None:
        """Mark the connection broken, close it, and fail exactly the requests in flight on
        it."""
        if self.broken is None:
            self.broken = exc
            self.pool._forget(self)
            self.sock.close()
            self.scope.cancel()
        self.outbox.clear()
        self.outbox_bytes = 0
        self.unsent = b""
        batch, self.batch = self.batch, None
        waiters, self.waiters = self.waiters, {}
        self.deadlines = []
        for request in waiters.values():
            _deliver(request.answered, exc)
        if batch is not None:
            _deliver(batch.answered, exc)

    def _set_mask(self, mask: int) -> None:
        epoll = self.pool._epoll
        if epoll is not None and self.broken is None:
            with contextlib.suppress(OSError):
                epoll.modify(self.fd, mask)
        self.mask = mask

    def _name(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"


class _TlsFilter:
    """The client side of a peer connection's TLS session (an ``SSLObject`` between two
    ``MemoryBIO``\\ s): the connection does its own non-blocking socket I/O and passes the
    bytes through here."""

    __slots__ = ("_in", "_obj", "_out", "eof")

    def __init__(self, obj: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO):
        self._obj = obj
        self._in = incoming
        self._out = outgoing
        self.eof = False  # the peer's close_notify came

    def encrypt(self, data: bytes) -> bytes:
        try:
            self._obj.write(data)
        except ssl.SSLError as exc:
            raise OSError(f"TLS: {exc.reason or exc}") from None
        return self._out.read()

    def decrypt(self, raw: memoryview) -> bytes:
        self._in.write(raw)
        chunks: list[bytes] = []
        obj = self._obj
        try:
            while True:
                chunk = obj.read(RECEIVE_SIZE)
                if not chunk:
                    self.eof = True
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self.eof = True
        except ssl.SSLError as exc:
            raise OSError(f"bad TLS record: {exc.reason or exc}") from None
        return b"".join(chunks)

    def out_pending(self) -> int:
        return self._out.pending

    def take_out(self) -> bytes:
        return self._out.read()


async def _tls_connect(sock: socket.socket, context: ssl.SSLContext, host: str) -> _TlsFilter:
    """Finish a client TLS handshake on the non-blocking ``sock``; a refusal raises
    ``OSError`` naming why (the peer's certificate is not of the cluster's CA, or the peer
    refused ours)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_side=False, server_hostname=host)
    while True:
        try:
            obj.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        except ssl.SSLError as exc:
            detail = getattr(exc, "verify_message", None) or exc.reason or exc
            raise OSError(f"TLS handshake failed: {detail}") from None
        data = outgoing.read()
        while data:
            try:
                data = data[sock.send(data) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
        if done:
            return _TlsFilter(obj, incoming, outgoing)
        await trio.lowlevel.wait_readable(sock)
        try:
            chunk = sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            continue
        if not chunk:
            raise OSError("TLS handshake failed: the peer closed the connection")
        incoming.write(chunk)


class PeerPool:
    """Connections to peers, opened on first use and reused. Run :meth:`run` in a nursery.

    Args:
        max_frame: the largest response frame accepted.
        connect_timeout: seconds to open a connection.
        keyring: the cluster keyring; with a key, every new connection starts with an ``AUTH``
            as the cluster, pipelined before its first request (the peer answers it first).
        tls: the node's TLS; with a CA, connections are mutual TLS: they present the node's
            certificate and accept only a peer whose certificate the cluster's CA signed.
    """

    def __init__(
        self,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        connect_timeout: float = 1.0,
        keyring: Keyring | None = None,
        tls: NodeTls | None = None,
    ) -> None:
        self.max_frame = max_frame
        self.connect_timeout = connect_timeout
        self.keyring = keyring
        self.tls = tls
        self.stats: Counter[str] = Counter()
        #: Each peer's circuit breaker, fed by what happens to the requests sent to it.
        self.breakers = PeerBreakers()
        # Keyed by (peer, lane): the pooled connection is lane "".
        self._conns: dict[tuple[Address, str], _PeerConnection] = {}
        self._connecting: dict[tuple[Address, str], trio.Lock] = {}
        self._nursery: trio.Nursery | None = None
        # The connections' sockets, level-triggered; None until :meth:`run`.
        self._epoll: select.epoll | None = None
        self._by_fd: dict[int, _PeerConnection] = {}
        # Connections with requests to write, written by :meth:`flush`: at the end of the
        # holding reactor's round, else by the flusher task, which ``_wake`` is set to wake.
        self._dirty_conns: dict[_PeerConnection, None] = {}
        # Connections whose reader holds answers a pump left for later (its budget was spent).
        self._behind: dict[_PeerConnection, None] = {}
        self._held = 0
        # trio's time when the newest hold began: the time of requests queued while held.
        self._now = 0.0
        self._wake = trio.Event()
        # The reactor epoll the pool's epoll is registered in, if one drives it; the pump task
        # waits on the pool's epoll only while none does.
        self._driver: select.epoll | None = None
        self._driven = trio.Event()
        self._pump_scope: trio.CancelScope | None = None
        self._recv_buf = bytearray(RECEIVE_SIZE)
        self._recv_view = memoryview(self._recv_buf)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the connections until cancelled; every connection is closed on the way out."""
        self._epoll = select.epoll()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._flusher)
                nursery.start_soon(self._pumper)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for conn in list(self._conns.values()):
                conn.fail(MeshcacheConnectionError("the node is stopping"))
            self._conns.clear()
            self.undrive(self._driver)
            self._epoll.close()
            self._epoll = None

    # --- driving: who writes the outboxes and reads the answers ----------------------------

    def fileno(self) -> int:
        """The pool's epoll (readable when a peer connection has something to read or room
        to write what waits), -1 when the pool is not running."""
        return self._epoll.fileno() if self._epoll is not None else -1

    @property
    def driven(self) -> bool:
        """Whether a reactor reads the connections (else the pump task does)."""
        return self._driver is not None

    def hold(self) -> None:
        """A reactor round starts: requests queued until :meth:`release` are written then,
        all of a peer's in one write, rather than by the flusher task."""
        self._held += 1
        self._now = trio.current_time()

    def release(self) -> None:
        """The round ends: write what it queued."""
        self._held -= 1
        if self._dirty_conns:
            self.flush()

    def drive(self, epoll: select.epoll) -> None:
        """Register the pool's epoll in a reactor's ``epoll``: that reactor calls :meth:`pump`
        when it reports the pool's descriptor, and the pump task stops waiting (one wake-up
        per batch of answers, in the reactor that forwards). One reactor drives at a time."""
        fd = self.fileno()
        if fd < 0 or self._driver is epoll:
            return
        self.undrive(self._driver)
        try:
            epoll.register(fd, select.EPOLLIN)
        except (OSError, ValueError):
            return
        self._driver = epoll
        if self._pump_scope is not None:
            self._pump_scope.cancel()

    def undrive(self, epoll: select.epoll | None) -> None:
        """``epoll``'s reactor stops: the pump task waits on the pool's epoll again."""
        if epoll is None or self._driver is not epoll:
            return
        self._driver = None
        with contextlib.suppress(OSError, ValueError):
            epoll.unregister(self.fileno())
        self._driven.set()

    @property
    def behind(self) -> bool:
        """A pump left answers in a connection's reader: pump again soon, whatever epoll says."""
        return bool(self._behind)

    def pump(self, until: float = math.inf) -> None:
        """Hand out the answers earlier pumps left, read every connection that has answers
        and write what waited for room: called by the driving reactor (or another), or by the
        pump task. Once ``until`` (``time.perf_counter``) is past, each connection hands out
        a few answers and keeps the rest for the next pump (:attr:`behind`)."""
        epoll = self._epoll
        if epoll is None:
            return
        behind = self._behind
        if behind:
            self._behind = {}
            for late in behind:
                if late.broken is None:
                    late.catch_up(until)
        by_fd = self._by_fd
        buf, view = self._recv_buf, self._recv_view
        for fd, mask in epoll.poll(0):
            conn = by_fd.get(fd)
            if conn is None:
                continue
            if mask & _WRITE:
                conn.write()
            # One still behind reads nothing more until it caught up (its bytes wait in the
            # kernel, and epoll reports them again).
            if mask & ~_WRITE and conn.broken is None and conn not in self._behind:
                conn.read(buf, view, until)

    def flush(self, driver: select.epoll | None = None) -> None:
        """Write every connection's queued requests, each connection's in one write. A
        reactor that queued them passes its epoll (``driver``): the answers are then read by
        that reactor (:meth:`drive`)."""
        if not self._dirty_conns:
            return
        if driver is not None and driver is not self._driver:
            self.drive(driver)
        dirty, self._dirty_conns = self._dirty_conns, {}
        for conn in dirty:
            # One the kernel is full for is written when epoll reports room for it.
            if conn.broken is None and not conn.unsent:
                conn.write()

    def _dirty(self, conn: _PeerConnection) -> None:
        self._dirty_conns[conn] = None
        if not self._held and not self._wake.is_set():
            self._wake.set()

    async def _flusher(self) -> None:
        """Writes what tasks queued outside a reactor round, once per scheduler batch."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if not self._held:
                self.flush()

    async def _pumper(self) -> None:
        """Reads the connections while no reactor drives the pool."""
        assert self._epoll is not None
        fd = self._epoll.fileno()
        while True:
            if self._driver is not None:
                self._driven = trio.Event()
                await self._driven.wait()
                continue
            if self._behind:
                await trio.lowlevel.checkpoint()  # others run; then on with the answers left
                self.pump(time.perf_counter() + PUMP_BUDGET)
                continue
            with trio.CancelScope() as scope:
                self._pump_scope = scope
                await trio.lowlevel.wait_readable(fd)
            self._pump_scope = None
            if not scope.cancelled_caught:
                self.pump(time.perf_counter() + PUMP_BUDGET)

    def _forget(self, conn: _PeerConnection) -> None:
        """``conn`` ends: off the epoll and out of the pool."""
        if self._by_fd.get(conn.fd) is conn:
            del self._by_fd[conn.fd]
            if self._epoll is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.unregister(conn.fd)
        slot = (conn.address, conn.lane)
        if self._conns.get(slot) is conn:
            del self._conns[slot]
        self._dirty_conns.pop(conn, None)
        self._behind.pop(conn, None)

    async def _connection(self, address: Address, lane: str = "") -> _PeerConnection:
        slot = (address, lane)
        conn = self._conns.get(slot)
        waiting = self._connecting.get(slot)
        # Requests queued while the connection was opened go first (trio's Lock hands over
        # to the next waiter, so it stays locked until that queue is empty): a pipelined SET
        # then GET must not be sent GET first.
        if conn is not None and conn.broken is None and (waiting is None or not waiting.locked()):
            return conn
        lock = self._connecting.setdefault(slot, trio.Lock())
        async with lock:
            conn = self._conns.get(slot)
            if conn is not None and conn.broken is None:
                return conn
            if self._nursery is None:
                raise MeshcacheConnectionError("the peer pool is not running")
            tls: _TlsFilter | None = None
            sock: socket.socket | None = None
            started = trio.current_time()
            try:
                with trio.fail_after(self.connect_timeout):
                    stream = await trio.open_tcp_stream(*address)
                    # The socket leaves trio: the pool's epoll watches it from here on.
                    sock = socket.socket(fileno=stream.socket.detach())
                    sock.setblocking(False)
                    context = self.tls.peer if self.tls is not None else None
                    if context is not None:
                        try:
                            tls = await _tls_connect(sock, context, address[0])
                        except OSError:
                            self.stats["tls_errors"] += 1
                            raise
            except trio.TooSlowError:
                self.stats["connect_timeouts"] += 1
                self.breakers.failed(address, trio.current_time(), started)
                if sock is not None:
                    sock.close()
                raise PeerUnreachable(
                    f"connecting to {address[0]}:{address[1]} timed out"
                ) from None
            except OSError as exc:
                self.stats["connect_errors"] += 1
                self.breakers.failed(address, trio.current_time(), started)
                if sock is not None:
                    sock.close()
                raise PeerUnreachable(
                    f"connecting to {address[0]}:{address[1]}: {exc.strerror or exc}"
                ) from None
            except BaseException:  # cancelled: the connection was never handed out
                if sock is not None:
                    sock.close()
                raise
            if self._nursery is None or self._epoll is None:
                sock.close()
                raise MeshcacheConnectionError("the peer pool is not running")
            conn = _PeerConnection(self, address, sock, tls, self.max_frame, lane)
            self._by_fd[conn.fd] = conn
            self._epoll.register(conn.fd, _READ)
            self._conns[slot] = conn
            self.stats["connects"] += 1
            if lane:
                self.stats["lane_connects"] += 1
            self._nursery.start_soon(conn.run)
            auth = auth_args(self.keyring)
            if auth is not None:
                # AUTH goes first, before the connection is handed to anyone; the peer answers
                # it before reading what follows.
                waiter = _Waiter()
                conn.send("AUTH", "default", auth, math.inf, waiter, False)
                self._dirty_conns.pop(conn, None)
                conn.write()
                if conn.broken is not None:
                    self.stats["connect_errors"] += 1
                    raise PeerUnreachable(
                        f"sending AUTH to {address[0]}:{address[1]}: {conn.broken}"
                    ) from None
                self._nursery.start_soon(self._check_auth, conn, waiter)
            return conn

    async def _check_auth(self, conn: _PeerConnection, waiter: _Waiter) -> None:
        """A refused ``AUTH`` is logged and counted (the requests behind it get ``NOAUTH``)."""
        await waiter.event.wait()
        response = waiter.response
        if isinstance(response, Response) and not response.ok:
            self.stats["auth_refused"] += 1
            log.error("peer_auth_refused", peer=conn._name(), error=str(response.value))

    async def request(
        self,
        address: Address,
        op: str,
        namespace: str,
        args: list[Any],
        *,
        timeout: float,
        abort_on_timeout: bool = False,
        sent: Callable[[], None] | None = None,
        failed: Callable[[], None] | None = None,
        lane: str = "",
    ) -> Response:
        """Send one request and return its response (an error response is returned, not raised).

        With ``abort_on_timeout``, a time-out resets the connection (see the module docstring).
        ``sent`` is called once the request is queued on the connection (in order behind every
        request queued before it); ``failed`` as it fails once sent, in the order the requests
        that fail together were sent (a broken connection fails them all at once). ``lane``: on
        that lane's connection to the peer, not the pooled one (see the module docstring).
        ``timeout`` bounds the wait for the answer; a connection opened first takes up to
        ``connect_timeout`` more.

        Raises:
            MeshcacheConnectionError: the peer cannot be reached or the connection broke.
            MeshcacheTimeout: no answer within ``timeout`` seconds.
        """
        conn = await self._connection(address, lane)
        if conn.broken is not None:
            raise MeshcacheConnectionError(str(conn.broken))
        if conn.outbox_bytes > MAX_OUTBOX:
            self.stats["outbox_full"] += 1
            raise PeerUnreachable(f"{conn._name()}: too many requests waiting to be sent")
        waiter = _Waiter(failed)
        self.stats["requests"] += 1
        if lane:
            self.stats["lane_requests"] += 1
        rid = conn.send(op, namespace, args, timeout, waiter, abort_on_timeout)
        if sent is not None:
            sent()
        try:
            await waiter.event.wait()
        finally:
            conn.waiters.pop(rid, None)  # cancelled: its late answer is dropped
        response = waiter.response
        if isinstance(response, MeshcacheTimeout):
            raise MeshcacheTimeout(
                f"{op} to {address[0]}:{address[1]}: no answer in {timeout}s"
            ) from None
        if isinstance(response, BaseException):
            self.stats["broken"] += 1
            raise response
        assert response is not None
        return response

    def submit(
        self,
        address: Address,
        op: str,
        namespace: str,
        args: list[Any],
        *,
        timeout: float,
        answered: Answered,
        abort_on_timeout: bool = False,
        lane: str = "",
    ) -> bool:
        """Queue one request on the open connection to ``address`` (``lane``: that lane's, as
        in :meth:`request`), without a task: its response (an error response included), or the
        :class:`MeshcacheConnectionError` / :class:`MeshcacheTimeout` that ended it, goes to
        ``answered`` — called from the connection's reader or timer, never from inside this
        call.

        False, and nothing sent, when there is no open connection that may take it now (none
        yet, broken, requests queued behind a connect go first, or its outbox is full): the
        caller then uses :meth:`request`, which connects.
        """
        conn = self._conns.get((address, lane))
        if conn is None or conn.broken is not None or conn.outbox_bytes > MAX_OUTBOX:
            return False
        waiting = self._connecting.get((address, lane))
        if waiting is not None and waiting.locked():
            return False
        self.stats["requests"] += 1
        if lane:
            self.stats["lane_requests"] += 1
        conn.send(op, namespace, args, timeout, answered, abort_on_timeout)
        return True

    def relay(
        self, address: Address, body: bytes, later: Later, *, timeout: float, failed: Failed
    ) -> bool:
        """Queue a client's read (its frame body) for the open connection to ``address``'s next
        ``RELAY`` frame (:meth:`_PeerConnection.relay`), without a task. False, and nothing
        queued, when :meth:`submit` would refuse."""
        conn = self._conns.get((address, ""))
        if conn is None or conn.broken is not None or conn.outbox_bytes > MAX_OUTBOX:
            return False
        waiting = self._connecting.get((address, ""))
        if waiting is not None and waiting.locked():
            return False
        self.stats["relayed"] += 1
        conn.relay(body, later, timeout, failed)
        return True

    async def call(
        self,
        address: Address,
        op: str,
        namespace: str,
        args: list[Any],
        *,
        timeout: float,
        lane: str = "",
    ) -> Any:
        """:meth:`request`, returning the result or raising the peer's error as CommandError."""
        response = await self.request(address, op, namespace, args, timeout=timeout, lane=lane)
        return response.result()

    async def call_alone(
        self, address: Address, op: str, namespace: str, args: list[Any], *, timeout: float
    ) -> Any:
        """:meth:`call` on a connection of its own, closed after the answer: for a request
        whose answer takes long (a ``HANDOFF`` stream) and must not hold up the answers behind
        it on the pooled connection."""
        return await call_once(
            address,
            op,
            args,
            namespace=namespace,
            timeout=timeout,
            max_frame=self.max_frame,
            keyring=self.keyring,
            tls=self.tls,
        )

    def close(self, address: Address) -> None:
        """Drop the connections to ``address``, its lanes' too (e.g. the peer left); calls in
        flight fail."""
        for slot in [slot for slot in self._conns if slot[0] == address]:
            conn = self._conns.pop(slot)
            conn.fail(MeshcacheConnectionError("connection dropped"))
            conn.scope.cancel()


__all__ = ["Address", "PeerPool", "PeerUnreachable"]
