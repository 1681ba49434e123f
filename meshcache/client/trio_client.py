"""``meshcache.TrioClient``: the client for trio programs.

.. code-block:: python

    async with meshcache.TrioClient("127.0.0.1:7400") as client:
        await client.set("user:1", b"ada", ttl=60)
        await client.get("user:1")      # b"ada"

Methods are the same as :class:`meshcache.Client`'s, awaited. Connections are pooled (one task
per connection at a time); deadlines use :func:`trio.fail_after`, so a timeout or a
cancellation closes the connection it interrupted rather than leave it half-read.
"""

from __future__ import annotations

import select
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import trio

from meshcache.client.async_base import RECV_SIZE, AsyncClientBase, AsyncPipeline, Slots
from meshcache.client.core import ClientProtocol, Command, Exchange
from meshcache.client.routing import Address
from meshcache.errors import MeshcacheConnectionError, MeshcacheTimeout


class TrioConnection:
    """A :class:`trio.SocketStream` and its protocol state."""

    __slots__ = ("address", "protocol", "stream")

    def __init__(self, address: Address, stream: trio.SocketStream, max_frame: int) -> None:
        self.address = address
        self.stream = stream
        self.protocol = ClientProtocol(max_frame)

    async def exchange(self, commands: Sequence[Command[Any]]) -> Exchange:
        exchange = Exchange(self.protocol, commands)
        try:
            await self.stream.send_all(exchange.outgoing)
            while not exchange.done:
                data = await self.stream.receive_some(RECV_SIZE)
                if not data:
                    raise MeshcacheConnectionError(f"{self.address} closed the connection")
                exchange.receive_data(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise MeshcacheConnectionError(f"connection to {self.address} broke: {exc}") from exc
        return exchange

    @property
    def reusable(self) -> bool:
        if self.protocol.error is not None or self.protocol.pending:
            return False
        try:
            # An idle connection has nothing to read; if it is readable the node closed it.
            readable, _, _ = select.select([self.stream.socket.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close_now(self) -> None:
        # trio's socket close is synchronous and wakes any waiter; SocketStream.aclose does the
        # same plus a checkpoint, which a cancelled task could not take.
        self.stream.socket.close()

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def _fail_after(seconds: float | None) -> AsyncIterator[None]:
    if seconds is None:
        yield
        return
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise MeshcacheTimeout(f"no answer within {seconds} s") from None


class TrioClient(AsyncClientBase[TrioConnection]):
    __doc__ = AsyncClientBase.__doc__

    async def _open(self, address: Address) -> TrioConnection:
        stream = await trio.open_tcp_stream(address.host, address.port)
        return TrioConnection(address, stream, self.max_frame)

    def _deadline(self, seconds: float | None) -> AbstractAsyncContextManager[None]:
        return _fail_after(seconds)

    def _make_slots(self, n: int) -> Slots:
        return trio.Semaphore(n)


TrioPipeline = AsyncPipeline

__all__ = ["TrioClient", "TrioConnection", "TrioPipeline"]
