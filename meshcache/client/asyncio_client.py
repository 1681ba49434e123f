"""``meshcache.AsyncClient``: the client for asyncio programs.

.. code-block:: python

    async with meshcache.AsyncClient("127.0.0.1:7400") as client:
        await client.set("user:1", b"ada", ttl=60)
        await client.get("user:1")      # b"ada"

Methods are the same as :class:`meshcache.Client`'s, awaited. Connections are pooled (one task
per connection at a time); a timeout or a cancellation closes the connection it interrupted
rather than leave it half-read.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from meshcache.client.async_base import RECV_SIZE, AsyncClientBase, AsyncPipeline, Event
from meshcache.client.core import ClientProtocol, Command, Exchange
from meshcache.client.routing import Address
from meshcache.errors import MeshcacheConnectionError, MeshcacheError, MeshcacheTimeout

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
        self.protocol = ClientProtocol(max_frame)
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
    async def open(cls, address: Address, max_frame: int) -> AsyncioConnection:
        """Connect; raise OSError when the node does not accept."""
        loop = asyncio.get_running_loop()
        transport, reader = await loop.create_connection(
            lambda: _ReplyProtocol(address, max_frame), address.host, address.port
        )
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(transport, reader)

    async def exchange(self, commands: Sequence[Command[Any]]) -> Exchange:
        reader = self._reader
        if reader.broken is not None:
            raise reader.broken
        exchange = Exchange(self.protocol, commands)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        reader.exchange, reader.waiter = exchange, waiter
        try:
            # No drain: the replies cannot all arrive before every byte was sent, and waiting
            # for them bounds what the transport buffers.
            self.transport.write(exchange.outgoing)
            await waiter
        finally:
            reader.exchange = reader.waiter = None
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
        self.transport.close()

    async def aclose(self) -> None:
        self.transport.close()
        await self._reader.closed


class _Deadline:
    """``asyncio.timeout`` raising :class:`MeshcacheTimeout`, as a class: no generator per use."""

    __slots__ = ("_seconds", "_timeout")

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        if self._seconds is not None:
            self._timeout = asyncio.timeout(self._seconds)
            await self._timeout.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timeout is None:
            return
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            raise MeshcacheTimeout(f"no answer within {self._seconds} s") from None


class AsyncClient(AsyncClientBase[AsyncioConnection]):
    __doc__ = AsyncClientBase.__doc__

    async def _open(self, address: Address) -> AsyncioConnection:
        return await AsyncioConnection.open(address, self.max_frame)

    def _deadline(self, seconds: float | None) -> _Deadline:
        return _Deadline(seconds)

    def _make_event(self) -> Event:
        return asyncio.Event()

    async def _gather(self, jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
        async def run(job: Callable[[], Awaitable[T]]) -> T:
            return await job()

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(run(job)) for job in jobs]
        return [task.result() for task in tasks]


AsyncioPipeline = AsyncPipeline

__all__ = ["AsyncClient", "AsyncioConnection", "AsyncioPipeline"]
