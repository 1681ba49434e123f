"""What the trio and asyncio clients share: the pool, the retry rule and the pipeline.

A concrete front end supplies four things: how to open a connection, how to run a block under
a deadline, an event to wait on for a free connection, and the connection class itself (which
moves bytes for one :class:`~meshcache.client.core.Exchange`). Everything else — failover over
the router's candidates, the single retry of idempotent batches on a broken connection,
discarding any connection whose exchange did not complete — lives here once.
"""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from meshcache.client.commands import AsyncExecutor, CommandQueue, Commands
from meshcache.client.core import ClientProtocol, Command, Exchange, batch_route
from meshcache.client.ring_router import FETCH_RING, default_router
from meshcache.client.routing import Address, Router
from meshcache.client.sockets import RECV_SIZE
from meshcache.client.split import SPLIT_OPS, Group, Plan, plan
from meshcache.errors import (
    ConfigError,
    MeshcacheConnectionError,
    MeshcacheError,
    MeshcacheTimeout,
)
from meshcache.wire import DEFAULT_MAX_FRAME

T = TypeVar("T")
C = TypeVar("C", bound="AsyncConnection")


class AsyncConnection(Protocol):
    """One connection of an async front end; used by one task at a time."""

    address: Address
    protocol: ClientProtocol

    async def exchange(self, commands: Sequence[Command[Any]]) -> Exchange:
        """Send the commands in one write and read until each has its reply.

        Raises:
            MeshcacheConnectionError: the connection broke or the node closed it.
            RemoteProtocolError: the node broke the protocol.
        """
        ...

    @property
    def reusable(self) -> bool:
        """False when the node has closed the idle connection."""
        ...

    def close_now(self) -> None:
        """Close without waiting (safe in cancelled or failing code paths)."""
        ...

    async def aclose(self) -> None: ...


class Event(Protocol):
    """A one-shot event of the running loop (trio's or asyncio's)."""

    def set(self) -> None: ...

    async def wait(self) -> Any: ...


