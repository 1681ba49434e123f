"""meshcache.node.admin.looplag: the node's loop-lag task and its sampled step recorder."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import TypeVar

import pytest
import structlog.testing
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from meshcache.node.admin.looplag import (
    BUCKETS,
    Histogram,
    HostSteal,
    LoopMonitor,
    StepRecorder,
    ThreadTimes,
    own_part,
)


class StepClock:
    """The step clock, advanced by hand by a task that 'works' (no real CPU time needed)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_histogram_is_cumulative() -> None:
    h = Histogram()
    for value in (0.0005, 0.003, 0.003, 0.2, 10.0):
        h.observe(value)
    cumulative = dict(h.cumulative())
    assert cumulative["0.001"] == 1
    assert cumulative["0.005"] == 3
    assert cumulative["0.25"] == 4
    assert cumulative[str(BUCKETS[-1])] == 4
    assert cumulative["+Inf"] == 5 == h.count
    assert h.sum == pytest.approx(10.2065)


@pytest.mark.trio
async def test_lag_is_how_late_the_wakeup_ran(autojump_clock: trio.testing.MockClock) -> None:
    monitor = LoopMonitor(interval=0.05, window=10.0, stall_threshold=0.05, steps="off")
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        await trio.sleep(1.0)
        assert monitor.figures()["lag_max_ms"] == 0.0
        with structlog.testing.capture_logs() as logs:
            # A synchronous stretch: the clock moves on while nothing else may run.
            autojump_clock.jump(0.3)
            await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    figures = monitor.figures()
    assert 250.0 <= figures["lag_max_ms"] <= 300.0
    assert figures["stalls"] == 1
    assert figures["lag_p50_ms"] == 0.0
    assert figures["samples"] >= 20
    assert [e["event"] for e in logs] == ["loop_lag"]
    assert monitor.lag.count == figures["samples"]


class ThreadClock:
    """The loop thread's time on a core and waiting for one so far, advanced by hand."""

    def __init__(self) -> None:
        self.ran = 0.0
        self.waited = 0.0

    def __call__(self) -> tuple[float, float]:
        return self.ran, self.waited

    async def hold(
        self, clock: trio.testing.MockClock, seconds: float, ran: float, waited: float
    ) -> None:
        """The loop is held ``seconds`` (the thread ``ran`` and ``waited`` meanwhile), then
        the monitor wakes up."""
        self.ran += ran
        self.waited += waited
        clock.jump(seconds)
        await trio.sleep(0.2)

    def monitor(self) -> LoopMonitor:
        """A lag monitor (no step recorder) that reads the thread's times from this clock."""
        return LoopMonitor(
            interval=0.05, window=10.0, stall_threshold=0.05, steps="off", times=self
        )


@pytest.mark.trio
async def test_a_lag_s_own_part_is_its_share_of_the_time_on_a_core(
    autojump_clock: trio.testing.MockClock,
) -> None:
    spent = ThreadClock()
    monitor = spent.monitor()
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        await trio.sleep(1.0)
        # Waiting for a core: 0.3 s late, all of it in the run queue.
        await spent.hold(autojump_clock, 0.3, ran=0.0, waited=0.3)
        figures = monitor.figures()
        assert figures["lag_max_ms"] >= 250.0
        assert figures["lag_own_max_ms"] == 0.0
        # Its own work: 0.2 s late, all of it on a core.
        await spent.hold(autojump_clock, 0.2, ran=0.2, waited=0.0)
        # Both: 0.4 s late, a quarter of it waiting.
        await spent.hold(autojump_clock, 0.4, ran=0.3, waited=0.1)
        nursery.cancel_scope.cancel()
    figures = monitor.figures()
    assert figures["lag_max_ever_ms"] >= 350.0
    assert 250.0 <= figures["lag_own_max_ever_ms"] <= 300.0
    assert monitor.own.count == monitor.lag.count


