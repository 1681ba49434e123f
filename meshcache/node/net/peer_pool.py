"""Pooled, pipelined connections from this node to other nodes' data ports.

The data plane talks to peers all the time (forwarded requests, replica writes, hand-off,
anti-entropy), so it keeps one long-lived connection per peer and pipelines on it: any number of
requests may be in flight on the same connection, each matched to its response by its request
id. A request is either awaited (:meth:`PeerPool.request`, from a task) or *submitted* with a
callback (:meth:`PeerPool.submit`, from anywhere, no task: how a non-owner forwards a client's
request).

Requests are not written one by one: each is encoded into the connection's outbox, and the
connection's writer task sends everything the outbox holds with one ``send_all`` when it next
runs — the requests for one peer that arrive in one reactor turn leave in one write, in the
order they were submitted. A reader task per connection matches the responses to their
waiters; a timer task fails each request that has no answer by its deadline.

A connection that breaks fails every request in flight on it with
:class:`MeshcacheConnectionError` (the caller decides whether to retry: a replica write becomes a
hint) and is replaced by a new one on the next call. Connecting is bounded by
``connect_timeout``; each request by its own ``timeout``. A request that times out leaves the
connection usable (its late answer is dropped when it arrives) — unless it was submitted with
``abort_on_timeout`` (a forwarded client request): then the connection is reset (``SO_LINGER``
0, so what the kernel has not sent yet is dropped rather than delivered) and every other request
on it fails, so that the peer never applies later a write its client was told failed.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import socket
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
import trio

from meshcache.errors import MeshcacheConnectionError, MeshcacheTimeout, RemoteProtocolError
from meshcache.gossip.keyring import Keyring
from meshcache.node.net.oneshot import call_once, tls_handshake
from meshcache.security.peer import auth_args
from meshcache.security.tls import NodeTls
from meshcache.wire.address import Address
from meshcache.wire.frame import (
    DEFAULT_MAX_FRAME,
    FrameReader,
    Response,
    decode_response,
    encode_request,
)

log = structlog.get_logger("meshcache.peers")

RECEIVE_SIZE = 256 * 1024
# Bytes of requests one connection's outbox may hold while its writer waits on the kernel;
# beyond it a submit is refused as if the peer could not be reached (nothing was sent).
MAX_OUTBOX = 16 * 1024 * 1024
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset

Answered = Callable[["Response | BaseException"], None]
"""What :meth:`PeerPool.submit` calls with a request's response or the error that ended it."""


class PeerUnreachable(MeshcacheConnectionError):
    """No connection could be made: the request was certainly not delivered."""


class _Waiter:
    """A request that awaits its answer in a task (:meth:`PeerPool.request`, ``AUTH``)."""

    __slots__ = ("event", "response")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.response: Response | BaseException | None = None

    def __call__(self, response: Response | BaseException) -> None:
        self.response = response
        self.event.set()


class _Request:
    __slots__ = ("abort", "answered", "deadline")

    def __init__(self, answered: Answered, deadline: float, abort: bool) -> None:
        self.answered = answered
        self.deadline = deadline
        self.abort = abort


def _deliver(answered: Answered, response: Response | BaseException) -> None:
    try:
        answered(response)
    except Exception:  # a waiter's bug must not take the connection down with it
        log.exception("peer_answer_callback_failed")


