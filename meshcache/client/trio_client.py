"""``meshcache.TrioClient``: the client for trio programs.

.. code-block:: python

    async with meshcache.TrioClient("127.0.0.1:7400") as client:
        await client.set("user:1", b"ada", ttl=60)
        await client.get("user:1")      # b"ada"

Methods are the same as :class:`meshcache.Client`'s, awaited. This module is the engine's trio
adapter: deadlines are trio cancel scopes on ``trio.current_time()``, so a timeout or a
cancellation closes the connection it interrupted rather than leave it half-read.
"""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import trio

from meshcache.client.async_base import AsyncClientBase, AsyncPipeline
from meshcache.client.core import ClientProtocol, Command, Exchange
from meshcache.client.engine import Waiter
from meshcache.client.sockets import RECV_SIZE, IdleChecked, readable_check
from meshcache.client.tlsconf import TlsHandshakeError, handshake_error
from meshcache.errors import MeshcacheConnectionError
from meshcache.wire import Address

T = TypeVar("T")


class TrioConnection(IdleChecked):
    """A non-blocking socket driven with trio's low-level I/O waits, and its protocol state.

    Like the node's data port, it sends and receives on the plain socket and parks only in
    :func:`trio.lowlevel.wait_readable` / ``wait_writable``: a :class:`trio.SocketStream` adds
    a conflict detector and two checkpoints per call, which cost more than the request itself.
    Each exchange waits for the reply at least once, so it is always a checkpoint.
    """

    __slots__ = ("_idle_check", "address", "protocol", "sock")

    def __init__(self, address: Address, sock: socket.socket, max_frame: int) -> None:
        sock.setblocking(False)
        self.address = address
        self.sock = sock
        self.protocol = ClientProtocol(max_frame, str(address))
        self._idle_check = readable_check(sock)

    @classmethod
    async def open(cls, address: Address, deadline: float | None, max_frame: int) -> TrioConnection:
        """Connect by ``deadline`` (trio resolves the name and races the addresses).

        Raises:
            TimeoutError: the node did not accept by ``deadline``.
            OSError: the node refused, or the name did not resolve.
        """
        with trio.move_on_at(math.inf if deadline is None else deadline):
            stream = await trio.open_tcp_stream(address.host, address.port)
            # open_tcp_stream set TCP_NODELAY; keep the connected socket, not the stream.
            return cls(address, socket.socket(fileno=stream.socket.detach()), max_frame)
        raise TimeoutError

    async def exchange(self, commands: Sequence[Command[Any]], deadline: float | None) -> Exchange:
        exchange = Exchange(self.protocol, commands)
        if deadline is None:
            await self._exchange(exchange)
            return exchange
        with trio.CancelScope(deadline=deadline):
            await self._exchange(exchange)
            return exchange
        raise TimeoutError

    async def _exchange(self, exchange: Exchange) -> None:
        sock = self.sock
        try:
            await self._send_all(exchange.outgoing)
            while True:
                await trio.lowlevel.wait_readable(sock)
                try:
                    data = sock.recv(RECV_SIZE)
                except BlockingIOError:  # a wake-up with nothing to read after all
                    continue
                if not data:
                    raise MeshcacheConnectionError(f"{self.address} closed the connection")
                if exchange.receive_data(data):
                    return
        except (trio.ClosedResourceError, OSError) as exc:
            raise MeshcacheConnectionError(f"connection to {self.address} broke: {exc}") from exc

    async def _send_all(self, data: bytes) -> None:
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)
        while sent < len(view):
            await trio.lowlevel.wait_writable(sock)
            with contextlib.suppress(BlockingIOError):
                sent += sock.send(view[sent:])

    def close_now(self) -> None:
        # Tell trio first, so a task parked on this socket wakes with ClosedResourceError
        # instead of waiting on a closed (and maybe reused) file descriptor.
        if self.sock.fileno() != -1:
            trio.lowlevel.notify_closing(self.sock)
        self.sock.close()

    async def aclose(self) -> None:
        self.close_now()
        await trio.lowlevel.checkpoint()


