"""A read-heavy load through smart clients in worker processes, counted per time window.

Each worker process owns one smart :class:`meshcache.Client` and sends GETs (and a share of SETs
that rewrite the preloaded value, so every GET of a preloaded key should hit) to random keys,
one at a time, counting GETs and hits per ``window`` seconds of CLOCK_MONOTONIC (shared by all
processes, so the windows line up with the parent's clock).
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

import meshcache
from meshcache.errors import MeshcacheError


@dataclass(slots=True)
class Windows:
    """Per-window counts, index = (t - t0) // window."""

    gets: list[int] = field(default_factory=list)
    hits: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)

    def add(self, other: Windows) -> None:
        n = max(len(self.gets), len(other.gets))
        for mine, theirs in (
            (self.gets, other.gets),
            (self.hits, other.hits),
            (self.errors, other.errors),
        ):
            mine.extend([0] * (n - len(mine)))
            for i, v in enumerate(theirs):
                mine[i] += v

    def rate(self, first: int, last: int) -> tuple[float, int]:
        """Hit rate over windows ``first..last-1`` and the GETs it is based on."""
        gets = sum(self.gets[first:last])
        return (sum(self.hits[first:last]) / gets if gets else float("nan")), gets


def _worker(
    addresses: str,
    key: Callable[[int], bytes],
    keys: int,
    value: bytes,
    get_ratio: float,
    t0: float,
    window: float,
    seed: int,
    stop: Event,
    started: Synchronized[int],
    pipe: Connection,
) -> None:
    rng = random.Random(seed)
    out = Windows()
    with meshcache.Client(addresses, timeout=5.0) as client:
        client.ping()  # the ring is fetched before the first counted request
        with started.get_lock():
            started.value += 1
        while not stop.is_set():
            k = key(rng.randrange(keys))
            is_get = rng.random() < get_ratio
            try:
                hit = client.get(k) == value if is_get else bool(client.set(k, value))
                error = False
            except MeshcacheError:
                hit, error = False, True
            slot = int((time.monotonic() - t0) / window)
            while len(out.gets) <= slot:
                out.gets.append(0)
                out.hits.append(0)
                out.errors.append(0)
            if is_get:
                out.gets[slot] += 1
                out.hits[slot] += hit
            out.errors[slot] += error
    pipe.send(out)
    pipe.close()


class ReadLoad:
    """``procs`` worker processes running until :meth:`stop`; :meth:`stop` returns the counts."""

    def __init__(
        self,
        addresses: str,
        key: Callable[[int], bytes],
        keys: int,
        value: bytes,
        *,
        procs: int,
        get_ratio: float = 0.95,
        window: float = 0.1,
    ) -> None:
        ctx = multiprocessing.get_context("fork")
        self.t0 = time.monotonic()
        self.window = window
        self._stop = ctx.Event()
        self._started: Synchronized[int] = ctx.Value("i", 0)
        self._pipes: list[Connection] = []
        self._procs = []
        for i in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker,
                args=(
                    addresses,
                    key,
                    keys,
                    value,
                    get_ratio,
                    self.t0,
                    window,
                    i,
                    self._stop,
                    self._started,
                    child,
                ),
                daemon=True,
            )
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)

    def running(self) -> bool:
        """Every worker has its client ready and is sending."""
        return self._started.value == len(self._procs)

    def slot(self, t: float) -> int:
        """The window index of monotonic time ``t``."""
        return int((t - self.t0) / self.window)

    def stop(self) -> Windows:
        self._stop.set()
        total = Windows()
        try:
            for pipe in self._pipes:
                if not pipe.poll(30):
                    raise TimeoutError("a load worker did not report within 30 s")
                total.add(pipe.recv())
        finally:
            for proc in self._procs:
                proc.join(5)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(5)
            for pipe in self._pipes:
                pipe.close()
        return total
