"""The node's request latency histograms: buckets, windows, quantiles, Prometheus export, and
the dispatcher timing every request of a known op (pending answers until they are ready)."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from meshcache.node.admin.latency import (
    EXPORT_POWERS,
    SLOTS,
    RequestLatency,
    bucket_bounds,
    cumulative,
    estimated_sum,
    quantile,
    slot,
    summary,
)
from meshcache.node.admin.metrics import NodeCounters, latency_families
from meshcache.node.net.dispatch import Dispatcher
from meshcache.wire import Limits, encode_request
from meshcache.wire.ops import OPS
from meshcache.wire.pending import Pending

SECOND = 1_000_000_000

# Durations from 0 ns to 100 s, denser where requests are (microseconds to milliseconds).
durations = st.one_of(
    st.integers(0, 100 * SECOND),
    st.integers(500, 5_000_000),
)


class Clock:
    """A settable nanosecond clock for :class:`RequestLatency`."""

    def __init__(self, now: int = 5 * SECOND) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def histogram_of(values: list[int]) -> list[int]:
    recorder = RequestLatency(clock=Clock())
    for v in values:
        recorder.observe("GET", v, recorder.rotate_at - 1)
    return recorder.recent()[1]["GET"]


@given(st.integers(0, 2**64 - 1))
def test_every_duration_falls_inside_its_slot(d: int) -> None:
    index = slot(d)
    assert 0 <= index < SLOTS
    low, high = bucket_bounds(index)
    # Exact integer check of low <= d < high (the float bounds are for display).
    assert d * d < 2**index
    assert index == 0 or d * d >= 2 ** (index - 1)
    assert low <= d * (1 + 1e-12) and d < high * (1 + 1e-12)


@given(st.lists(durations, min_size=1, max_size=400), st.sampled_from([0.5, 0.9, 0.99, 1.0]))
def test_quantiles_lie_in_the_bucket_of_the_exact_quantile(values: list[int], q: float) -> None:
    exact = sorted(values)[max(1, math.ceil(q * len(values))) - 1]
    estimate = quantile(histogram_of(values), q)
    assert estimate is not None
    low, high = bucket_bounds(slot(exact))
    assert low <= estimate <= high
    # So within a factor sqrt(2) of the exact value (one ns of slack at the very bottom).
    assert estimate <= max(exact, 1) * math.sqrt(2) + 1e-9
    assert estimate >= exact / math.sqrt(2) - 1


@given(st.lists(durations, max_size=300))
def test_prometheus_buckets_count_the_values_below_each_bound(values: list[int]) -> None:
    buckets = cumulative(histogram_of(values) if values else [0] * SLOTS)
    assert [le for le, _ in buckets[:-1]] == [repr(2**k / 1e9) for k in EXPORT_POWERS]
    for (le, count), k in zip(buckets, EXPORT_POWERS, strict=False):
        assert count == sum(1 for v in values if v < 2**k), le
    assert buckets[-1] == ("+Inf", float(len(values)))


@given(st.lists(durations, max_size=300))
def test_the_estimated_sum_is_within_its_documented_bounds(values: list[int]) -> None:
    estimate = estimated_sum(histogram_of(values) if values else [0] * SLOTS)
    exact = sum(values)
    assert exact * 0.85 <= estimate <= exact * 1.21 + 1e-9


def test_an_empty_histogram_has_no_quantile() -> None:
    assert quantile([0] * SLOTS, 0.5) is None
    assert summary([0] * SLOTS) == {"count": 0, "p50_ms": None, "p99_ms": None}


def test_recent_figures_cover_the_current_and_the_previous_window() -> None:
    clock = Clock()
    recorder = RequestLatency(10.0, clock=clock)
    start = clock.now
    recorder.observe("GET", 1_000, start + 1 * SECOND)
    recorder.observe("SET", 2_000, start + 9 * SECOND)
    clock.now = start + 9 * SECOND
    covered, recent = recorder.recent()
    assert covered == pytest.approx(19.0)
    assert {op: sum(c) for op, c in recent.items()} == {"GET": 1, "SET": 1}

    # Into the second window: the first is the previous one, still recent.
    recorder.observe("GET", 3_000, start + 12 * SECOND)
    clock.now = start + 15 * SECOND
    covered, recent = recorder.recent()
    assert covered == pytest.approx(15.0)
    assert {op: sum(c) for op, c in recent.items()} == {"GET": 2, "SET": 1}

    # Third window: only the second one's request is left.
    clock.now = start + 21 * SECOND
    assert {op: sum(c) for op, c in recorder.recent()[1].items()} == {"GET": 1}

    # Idle for longer than two windows: nothing is recent, everything is counted since start.
    clock.now = start + 95 * SECOND
    covered, recent = recorder.recent()
    assert recent == {} and covered == pytest.approx(15.0)
    total = recorder.since_start()
    assert {op: sum(c) for op, c in total.items()} == {"GET": 2, "SET": 1}


def test_a_skipped_window_leaves_nothing_in_the_previous_one() -> None:
    clock = Clock()
    recorder = RequestLatency(10.0, clock=clock)
    start = clock.now
    recorder.observe("GET", 1_000, start)
    # The next request comes two windows later: the window before it saw none.
    recorder.observe("GET", 5_000, start + 25 * SECOND)
    clock.now = start + 25 * SECOND
    [(op, counts)] = recorder.recent()[1].items()
    assert op == "GET" and sum(counts) == 1 and counts[slot(5_000)] == 1


def test_the_request_path_histogram_is_one_list_for_the_recorder_s_life() -> None:
    clock = Clock()
    recorder = RequestLatency(1.0, clock=clock)
    held = recorder.counts("GET")
    for second in range(5):
        recorder.observe("GET", 1_000, clock.now + second * SECOND)
        assert recorder.counts("GET") is held
    clock.now += 10 * SECOND
    assert sum(recorder.since_start()["GET"]) == 5


def test_figures_summarise_ops_and_the_data_ops_together() -> None:
    clock = Clock()
    recorder = RequestLatency(clock=clock)
    for i in range(50):
        recorder.observe("GET", 100_000 + i, clock.now)
    recorder.observe("SET", 10_000_000, clock.now)
    recorder.observe("INFO", 50_000_000, clock.now)
    figures = recorder.figures({"GET", "SET"})
    assert set(figures) == {"window_s", "ops", "data"}
    assert set(figures["ops"]) == {"GET", "SET", "INFO"}
    get = figures["ops"]["GET"]
    assert get["count"] == 50 and 0.07 <= get["p50_ms"] <= 0.15 and get["p99_ms"] <= 0.15
    data = figures["data"]
    assert data["count"] == 51
    assert 0.07 <= data["p50_ms"] <= 0.15
    assert 7 <= data["p99_ms"] <= 15  # rank 51 of 51: the SET, not the INFO
    assert RequestLatency(clock=clock).figures({"GET"})["data"]["p50_ms"] is None


def test_prometheus_family_has_one_histogram_per_op() -> None:
    clock = Clock()
    recorder = RequestLatency(clock=clock)
    recorder.observe("GET", 3_000, clock.now)
    recorder.observe("GET", 7_000_000, clock.now)
    [family] = latency_families(recorder)
    assert family.name == "meshcache_request_duration_seconds" and family.type == "histogram"
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("meshcache_request_duration_seconds_count", None)] == 2
    assert 0.85 * 0.007003 <= samples[("meshcache_request_duration_seconds_sum", None)] <= 0.0085
    assert samples[("meshcache_request_duration_seconds_bucket", "+Inf")] == 2
    assert samples[("meshcache_request_duration_seconds_bucket", repr(2**12 / 1e9))] == 1
    assert {s.labels["op"] for s in family.samples} == {"GET"}


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RequestLatency(0)


# --- the dispatcher --------------------------------------------------------------------------


class Store:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def execute(self, ns: str, op: str, args: list[Any]) -> Any:
        if op == "SET":
            self.data[args[0]] = args[1]
            return True
        if op == "GET":
            return self.data.get(args[0])
        raise AssertionError(op)


async def _slow_answer() -> str:
    await trio.sleep(0.02)
    return "done"


def dispatcher(counters: NodeCounters) -> Dispatcher:
    return Dispatcher(
        execute=Store().execute,
        routes={"PING": lambda ns, args: "PONG", "INFO": lambda ns, args: _slow_answer()},
        limits=Limits(max_key_bytes=16),
        counters=counters,
    )


def body(op: str, *args: Any) -> bytes:
    return encode_request(1, op, "default", list(args))[4:]


def counts(counters: NodeCounters) -> dict[str, int]:
    return {op: sum(c) for op, c in counters.latency.since_start().items()}


def test_the_dispatcher_times_every_answered_request_of_a_known_op() -> None:
    counters = NodeCounters()
    d = dispatcher(counters)
    for i in range(20):
        d.handle(body("SET", b"k%d" % i, b"v"))
        d.handle(body("GET", b"k%d" % i))
    d.handle(body("PING"))
    d.handle(body("GET", b"x" * 100))  # refused (key too long): answered, so timed
    assert counts(counters) == {"SET": 20, "GET": 21, "PING": 1}
    assert counts(counters) == {op: n for op, n in counters.requests.items()}
    get = counters.latency.figures({"GET"})["ops"]["GET"]
    # Real time on this machine: positive and far below a second.
    assert 0 < get["p50_ms"] <= get["p99_ms"] < 1000


@given(st.binary(max_size=40), st.text(max_size=20))
def test_bad_input_adds_no_histogram(garbage: bytes, op: str) -> None:
    counters = NodeCounters()
    d = dispatcher(counters)
    d.handle(garbage)
    d.handle(msgpack.packb([1, op, "default", []]))
    assert set(counters.latency.since_start()) <= {op} & set(OPS)


@pytest.mark.trio
async def test_a_pending_answer_is_timed_until_it_is_ready() -> None:
    counters = NodeCounters()
    d = dispatcher(counters)
    answer = d.handle(body("INFO"))
    assert isinstance(answer, Pending)
    assert counts(counters) == {}
    await answer.answer
    figures = counters.latency.figures()["ops"]["INFO"]
    assert figures["count"] == 1
    assert figures["p50_ms"] >= 20 / math.sqrt(2)  # the bucket of >= 20 ms