class _PeerConnection:
    """One pipelined connection; its reader, writer and timer run in the pool's nursery."""

    def __init__(self, address: Address, stream: trio.abc.Stream, max_frame: int) -> None:
        self.address = address
        self.stream = stream
        self.reader = FrameReader(max_frame)
        self.waiters: dict[int, _Request] = {}
        self.ids = itertools.count(1)
        self.broken: BaseException | None = None
        self.scope = trio.CancelScope()
        self.outbox: list[bytes] = []
        self.outbox_bytes = 0
        self.wake = trio.Event()  # set when the outbox has something to send
        # (deadline, request id), earliest first; entries of answered requests linger until
        # they come up or the heap is rebuilt.
        self.deadlines: list[tuple[float, int]] = []
        self.next_deadline = math.inf
        self.timer: trio.CancelScope | None = None
        self.stats: Counter[str] | None = None

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
        """Queue one request for the writer; its answer (or error) goes to ``answered``."""
        if rid is None:
            rid = next(self.ids)
        frame = encode_request(rid, op, namespace, args)
        deadline = trio.current_time() + timeout
        self.waiters[rid] = _Request(answered, deadline, abort)
        deadlines = self.deadlines
        heapq.heappush(deadlines, (deadline, rid))
        if len(deadlines) > 2 * len(self.waiters) + 64:
            self.deadlines = deadlines = [(r.deadline, i) for i, r in self.waiters.items()]
            heapq.heapify(deadlines)
        if deadline < self.next_deadline:
            self.next_deadline = deadline
            if self.timer is not None:
                self.timer.deadline = deadline
        self.outbox.append(frame)
        self.outbox_bytes += len(frame)
        if not self.wake.is_set():
            self.wake.set()
        return rid

    async def run(self) -> None:
        try:
            with self.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write)
                    nursery.start_soon(self._time)
                    await self._read()
                    nursery.cancel_scope.cancel()
            self.fail(MeshcacheConnectionError(f"connection to {self._name()} closed"))
        finally:
            self.fail(MeshcacheConnectionError(f"connection to {self._name()} closed"))
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _write(self) -> None:
        while True:
            await self.wake.wait()
            self.wake = trio.Event()
            if not self.outbox:
                continue
            data = b"".join(self.outbox) if len(self.outbox) > 1 else self.outbox[0]
            self.outbox.clear()
            self.outbox_bytes = 0
            if self.stats is not None:
                self.stats["writes"] += 1
            try:
                await self.stream.send_all(data)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.fail(MeshcacheConnectionError(f"sending to {self._name()}: {exc}"))
                self.scope.cancel()
                return

    async def _time(self) -> None:
        while True:
            with trio.CancelScope(deadline=self.next_deadline) as scope:
                self.timer = scope
                await trio.sleep_forever()
            self.timer = None
            self._expire(trio.current_time())

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
            if self.stats is not None:
                self.stats["timeouts"] += 1
            reset = reset or request.abort
            _deliver(request.answered, MeshcacheTimeout(f"{self._name()}: no answer in time"))
        self.next_deadline = deadlines[0][0] if deadlines else math.inf
        if reset:
            self.reset()

    def reset(self) -> None:
        """Close with a reset: requests the kernel still holds are never delivered."""
        if self.stats is not None:
            self.stats["reset_after_timeout"] += 1
        sock = _socket_of(self.stream)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        self.fail(
            MeshcacheConnectionError(f"connection to {self._name()} reset: a request timed out")
        )
        self.scope.cancel()

    async def _read(self) -> None:
        try:
            while True:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise MeshcacheConnectionError(f"{self._name()} closed the connection")
                self.reader.feed(data)
                waiters = self.waiters
                while (body := self.reader.next_body()) is not None:
                    response = decode_response(body)
                    request = waiters.pop(response.id, None)
                    if request is not None:  # None: it timed out and its caller left
                        _deliver(request.answered, response)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.fail(MeshcacheConnectionError(f"connection to {self._name()} broke: {exc}"))
        except (MeshcacheConnectionError, RemoteProtocolError) as exc:
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        """Mark the connection broken and fail exactly the requests in flight on it."""
        if self.broken is None:
            self.broken = exc
        self.outbox.clear()
        self.outbox_bytes = 0
        waiters, self.waiters = self.waiters, {}
        self.deadlines = []
        for request in waiters.values():
            _deliver(request.answered, exc)

    def _name(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"


def _socket_of(stream: Any) -> Any:
    """The socket under ``stream`` (a ``SocketStream``, or a TLS stream over one)."""
    while stream is not None:
        sock = getattr(stream, "socket", None)
        if sock is not None:
            return sock
        stream = getattr(stream, "transport_stream", None)
    return None


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
        self._conns: dict[Address, _PeerConnection] = {}
        self._connecting: dict[Address, trio.Lock] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the readers until cancelled; every connection is closed on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for conn in list(self._conns.values()):
                conn.fail(MeshcacheConnectionError("the node is stopping"))
                conn.scope.cancel()
            self._conns.clear()

    async def _connection(self, address: Address) -> _PeerConnection:
        conn = self._conns.get(address)
        waiting = self._connecting.get(address)
        # Requests queued while the connection was opened go first (trio's Lock hands over
        # to the next waiter, so it stays locked until that queue is empty): a pipelined SET
        # then GET must not be sent GET first.
        if conn is not None and conn.broken is None and (waiting is None or not waiting.locked()):
            return conn
        lock = self._connecting.setdefault(address, trio.Lock())
        async with lock:
            conn = self._conns.get(address)
            if conn is not None and conn.broken is None:
                return conn
            if self._nursery is None:
                raise MeshcacheConnectionError("the peer pool is not running")
            try:
                with trio.fail_after(self.connect_timeout):
                    stream: trio.abc.Stream = await trio.open_tcp_stream(*address)
                    context = self.tls.peer if self.tls is not None else None
                    if context is not None:
                        try:
                            stream = await tls_handshake(stream, context, address[0])
                        except OSError:
                            self.stats["tls_errors"] += 1
                            raise
            except trio.TooSlowError:
                self.stats["connect_timeouts"] += 1
                raise PeerUnreachable(
                    f"connecting to {address[0]}:{address[1]} timed out"
                ) from None
            except OSError as exc:
                self.stats["connect_errors"] += 1
                raise PeerUnreachable(
                    f"connecting to {address[0]}:{address[1]}: {exc.strerror or exc}"
                ) from None
            conn = _PeerConnection(address, stream, self.max_frame)
            auth = auth_args(self.keyring)
            waiter = None
            if auth is not None:
                # AUTH goes first, before the connection is handed to anyone; the peer answers
                # it before reading what follows.
                waiter = _Waiter()
                conn.waiters[next(conn.ids)] = _Request(waiter, math.inf, False)
                try:
                    with trio.fail_after(self.connect_timeout):
                        await stream.send_all(encode_request(1, "AUTH", "default", auth))
                except (trio.TooSlowError, OSError, trio.BrokenResourceError) as exc:
                    self.stats["connect_errors"] += 1
                    await trio.aclose_forcefully(stream)
                    raise PeerUnreachable(
                        f"sending AUTH to {address[0]}:{address[1]}: {exc or 'timed out'}"
                    ) from None
                except BaseException:  # cancelled: the connection was never handed out
                    await trio.aclose_forcefully(stream)
                    raise
            self._conns[address] = conn
            self.stats["connects"] += 1
            conn.stats = self.stats
            self._nursery.start_soon(conn.run)
            if waiter is not None:
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
    ) -> Response:
        """Send one request and return its response (an error response is returned, not raised).

        With ``abort_on_timeout``, a time-out resets the connection (see the module docstring).
        ``sent`` is called once the request is queued on the connection (in order behind every
        request queued before it).

        Raises:
            MeshcacheConnectionError: the peer cannot be reached or the connection broke.
            MeshcacheTimeout: no answer within ``timeout`` seconds.
        """
        conn = await self._connection(address)
        if conn.broken is not None:
            raise MeshcacheConnectionError(str(conn.broken))
        if conn.outbox_bytes > MAX_OUTBOX:
            self.stats["outbox_full"] += 1
            raise PeerUnreachable(f"{conn._name()}: too many requests waiting to be sent")
        waiter = _Waiter()
        self.stats["requests"] += 1
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
    ) -> bool:
        """Queue one request on the open connection to ``address``, without a task: its
        response (an error response included), or the :class:`MeshcacheConnectionError` /
        :class:`MeshcacheTimeout` that ended it, goes to ``answered`` — called from the
        connection's reader or timer, never from inside this call.

        False, and nothing sent, when there is no open connection that may take it now (none
        yet, broken, requests queued behind a connect go first, or its outbox is full): the
        caller then uses :meth:`request`, which connects.
        """
        conn = self._conns.get(address)
        if conn is None or conn.broken is not None or conn.outbox_bytes > MAX_OUTBOX:
            return False
        waiting = self._connecting.get(address)
        if waiting is not None and waiting.locked():
            return False
        self.stats["requests"] += 1
        conn.send(op, namespace, args, timeout, answered, abort_on_timeout)
        return True

    async def call(
        self, address: Address, op: str, namespace: str, args: list[Any], *, timeout: float
    ) -> Any:
        """:meth:`request`, returning the result or raising the peer's error as CommandError."""
        response = await self.request(address, op, namespace, args, timeout=timeout)
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
        """Drop the connection to ``address`` (e.g. the peer left); calls in flight fail."""
        conn = self._conns.pop(address, None)
        if conn is not None:
            conn.fail(MeshcacheConnectionError("connection dropped"))
            conn.scope.cancel()


__all__ = ["Address", "PeerPool", "PeerUnreachable"]
