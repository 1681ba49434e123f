"""A probe client: what one ordinary client sees while the mesh works (unpipelined, fixed rate).

The pipelining writers (:mod:`tools.stability_figures.writers`) load the mesh as hard as it
takes, and a reply of theirs waits for its whole batch: their latency says how long a batch
took, not what a client waiting for one answer at a time gets. The probe is that client: one
process, one :class:`meshcache.Client` (smart routing: each key to its owner by the ring the
client learns), one request at a time, ``rate`` requests a second on a fixed schedule (half
GETs, half SETs of 100-byte values, over the keys the writers preloaded).

Two latencies per reply, each into a histogram of the *phase* the parent has set:

* **service**: request sent → answer read (what the target "client p99 during a join" means);
* **from schedule**: the time the request was due → answer read. A stall makes the requests
  due behind it late too, and this counts their wait (no coordinated omission). A probe more
  than :data:`MAX_BEHIND` behind its schedule (the machine cannot run it at ``rate``) starts
  the schedule afresh; the requests it never sent are counted as ``skipped``.

A request that fails (an error answer, a time-out, a lost connection) is counted as an error in
its phase and not timed.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

from meshcache.errors import MeshcacheError
from tools.bench.histogram import LatencyHistogram, bucket_of, new_counts
from tools.bench.workload import Workload, key
from tools.stability_figures.writers import PHASES, VALUE_SIZE

RATE = 500.0  # requests a second
MAX_BEHIND = 1.0  # seconds behind the schedule before it starts afresh
TIMEOUT = 5.0  # seconds a request may take before it counts as an error


@dataclass(slots=True)
class ProbeCounts:
    """What the probe saw in one phase."""

    service: LatencyHistogram = field(default_factory=LatencyHistogram)
    scheduled: LatencyHistogram = field(default_factory=LatencyHistogram)
    answered: int = 0
    errors: int = 0
    skipped: int = 0  # due but never sent: the probe fell too far behind

    def p99_ms(self) -> float:
        return self.service.percentile(99) / 1000

    def max_ms(self) -> float:
        return self.service.percentile(100) / 1000

    def scheduled_p99_ms(self) -> float:
        return self.scheduled.percentile(99) / 1000


def _probe(
    addresses: str,
    keys: int,
    rate: float,
    seed: int,
    phase: Any,
    stop: Event,
    pipe: Connection,
) -> None:
    import meshcache  # in the child: the parent need not import the client

    service = [new_counts() for _ in PHASES]
    scheduled = [new_counts() for _ in PHASES]
    answered = [0] * len(PHASES)
    errors = [0] * len(PHASES)
    skipped = [0] * len(PHASES)
    rng = random.Random(seed)
    value = Workload(value_size=VALUE_SIZE).value()
    interval = 1.0 / rate
    try:
        with meshcache.Client(addresses, timeout=TIMEOUT) as client:
            due = time.perf_counter()
            while not stop.is_set():
                wait = due - time.perf_counter()
                if wait > 0 and stop.wait(wait):  # the schedule; returns at once when stopped
                    break
                p = phase.value
                if wait < -MAX_BEHIND:
                    skipped[p] += int(-wait * rate)
                    due = time.perf_counter()
                k = key(rng.randrange(keys))
                sent = time.perf_counter()
                try:
                    if rng.random() < 0.5:
                        client.get(k)
                    else:
                        client.set(k, value)
                except (MeshcacheError, OSError):
                    errors[p] += 1
                else:
                    done = time.perf_counter()
                    service[p][bucket_of(int((done - sent) * 1e6))] += 1
                    scheduled[p][bucket_of(int((done - due) * 1e6))] += 1
                    answered[p] += 1
                due += interval
    finally:
        pipe.send((service, scheduled, answered, errors, skipped))
        pipe.close()


class Probe:
    """The probe process, started at once over the ``keys`` first keys of the writers; its
    phase is set with :meth:`set_phase`; :meth:`stop` ends it and returns the counts per phase."""

    def __init__(self, addresses: str, keys: int, *, rate: float = RATE, seed: int = 99) -> None:
        ctx = multiprocessing.get_context("fork")
        self.phase = ctx.RawValue("i", 0)
        self._stop = ctx.Event()
        parent, child = ctx.Pipe(duplex=False)
        self._pipe = parent
        self._proc = ctx.Process(
            target=_probe,
            args=(addresses, keys, rate, seed, self.phase, self._stop, child),
            daemon=True,
        )
        self._proc.start()
        child.close()

    def set_phase(self, phase: int) -> None:
        self.phase.value = phase

    def stop(self) -> list[ProbeCounts]:
        """Stop the probe; its counts per phase."""
        self._stop.set()
        phases = [ProbeCounts() for _ in PHASES]
        try:
            if not self._pipe.poll(TIMEOUT + 30):
                raise TimeoutError("the probe did not report in time")
            service, scheduled, answered, errors, skipped = self._pipe.recv()
            for counts, s, d, a, e, k in zip(
                phases, service, scheduled, answered, errors, skipped, strict=True
            ):
                counts.service.merge(s)
                counts.scheduled.merge(d)
                counts.answered += a
                counts.errors += e
                counts.skipped += k
        finally:
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(5)
            self._pipe.close()
        return phases
