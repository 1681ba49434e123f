"""Shared by the console's tests: screen text, waiting on a running app, a live mesh.

textual's pilot runs on asyncio; the tests are plain functions that call :func:`run` (one
``asyncio.run`` per test) rather than an asyncio plugin, and pytest-trio's ``trio_mode`` is
not used.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from rich.console import Console
from textual.app import App

from meshcache.testing.mesh import Mesh

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    """Run one test body on a fresh asyncio loop."""

    async def main() -> T:
        return await coro

    return asyncio.run(main())


def screen_text(app: App[Any]) -> str:
    """The screen as a person reads it: plain text, one line per terminal row."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
    )
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    console.print(update)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def line_with(screen: str, *words: str) -> str | None:
    """The first screen line containing every one of ``words``."""
    return next((line for line in screen.splitlines() if all(w in line for w in words)), None)


def row(screen: str, key: str) -> str | None:
    """The table row whose first column is ``key`` (None when not shown)."""
    for line in screen.splitlines():
        words = line.split()
        if words and words[0] == key:
            return line
    return None


async def wait_screen(
    app: App[Any],
    condition: Callable[[str], bool],
    timeout: float,
    what: str,
    every: float = 0.1,
) -> str:
    """Let the app run until its screen text satisfies ``condition``; that screen text."""
    deadline = time.monotonic() + timeout
    while True:
        screen = screen_text(app)
        if condition(screen):
            return screen
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; screen:\n{screen}")
        await asyncio.sleep(every)


async def wait_true(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Let the app run until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


@contextmanager
def live_mesh(n: int, *extra: str) -> Iterator[Mesh]:
    """``n`` node processes in a temporary directory; all killed and removed on exit."""
    with tempfile.TemporaryDirectory(prefix="meshcache-tui-") as tmp, ExitStack() as stack:
        yield Mesh(stack, Path(tmp), n, *extra)


__all__ = ["line_with", "live_mesh", "row", "run", "screen_text", "wait_screen", "wait_true"]
