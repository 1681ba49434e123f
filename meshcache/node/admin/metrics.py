"""The node's Prometheus metrics.

The hot path only bumps plain ints in :class:`NodeCounters`; :class:`NodeCollector` turns them
into metric families when ``/metrics`` is scraped. That keeps Prometheus' locks and label
lookups off the request path, and gives every node its own ``CollectorRegistry`` so two nodes
in one process (tests) never clash.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from meshcache.node.admin.latency import RequestLatency, cumulative, estimated_sum
from meshcache.node.loader.timing import cumulative as loader_cumulative


@dataclass
class NodeCounters:
    """Counters the data path updates in place (single trio thread: no locks needed)."""

    requests: Counter[str] = field(default_factory=Counter)  # by op
    errors: Counter[str] = field(default_factory=Counter)  # by error code
    bad_input: Counter[str] = field(default_factory=Counter)  # by kind of bad input
    connections_opened: int = 0
    connections_closed: Counter[str] = field(default_factory=Counter)  # by reason
    connections_current: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    latency: RequestLatency = field(default_factory=RequestLatency)  # by op, timed per request


class NodeCollector(Collector):
    """Exposes a node's counters, store statistics and gauges under ``meshcache_*``."""

    def __init__(
        self,
        counters: NodeCounters,
        store_stats: Callable[[], dict[str, Any]],
        uptime: Callable[[], float],
        *,
        gossip: Callable[[], dict[str, Any]] | None = None,
        mesh: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._c = counters
        self._store_stats = store_stats
        self._uptime = uptime
        self._gossip = gossip
        self._mesh = mesh

    def collect(self) -> Iterator[Any]:
        c = self._c
        requests = CounterMetricFamily(
            "meshcache_requests", "Requests handled, by op.", labels=["op"]
        )
        for op, n in sorted(c.requests.items()):
            requests.add_metric([op], n)
        yield requests

        errors = CounterMetricFamily(
            "meshcache_errors", "Error frames sent, by error code.", labels=["code"]
        )
        for code, n in sorted(c.errors.items()):
            errors.add_metric([code], n)
        yield errors

        bad = CounterMetricFamily(
            "meshcache_bad_input",
            "Malformed or refused input, by kind (malformed_msgpack, bad_request, unknown_op, "
            "wrong_arity, too_large, frame_too_large, too_many_connections, ...).",
            labels=["kind"],
        )
        for kind, n in sorted(c.bad_input.items()):
            bad.add_metric([kind], n)
        yield bad

        yield CounterMetricFamily(
            "meshcache_connections_opened",
            "Client connections accepted.",
            value=c.connections_opened,
        )
        closed = CounterMetricFamily(
            "meshcache_connections_closed",
            "Client connections closed, by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(c.connections_closed.items()):
            closed.add_metric([reason], n)
        yield closed
        yield GaugeMetricFamily(
            "meshcache_connections", "Client connections open now.", value=c.connections_current
        )
        yield CounterMetricFamily(
            "meshcache_received_bytes", "Bytes read from clients.", value=c.bytes_received
        )
        yield CounterMetricFamily(
            "meshcache_sent_bytes", "Bytes written to clients.", value=c.bytes_sent
        )
        yield GaugeMetricFamily(
            "meshcache_uptime_seconds", "Seconds since start.", value=self._uptime()
        )
        yield from latency_families(c.latency)
        yield from _store_families(self._store_stats())
        if self._gossip is not None:
            yield from _gossip_families(self._gossip())
        if self._mesh is not None:
            yield from _mesh_families(self._mesh())


def latency_families(latency: RequestLatency) -> Iterator[Any]:
    """How long the node took to answer each op on the data port, since start."""
    family = HistogramMetricFamily(
        "meshcache_request_duration_seconds",
        "Time the node took to answer a data-port request, by op: from decoding it until its "
        "answer is ready (a forward's or a quorum's wait included). Bounds: powers of 2 ns; "
        "the sum counts each request at the middle of its half-octave bucket (-15%/+21%).",
        labels=["op"],
    )
    for op, counts in sorted(latency.since_start().items()):
        family.add_metric([op], cumulative(counts), sum_value=estimated_sum(counts) / 1e9)
    yield family


def _mesh_families(figures: dict[str, Any]) -> Iterator[Any]:
    """The data plane: routing, replication, hints, hand-off, anti-entropy (docs/replication.md)."""
    counters = CounterMetricFamily(
        "meshcache_mesh",
        "Data-plane counters by part (dataplane, replicator, hints, rebalance, antientropy, "
        "peers, breakers, ...) and what they count (forwarded_out, applied, hinted_dead, "
        "records_pulled, opened, steered, ...).",
        labels=["part", "what"],
    )
    for part, values in sorted(figures.get("counters", {}).items()):
        for what, n in sorted(values.items()):
            counters.add_metric([part, str(what)], n)
    yield counters
    gauges = GaugeMetricFamily(
        "meshcache_mesh_state",
        "Data-plane levels: hints held (count, bytes), replica writes queued, ring version, "
        "peers whose circuit breaker is open, ...",
        labels=["what"],
    )
    for what, n in sorted(figures.get("gauges", {}).items()):
        gauges.add_metric([what], n)
    yield gauges
    timings = figures.get("loader_timings")
    if timings is not None:
        yield from loader_families(timings)


def loader_families(timings: dict[str, Any]) -> Iterator[Any]:
    """The read-through loader's own timing (``meshcache.node.loader.timing``)."""
    loads = HistogramMetricFamily(
        "meshcache_loader_load_duration_seconds",
        "Loads from a source, by namespace and source: from the start of the load until its "
        "value is stored (or it failed), the query through the asyncio bridge included.",
        labels=["namespace", "source"],
    )
    for load in timings["loads"]:
        loads.add_metric(
            [load["namespace"], load["source"]],
            loader_cumulative(load["counts"]),
            sum_value=load["sum"],
        )
    yield loads
    steps = HistogramMetricFamily(
        "meshcache_loader_step_duration_seconds",
        "Each step of a read-through miss and of an invalidation, timed per request where it "
        "happens: forward, coalesce_wait, query, query_on_source, store, replicate, "
        "notify_hop, notify_drop, notify_reload (docs/loader.md).",
        labels=["step"],
    )
    for step, histogram in timings["steps"].items():
        steps.add_metric([step], loader_cumulative(histogram["counts"]), sum_value=histogram["sum"])
    yield steps


def loop_families(figures: dict[str, Any]) -> Iterator[Any]:
    """The event loop's health, from ``LoopMonitor.metrics()`` (``meshcache.node.admin.looplag``):
    how late a periodic wake-up ran (every timer of the node, gossip's included, is that late),
    and the task steps that held the loop past the stall threshold while steps were recorded."""
    yield HistogramMetricFamily(
        "meshcache_loop_lag_seconds",
        "How late the event loop ran a periodic wake-up (a timer due now waits this long).",
        buckets=figures["lag_buckets"],
        sum_value=figures["lag_sum"],
    )
    yield HistogramMetricFamily(
        "meshcache_loop_lag_own_seconds",
        "The part of each lag the loop's own work accounts for: the lag less the time its "
        "thread waited for a core since the previous wake-up (the kernel's run-queue wait).",
        buckets=figures["lag_own_buckets"],
        sum_value=figures["lag_own_sum"],
    )
    yield HistogramMetricFamily(
        "meshcache_loop_long_step_seconds",
        "Task steps that held the event loop at least the stall threshold (recorded only "
        "while meshcache_loop_step_recording is 1: sampled by default).",
        buckets=figures["long_step_buckets"],
        sum_value=figures["long_step_sum"],
    )
    yield HistogramMetricFamily(
        "meshcache_loop_gc_full_seconds",
        "Full garbage collections (they hold the loop in proportion to what the process holds; "
        "timed while steps are recorded).",
        buckets=figures["gc_full_buckets"],
        sum_value=figures["gc_full_sum"],
    )
    yield GaugeMetricFamily(
        "meshcache_loop_longest_step_seconds",
        "The longest task step recorded in the current or the previous window.",
        value=figures["longest_step"],
    )
    yield GaugeMetricFamily(
        "meshcache_loop_step_recording",
        "1 while task steps are being timed, 0 otherwise.",
        value=1 if figures["recording"] else 0,
    )
    yield CounterMetricFamily(
        "meshcache_loop_held",
        "Lags whose own part reached the node's held threshold (docs/operations.md), each "
        "logged as loop_held with where the loop thread was while it was held.",
        value=figures["held"],
    )


def _gossip_families(figures: dict[str, Any]) -> Iterator[Any]:
    members = GaugeMetricFamily(
        "meshcache_members", "Members in this node's gossip view, by state.", labels=["state"]
    )
    for state in ("alive", "suspect", "dead", "left"):
        members.add_metric([state], figures.get("members", {}).get(state, 0))
    yield members
    stats = CounterMetricFamily(
        "meshcache_gossip",
        "Gossip protocol counters: packets in and out, and every dropped packet by reason "
        "(bad_mac, unsigned, replayed, malformed, ...); see docs/gossip.md.",
        labels=["what"],
    )
    for what, n in sorted(figures.get("stats", {}).items()):
        stats.add_metric([what], n)
    yield stats
    events = CounterMetricFamily(
        "meshcache_member_events", "Membership events seen, by kind.", labels=["kind"]
    )
    for kind, n in sorted(figures.get("events", {}).items()):
        events.add_metric([kind], n)
    yield events


def _store_families(stats: dict[str, Any]) -> Iterator[Any]:
    gauges = {
        "items": GaugeMetricFamily("meshcache_items", "Live keys.", labels=["namespace"]),
        "bytes": GaugeMetricFamily(
            "meshcache_bytes", "Accounted bytes of the namespace's entries.", labels=["namespace"]
        ),
    }
    counters = {
        "hits": CounterMetricFamily(
            "meshcache_hits", "Reads that found the key.", labels=["namespace"]
        ),
        "misses": CounterMetricFamily(
            "meshcache_misses", "Reads that did not find the key.", labels=["namespace"]
        ),
        "expirations": CounterMetricFamily(
            "meshcache_expirations", "Keys removed because their TTL passed.", labels=["namespace"]
        ),
    }
    evictions = CounterMetricFamily(
        "meshcache_evictions", "Keys evicted to respect limits.", labels=["namespace", "reason"]
    )
    for ns, st in sorted(stats.items()):
        for name, fam in gauges.items():
            fam.add_metric([ns], _field(st, name))
        for name, counter in counters.items():
            counter.add_metric([ns], _field(st, name))
        ev = _field(st, "evictions")
        if isinstance(ev, dict):
            for reason, n in sorted(ev.items()):
                evictions.add_metric([ns, str(reason)], n)
        else:
            evictions.add_metric([ns, "limit"], ev)
    yield from gauges.values()
    yield from counters.values()
    yield evictions


def _field(stats: Any, name: str) -> Any:
    if isinstance(stats, dict):
        return stats.get(name, 0)
    return getattr(stats, name, 0)


def make_registry(collector: NodeCollector) -> CollectorRegistry:
    """A registry of the node's own (no process-global default registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
