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
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from meshcache.client.async_base import RECV_SIZE, AsyncClientBase, AsyncPipeline, Slots
from meshcache.client.core import ClientProtocol, Command, Exchange
from meshcache.client.routing import Address
from meshcache.errors import MeshcacheConnectionError, MeshcacheTimeout


class AsyncioConnection:
    """An asyncio stream pair and its protocol state."""

    __slots__ = ("address", "protocol", "reader", "writer")

    def __init__(
        self,
        address: Address,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_frame: int,
    ) -> None:
        self.address = address
        self.reader = reader
        self.writer = writer
        self.protocol = ClientProtocol(max_frame)

    async def exchange(self, commands: Sequence[Command[Any]]) -> Exchange:
        exchange = Exchange(self.protocol, commands)
        try:
            self.writer.write(exchange.outgoing)
            await self.writer.drain()
            while not exchange.done:
                data = await self.reader.read(RECV_SIZE)
                if not data:
                    raise MeshcacheConnectionError(f"{self.address} closed the connection")
                exchange.receive_data(data)
        except OSError as exc:
            raise MeshcacheConnectionError(f"connection to {self.address} broke: {exc}") from exc
        return exchange

    @property
    def reusable(self) -> bool:
        # The transport reads eagerly, so a close by the node shows as EOF in the reader.
        return not (
            self.protocol.error is not None
            or self.protocol.pending
            or self.reader.at_eof()
            or self.writer.is_closing()
        )

    def close_now(self) -> None:
        self.writer.close()

    async def aclose(self) -> None:
        self.writer.close()
        # The node may already have reset it; it is closed either way.
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@asynccontextmanager
async def _timeout(seconds: float | None) -> AsyncIterator[None]:
    if seconds is None:
        yield
        return
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise MeshcacheTimeout(f"no answer within {seconds} s") from None


class AsyncClient(AsyncClientBase[AsyncioConnection]):
    __doc__ = AsyncClientBase.__doc__

    async def _open(self, address: Address) -> AsyncioConnection:
        reader, writer = await asyncio.open_connection(address.host, address.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioConnection(address, reader, writer, self.max_frame)

    def _deadline(self, seconds: float | None) -> AbstractAsyncContextManager[None]:
        return _timeout(seconds)

    def _make_slots(self, n: int) -> Slots:
        return asyncio.Semaphore(n)


AsyncioPipeline = AsyncPipeline

__all__ = ["AsyncClient", "AsyncioConnection", "AsyncioPipeline"]
