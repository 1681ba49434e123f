"""Names the code that holds the event loop: a thread that looks at the loop thread's stack
while the loop is overdue.

The loop monitor (:mod:`meshcache.node.admin.looplag`) learns that a wake-up ran late only
once the loop is free again, and its step recorder, when it runs, can say only which task's
step was long and where that step stopped. This watch sees the stretch while it lasts: at
every wake-up the monitor tells it when the next one is due (:meth:`StallWatch.beat`, in the
watch's clock); a thread of the watch sleeps until the loop would be ``overdue`` seconds past
that time, and if it is (the due time has not moved on) records the loop thread's innermost
frames (``sys._current_frames``), then again every ``every`` seconds while the loop stays
held. The monitor takes the samples after the late wake-up
(:meth:`StallWatch.take`) and logs them beside the lag.

The thread needs the GIL to look. A stretch of Python code hands the GIL over every switch
interval (5 ms), so the sample lands inside the stretch. A call into C that keeps the GIL (a
garbage collection, a big table's resize) lets the thread in only when it returns: the sample
then names the line right after that call, and the sample's ``waited`` (how late the watch's
own look ran) says that the GIL was held meanwhile.

The same thread measures how much of a lag the loop's own work accounts for: ``early`` (1 ms)
after the due time of a loop not yet awake, it reads the loop thread's CPU clock
(:meth:`StallWatch.reading`); the loop thread's CPU time from then until it wakes, plus the
reading's own distance from the due time, bounds the lag's own part from above, however long
the thread waited for a core meanwhile.

The thread wakes once per beat of a loop that is on time (20 a second beside the node's
monitor); each wake-up costs a few microseconds and a GIL hand-over. The thread is a daemon,
started by :meth:`StallWatch.start` and joined by :meth:`StallWatch.stop`.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Final

#: Samples kept per stall: the first ones, and the last slot always the latest.
KEEP: Final = 4
#: Frames kept per sample, innermost first.
DEPTH: Final = 10


@dataclass(frozen=True, slots=True)
class Held:
    """One look at a loop that was overdue.

    Attributes:
        overdue: seconds the loop was past its due time when the thread looked.
        waited: seconds the look itself ran late (the GIL or a core was not to be had).
        stack: the loop thread's innermost frames, ``path:line function``, innermost first.
    """

    overdue: float
    waited: float
    stack: tuple[str, ...]


class StallWatch:
    """Samples the loop thread's stack while the loop is overdue (the module docstring).

    Args:
        overdue: seconds past its due time after which the loop counts as held.
        every: seconds between two looks of the thread while the loop stays held.
        early: seconds past its due time after which the loop thread's CPU time is read
            (:meth:`reading`), where the kernel lets one thread read another's CPU clock.
        clock: the watch's clock (real time: ``time.perf_counter``).
    """

    def __init__(
        self,
        overdue: float,
        *,
        every: float = 0.01,
        early: float = 0.001,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not (overdue > 0 and every > 0 and 0 < early < overdue):
            raise ValueError("overdue > 0, every > 0 and 0 < early < overdue")
        self.overdue = overdue
        self.every = every
        self.early = early
        self.clock = clock
        self._due = float("inf")
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._held: list[Held] = []
        self._held_due = float("nan")
        self._looked = -math.inf
        self._cpu: Callable[[], float] | None = None
        self._read_due = math.nan
        self._reading: tuple[float, float, float] | None = None  # (due, at, cpu)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def beat(self, due: float) -> None:
        """From the loop thread: the loop expects to wake next at ``due`` (the watch's clock)."""
        self._due = due

    def start(self) -> None:
        """Start watching the calling thread (the loop's)."""
        if self._thread is not None:
            return
        self._loop_thread = threading.get_ident()
        self._cpu = loop_thread_cpu()
        self._due = float("inf")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="meshcache-stallwatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def take(self) -> list[Held]:
        """The samples of the last stall seen (empty if none since the last call)."""
        if not self._held:
            return []
        with self._lock:
            held, self._held = self._held, []
        return held

    def look(self, now: float, waited: float) -> Held | None:
        """One look (what the thread does every ``every`` seconds): a sample if the loop is
        overdue, kept for :meth:`take`."""
        due = self._due
        if now - due < self.overdue:
            return None
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return None
        sample = Held(now - due, max(0.0, waited), stack(frame))
        with self._lock:
            if due != self._held_due:
                self._held_due = due
                self._held = []
            if len(self._held) < KEEP:
                self._held.append(sample)
            else:
                self._held[-1] = sample
        return sample

    def reading(self, due: float) -> tuple[float, float] | None:
        """``(at, cpu)``: the loop thread's CPU time (seconds) read at ``at``, ``early`` or a
        little more after ``due``, when the loop had not woken by then; None otherwise."""
        reading = self._reading
        if reading is None or reading[0] != due:
            return None
        return reading[1], reading[2]

    def _read(self, due: float) -> None:
        cpu = self._cpu
        if cpu is not None:
            used = cpu()
            self._reading = (due, self.clock(), used)
        self._read_due = due

    def _run(self) -> None:
        clock, every, overdue, early = self.clock, self.every, self.overdue, self.early
        while True:
            due = self._due
            now = clock()
            if due == math.inf:  # the loop is awake between two beats
                wait = every
            elif self._read_due != due:
                # Asleep until the loop would be ``early`` late: a loop on time has moved its
                # due time on by then, so a healthy loop costs one wake-up per beat.
                if now < due + early:
                    wait = due + early - now
                else:
                    self._read(due)
                    continue
            elif now < due + overdue:
                wait = due + overdue - now
            else:
                self.look(now, now - max(due + overdue, self._looked + every))
                self._looked = now
                wait = every
            if self._stop.wait(wait):
                return


def loop_thread_cpu() -> Callable[[], float] | None:
    """A reader, callable from any thread, of the calling thread's CPU clock (seconds); None
    where the platform has no per-thread clock another thread may read."""
    try:
        clock_id = time.pthread_getcpuclockid(threading.get_ident())
        time.clock_gettime(clock_id)
    except (AttributeError, OSError):
        return None
    return functools.partial(time.clock_gettime, clock_id)


def stack(frame: FrameType | None, depth: int = DEPTH) -> tuple[str, ...]:
    """``frame`` and its callers, innermost first, as ``path:line function`` (at most
    ``depth``; paths from the package or the standard library's directory on)."""
    lines: list[str] = []
    while frame is not None and len(lines) < depth:
        code = frame.f_code
        lines.append(f"{short_path(code.co_filename)}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return tuple(lines)


def short_path(path: str) -> str:
    """``path`` from the package's directory on: ``meshcache/...``, ``trio/...``, or the
    last two parts of a standard library module's path."""
    at = path.rfind("site-packages" + os.sep)
    if at >= 0:
        return path[at + len("site-packages") + 1 :]
    at = path.rfind(os.sep + "meshcache" + os.sep)
    if at >= 0:
        return path[at + 1 :]
    head, tail = os.path.split(path)
    return os.path.join(os.path.basename(head), tail)


__all__ = ["DEPTH", "KEEP", "Held", "StallWatch", "loop_thread_cpu", "short_path", "stack"]
