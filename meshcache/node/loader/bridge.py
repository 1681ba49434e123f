"""The bridge: an asyncio event loop in one thread, for the asyncio-only database driver.

asyncpg runs only on asyncio; the node runs on trio. :class:`AsyncioBridge` runs one asyncio
loop in a daemon thread for the node's whole life; :meth:`AsyncioBridge.run` hands it a
coroutine (``loop.call_soon_threadsafe``, which starts it as a task) and the coroutine's last
step wakes the trio task (``TrioToken.run_sync_soon``), so no trio thread ever blocks on the
database. The wake-up is sent from the task itself, not from a done-callback (asyncio runs
those one loop iteration later) nor through a ``concurrent.futures.Future``: a crossing each
way and nothing else. Cancelling the trio task cancels the asyncio task. Its cost per call is
measured by ``tools/loader_figures.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import trio

T = TypeVar("T")

#: How long closing the bridge waits for its loop's last tasks (pools closing).
CLOSE_TIMEOUT = 5.0


class BridgeClosedError(RuntimeError):
    """The bridge is not running (not started yet, or closed)."""


class AsyncioBridge:
    """One asyncio loop in one thread; trio awaits coroutines on it.

    Start it with :meth:`start` (from anywhere) and end it with :meth:`aclose` (from trio):
    closing runs the ``on_close`` coroutines on the loop first (pools closing), then stops the
    loop and joins the thread.
    """

    def __init__(self, name: str = "meshcache-loader") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._on_close: list[Callable[[], Awaitable[Any]]] = []
        self.calls = 0

    @property
    def running(self) -> bool:
        return self._loop is not None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise BridgeClosedError("the loader bridge is not running")
        return self._loop

    def start(self) -> None:
        """Start the loop's thread (once)."""
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=main, name=self._name, daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop

    def on_close(self, close: Callable[[], Awaitable[Any]]) -> None:
        """Run ``close()`` on the loop when the bridge closes (e.g. a pool's ``close``)."""
        self._on_close.append(close)

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` on the asyncio loop; its result or exception, here.

        Raises:
            BridgeClosedError: the bridge is not running.
        """
        loop = self.loop
        call: _Call[T] = _Call(fn, args, trio.lowlevel.current_trio_token())
        loop.call_soon_threadsafe(call.begin, loop)
        self.calls += 1
        try:
            await call.done.wait()
        except BaseException:
            call.cancel(loop)
            raise
        if call.error is not None:
            raise call.error
        return call.value  # type: ignore[return-value]

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop's thread, not waiting for it."""
        self.loop.call_soon_threadsafe(fn, *args)

    async def aclose(self) -> None:
        """Run the ``on_close`` coroutines, stop the loop and join its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        closers, self._on_close = self._on_close, []

        async def finish() -> None:
            for close in closers:
                with contextlib.suppress(Exception):  # closing: nobody is left to tell
                    await asyncio.wait_for(close(), CLOSE_TIMEOUT)

        with trio.CancelScope(shield=True):
            future = asyncio.run_coroutine_threadsafe(finish(), loop)
            await trio.to_thread.run_sync(future.result)
            self._loop = None
            loop.call_soon_threadsafe(loop.stop)
            await trio.to_thread.run_sync(thread.join)
            loop.close()
            self._thread = None


class _Call(Generic[T]):
    """One :meth:`AsyncioBridge.run`: started on the loop's thread, settled on trio's."""

    __slots__ = ("args", "cancelled", "done", "error", "fn", "task", "token", "value")

    def __init__(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], token: trio.lowlevel.TrioToken
    ) -> None:
        self.fn = fn
        self.args = args
        self.token = token
        self.done = trio.Event()
        self.value: T | None = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False

    def begin(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop's thread: start the call, unless the trio side gave up already."""
        if not self.cancelled:
            self.task = loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            self.value = await self.fn(*self.args)
        except asyncio.CancelledError:
            self.error = BridgeClosedError("the call was cancelled on the loader's loop")
        except BaseException as exc:
            self.error = exc
        # Settled by the task's own last step: trio hears of it one loop iteration sooner than
        # from a done-callback. When the trio run is over, nobody waits any more.
        with contextlib.suppress(trio.RunFinishedError):
            self.token.run_sync_soon(self.done.set)

    def cancel(self, loop: asyncio.AbstractEventLoop) -> None:
        """From trio's thread: the caller went away; cancel the asyncio task."""
        self.cancelled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs
            loop.call_soon_threadsafe(self._cancel_task)

    def _cancel_task(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


__all__ = ["AsyncioBridge", "BridgeClosedError"]
