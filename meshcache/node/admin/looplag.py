"""How long the node's trio loop is held: lag of a periodic wake-up, and the longest task steps.

trio is cooperative. While one task runs a synchronous stretch every other task waits, gossip's
acks among them, so a node busy for longer than the probe timeout looks dead to its peers. This
module measures it, two ways:

* **Lag** (always on): a task sleeps ``interval`` seconds again and again and records how late
  each wake-up is. That is what any timer of the node suffers at that moment (a gossip probe
  deadline included). Kept over a sliding ``window`` for INFO (p50/p99/max) and as a cumulative
  histogram for ``/metrics``. Beside each lag goes its **own** part: the share of it the loop's
  thread spent running rather than runnable but waiting for a core. The kernel counts both per
  thread (``/proc/thread-self/schedstat``) but only as totals, read at each wake-up, so the
  share is the interval's: after the deadline the thread is never idle (an idle loop runs its
  timer at once), and the lag is taken to split between running and waiting as the whole
  interval's busy time did. Subtracting the interval's whole wait instead would take waits
  from before the deadline off the lag, and call a node that held its loop for 100 ms while
  sharing its core "not late". On a crowded machine the lag says how late timers ran, the own
  part how much of it the node's own work accounts for; where the kernel does not report the
  times, the own part is the whole lag. On a virtual machine the host may take a CPU away
  while the guest's thread runs on it: the guest counts that *steal* time neither as the
  thread's running nor as its waiting, so a busy node would count it as its own. The steal of
  the interval (``/proc/stat``, the mean over the machine's CPUs) is taken off the lag before
  it is split; a steal of one CPU of several is only partly taken off.
* **Steps** (a trio :class:`~trio.abc.Instrument`): every task step is timed, the longest one is
  kept with its task's name, and every step of at least ``stall_threshold`` is counted and
  logged as ``loop_stall`` with the task, the place it stopped at (where the stretch ended) and
  the CPU the thread used meanwhile (``cpu_ms`` well below ``step_ms``: the process was not
  running, a starved machine rather than a long stretch of work).
  Timing every step costs a few microseconds per step, so by default the recorder is *sampled*:
  on for ``sample_for`` seconds out of every ``sample_every``; ``steps="on"`` keeps it on (tests,
  a node being investigated), ``steps="off"`` never installs it.

A lag over ``stall_threshold`` seen while the recorder is off is logged as ``loop_lag``. With a
``watch`` (:mod:`meshcache.node.admin.stallwatch`, the node's default) a thread looks at the loop
thread's stack while the loop is overdue, so a lag whose own part is at least ``watch`` seconds
is logged as ``loop_held`` with where the loop was held, whether the step recorder runs or not.

While steps are recorded, garbage collections are timed too (a ``gc`` callback): a full
collection traverses every container the process holds — the store's key index among them —
and holds the loop for tens of milliseconds per million keys, inside whatever step triggered
it. Full collections go to a histogram; any collection of at least ``stall_threshold`` is
logged as ``gc_pause``, so a ``loop_stall`` it caused can be told apart.

The monitor owns no resources but its task: ``await nursery.start(monitor.run)``; cancel to stop
(the instrument is removed on the way out).
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Final, Literal, Self

import structlog
import trio
from prometheus_client.registry import Collector
from trio.lowlevel import Task

from meshcache.node.admin.metrics import loop_families
from meshcache.node.admin.stallwatch import Held, StallWatch

log = structlog.get_logger("meshcache.loop")

StepMode = Literal["sampled", "on", "off"]

#: A node's watch (``LoopMonitor(watch=...)``): a lag whose own part reaches this many seconds
#: is logged as ``loop_held`` with where the loop was held.
HELD_AFTER: Final = 0.025
#: Upper bounds (seconds) of the lag and long-step histogram buckets; +Inf is added.
BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    """Cumulative counts by :data:`BUCKETS` (Prometheus' histogram), a sum and a count."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; last = +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """``[(le, count of values <= le), ..., ("+Inf", count)]``."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


class StepRecorder(trio.abc.Instrument):
    """Times task steps: the longest per period, and each one over ``threshold`` (a stall).

    Args:
        threshold: a step at least this long (seconds) is a stall: counted, observed in
            :attr:`stalls`, logged.
        clock: the step clock (``time.perf_counter``: real time even under a ``MockClock``).
        on_stall: called with ``(seconds, task_name, where, cpu_seconds)`` for every stall
            (default: log). ``cpu_seconds`` is the CPU the thread used in the step: far less
            than ``seconds`` means the process was not running (starved by the machine), not
            that the step did that much work.
        cpu_clock: the thread's CPU clock (``time.thread_time``).
    """

    def __init__(
        self,
        threshold: float,
        *,
        clock: Callable[[], float] = time.perf_counter,
        on_stall: Callable[[float, str, str, float], None] | None = None,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.threshold = threshold
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._cpu_started = 0.0
        self._on_stall = on_stall or _log_stall
        self._started = 0.0
        self._stepping = False
        self.longest = 0.0
        """The longest step since the last :meth:`roll` (seconds)."""
        self.longest_task: str | None = None
        self.stalls = Histogram()

    def forget_step(self) -> None:
        """Forget a step in progress: call before (re)installing the recorder, since one removed
        in the middle of a step never saw that step end."""
        self._stepping = False

    def roll(self) -> tuple[float, str | None]:
        """Start a new period; return the ``(longest, task)`` of the one that ended."""
        ended = (self.longest, self.longest_task)
        self.longest, self.longest_task = 0.0, None
        return ended

    def before_task_step(self, task: Task) -> None:
        self._stepping = True
        self._started = self._clock()
        self._cpu_started = self._cpu_clock()

    def after_task_step(self, task: Task) -> None:
        took = self._clock() - self._started
        if not self._stepping:  # installed in the middle of this step
            return
        self._stepping = False
        if took > self.longest:
            self.longest = took
            self.longest_task = task.name
        if took >= self.threshold:
            self.stalls.observe(took)
            cpu = self._cpu_clock() - self._cpu_started
            self._on_stall(took, task.name, where(task), cpu)


class GcRecorder:
    """Times garbage collections (install :meth:`callback` in ``gc.callbacks``): full ones
    into :attr:`full`, any of at least ``threshold`` seconds counted and logged."""

    def __init__(self, threshold: float, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.threshold = threshold
        self._clock = clock
        self._started = 0.0
        self.full = Histogram()
        self.pauses = 0
        self.longest = 0.0

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        took = self._clock() - self._started
        generation = info.get("generation", 0)
        if generation == 2:
            self.full.observe(took)
        if took > self.longest:
            self.longest = took
        if took >= self.threshold:
            self.pauses += 1
            log.warning(
                "gc_pause",
                ms=round(took * 1000, 1),
                generation=generation,
                collected=info.get("collected", 0),
            )


def where(task: Task) -> str:
    """``file:line function`` where ``task`` is suspended, innermost first among meshcache's
    own frames (after a long step: where the long stretch ended); ``?`` if none."""
    coro: Any = task.coro
    found = "?"
    seen = 0
    while coro is not None and seen < 64:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None and "meshcache" in frame.f_code.co_filename:
            path = frame.f_code.co_filename
            short = path[path.rfind("meshcache") :]
            found = f"{short}:{frame.f_lineno} {frame.f_code.co_name}"
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        seen += 1
    return found


def _log_stall(seconds: float, task: str, at: str, cpu: float) -> None:
    log.warning(
        "loop_stall",
        step_ms=round(seconds * 1000, 1),
        cpu_ms=round(cpu * 1000, 1),
        task=task,
        at=at,
    )


class _ProcFile:
    """A file of ``/proc`` held open and read with one ``pread`` each time."""

    __slots__ = ("_fd",)
    PATH: ClassVar[str]

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def open(cls) -> Self | None:
        """A reader, or None where the kernel does not report what it reads."""
        try:
            fd = os.open(cls.PATH, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        reader = cls(fd)
        if reader.read() is None:
            reader.close()
            return None
        return reader

    def read(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class ThreadTimes(_ProcFile):
    """The calling thread's total time on a core and runnable but waiting for one, from
    ``/proc/thread-self/schedstat`` (its first two fields, nanoseconds): one ``pread`` of an
    open file, about a microsecond. :meth:`open` it on the thread it is about."""

    __slots__ = ()
    PATH = "/proc/thread-self/schedstat"

    def read(self) -> tuple[float, float] | None:
        """Seconds ``(ran, waited)`` so far; None if the file cannot be read."""
        try:
            fields = os.pread(self._fd, 128, 0).split()
            return int(fields[0]) / 1e9, int(fields[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return None


class HostSteal(_ProcFile):
    """CPU time the host (hypervisor) took from this virtual machine so far, the mean over its
    CPUs in seconds, from ``/proc/stat``'s ``steal`` field (USER_HZ ticks): one ``pread`` of
    an open file, a few microseconds."""

    __slots__ = ("_per_tick",)
    PATH = "/proc/stat"

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        self._per_tick = 1.0 / (os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1))

    def read(self) -> float | None:
        """Seconds stolen so far (per CPU); None if it cannot be read."""
        try:
            fields = os.pread(self._fd, 256, 0).split(b"\n", 1)[0].split()
            if fields[0] != b"cpu":
                return None
            return int(fields[8]) * self._per_tick
        except (OSError, IndexError, ValueError):
            return None


def own_part(lag: float, ran: float, waited: float) -> float:
    """The part of ``lag`` the thread spent running, given what it ``ran`` and ``waited`` for a
    core over the interval the lag ended (the module docstring): ``lag`` split as they were.
    Never more than ``ran``, never less than ``lag - waited``."""
    busy = ran + waited
    if lag <= 0.0:
        return 0.0
    if busy <= 0.0:
        return lag
    return min(lag, ran, max(lag * ran / busy, lag - waited))


def _unknown() -> tuple[float, float] | None:
    return None


def _no_steal() -> float | None:
    return None


class LoopMonitor:
    """Measures the event loop's lag and (sampled) longest steps; see the module docstring.

    Args:
        interval: seconds between two lag wake-ups.
        window: seconds of lag samples kept for :meth:`figures`; also the period over which
            the longest step is reported.
        stall_threshold: a lag or a step at least this long is a stall (counted and logged).
        steps: ``"sampled"`` (default), ``"on"`` or ``"off"``: when the step recorder runs.
        sample_every / sample_for: with ``"sampled"``, the recorder runs ``sample_for``
            seconds at the start of every ``sample_every``.
        clock: the loop's clock (``trio.current_time``).
        step_clock: the clock steps are timed with.
        times: the loop thread's total ``(ran, waited)`` seconds, on a core and runnable but
            waiting for one (default: read from ``/proc/thread-self/schedstat`` on the thread
            that runs the monitor), for the lag's own part; None where they cannot be read.
        steal: the host's steal so far, seconds per CPU (:class:`HostSteal`, read by default
            unless ``times`` is given), taken off a lag before its own part is split; None
            where it cannot be read.
        watch: if set, a :class:`~meshcache.node.admin.stallwatch.StallWatch` samples the loop
            thread's stack once the loop is this many seconds overdue (in real time, so only
            on a loop with a real clock), and a lag whose own part reaches it is logged as
            ``loop_held`` with the samples.
    """

    def __init__(
        self,
        *,
        interval: float = 0.05,
        window: float = 60.0,
        stall_threshold: float = 0.05,
        steps: StepMode = "sampled",
        sample_every: float = 10.0,
        sample_for: float = 1.0,
        clock: Callable[[], float] = trio.current_time,
        step_clock: Callable[[], float] = time.perf_counter,
        times: Callable[[], tuple[float, float] | None] | None = None,
        steal: Callable[[], float | None] | None = None,
        watch: float | None = None,
    ) -> None:
        if not (interval > 0 and window >= interval and stall_threshold > 0):
            raise ValueError("interval > 0, window >= interval and stall_threshold > 0")
        if watch is not None and not watch > 0:
            raise ValueError("watch > 0")
        if steps == "sampled" and not 0 < sample_for <= sample_every:
            raise ValueError("0 < sample_for <= sample_every")
        self.interval = interval
        self.window = window
        self.stall_threshold = stall_threshold
        self.steps: StepMode = steps
        self.sample_every = sample_every
        self.sample_for = sample_for
        self._clock = clock
        self._times = times
        self._steal = steal
        self.stolen = 0.0
        """The host's steal since start, seconds per CPU."""
        self.recorder = StepRecorder(stall_threshold, clock=step_clock)
        self.gc = GcRecorder(stall_threshold, clock=step_clock)
        self.watch = StallWatch(watch) if watch is not None else None
        self.held = 0
        """Lags logged as ``loop_held`` since start."""
        self.held_last: dict[str, Any] | None = None
        self._recording = False
        self._samples: deque[tuple[float, float, float]] = deque()  # (taken at, lag, own)
        self.lag = Histogram()
        self.lag_max = 0.0
        """The largest lag since start (seconds)."""
        self.own = Histogram()
        """The lags' own parts (the module docstring)."""
        self.own_max = 0.0
        self.stalls = 0
        """Lag samples at or over ``stall_threshold`` since start."""
        # The longest step of the period before the current one, and when the current began.
        self._last_longest: tuple[float, str | None] = (0.0, None)
        self._period_start = 0.0

    @property
    def recording(self) -> bool:
        """Whether the step recorder is installed right now."""
        return self._recording

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Measure until cancelled (then the instrument, if installed, is removed)."""
        clock = self._clock
        reader = None if self._times is not None else ThreadTimes.open()
        times = self._times or (reader.read if reader is not None else _unknown)
        host = None if self._steal is not None or self._times is not None else HostSteal.open()
        steal = self._steal or (host.read if host is not None else _no_steal)
        now = clock()
        spent = times()
        stolen = steal()
        self._period_start = now
        next_sample = now
        recording_since = now
        watch = self.watch
        task_status.started()
        try:
            if watch is not None:
                watch.start()
            while True:
                if self.steps == "on" or (self.steps == "sampled" and now >= next_sample):
                    if not self._recording:
                        self._record(True)
                        recording_since = now
                    if self.steps == "sampled":
                        next_sample = now + self.sample_every
                elif (
                    self._recording
                    and self.steps == "sampled"
                    and now - recording_since >= self.sample_for
                ):
                    self._record(False)
                deadline = now + self.interval
                if watch is not None:
                    watch.beat(watch.clock() + self.interval)
                await trio.sleep_until(deadline)
                now = clock()
                if watch is not None:
                    watch.beat(math.inf)
                spent_before, spent = spent, times()
                stolen_before, stolen = stolen, steal()
                lag = max(0.0, now - deadline)
                mine = lag
                if stolen is not None and stolen_before is not None and stolen > stolen_before:
                    self.stolen += stolen - stolen_before
                    mine = max(0.0, lag - (stolen - stolen_before))
                if spent is None or spent_before is None:
                    own = mine
                else:
                    own = own_part(
                        mine,
                        max(0.0, spent[0] - spent_before[0]),
                        max(0.0, spent[1] - spent_before[1]),
                    )
                self._observe(now, lag, own)
                if watch is not None:
                    self._log_held(lag, own, watch.take())
        finally:
            if watch is not None:
                watch.stop()
            if self._recording:
                self._record(False)
            if reader is not None:
                reader.close()
            if host is not None:
                host.close()

    def _record(self, on: bool) -> None:
        if on:
            self.recorder.forget_step()
            trio.lowlevel.add_instrument(self.recorder)
            gc.callbacks.append(self.gc.callback)
        else:
            # The instrument may already be gone: trio removes one that raised.
            with contextlib.suppress(KeyError):
                trio.lowlevel.remove_instrument(self.recorder)
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(self.gc.callback)
        self._recording = on

    def _observe(self, now: float, lag: float, own: float) -> None:
        self.lag.observe(lag)
        if lag > self.lag_max:
            self.lag_max = lag
        self.own.observe(own)
        if own > self.own_max:
            self.own_max = own
        if lag >= self.stall_threshold:
            self.stalls += 1
            if not self._recording:
                log.warning("loop_lag", lag_ms=round(lag * 1000, 1))
        samples = self._samples
        samples.append((now, lag, own))
        horizon = now - self.window
        while samples and samples[0][0] < horizon:
            samples.popleft()
        if now - self._period_start >= self.window:
            self._last_longest = self.recorder.roll()
            self._period_start = now

    def _log_held(self, lag: float, own: float, held: list[Held]) -> None:
        assert self.watch is not None
        if not held or own < self.watch.overdue:
            return
        self.held += 1
        first = held[0]
        at = next((line for line in first.stack if line.startswith("meshcache")), first.stack[0])
        self.held_last = {"own_ms": _ms(own), "at": at}
        log.warning(
            "loop_held",
            lag_ms=round(lag * 1000, 1),
            own_ms=round(own * 1000, 1),
            samples=[
                {
                    "overdue_ms": round(h.overdue * 1000, 1),
                    "waited_ms": round(h.waited * 1000, 1),
                    "stack": list(h.stack),
                }
                for h in held
            ],
        )

    def longest_step(self) -> tuple[float, str | None]:
        """The longest step recorded in the current period or the one before (seconds, task)."""
        current = (self.recorder.longest, self.recorder.longest_task)
        return max(current, self._last_longest, key=lambda x: x[0])

    def figures(self) -> dict[str, Any]:
        """What INFO shows under ``loop`` (msgpack- and JSON-able; times in milliseconds).

        ``lag_*`` are over the last ``window_s`` seconds, ``lag_own_*`` their own parts (the
        module docstring); ``host_steal_ms``: the CPU time per CPU the host took from this
        virtual machine since start; ``longest_step_*`` over the current
        and previous window (while the recorder ran); ``stalls`` counts lag samples over the
        threshold since start, ``long_steps`` recorded steps over it; ``gc_*``: full
        collections, the longest collection and those over the threshold, since start (while
        the recorder ran); ``held`` counts lags logged as ``loop_held`` (with a watch),
        ``held_last`` the last one's own part and the first place of the package it was held at.
        """
        lags = sorted(lag for _, lag, _ in self._samples)
        owns = sorted(own for _, _, own in self._samples)
        longest, task = self.longest_step()
        return {
            "interval_ms": self.interval * 1000,
            "window_s": self.window,
            "samples": len(lags),
            "lag_p50_ms": _ms(_quantile(lags, 0.5)),
            "lag_p99_ms": _ms(_quantile(lags, 0.99)),
            "lag_max_ms": _ms(lags[-1] if lags else 0.0),
            "lag_max_ever_ms": _ms(self.lag_max),
            "lag_own_p99_ms": _ms(_quantile(owns, 0.99)),
            "lag_own_max_ms": _ms(owns[-1] if owns else 0.0),
            "lag_own_max_ever_ms": _ms(self.own_max),
            "host_steal_ms": _ms(self.stolen),
            "stall_threshold_ms": self.stall_threshold * 1000,
            "stalls": self.stalls,
            "steps": self.steps,
            "recording": self._recording,
            "longest_step_ms": _ms(longest),
            "longest_step_task": task,
            "long_steps": self.recorder.stalls.count,
            "gc_full": self.gc.full.count,
            "gc_longest_ms": _ms(self.gc.longest),
            "gc_pauses": self.gc.pauses,
            "held": self.held,
            "held_last": self.held_last,
        }

    def metrics(self) -> dict[str, Any]:
        """The figures :func:`meshcache.node.admin.metrics.loop_families` turns into metric
        families: cumulative histograms of lags and of long steps, and the longest step."""
        return {
            "lag_buckets": self.lag.cumulative(),
            "lag_sum": self.lag.sum,
            "lag_own_buckets": self.own.cumulative(),
            "lag_own_sum": self.own.sum,
            "long_step_buckets": self.recorder.stalls.cumulative(),
            "long_step_sum": self.recorder.stalls.sum,
            "gc_full_buckets": self.gc.full.cumulative(),
            "gc_full_sum": self.gc.full.sum,
            "longest_step": self.longest_step()[0],
            "recording": self._recording,
            "held": self.held,
        }

    def collector(self) -> Collector:
        """A Prometheus collector of this monitor, for the node's own registry."""
        return _LoopCollector(self)


class _LoopCollector(Collector):
    def __init__(self, monitor: LoopMonitor) -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Any]:
        yield from loop_families(self._monitor.metrics())


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


__all__ = [
    "BUCKETS",
    "HELD_AFTER",
    "GcRecorder",
    "Histogram",
    "HostSteal",
    "LoopMonitor",
    "StepMode",
    "StepRecorder",
    "ThreadTimes",
    "own_part",
    "where",
]
