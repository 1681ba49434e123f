"""The loader's own timing: load latency per namespace and source, and each step of a miss
and of an invalidation, as histograms (``/metrics``).

The request path only calls :meth:`Histogram.observe` (a bisect and two additions);
``/metrics`` turns the counts into Prometheus histograms when it is scraped
(:func:`meshcache.node.admin.metrics.loader_families`).

Steps (seconds, one observation per request or event, at the node where it happens):

* ``forward`` — a non-owner's GET of a loader namespace sent to the key's owner, until its
  answer is back (hits and misses alike: the forwarding node cannot tell them apart);
* ``coalesce_wait`` — a miss that joined a load already in flight, until that load ended;
* ``query`` — the load's query as the node's event loop waits for it (the bridge's two
  crossings included; a reload whose query was sent as its NOTIFY arrived: from then on, one
  crossing);
* ``query_on_source`` — the same query timed on the asyncio loop, around the driver's call
  alone (so ``query`` minus this is the bridge);
* ``store`` — storing the loaded value;
* ``replicate`` — handing the loaded record to the replicator (the answer does not wait for
  the other owners);
* ``notify_hop`` — a NOTIFY from the driver's callback (asyncio thread) until the node's event
  loop handles it;
* ``notify_drop`` — dropping the announced key (store, copies, flights);
* ``notify_reload`` — from the NOTIFY's arrival at the driver (its asyncio thread) until the
  reloaded value is stored (the coordinator of a key whose loader reloads on change).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

#: Bucket upper bounds in seconds: 50 µs to 10 s, 1-2.5-5 per decade.
BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

STEPS = (
    "forward",
    "coalesce_wait",
    "query",
    "query_on_source",
    "store",
    "replicate",
    "notify_hop",
    "notify_drop",
    "notify_reload",
)


@dataclass(slots=True)
class Histogram:
    """Counts per bucket of :data:`BUCKETS` (the last one: above 10 s) and their sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus' ``(le, count)`` pairs, ``+Inf`` last."""
        out, running = [], 0
        for bound, n in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out

    def to_wire(self) -> dict[str, object]:
        return {"counts": list(self.counts), "sum": self.total}


@dataclass(slots=True)
class Timings:
    """A node's loader histograms: loads by (namespace, source), and steps by name."""

    loads: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    steps: dict[str, Histogram] = field(default_factory=lambda: {s: Histogram() for s in STEPS})

    def load(self, namespace: str, source: str, seconds: float) -> None:
        histogram = self.loads.get((namespace, source))
        if histogram is None:
            histogram = self.loads[(namespace, source)] = Histogram()
        histogram.observe(seconds)

    def step(self, name: str, seconds: float) -> None:
        self.steps[name].observe(seconds)

    def to_wire(self) -> dict[str, object]:
        """Plain data for INFO and ``/metrics``: bucket bounds, loads and steps."""
        return {
            "buckets": list(BUCKETS),
            "loads": [
                {"namespace": ns, "source": source, **h.to_wire()}
                for (ns, source), h in sorted(self.loads.items())
            ],
            "steps": {name: h.to_wire() for name, h in self.steps.items()},
        }


def cumulative(counts: list[int]) -> list[tuple[str, int]]:
    """``(le, count)`` pairs of per-bucket ``counts`` over :data:`BUCKETS` (``+Inf`` last)."""
    return Histogram(list(counts)).cumulative()


__all__ = ["BUCKETS", "STEPS", "Histogram", "Timings", "cumulative"]
