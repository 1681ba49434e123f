"""A trio instrument for tests: how long did the longest synchronous step hold the loop?

trio is cooperative: between two checkpoints a task runs alone, and every other task — the
gossip acks among them — waits. :class:`LongestStep` times every task step (from
``before_task_step`` to ``after_task_step``) on the real clock (``time.perf_counter``, not
trio's clock, which a ``MockClock`` would freeze) and keeps the longest one, per task too, so a
test can assert that a big piece of work was sliced::

    async def test_drop_is_sliced() -> None:
        with longest_step() as probe:
            await handoff.drop_unowned(config)
        assert probe.longest < 0.05, probe.describe()

It can also be given to ``trio.run(..., instruments=[probe])``, or to a pytest-trio test as a
fixture value (pytest-trio passes every :class:`trio.abc.Instrument` among a test's arguments
to ``trio.run``). The instrument costs a few microseconds per step: fine for tests, not meant
for production (see ``meshcache.node.admin.looplag`` for the node's own sampled recorder).

On a loaded machine a step's wall time includes the time the process was not scheduled;
``longest_step(clock=time.thread_time)`` times the CPU the step used instead, which is what a
test of slicing means to bound. On a virtual machine the host may also take a CPU away while
the thread runs on it, and the guest may count that *steal* as the thread's CPU time (an
anti-entropy step of about 7 ms once read 53 ms on a loaded run of the suite; its cause was
not seen): ``longest_step(cpu=True)`` times the thread's CPU less the host's
steal over all the machine's CPUs meanwhile (``/proc/stat``): steal never lengthens a step,
though steal from another CPU, taken off too, may shorten one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio
from trio.lowlevel import Task

from meshcache.node.admin.looplag import HostSteal

__all__ = ["LongestStep", "TaskSteps", "longest_step"]


@dataclass(slots=True)
class TaskSteps:
    """What one task name did while the instrument was on: step count, longest and total
    seconds."""

    steps: int = 0
    longest: float = 0.0
    total: float = 0.0


class LongestStep(trio.abc.Instrument):
    """Records the longest task step (seconds and the task's name) and per-name figures.

    Steps of tasks with the same name (``Task.name``: the function's qualified name unless the
    task was given one) are added up under that name. Nested use of one instance is not
    supported; two instances may be active at once.

    Args:
        clock: seconds for timing steps; ``time.perf_counter`` unless a test needs another.
    """

    def __init__(self, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started: float | None = None
        self.longest = 0.0
        """Seconds of the longest step seen (0.0 before any)."""
        self.task: str | None = None
        """The name of the task that ran the longest step."""
        self.steps = 0
        """Steps seen, every task included."""
        self.by_task: dict[str, TaskSteps] = {}

    def reset(self) -> None:
        """Forget every step seen so far (a step in progress is still timed)."""
        self.longest = 0.0
        self.task = None
        self.steps = 0
        self.by_task = {}

    def before_task_step(self, task: Task) -> None:
        self._started = self._clock()

    def after_task_step(self, task: Task) -> None:
        started = self._started
        if started is None:  # installed in the middle of a step
            return
        self._started = None
        took = self._clock() - started
        self.steps += 1
        name = task.name
        figures = self.by_task.get(name)
        if figures is None:
            figures = self.by_task[name] = TaskSteps()
        figures.steps += 1
        figures.total += took
        if took > figures.longest:
            figures.longest = took
        if took > self.longest:
            self.longest = took
            self.task = name

    def of(self, name_part: str) -> TaskSteps:
        """The figures of every task whose name contains ``name_part``, added up (the longest
        is the longest of them)."""
        out = TaskSteps()
        for name, figures in self.by_task.items():
            if name_part in name:
                out.steps += figures.steps
                out.total += figures.total
                out.longest = max(out.longest, figures.longest)
        return out

    def describe(self) -> str:
        """One line for an assertion message: the longest step, its task, the step count."""
        return f"longest step {self.longest * 1000:.1f} ms in {self.task!r} of {self.steps} steps"


@contextmanager
def longest_step(
    *, clock: Callable[[], float] = time.perf_counter, cpu: bool = False
) -> Iterator[LongestStep]:
    """Instrument the running trio loop for the ``with`` block; yields the :class:`LongestStep`.

    With ``cpu``, steps are timed by the thread's CPU time less the host's steal (the module
    docstring) instead of ``clock``.

    Must be entered from inside ``trio.run``. The step that enters the block is not timed (it
    started before the instrument), nor the step that leaves it (it is removed before that step
    ends).
    """
    host = HostSteal.open() if cpu else None
    if host is not None:
        cpus = os.cpu_count() or 1
        read = host.read

        def clock() -> float:
            stolen = read()
            return time.thread_time() - (stolen or 0.0) * cpus

    elif cpu:
        clock = time.thread_time
    probe = LongestStep(clock=clock)
    trio.lowlevel.add_instrument(probe)
    try:
        yield probe
    finally:
        trio.lowlevel.remove_instrument(probe)
        if host is not None:
            host.close()
