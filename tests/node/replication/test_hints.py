from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.errors import ConfigError
from meshcache.node.data.replication.hints import HINT_OVERHEAD, HintQueue, hint_size


def queue(total: int = 10_000, per_target: int = 5_000, age: float = 60.0) -> HintQueue:
    return HintQueue(max_bytes=total, max_bytes_per_target=per_target, max_age_s=age)


def add(q: HintQueue, target: str, key: bytes, version: int, now: float = 0.0, **kw: int) -> bool:
    record = ["bytes", b"v%d" % version, None, version]
    return q.add(target, "default", key, record, version=version, deleted=False, now=now, **kw)


def test_size_is_msgpack_plus_overhead() -> None:
    # msgpack: array header 1, "bytes" 6, bin8 b"v" 3, nil 1, fixint 1
    assert hint_size("ns", b"key", ["bytes", b"v", None, 1]) == 12 + 3 + 2 + HINT_OVERHEAD


def test_queued_plain_hints_leave_the_garbage_collectors_watch() -> None:
    """A full collection must not walk every hint a busy node holds: once collections have seen
    them (the record first, then the hint holding it), a plain value's queued hint is no longer
    tracked."""
    q = queue(total=1 << 30, per_target=1 << 30)
    for i in range(1000):
        add(q, "b", b"k%d" % i, i + 1)
    gc.collect()
    gc.collect()
    held = list(q._queues["b"].values())
    assert not any(gc.is_tracked(h) or gc.is_tracked(h[5]) for h in held)
    hint = q.get("b", "default", b"k7")
    assert hint is not None and hint.version == 8 and hint.record == ("bytes", b"v8", None, 8)


def test_coalesces_to_the_newest_version() -> None:
    q = queue()
    assert add(q, "b", b"k", 5)
    assert not add(q, "b", b"k", 3)  # older: not queued
    assert not add(q, "b", b"k", 5)  # equal: not queued
    assert add(q, "b", b"k", 9)
    assert len(q) == 1
    hint = q.get("b", "default", b"k")
    assert hint is not None and hint.version == 9
    # A delete of the same version beats the write.
    assert q.add("b", "default", b"k", ["tombstone", None, None, 9], version=9, deleted=True, now=1)
    hint = q.get("b", "default", b"k")
    assert hint is not None and hint.deleted
    assert q.stats.coalesced == 4
    assert q.total_bytes == hint.size


def test_per_target_overflow_drops_that_targets_oldest_and_flags_it() -> None:
    q = queue(per_target=3 * 400)
    for i in range(5):
        assert add(q, "b", b"k%d" % i, 1, now=i, size=400)
    add(q, "c", b"x", 1, size=400)
    assert [h.key for h in q.hints("b")] == [b"k2", b"k3", b"k4"]
    assert q.stats.dropped_overflow == 2
    assert q.needs_repair == {"b"}
    q.repaired("b")
    assert q.needs_repair == set()


def test_total_overflow_drops_the_globally_oldest() -> None:
    q = queue(total=1000, per_target=1000)
    add(q, "b", b"old", 1, now=0, size=400)
    add(q, "c", b"mid", 1, now=1, size=400)
    add(q, "b", b"new", 1, now=2, size=400)
    assert q.hints("b")[0].key == b"new" and q.pending("c") == 1
    assert q.total_bytes == 800
    assert q.needs_repair == {"b"}


def test_a_hint_larger_than_a_bound_is_refused_and_counted() -> None:
    q = queue(per_target=500)
    assert not add(q, "b", b"k", 1, size=501)
    assert q.stats.refused_too_large == 1 and q.needs_repair == {"b"} and len(q) == 0


