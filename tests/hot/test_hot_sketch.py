"""The heavy-hitter sketch: Space-Saving's guarantee, sampling, decay, and scans."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.node.data.hot.sketch import HotSketch, SpaceSaving

streams = st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=600)


@given(stream=streams, capacity=st.integers(min_value=1, max_value=16))
@settings(max_examples=300, deadline=None)
def test_every_item_above_total_over_k_is_monitored_with_bounded_error(
    stream: list[int], capacity: int
) -> None:
    summary: SpaceSaving[int] = SpaceSaving(capacity)
    for item in stream:
        summary.add(item)
    true = Counter(stream)
    assert summary.total == len(stream)
    for item, n in true.items():
        if n > len(stream) / capacity:
            assert item in summary, (item, n, len(stream), capacity)
        if item in summary:
            assert summary.guaranteed(item) <= n <= summary.count(item)
    assert len(summary) <= capacity


@given(
    stream=streams,
    capacity=st.integers(min_value=2, max_value=16),
    share=st.floats(min_value=0.1, max_value=0.9),
)
@settings(max_examples=200, deadline=None)
def test_the_sketch_unsampled_calls_every_key_above_the_threshold_heavy(
    stream: list[int], capacity: int, share: float
) -> None:
    """Without sampling or decay, ``heavy`` names every key whose share passes the threshold
    once that share also passes 1/K (what the summary can vouch for)."""
    sketch: HotSketch[int] = HotSketch(
        capacity=capacity, sample_every=1, window=1e9, rng=random.Random(0), now=0.0
    )
    for item in stream:
        sketch.observe(item)
    heavy = {h.item for h in sketch.heavy(1.0, share=share, rate=0.0, min_samples=1.0)}
    true = Counter(stream)
    n = len(stream)
    for item, count in true.items():
        # count - error >= count - n/K: past share + 1/K the guaranteed count passes share
        if count >= n * (share + 1 / capacity):
            assert item in heavy, (item, count, n, capacity, share)
    for h in sketch.heavy(1.0, share=share, rate=0.0, min_samples=1.0):
        assert true[h.item] >= h.share * n - 1e-9  # never above the truth


def test_sampling_counts_about_one_read_in_n() -> None:
    sketch: HotSketch[bytes] = HotSketch(sample_every=16, window=1e9, rng=random.Random(7), now=0.0)
    for _ in range(160_000):
        sketch.observe(b"k")
    assert 9000 < sketch.samples < 11000


def test_a_hot_key_is_found_with_its_share_and_rate() -> None:
    rng = random.Random(1)
    sketch: HotSketch[bytes] = HotSketch(sample_every=16, window=1.0, rng=rng, now=0.0)
    # 10,000 reads a second for 3 s: 30% on one key, the rest over 100,000 keys
    for tick in range(30):
        now = tick * 0.1
        sketch.roll(now)
        for _ in range(1000):
            key = b"hot" if rng.random() < 0.3 else b"k%d" % rng.randrange(100_000)
            sketch.observe(key)
    heavy = sketch.heavy(3.0, share=0.05, rate=100.0)
    assert [h.item for h in heavy] == [b"hot"]
    assert 0.2 < heavy[0].share < 0.4
    assert 2000 < heavy[0].rate < 4500


def test_a_scan_over_many_distinct_keys_makes_none_heavy() -> None:
    sketch: HotSketch[bytes] = HotSketch(
        capacity=64, sample_every=1, window=1.0, rng=random.Random(0), now=0.0
    )
    for i in range(200_000):
        sketch.observe(b"scan:%d" % i)
        if i % 20_000 == 0:
            sketch.roll(i / 20_000)
    assert sketch.heavy(10.0, share=0.001, rate=0.0) == []


def test_a_key_that_stops_being_read_cools_as_windows_pass() -> None:
    rng = random.Random(2)
    sketch: HotSketch[bytes] = HotSketch(sample_every=4, window=1.0, rng=rng, now=0.0)
    for _ in range(4000):
        sketch.observe(b"hot")
        sketch.observe(b"k%d" % rng.randrange(1000))
    assert sketch.heavy(1.0, share=0.1, rate=50.0)
    now = 1.0
    for _ in range(12):  # the key is read no more; other keys go on
        sketch.roll(now)
        for _ in range(2000):
            sketch.observe(b"k%d" % rng.randrange(1000))
        now += 1.0
    assert sketch.heavy(now, share=0.1, rate=50.0) == []


def test_credited_reads_count_like_sampled_ones() -> None:
    sketch: HotSketch[bytes] = HotSketch(sample_every=10, window=1e9, rng=random.Random(0), now=0.0)
    sketch.credit(b"copy", 1000)
    sketch.credit(b"other", 0)
    assert sketch.summary.count(b"copy") == 100
    assert b"other" not in sketch.summary
