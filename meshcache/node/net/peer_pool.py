"""Pooled, pipelined connections from this node to other nodes' data ports.

The data plane talks to peers all the time (forwarded requests, replica writes, hand-off,
anti-entropy), so it keeps one long-lived connection per peer and pipelines on it: any number of
tasks may have requests in flight on the same connection, each waiting for the response with its
own request id. A reader task per connection hands responses to their waiters.

A connection that breaks fails every request in flight on it with
:class:`MeshcacheConnectionError` (the caller decides whether to retry: a replica write becomes a
hint) and is replaced by a new one on the next call. Connecting is bounded by
``connect_timeout``; each call by its own ``timeout``. A call that times out leaves the
connection usable (its late answer is dropped when it arrives).
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import structlog
import trio

from meshcache.errors import MeshcacheConnectionError, MeshcacheTimeout, RemoteProtocolError
from meshcache.gossip.keyring import Keyring
from meshcache.node.net.oneshot import call_once, tls_handshake
from meshcache.security.peer import auth_args
from meshcache.tls import NodeTls
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


class PeerUnreachable(MeshcacheConnectionError):
    """No connection could be made: the request was certainly not delivered."""


class _Waiter:
    __slots__ = ("event", "response")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.response: Response | BaseException | None = None


class _PeerConnection:
    """One pipelined connection; its reader task runs in the pool's nursery."""

    def __init__(self, address: Address, stream: trio.abc.Stream, max_frame: int) -> None:
        self.address = address
        self.stream = stream
        self.reader = FrameReader(max_frame)
        self.waiters: dict[int, _Waiter] = {}
        self.ids = itertools.count(1)
        self.send_lock = trio.Lock()
        self.broken: BaseException | None = None
        self.scope = trio.CancelScope()

    async def read_loop(self) -> None:
        try:
            with self.scope:
                await self._read()
            self.fail(MeshcacheConnectionError(f"connection to {self._name()} closed"))
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _read(self) -> None:
        try:
            while True:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise MeshcacheConnectionError(f"{self._name()} closed the connection")
                self.reader.feed(data)
                while (body := self.reader.next_body()) is not None:
                    response = decode_response(body)
                    waiter = self.waiters.pop(response.id, None)
                    if waiter is not None:  # None: its caller timed out and left
                        waiter.response = response
                        waiter.event.set()
        except trio.Cancelled:
            self.fail(MeshcacheConnectionError(f"connection to {self._name()} closed"))
            raise
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.fail(MeshcacheConnectionError(f"connection to {self._name()} broke: {exc}"))
        except (MeshcacheConnectionError, RemoteProtocolError) as exc:
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        if self.broken is None:
            self.broken = exc
        waiters, self.waiters = self.waiters, {}
        for waiter in waiters.values():
            waiter.response = exc
            waiter.event.set()

    def _name(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"


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
                waiter = conn.waiters[next(conn.ids)] = _Waiter()
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
            self._nursery.start_soon(conn.read_loop)
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
        self, address: Address, op: str, namespace: str, args: list[Any], *, timeout: float
    ) -> Response:
        """Send one request and return its response (an error response is returned, not raised).

        Raises:
            MeshcacheConnectionError: the peer cannot be reached or the connection broke.
            MeshcacheTimeout: no answer within ``timeout`` seconds.
        """
        conn = await self._connection(address)
        rid = next(conn.ids)
        waiter = _Waiter()
        conn.waiters[rid] = waiter
        frame = encode_request(rid, op, namespace, args)
        self.stats["requests"] += 1
        try:
            with trio.fail_after(timeout):
                async with conn.send_lock:
                    if conn.broken is not None:
                        raise MeshcacheConnectionError(str(conn.broken))
                    try:
                        await conn.stream.send_all(frame)
                    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        error = MeshcacheConnectionError(
                            f"sending to {address[0]}:{address[1]}: {exc}"
                        )
                        conn.fail(error)
                        raise error from None
                    except BaseException:
                        # Cancelled (a timeout, the caller went away) in the middle of a send:
                        # part of a frame may be out, so the connection has lost its framing.
                        conn.fail(MeshcacheConnectionError("a send to the peer was interrupted"))
                        conn.scope.cancel()
                        raise
                await waiter.event.wait()
        except trio.TooSlowError:
            self.stats["timeouts"] += 1
            raise MeshcacheTimeout(
                f"{op} to {address[0]}:{address[1]}: no answer in {timeout}s"
            ) from None
        finally:
            conn.waiters.pop(rid, None)
        response = waiter.response
        if isinstance(response, BaseException):
            self.stats["broken"] += 1
            raise response
        assert response is not None
        return response

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