class TrioTlsConnection(IdleChecked):
    """A TLS connection on a :class:`trio.SSLStream`, and its protocol state."""

    __slots__ = ("_idle_check", "address", "protocol", "stream")

    def __init__(self, address: Address, stream: trio.SSLStream[trio.SocketStream], max_frame: int):
        self.address = address
        self.stream = stream
        self.protocol = ClientProtocol(max_frame, str(address))
        self._idle_check = readable_check(stream.transport_stream.socket.fileno())

    @classmethod
    async def open(
        cls, address: Address, deadline: float | None, max_frame: int, context: ssl.SSLContext
    ) -> TrioTlsConnection:
        """Connect and finish the TLS handshake by ``deadline``.

        Raises:
            TimeoutError: not done by ``deadline``.
            OSError: the node refused, the name did not resolve, or the handshake failed
                (:class:`~meshcache.client.tlsconf.TlsHandshakeError`).
        """
        with trio.move_on_at(math.inf if deadline is None else deadline):
            tcp = await trio.open_tcp_stream(address.host, address.port)
            stream = trio.SSLStream(tcp, context, server_hostname=address.host)
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError as exc:
                await trio.aclose_forcefully(tcp)
                cause = exc.__cause__
                if isinstance(cause, ssl.SSLError):
                    raise handshake_error(address, cause) from None
                raise TlsHandshakeError(f"TLS handshake with {address} failed: {exc}") from exc
            except BaseException:
                await trio.aclose_forcefully(tcp)
                raise
            return cls(address, stream, max_frame)
        raise TimeoutError

    async def exchange(self, commands: Sequence[Command[Any]], deadline: float | None) -> Exchange:
        exchange = Exchange(self.protocol, commands)
        with trio.CancelScope(deadline=math.inf if deadline is None else deadline):
            try:
                await self.stream.send_all(exchange.outgoing)
                while True:
                    data = await self.stream.receive_some(RECV_SIZE)
                    if not data:
                        raise MeshcacheConnectionError(f"{self.address} closed the connection")
                    if exchange.receive_data(bytes(data)):
                        return exchange
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                cause = exc.__cause__
                if isinstance(cause, ssl.SSLError):
                    message = str(handshake_error(self.address, cause))
                else:
                    message = f"connection to {self.address} broke: {cause or exc}"
                raise MeshcacheConnectionError(message) from exc
        raise TimeoutError

    def close_now(self) -> None:
        sock = self.stream.transport_stream.socket
        if sock.fileno() != -1:
            trio.lowlevel.notify_closing(sock)
        sock.close()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


class TrioClient(AsyncClientBase["TrioConnection | TrioTlsConnection"]):
    """The client for trio programs: :class:`meshcache.Client`'s methods, awaited.

    One client serves the tasks of one trio run; see :class:`AsyncClientBase`.
    """

    _now = staticmethod(trio.current_time)

    async def _open(
        self, address: Address, deadline: float | None
    ) -> TrioConnection | TrioTlsConnection:
        if self.ssl_context is not None:
            return await TrioTlsConnection.open(address, deadline, self.max_frame, self.ssl_context)
        return await TrioConnection.open(address, deadline, self.max_frame)

    def _new_waiter(self) -> Waiter:
        return trio.Event()

    async def _wait(self, waiter: Waiter, deadline: float | None) -> None:
        assert isinstance(waiter, trio.Event)
        with trio.move_on_at(math.inf if deadline is None else deadline):
            await waiter.wait()
            return
        raise TimeoutError

    async def _gather(self, jobs: Sequence[Callable[[], Coroutine[Any, Any, T]]]) -> list[T]:
        done: dict[int, T] = {}

        async def run(i: int, job: Callable[[], Coroutine[Any, Any, T]]) -> None:
            done[i] = await job()

        async with trio.open_nursery() as nursery:
            for i, job in enumerate(jobs):
                nursery.start_soon(run, i, job)
        return [done[i] for i in range(len(jobs))]


TrioPipeline = AsyncPipeline

__all__ = ["TrioClient", "TrioConnection", "TrioPipeline", "TrioTlsConnection"]