class AsyncClientBase(ABC, Commands, AsyncExecutor, Generic[C]):
    """Base of :class:`~meshcache.TrioClient` and :class:`~meshcache.AsyncClient`.

    Args:
        addresses: ``"host:port"``, several as ``"h:p,h:p"`` (the first that answers is used,
            the next ones on failure), or a list of them.
        timeout: seconds to wait for the answer to a request or pipeline, and for a free
            pooled connection (None: forever).
        connect_timeout: seconds to wait for a node to accept a connection.
        max_connections: how many connections may be lent out at once.
        router: picks the node per key; overrides ``smart``.
        smart: route by the cluster ring (a :class:`RingRouter` over ``addresses``): each key's
            requests go to its first owner, batches of many keys are split by node and sent
            concurrently. False: every request goes to the first seed that answers (a
            :class:`SeedRouter`), e.g. to talk to exactly one node.

    The ring is fetched (``RING``, ``NS_LIST``) before the first request, and again, by the
    one task whose response first carries a newer ring version, before that task's call
    returns; other tasks keep routing by the ring they have. A node outside a mesh has no
    ring, and then the client routes by seed as with ``smart=False``.

    Retries: a request (or pipeline) made only of idempotent ops is sent once more, on a new
    connection, when its connection breaks before the answer arrives; others raise
    :class:`MeshcacheConnectionError`. Timeouts raise :class:`MeshcacheTimeout`, never
    retried; a connection whose exchange timed out or was cancelled is closed, not reused.
    """

    def __init__(
        self,
        addresses: str | Address | Sequence[str | Address] = "127.0.0.1:7400",
        *,
        timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        max_connections: int = 16,
        router: Router | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        smart: bool = True,
    ) -> None:
        if max_connections < 1:
            raise ConfigError("max_connections must be at least 1")
        self.router: Router = router or default_router(addresses, smart=smart)
        # True until a first request has asked the router whether it wants the ring.
        self._ring_unasked = True
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.max_frame = max_frame
        self._idle: dict[Address, list[C]] = {}
        # Connections lent out, and the tasks waiting for one to come back. Counted here rather
        # than with the loop's semaphore: trio's acquire takes two checkpoints (scheduler passes)
        # even when a connection is free; this costs nothing until the pool is exhausted.
        self._lent = 0
        self._waiters: deque[Event] = deque()
        self._closed = False

    # -- what a front end supplies --------------------------------------------------------------

    @abstractmethod
    async def _open(self, address: Address) -> C:
        """Connect to ``address``; raise OSError when it does not accept."""

    @abstractmethod
    def _deadline(self, seconds: float | None) -> AbstractAsyncContextManager[None]:
        """Run the block with a deadline; raise :class:`MeshcacheTimeout` when it passes."""

    @abstractmethod
    def _make_event(self) -> Event:
        """A new event of the running event loop."""

    @abstractmethod
    async def _gather(self, jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
        """Run the jobs concurrently; their results in order.

        When a job raises, the others are cancelled and the error propagates.
        """

    # -- the shared logic -----------------------------------------------------------------------

    async def _execute(self, command: Command[T]) -> T:
        results = await self._run((command,), raise_on_error=True)
        result: T = results[0]
        return result

    async def _run(self, commands: Sequence[Command[Any]], *, raise_on_error: bool) -> list[Any]:
        if self._ring_unasked:
            self._ring_unasked = False
            if self.router.observe_ring_version(0):
                await self._fetch_ring(None)
        if len(commands) > 1 or commands[0].spec.name in SPLIT_OPS:
            batches = plan(commands, self.router.primary)
            if batches is not None:
                return await self._run_plan(batches, raise_on_error)
        key, retryable = batch_route(commands)
        return await self._send(commands, key, retryable, raise_on_error)

    async def _send(
        self,
        commands: Sequence[Command[Any]],
        key: bytes | None,
        retryable: bool,
        raise_on_error: bool,
        prefer: Address | None = None,
    ) -> list[Any]:
        """Send the batch to the router's node for ``key`` (retried once if ``retryable``)."""
        attempts = 2 if retryable else 1
        for attempt in range(attempts):
            conn = await self._acquire(key, prefer)
            try:
                async with self._deadline(self.timeout):
                    exchange = await conn.exchange(commands)
            except MeshcacheConnectionError:
                self._discard(conn)
                if attempt + 1 < attempts:
                    continue
                raise
            except BaseException:
                self._discard(conn)
                raise
            self._release(conn)
            if self.router.observe_ring_version(conn.protocol.ring_version):
                await self._fetch_ring(conn.address)
            return exchange.results(raise_on_error=raise_on_error)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch_ring(self, prefer: Address | None) -> None:
        """Fetch the ring (from ``prefer`` first: it answered with the newer version)."""
        replies = None
        try:
            with contextlib.suppress(MeshcacheError):
                replies = await self._send(FETCH_RING, None, True, True, prefer)
        finally:
            self.router.ring_fetched(replies)

    async def _run_plan(self, batches: Plan, raise_on_error: bool) -> list[Any]:
        """Send every group concurrently, then merge the results in the caller's order."""
        jobs = [functools.partial(self._send_group, group) for group in batches.groups]
        outcomes = await self._gather(jobs)
        done: list[list[Any]] = []
        for outcome in outcomes:
            if isinstance(outcome, MeshcacheError):
                raise outcome
            done.append(outcome)
        return batches.results(done, raise_on_error=raise_on_error)

    async def _send_group(self, group: Group) -> list[Any] | MeshcacheError:
        # The error is returned, not raised: one group failing must not cancel the others,
        # whose connections would then be closed half-read.
        try:
            return await self._send(group.commands, group.key, group.retryable, False)
        except MeshcacheError as exc:
            return exc

    async def _acquire(self, key: bytes | None, prefer: Address | None = None) -> C:
        if self._closed:
            raise MeshcacheConnectionError("the client is closed")
        if self._lent >= self.max_connections:
            await self._wait_for_slot()
        self._lent += 1
        try:
            candidates = self.router.candidates(key)
            if prefer is not None:
                candidates = [prefer, *(a for a in candidates if a != prefer)]
            if candidates:
                # The usual case, without another coroutine: an idle connection to the first.
                idle = self._idle.get(candidates[0])
                while idle:
                    conn = idle.pop()
                    if conn.reusable:
                        return conn
                    conn.close_now()
            return await self._connect(candidates)
        except BaseException:
            self._free_slot()
            raise

    async def _wait_for_slot(self) -> None:
        """Wait until fewer than ``max_connections`` are lent; MeshcacheTimeout after timeout."""
        try:
            async with self._deadline(self.timeout):
                while self._lent >= self.max_connections:
                    event = self._make_event()
                    self._waiters.append(event)
                    try:
                        await event.wait()
                    except BaseException:
                        if event in self._waiters:
                            self._waiters.remove(event)
                        elif self._lent < self.max_connections:
                            # Woken but leaving (cancelled or timed out): pass the wake-up on.
                            self._wake_one()
                        raise
        except MeshcacheTimeout:
            raise MeshcacheTimeout(f"no free connection within {self.timeout} s") from None

    def _wake_one(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()

    def _free_slot(self) -> None:
        self._lent -= 1
        self._wake_one()

    async def _connect(self, candidates: Sequence[Address]) -> C:
        failures: list[str] = []
        for address in candidates:
            idle = self._idle.get(address)
            while idle:
                conn = idle.pop()
                if conn.reusable:
                    return conn
                conn.close_now()
            try:
                async with self._deadline(self.connect_timeout):
                    conn = await self._open(address)
            except (OSError, MeshcacheTimeout) as exc:
                self.router.failed(address)
                failures.append(f"{address}: {exc or type(exc).__name__}")
                continue
            self.router.connected(address)
            return conn
        raise MeshcacheConnectionError(
            "could not connect to any node (" + "; ".join(failures) + ")"
        )

    def _release(self, conn: C) -> None:
        if self._closed or conn.protocol.error is not None:
            conn.close_now()
        else:
            idle = self._idle.get(conn.address)
            if idle is None:
                self._idle[conn.address] = [conn]
            else:
                idle.append(conn)
        self._free_slot()

    def _discard(self, conn: C) -> None:
        try:
            conn.close_now()
        finally:
            self._free_slot()

    def pipeline(self, *, raise_on_error: bool = True) -> AsyncPipeline:
        """A pipeline: queue calls on it, then ``await execute()`` sends them in one write."""
        return AsyncPipeline(self, raise_on_error=raise_on_error)

    async def aclose(self) -> None:
        """Close every pooled connection; the client cannot be used afterwards."""
        self._closed = True
        idle = [conn for conns in self._idle.values() for conn in conns]
        self._idle.clear()
        for conn in idle:
            await conn.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncPipeline(Commands, CommandQueue):
    """Commands queued to be sent in one write by ``await execute()``.

    Every method queues its command and returns the pipeline, so calls chain. ``execute``
    returns the results in order. With ``raise_on_error`` (the default) it raises the first
    error after every reply has arrived, as redis-py does; without it, the exception objects
    stand in the list where their results would be. A pipeline made only of idempotent ops is
    retried once on a broken connection; any other is not.
    """

    def __init__(self, client: AsyncClientBase[Any], *, raise_on_error: bool = True) -> None:
        self._client = client
        self.raise_on_error = raise_on_error
        self._commands: list[Command[Any]] = []

    def _execute(self, command: Command[Any]) -> Self:
        self._commands.append(command)
        return self

    def __len__(self) -> int:
        return len(self._commands)

    async def execute(self, *, raise_on_error: bool | None = None) -> list[Any]:
        """Send every queued command, wait for all replies, return the results in order."""
        commands, self._commands = self._commands, []
        if not commands:
            return []
        if raise_on_error is None:
            raise_on_error = self.raise_on_error
        return await self._client._run(commands, raise_on_error=raise_on_error)

    def reset(self) -> None:
        """Forget the queued commands."""
        self._commands = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.reset()


__all__ = ["RECV_SIZE", "AsyncClientBase", "AsyncConnection", "AsyncPipeline", "Event"]
