"""The bridge: an asyncio event loop in one thread, for the asyncio-only database driver.

asyncpg runs only on asyncio; the node runs on trio. :class:`AsyncioBridge` runs one asyncio
loop in a daemon thread for the node's whole life; :meth:`AsyncioBridge.run` hands it a
coroutine (``asyncio.run_coroutine_threadsafe``) and wakes the trio task from the future's
done-callback (``TrioToken.run_sync_soon``), so no trio thread ever blocks on the database.
Cancelling the trio task cancels the asyncio task. Its cost per call is measured by
``tools/loader_figures.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: object) -> None:
            # When the trio run is over, nobody waits any more.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        future = asyncio.run_coroutine_threadsafe(_call(fn, args), loop)
        future.add_done_callback(wake)
        self.calls += 1
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            raise
        return future.result()

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


async def _call(fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    return await fn(*args)


__all__ = ["AsyncioBridge", "BridgeClosedError"]
