"""meshcache.testing.instrument: the LongestStep instrument the slicing tests rely on."""

from __future__ import annotations

import time
from functools import partial

import pytest
import trio
import trio.testing

from meshcache.testing.instrument import LongestStep, longest_step


class FakeClock:
    """A step clock the test advances by hand: exact figures, no dependence on CPU speed."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def _work(clock: FakeClock, seconds: float, *, slices: int = 1) -> None:
    for i in range(slices):
        if i:
            await trio.lowlevel.checkpoint()
        clock.t += seconds / slices


@pytest.mark.trio
async def test_records_longest_step_and_its_task() -> None:
    clock = FakeClock()
    async with trio.open_nursery() as nursery:
        with longest_step(clock=clock) as probe:
            nursery.start_soon(_work, clock, 0.2, name="one-big-stretch")
            nursery.start_soon(partial(_work, clock, 0.2, slices=20), name="sliced")
            await trio.testing.wait_all_tasks_blocked()
    assert probe.longest == pytest.approx(0.2)
    assert probe.task == "one-big-stretch"
    sliced = probe.of("sliced")
    assert sliced.steps >= 20
    assert sliced.longest == pytest.approx(0.01)
    assert sliced.total == pytest.approx(0.2)
    assert probe.steps >= 21
    assert "200.0 ms" in probe.describe()


@pytest.mark.trio
async def test_reset_forgets_what_was_seen() -> None:
    clock = FakeClock()
    with longest_step(clock=clock) as probe:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_work, clock, 0.1)
        probe.reset()
        assert (probe.longest, probe.task, probe.steps, probe.by_task) == (0.0, None, 0, {})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_work, clock, 0.05, name="after")
    assert probe.longest == pytest.approx(0.05)
    assert probe.task == "after"


def test_given_to_trio_run_and_real_clock() -> None:
    probe = LongestStep()

    async def main() -> None:
        end = time.perf_counter() + 0.03
        while time.perf_counter() < end:  # hold the loop, on purpose
            pass
        await trio.lowlevel.checkpoint()

    trio.run(main, instruments=[probe])
    assert probe.longest >= 0.03
    assert probe.task is not None and "main" in probe.task


@pytest.fixture
def probe() -> LongestStep:
    return LongestStep()


@pytest.mark.trio
async def test_pytest_trio_passes_it_as_an_instrument(
    probe: LongestStep, autojump_clock: trio.testing.MockClock
) -> None:
    await trio.sleep(5)  # the mock clock jumps; the step clock does not
    assert probe.steps > 0
    assert probe.longest < 1.0


async def _spin(seconds: float) -> None:
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        pass


async def _block(seconds: float) -> None:
    time.sleep(seconds)  # the loop held, its thread off the CPU


@pytest.mark.trio
async def test_cpu_steps_are_the_cpu_they_used_never_more() -> None:
    with longest_step(cpu=True) as probe:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_spin, 0.03, name="spins")
    # The host's steal meanwhile (of any CPU) is taken off: never longer than the work (and,
    # when another CPU was stolen from, possibly shorter).
    assert probe.of("spins").steps == 1
    assert probe.of("spins").longest <= 0.035
    with longest_step(cpu=True) as probe:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_block, 0.05, name="blocks")
    assert probe.of("blocks").longest < 0.02