@pytest.mark.trio
async def test_a_wait_before_the_deadline_does_not_hide_work_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A busy node sharing its core waits half of every interval; a long step after the
    deadline is still its own, in proportion."""
    spent = ThreadClock()
    monitor = spent.monitor()
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        await trio.sleep(0.5)
        # 0.05 s to the deadline and 0.1 s past it, busy throughout at half a core.
        await spent.hold(autojump_clock, 0.15, ran=0.075, waited=0.075)
        nursery.cancel_scope.cancel()
    figures = monitor.figures()
    assert figures["lag_max_ever_ms"] >= 99.0
    assert 45.0 <= figures["lag_own_max_ever_ms"] <= 55.0  # not lag - waited = 25 ms


@pytest.mark.trio
async def test_the_time_the_host_took_is_not_the_node_s_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """On a virtual machine the host may take the CPU while the loop's thread runs; the guest
    counts that neither as running nor as waiting. The steal of the interval comes off the
    lag before its own part is split."""
    spent = ThreadClock()
    stolen = [0.0]
    monitor = LoopMonitor(
        interval=0.05,
        window=10.0,
        stall_threshold=0.05,
        steps="off",
        times=spent,
        steal=lambda: stolen[0],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        await trio.sleep(0.5)
        # Held 0.3 s, 0.25 s past the deadline: the node ran throughout (as the guest sees
        # it), and the host took 0.2 s of it.
        stolen[0] += 0.2
        await spent.hold(autojump_clock, 0.3, ran=0.35, waited=0.0)
        nursery.cancel_scope.cancel()
    figures = monitor.figures()
    assert figures["lag_max_ever_ms"] >= 240.0
    assert 40.0 <= figures["lag_own_max_ever_ms"] <= 60.0
    assert figures["host_steal_ms"] == 200.0


R = TypeVar("R", ThreadTimes, HostSteal)


def _reader(kind: type[R]) -> R:
    """``kind`` opened; skips only where the kernel has no such file at all."""
    reader = kind.open()
    if reader is None:
        assert not Path(kind.PATH).exists(), f"{kind.PATH} exists but cannot be read"
        pytest.skip(f"this kernel has no {kind.PATH}")
    return reader


def test_the_host_s_steal_is_the_kernel_s() -> None:
    reader = _reader(HostSteal)
    try:
        first = reader.read()
        assert first is not None and first >= 0.0
        second = reader.read()
        assert second is not None and second >= first
    finally:
        reader.close()


@given(
    lag=st.floats(0.0, 1.0),
    ran=st.floats(0.0, 1.0),
    waited=st.floats(0.0, 1.0),
)
def test_an_own_part_lies_between_its_bounds(lag: float, ran: float, waited: float) -> None:
    own = own_part(lag, ran, waited)
    assert 0.0 <= own <= lag
    if ran + waited > 0.0:
        assert own <= ran
        assert own >= min(lag - waited, ran) - 1e-12
    else:
        assert own == lag


@pytest.mark.trio
async def test_the_thread_times_are_the_kernel_s(autojump_clock: trio.testing.MockClock) -> None:
    reader = _reader(ThreadTimes)
    try:
        first = reader.read()
        assert first is not None and min(first) >= 0.0
        # Run until the kernel's count moves: it adds a running thread's time at scheduler
        # ticks and switches, not at each read. Neither time ever goes back.
        second = first
        deadline = time.monotonic() + 5.0
        while second[0] == first[0] and time.monotonic() < deadline:
            sum(range(200_000))
            read = reader.read()
            assert read is not None
            second = read
        assert second[0] > first[0] and second[1] >= first[1]
    finally:
        reader.close()
    # Unknown times leave the whole lag as the node's own.
    monitor = LoopMonitor(interval=0.05, window=10.0, steps="off", times=lambda: None)
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        await trio.sleep(0.2)
        autojump_clock.jump(0.1)
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert monitor.figures()["lag_own_max_ever_ms"] == monitor.figures()["lag_max_ever_ms"] > 0


@pytest.mark.trio
async def test_window_forgets_old_lags(autojump_clock: trio.testing.MockClock) -> None:
    monitor = LoopMonitor(interval=0.05, window=2.0, steps="off")
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        await trio.sleep(0.5)
        autojump_clock.jump(0.2)
        await trio.sleep(0.5)
        assert monitor.figures()["lag_max_ms"] > 100
        await trio.sleep(3.0)
        nursery.cancel_scope.cancel()
    figures = monitor.figures()
    assert figures["lag_max_ms"] == 0.0
    assert figures["lag_max_ever_ms"] > 100
    assert figures["stalls"] == 1


async def _hold(clock: StepClock, seconds: float) -> None:
    clock.t += seconds  # the step 'took' this long
    await trio.lowlevel.checkpoint()


@pytest.mark.trio
async def test_steps_on_records_longest_step_and_logs_stalls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    steps = StepClock()
    monitor = LoopMonitor(stall_threshold=0.05, steps="on", step_clock=steps)
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            await trio.sleep(0.2)
            assert monitor.recording
            nursery.start_soon(_hold, steps, 0.01, name="small")
            nursery.start_soon(_hold, steps, 0.12, name="digest-everything")
            await trio.sleep(0.2)
            nursery.cancel_scope.cancel()
    assert not monitor.recording  # removed on the way out
    figures = monitor.figures()
    assert figures["longest_step_ms"] == pytest.approx(120.0)
    assert figures["longest_step_task"] == "digest-everything"
    assert figures["long_steps"] == 1
    stalls = [e for e in logs if e["event"] == "loop_stall"]
    assert len(stalls) == 1
    assert stalls[0]["task"] == "digest-everything"
    assert stalls[0]["step_ms"] == pytest.approx(120.0)
    assert "test_looplag.py" not in stalls[0]["at"]  # only meshcache's own frames are named


@pytest.mark.trio
async def test_sampled_recorder_runs_part_time(autojump_clock: trio.testing.MockClock) -> None:
    monitor = LoopMonitor(steps="sampled", sample_every=10.0, sample_for=1.0)
    seen: list[bool] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        for _ in range(200):  # 20 s
            await trio.sleep(0.1)
            seen.append(monitor.recording)
        nursery.cancel_scope.cancel()
    share = sum(seen) / len(seen)
    assert 0.05 <= share <= 0.2, share
    assert seen[0] and not seen[50] and seen[101]


@pytest.mark.trio
async def test_off_never_installs_the_instrument(autojump_clock: trio.testing.MockClock) -> None:
    monitor = LoopMonitor(steps="off")
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        await trio.sleep(30)
        assert not monitor.recording
        nursery.cancel_scope.cancel()
    assert monitor.figures()["longest_step_ms"] == 0.0


def test_recorder_ignores_the_step_it_was_installed_in() -> None:
    clock = StepClock()
    recorder = StepRecorder(0.05, clock=clock, on_stall=lambda *a: None)

    async def main() -> None:
        trio.lowlevel.add_instrument(recorder)
        clock.t += 1.0  # the rest of the installing step: not a whole step, not timed
        await trio.lowlevel.checkpoint()
        trio.lowlevel.remove_instrument(recorder)

    trio.run(main)
    assert recorder.longest < 1.0
    assert recorder.stalls.count == 0


@pytest.mark.trio
async def test_metrics_families(autojump_clock: trio.testing.MockClock) -> None:
    monitor = LoopMonitor(steps="off")
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(monitor.collector())
    text = generate_latest(registry).decode()
    assert 'meshcache_loop_lag_seconds_bucket{le="0.001"}' in text
    assert f"meshcache_loop_lag_seconds_count {float(monitor.lag.count)}" in text
    assert "meshcache_loop_long_step_seconds_count 0.0" in text
    assert "meshcache_loop_longest_step_seconds 0.0" in text
    assert "meshcache_loop_step_recording 0.0" in text
    assert "meshcache_loop_held_total 0.0" in text


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        LoopMonitor(interval=0)
    with pytest.raises(ValueError):
        LoopMonitor(steps="sampled", sample_every=1.0, sample_for=2.0)


@pytest.mark.trio
async def test_full_collections_are_timed_while_recording(
    autojump_clock: trio.testing.MockClock,
) -> None:
    monitor = LoopMonitor(steps="on", stall_threshold=1e-9)  # every collection is a "pause"
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            await trio.sleep(0.1)
            assert monitor.gc.callback in gc.callbacks
            gc.collect()
            nursery.cancel_scope.cancel()
    assert monitor.gc.callback not in gc.callbacks
    figures = monitor.figures()
    assert figures["gc_full"] >= 1 and figures["gc_pauses"] >= 1
    assert any(e["event"] == "gc_pause" and e["generation"] == 2 for e in logs)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(monitor.collector())
    assert "meshcache_loop_gc_full_seconds_count" in generate_latest(registry).decode()


@pytest.mark.trio
async def test_sampling_on_and_off_never_reports_the_time_in_between(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The recorder is removed in the middle of a step (that step never ends for it): when it
    is installed again, the gap must not show up as one huge step."""
    # Steps take no time on the mock clock; the gaps between them do.
    monitor = LoopMonitor(
        steps="sampled", sample_every=10.0, sample_for=1.0, step_clock=trio.current_time
    )
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            await trio.sleep(35)
            nursery.cancel_scope.cancel()
    assert [e for e in logs if e["event"] == "loop_stall"] == [], logs
    assert monitor.figures()["longest_step_ms"] == 0.0


def test_a_stall_says_how_much_of_it_was_cpu() -> None:
    """A step that held the loop while the process did not run (the step clock moved, the CPU
    clock did not) is told apart from one that worked all along."""
    wall, cpu = StepClock(), StepClock()
    seen: list[tuple[str, float, float]] = []
    recorder = StepRecorder(
        0.05,
        clock=wall,
        cpu_clock=cpu,
        on_stall=lambda took, task, at, used: seen.append((task, took, used)),
    )

    async def starved() -> None:
        wall.t += 0.2  # descheduled: time passes, no CPU is used

    async def working() -> None:
        wall.t += 0.2
        cpu.t += 0.2

    async def main() -> None:
        trio.lowlevel.add_instrument(recorder)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(starved, name="starved")
            nursery.start_soon(working, name="working")
        trio.lowlevel.remove_instrument(recorder)

    trio.run(main)
    assert sorted(seen) == [
        ("starved", pytest.approx(0.2), 0.0),
        ("working", pytest.approx(0.2), pytest.approx(0.2)),
    ]