def test_drain_batches_by_budget_and_restore_puts_back_in_front() -> None:
    q = queue()
    for i in range(5):
        add(q, "b", b"k%d" % i, 1, now=i, size=100)
    add(q, "c", b"other", 1, size=100)
    batches = q.drain("b", budget_bytes=250)
    first = next(batches)
    assert [h.key for h in first] == [b"k0", b"k1"]
    second = next(batches)
    assert [h.key for h in second] == [b"k2", b"k3"]
    # Replay of the second batch failed; meanwhile k3 was written again.
    add(q, "b", b"k3", 2, now=10, size=100)
    q.restore(second)
    assert [(h.key, h.version) for h in q.hints("b")] == [(b"k2", 1), (b"k4", 1), (b"k3", 2)]
    assert [h.key for b in q.drain("b", 10_000) for h in b] == [b"k2", b"k4", b"k3"]
    assert q.pending("b") == 0 and q.pending("c") == 1
    assert q.total_bytes == 100


def test_a_hint_larger_than_the_budget_goes_alone() -> None:
    q = queue()
    add(q, "b", b"big", 1, size=900)
    add(q, "b", b"small", 1, size=100)
    assert [[h.key for h in b] for b in q.drain("b", 500)] == [[b"big"], [b"small"]]


def test_expire_drops_old_hints_and_flags_the_target() -> None:
    q = queue(age=10)
    add(q, "b", b"a", 1, now=0)
    add(q, "c", b"b", 1, now=5)
    assert q.expire(now=9.5) == 0
    assert q.expire(now=10) == 1
    assert q.pending("b") == 0 and q.pending("c") == 1
    assert q.needs_repair == {"b"} and q.stats.dropped_expired == 1
    # A restored hint keeps its age.
    [batch] = list(q.drain("c", 10_000))
    q.restore(batch)
    assert q.expire(now=15) == 1


def test_drop_target() -> None:
    q = queue()
    add(q, "b", b"a", 1)
    add(q, "b", b"c", 1)
    assert q.drop_target("b") == 2
    assert len(q) == 0 and q.total_bytes == 0 and q.targets() == []


def test_bad_bounds() -> None:
    with pytest.raises(ConfigError):
        HintQueue(max_bytes=0, max_bytes_per_target=1, max_age_s=1)
    with pytest.raises(ConfigError):
        next(queue().drain("b", 0))


action = st.one_of(
    st.tuples(
        st.just("add"),
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 7),  # key
        st.integers(1, 20),  # version
        st.booleans(),  # deleted
        st.integers(50, 700),  # size
    ),
    st.tuples(st.just("drain"), st.sampled_from(["a", "b", "c"]), st.integers(1, 900)),
    st.tuples(st.just("expire")),
)


@settings(max_examples=200, deadline=None)
@given(actions=st.lists(action, max_size=60))
def test_bounds_and_newest_version_hold(actions: list[tuple[object, ...]]) -> None:
    """Never over a bound; each key's hint is the newest queued since it was last drained or
    dropped; byte counters equal the sum of what is held."""
    q = queue(total=2000, per_target=1200, age=30)
    newest: dict[tuple[str, bytes], tuple[int, bool]] = {}
    now = 0.0
    for act in actions:
        now += 1
        if act[0] == "add":
            _, target, k, version, deleted, size = act
            assert isinstance(target, str) and isinstance(k, int)
            assert isinstance(version, int) and isinstance(deleted, bool)
            assert isinstance(size, int)
            key = b"k%d" % k
            held = q.get(target, "default", key)
            q.add(target, "default", key, [], version=version, deleted=deleted, now=now, size=size)
            if held is None or (version, deleted) > (held.version, held.deleted):
                newest[(target, key)] = (version, deleted)
        elif act[0] == "drain":
            _, target, budget = act
            assert isinstance(target, str) and isinstance(budget, int)
            for batch in q.drain(target, budget):
                assert sum(h.size for h in batch) <= budget or len(batch) == 1
                break
        else:
            q.expire(now)
        assert q.total_bytes <= 2000
        for target in ("a", "b", "c"):
            hints = q.hints(target)
            assert q.bytes_for(target) == sum(h.size for h in hints) <= 1200
            for h in hints:
                assert (h.version, h.deleted) == newest[(target, h.key)]
                assert now - h.created < 30
        assert q.total_bytes == sum(q.bytes_for(t) for t in ("a", "b", "c"))
        assert len(q) == sum(q.pending(t) for t in ("a", "b", "c"))
