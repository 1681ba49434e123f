"""``meshcache.TrioClient``: the client for trio programs.

.. code-block:: python

    async with meshcache.TrioClient("127.0.0.1:7400") as client:
        await client.set("user:1", b"ada", ttl=60)
        await client.get("user:1")      # b"ada"

Methods are the same as :class:`meshcache.Client`'s, awaited. Connections are pooled (one task
per connection at a time); deadlines are trio cancel scopes, so a timeout or a cancellation
closes the connection it interrupted rather than leave it half-read.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import trio

from meshcache.client.async_base import RECV_SIZE, AsyncClientBase, AsyncPipeline, Event
from meshcache.client.core import ClientProtocol, Command, Exchange
from meshcache.client.routing import Address
from meshcache.client.sockets import readable_check
from meshcache.errors import MeshcacheConnectionError, MeshcacheTimeout

T = TypeVar("T")


class TrioConnection:
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
        self.protocol = ClientProtocol(max_frame)
        self._idle_check = readable_check(sock)

    @classmethod
    async def open(cls, address: Address, max_frame: int) -> TrioConnection:
        """Connect (trio resolves the name and races the addresses); OSError on failure."""
        stream = await trio.open_tcp_stream(address.host, address.port)
        # open_tcp_stream set TCP_NODELAY; keep the connected socket, not the stream.
        sock = socket.socket(fileno=stream.socket.detach())
        return cls(address, sock, max_frame)

    async def exchange(self, commands: Sequence[Command[Any]]) -> Exchange:
        exchange = Exchange(self.protocol, commands)
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
                    return exchange
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

    @property
    def reusable(self) -> bool:
        if self.protocol.error is not None or self.protocol.pending:
            return False
        try:
            return not self._idle_check()
        except (OSError, ValueError):
            return False

    def close_now(self) -> None:
        # Tell trio first, so a task parked on this socket wakes with ClosedResourceError
        # instead of waiting on a closed (and maybe reused) file descriptor.
        if self.sock.fileno() != -1:
            trio.lowlevel.notify_closing(self.sock)
        self.sock.close()

    async def aclose(self) -> None:
        self.close_now()
        await trio.lowlevel.checkpoint()


class _Deadline:
    """``trio.fail_after`` raising :class:`MeshcacheTimeout`, as a class: no generator per use."""

    __slots__ = ("_scope", "_seconds")

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._scope: trio.CancelScope | None = None

    async def __aenter__(self) -> None:
        if self._seconds is not None:
            self._scope = trio.CancelScope(deadline=trio.current_time() + self._seconds)
            self._scope.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        scope = self._scope
        if scope is None:
            return False
        handled = scope.__exit__(exc_type, exc, tb)
        if scope.cancelled_caught:
            raise MeshcacheTimeout(f"no answer within {self._seconds} s") from None
        return handled


class TrioClient(AsyncClientBase[TrioConnection]):
    __doc__ = AsyncClientBase.__doc__

    async def _open(self, address: Address) -> TrioConnection:
        return await TrioConnection.open(address, self.max_frame)

    def _deadline(self, seconds: float | None) -> _Deadline:
        return _Deadline(seconds)

    def _make_event(self) -> Event:
        return trio.Event()

    async def _gather(self, jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
        done: dict[int, T] = {}

        async def run(i: int, job: Callable[[], Awaitable[T]]) -> None:
            done[i] = await job()

        async with trio.open_nursery() as nursery:
            for i, job in enumerate(jobs):
                nursery.start_soon(run, i, job)
        return [done[i] for i in range(len(jobs))]


TrioPipeline = AsyncPipeline

__all__ = ["TrioClient", "TrioConnection", "TrioPipeline"]
