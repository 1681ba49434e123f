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

The thread wakes once per beat of a loop that is on time (20 a second beside the node's
monitor); each wake-up costs a few microseconds and a GIL hand-over. The thread is a daemon,
started by :meth:`StallWatch.start` and joined by :meth:`StallWatch.stop`.
"""

from __future__ import annotations

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
        clock: the watch's clock (real time: ``time.perf_counter``).
    """

    def __init__(
        self,
        overdue: float,
        *,
        every: float = 0.01,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not (overdue > 0 and every > 0):
            raise ValueError("overdue > 0 and every > 0")
        self.overdue = overdue
        self.every = every
        self.clock = clock
        self._due = float("inf")
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._held: list[Held] = []
        self._held_due = float("nan")
        self._looked = -math.inf
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

    def _run(self) -> None:
        clock, every, overdue = self.clock, self.every, self.overdue
        while True:
            intended = self._due + overdue
            now = clock()
            if now < intended:
                # Asleep until the loop would be overdue: a loop on time has moved its due time
                # on by then, so a healthy loop costs one wake-up per beat, not one per ``every``.
                wait = intended - now if intended != math.inf else every
            else:
                self.look(now, now - max(intended, self._looked + every))
                self._looked = now
                wait = every
            if self._stop.wait(wait):
                return


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


__all__ = ["DEPTH", "KEEP", "Held", "StallWatch", "short_path", "stack"]
