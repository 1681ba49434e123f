"""What the trio and asyncio front ends share beyond the engine: awaited methods and pipelines.

A concrete async front end is a :class:`AsyncClientBase` with the engine's adapter methods
(:mod:`meshcache.client.engine`) written for its event loop, and a connection class that moves
bytes for one :class:`~meshcache.client.core.Exchange`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from meshcache.client.commands import AsyncExecutor
from meshcache.client.core import Command
from meshcache.client.engine import ClientEngine, Connection, PipelineBase

T = TypeVar("T")
C = TypeVar("C", bound="AsyncConnection")


class AsyncConnection(Connection, Protocol):
    """A connection of an async front end: closing it may wait for the loop."""

    async def aclose(self) -> None: ...


class AsyncClientBase(ClientEngine[C], AsyncExecutor):
    """Base of :class:`~meshcache.TrioClient` and :class:`~meshcache.AsyncClient`.

    Methods are those of :class:`~meshcache.Client`, awaited; one client serves the tasks of one
    event loop. The arguments (:meth:`ClientEngine.__init__`) and the rules for deadlines,
    retries and routing are those of every front end: see :mod:`meshcache.client.engine`. A
    cancellation, like a timeout, closes the connection it interrupted rather than reuse it.
    """

    async def _execute(self, command: Command[T]) -> T:
        results = await self._run((command,), raise_on_error=True)
        result: T = results[0]
        return result

    def pipeline(self, *, raise_on_error: bool = True) -> AsyncPipeline:
        """A pipeline: queue calls on it, then ``await execute()`` sends them in one write."""
        return AsyncPipeline(self, raise_on_error=raise_on_error)

    async def aclose(self) -> None:
        """Close every pooled connection; the client cannot be used afterwards."""
        for conn in self._close_pool():
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


class AsyncPipeline(PipelineBase):
    """Commands queued on an async client, sent in one write by ``await execute()``.

    Calls chain (``pipe.set(k, v).get(k)``); see :class:`~meshcache.client.engine.PipelineBase`
    for results, errors and retries. Leaving an ``async with`` block discards what was queued
    and not executed.
    """

    async def execute(self, *, raise_on_error: bool | None = None) -> list[Any]:
        """Send every queued command, wait for all replies, return the results in order."""
        call = self._take(raise_on_error)
        return [] if call is None else await call

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.reset()


__all__ = ["AsyncClientBase", "AsyncConnection", "AsyncPipeline"]
