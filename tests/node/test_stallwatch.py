"""meshcache.node.admin.stallwatch: the thread that says where the loop was held."""

from __future__ import annotations

import os
import threading
import time

import pytest
import structlog.testing
import trio
from prometheus_client import CollectorRegistry, generate_latest

from meshcache.node.admin.looplag import LoopMonitor
from meshcache.node.admin.stallwatch import KEEP, StallWatch, short_path, stack


def test_a_look_before_the_loop_is_overdue_takes_nothing() -> None:
    watch = StallWatch(0.025)
    watch.beat(10.0)
    assert watch.look(10.02, 0.0) is None
    assert watch.take() == []


def test_a_look_at_an_overdue_loop_takes_its_stack() -> None:
    watch = StallWatch(0.025)  # made on this thread: it is the "loop" watched
    watch.beat(10.0)
    held = watch.look(10.03, 0.004)
    assert held is not None
    assert held.overdue == pytest.approx(0.03)
    assert held.waited == 0.004
    assert any("test_a_look_at_an_overdue_loop_takes_its_stack" in line for line in held.stack)
    assert watch.take() == [held]
    assert watch.take() == []


def test_a_stall_keeps_its_first_samples_and_its_latest() -> None:
    watch = StallWatch(0.01)
    watch.beat(0.0)
    looks = [watch.look(0.02 + i / 100, 0.0) for i in range(KEEP + 3)]
    kept = watch.take()
    assert kept == [*looks[: KEEP - 1], looks[-1]]


def test_a_new_stall_forgets_the_samples_of_one_never_taken() -> None:
    watch = StallWatch(0.01)
    watch.beat(0.0)
    watch.look(0.05, 0.0)
    watch.beat(1.0)  # the loop woke (nobody took the samples) and is due again
    assert watch.look(1.005, 0.0) is None
    later = watch.look(1.05, 0.0)
    assert watch.take() == [later]


def test_no_look_while_the_loop_is_awake() -> None:
    watch = StallWatch(0.01)
    watch.beat(float("inf"))
    assert watch.look(1e9, 0.0) is None


def test_stack_is_innermost_first_and_bounded() -> None:
    def inner() -> tuple[str, ...]:
        import sys

        return stack(sys._getframe(), depth=2)

    lines = inner()
    assert len(lines) == 2
    assert lines[0].endswith(" inner")
    assert "test_stallwatch.py:" in lines[0]
    assert lines[1].endswith(" test_stack_is_innermost_first_and_bounded")


def test_short_paths() -> None:
    sep = os.sep
    site = f"{sep}x{sep}lib{sep}python3.11{sep}site-packages{sep}trio{sep}_core{sep}_run.py"
    assert short_path(site) == f"trio{sep}_core{sep}_run.py"
    own = f"{sep}work{sep}main{sep}meshcache{sep}store{sep}keyspace.py"
    assert short_path(own) == f"meshcache{sep}store{sep}keyspace.py"
    stdlib = f"{sep}usr{sep}lib{sep}python3.11{sep}collections{sep}__init__.py"
    assert short_path(stdlib) == f"collections{sep}__init__.py"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        StallWatch(0.0)
    with pytest.raises(ValueError):
        StallWatch(0.01, every=0.0)
    with pytest.raises(ValueError):
        LoopMonitor(watch=0.0)


def _spin_cpu(seconds: float) -> None:
    """Hold the loop for ``seconds`` of this thread's CPU time (however crowded the machine)."""
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        pass


def test_a_held_loop_is_logged_with_where_it_was_held() -> None:
    monitor = LoopMonitor(interval=0.02, window=10.0, steps="off", watch=0.025)

    async def main() -> list[dict[str, object]]:
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            with structlog.testing.capture_logs() as logs:
                # Wait (with a deadline) for the wake-up after the stretch to log it.
                _spin_cpu(0.15)
                with trio.fail_after(10):
                    while monitor.held == 0:
                        await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        return logs

    logs = trio.run(main)
    held = [entry for entry in logs if entry["event"] == "loop_held"]
    assert len(held) == 1
    entry = held[0]
    assert isinstance(entry["own_ms"], float) and entry["own_ms"] >= 25.0
    samples = entry["samples"]
    assert isinstance(samples, list) and 1 <= len(samples) <= KEEP
    # The first look falls well inside the stretch (a later one may catch the loop waking).
    assert any(line.endswith(" _spin_cpu") for line in samples[0]["stack"])
    figures = monitor.figures()
    assert figures["held"] == 1
    assert figures["held_last"]["at"].endswith(" _spin_cpu")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(monitor.collector())
    assert "meshcache_loop_held_total 1.0" in generate_latest(registry).decode()
    assert not any(t.name == "meshcache-stallwatch" for t in threading.enumerate())


def test_the_watch_s_thread_ends_with_the_monitor() -> None:
    monitor = LoopMonitor(interval=0.02, steps="off", watch=0.025)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            assert monitor.watch is not None and monitor.watch.running
            assert any(t.name == "meshcache-stallwatch" for t in threading.enumerate())
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert monitor.watch is not None and not monitor.watch.running
    assert not any(t.name == "meshcache-stallwatch" for t in threading.enumerate())
