"""``meshcache.AsyncClient``: the client for asyncio programs.

.. code-block:: python

    async with meshcache.AsyncClient("127.0.0.1:7400") as client:
        await client.set("user:1", b"ada", ttl=60)
        await client.get("user:1")      # b"ada"

Methods are the same as :class:`meshcache.Client`'s, awaited. This module is the engine's
asyncio adapter: deadlines are on the running loop's clock, and a timeout or a cancellation
closes the connection it interrupted rather than leave it half-read. It does not import trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from meshcache.client.async_base import AsyncClientBase, AsyncPipeline
from meshcache.client.core import ClientProtocol, Command, Exchange
from meshcache.client.engine import Waiter
from meshcache.client.sockets import RECV_SIZE
from meshcache.client.tlsconf import handshake_error
from meshcache.errors import MeshcacheConnectionError, MeshcacheError
from meshcache.wire import Address

T = TypeVar("T")


class _ReplyProtocol(asyncio.BufferedProtocol):
    """Feeds what the transport reads straight into the exchange under way.

    A buffered protocol: the transport reads into one buffer per connection (the plain
    ``data_received`` path reads 256 KiB objects, an mmap per read), and no StreamReader sits
    between the transport and the decoder. ``waiter`` completes when the exchange has every
    reply, or fails when the connection breaks or the node breaks the protocol.
    """

    def __init__(self, address: Address, max_frame: int) -> None:
        self.address = address
        self.protocol = ClientProtocol(max_frame, str(address))
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.broken: MeshcacheConnectionError | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._buffer = memoryview(bytearray(RECV_SIZE))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self._buffer[:nbytes])
        exchange, waiter = self.exchange, self.waiter
        if exchange is None or waiter is None or waiter.done():
            # Bytes on an idle connection answer nothing asked: the protocol records them as
            # an error (an unasked id, or a connection-level error frame), so the connection
            # is not lent again.
            with contextlib.suppress(MeshcacheError):
                self.protocol.receive_data(data)
            return
        try:
            done = exchange.receive_data(data)
        except MeshcacheError as exc:
            waiter.set_exception(exc)
            return
        if done:
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._break(MeshcacheConnectionError(f"{self.address} closed the connection"))
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self._break(MeshcacheConnectionError(f"{self.address} closed the connection"))
        else:
            broken = MeshcacheConnectionError(f"connection to {self.address} broke: {exc}")
            broken.__cause__ = exc
            self._break(broken)
        if not self.closed.done():
            self.closed.set_result(None)

    def _break(self, error: MeshcacheConnectionError) -> None:
        if self.broken is None:
            self.broken = error
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self.broken)


class AsyncioConnection:
    """An asyncio transport, the buffered protocol reading for it, and its protocol state."""

    __slots__ = ("_reader", "address", "protocol", "transport")

    def __init__(self, transport: asyncio.Transport, reader: _ReplyProtocol) -> None:
        self.address = reader.address
        self.transport = transport
        self.protocol = reader.protocol
        self._reader = reader

    @classmethod
    async def open(
        cls,
        address: Address,
        deadline: float | None,
        max_frame: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> AsyncioConnection:
        """Connect by ``deadline`` (on the loop's clock).

        Raises:
            TimeoutError: the node did not accept by ``deadline``.
            OSError: the node refused, or the name did not resolve.
        """
        loop = asyncio.get_running_loop()
        async with asyncio.timeout_at(deadline):
            try:
                transport, reader = await loop.create_connection(
                    lambda: _ReplyProtocol(address, max_frame),
                    address.host,
                    address.port,
                    ssl=ssl_context,
                    server_hostname=address.host if ssl_context is not None else None,
                )
            except ssl.SSLError as exc:
                raise handshake_error(address, exc) from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(transport, reader)

    async def exchange(self, commands: Sequence[Command[Any]], deadline: float | None) -> Exchange:
        reader = self._reader
        if reader.broken is not None:
            raise reader.broken
        exchange = Exchange(self.protocol, commands)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        reader.exchange, reader.waiter = exchange, waiter
        # The deadline fails the one future waited on: cheaper than asyncio.timeout, which
        # cancels and uncancels the task.
        expiry = None if deadline is None else loop.call_at(deadline, _expire, waiter)
        try:
            # No drain: the replies cannot all arrive before every byte was sent, and waiting
            # for them bounds what the transport buffers.
            self.transport.write(exchange.outgoing)
            await waiter
        finally:
            reader.exchange = reader.waiter = None
            if expiry is not None:
                expiry.cancel()
        return exchange

    @property
    def reusable(self) -> bool:
        # The transport reads eagerly, so a close by the node has already been seen.
        return not (
            self.protocol.error is not None
            or self.protocol.pending
            or self._reader.broken is not None
            or self.transport.is_closing()
        )

    def close_now(self) -> None:
        # abort, not close: a discarded connection may hold unsent bytes the node will never
        # read, and close() would wait for them, leaving the socket open past the loop's end.
        # Not once the transport is gone: one closed with bytes unsent is lost when they are
        # flushed, and aborting it after that fails inside asyncio (its loop is None).
        if not self._reader.closed.done():
            self.transport.abort()

    async def aclose(self) -> None:
        self.transport.close()
        await self._reader.closed


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class AsyncClient(AsyncClientBase[AsyncioConnection]):
    """The client for asyncio programs: :class:`meshcache.Client`'s methods, awaited.

    One client serves the tasks of one event loop; see :class:`AsyncClientBase`.
    """

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _open(self, address: Address, deadline: float | None) -> AsyncioConnection:
        return await AsyncioConnection.open(address, deadline, self.max_frame, self.ssl_context)

    def _new_waiter(self) -> Waiter:
        return asyncio.Event()

    async def _wait(self, waiter: Waiter, deadline: float | None) -> None:
        assert isinstance(waiter, asyncio.Event)
        async with asyncio.timeout_at(deadline):
            await waiter.wait()

    async def _gather(self, jobs: Sequence[Callable[[], Coroutine[Any, Any, T]]]) -> list[T]:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(job()) for job in jobs]
        return [task.result() for task in tasks]


AsyncioPipeline = AsyncPipeline

__all__ = ["AsyncClient", "AsyncioConnection", "AsyncioPipeline"]
