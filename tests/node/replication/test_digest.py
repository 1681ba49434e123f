from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.errors import LocalProtocolError, RemoteProtocolError
from meshcache.hlc import HLC, make_version
from meshcache.node.data.replication.digest import (
    KeyVersion,
    RangeDigest,
    bucket_of,
    check_key_list,
    compare,
    differing,
    key_version,
    keys_in_buckets,
    leaves_under,
    plan_repair,
)
from meshcache.node.data.replication.tombstones import Tombstone, apply_record, read_record
from meshcache.ring.tokens import TOKEN_SPACE, TokenRange, key_token
from meshcache.store import EntryView, Store, tie_break
from meshcache.store.entry import contents_size

WHOLE = TokenRange(0, 0)

# A replica modelled as key -> (version, deleted).
Replica = dict[bytes, tuple[int, bool]]


def store_items(store: Store, namespace: str, trange: TokenRange) -> Iterator[KeyVersion]:
    """The live entries and tombstones of ``namespace`` in ``trange``, from copies of the
    entries (what the scan's ``key_version`` must agree with)."""
    for key in store.keys(namespace):
        entry = store.get_entry(namespace, key)
        if key_token(key) in trange and entry is not None:
            tie = tie_break(entry.type, entry.value, entry.expires_at)
            size = contents_size(entry.value) + len(key) + 32
            yield KeyVersion(key, entry.version, False, size, tie)
    for key, version in store.tombstones(namespace):
        if key_token(key) in trange:
            yield KeyVersion(key, version, True, len(key) + 32)


def items(replica: Replica) -> list[KeyVersion]:
    return [KeyVersion(k, v, d, 10) for k, (v, d) in replica.items()]


replica_st = st.dictionaries(
    st.binary(min_size=1, max_size=6), st.tuples(st.integers(1, 6), st.booleans()), max_size=40
)
range_st = st.tuples(st.integers(0, TOKEN_SPACE - 1), st.integers(0, TOKEN_SPACE - 1)).map(
    lambda t: TokenRange(*t)
)


def test_bucket_of_spans_the_range() -> None:
    r = TokenRange(TOKEN_SPACE - 10, 5)  # wraps: 15 tokens
    tokens = [(r.start + 1 + i) % TOKEN_SPACE for i in range(r.size)]
    buckets = [bucket_of(t, r, 2) for t in tokens]
    assert buckets == sorted(buckets) and buckets[0] == 0 and buckets[-1] == 3
    assert bucket_of(TOKEN_SPACE - 1, WHOLE, 4) == 15 and bucket_of(1, WHOLE, 4) == 0


def test_wire_roundtrip_and_malformed() -> None:
    d = RangeDigest.build(WHOLE, items({b"a": (1, False), b"b": (2, True)}), depth=3)
    assert RangeDigest.from_wire(d.to_wire()) == d
    for bad in (None, [0, 0, 3, b"x"], [0, 0, 17, b""], [-1, 0, 0, bytes(8)], [0, 0, "3", b""]):
        with pytest.raises(RemoteProtocolError):
            RangeDigest.from_wire(bad)
    with pytest.raises(RemoteProtocolError):
        compare(d, RangeDigest(TokenRange(1, 2), 3))


def test_add_refuses_keys_outside_the_range() -> None:
    t = key_token(b"k")
    d = RangeDigest(TokenRange(t, (t + 10) % TOKEN_SPACE), 2)
    with pytest.raises(LocalProtocolError):
        d.add(b"k", 1)


def test_levels_and_two_step_exchange() -> None:
    a = RangeDigest.build(WHOLE, items({b"x%d" % i: (1, False) for i in range(50)}), depth=6)
    b = RangeDigest.build(WHOLE, items({b"x%d" % i: (1, False) for i in range(1, 50)}), depth=6)
    assert a.level(0) == [a.root] and len(a.level(3)) == 8
    coarse = differing(a.level(2), b.level(2))
    assert len(coarse) == 1
    fine = differing(
        [a.leaves[i] for i in leaves_under(coarse, 2, 6)],
        [b.leaves[i] for i in leaves_under(coarse, 2, 6)],
    )
    assert [leaves_under(coarse, 2, 6)[i] for i in fine] == compare(a, b)
    assert compare(a, b) == [bucket_of(key_token(b"x0"), WHOLE, 6)]


@settings(max_examples=200, deadline=None)
@given(a=replica_st, b=replica_st, trange=range_st, depth=st.integers(0, 8))
def test_digests_equal_iff_item_sets_equal_in_range(
    a: Replica, b: Replica, trange: TokenRange, depth: int
) -> None:
    da = RangeDigest.build(trange, items(a), depth)
    db = RangeDigest.build(trange, items(b), depth)

    def in_range(r: Replica) -> set[tuple[bytes, int, bool]]:
        return {(k, v, d) for k, (v, d) in r.items() if key_token(k) in trange}

    assert (da == db) == (in_range(a) == in_range(b))
    # The differing buckets are exactly those holding a differing item.
    diff = in_range(a) ^ in_range(b)
    assert set(compare(da, db)) == {bucket_of(key_token(k), trange, depth) for k, _, _ in diff}


@settings(max_examples=200, deadline=None)
@given(
    start=replica_st,
    steps=st.lists(
        st.tuples(
            st.binary(min_size=1, max_size=6),
            st.none() | st.tuples(st.integers(1, 6), st.booleans()),
        ),
        max_size=40,
    ),
)
def test_incremental_maintenance_equals_rebuild(
    start: Replica, steps: list[tuple[bytes, tuple[int, bool] | None]]
) -> None:
    replica = dict(start)
    digest = RangeDigest.build(WHOLE, items(replica), depth=5)
    for key, new in steps:
        digest.replace(key, replica.get(key), new)
        if new is None:
            replica.pop(key, None)
        else:
            replica[key] = new
    assert digest == RangeDigest.build(WHOLE, items(replica), depth=5)
    assert digest.count == len(replica)


def lww_apply(replica: Replica, key: bytes, record: tuple[int, bool]) -> None:
    held = replica.get(key)
    if held is None or record > held:
        replica[key] = record


@settings(max_examples=200, deadline=None)
@given(
    a=replica_st,
    b=replica_st,
    trange=range_st,
    max_keys=st.integers(1, 5),
    max_bytes=st.integers(1, 100),
)
def test_one_repair_round_converges(
    a: Replica, b: Replica, trange: TokenRange, max_keys: int, max_bytes: int
) -> None:
    depth = 4
    da = RangeDigest.build(trange, items(a), depth)
    db = RangeDigest.build(trange, items(b), depth)
    buckets = compare(da, db)
    la = keys_in_buckets(items(a), trange, depth, buckets)
    lb = check_key_list(keys_in_buckets(items(b), trange, depth, buckets), trange, depth, buckets)
    plan = plan_repair(la, lb, max_keys=max_keys, max_bytes=max_bytes)
    for batch in plan.push + plan.pull:
        assert len(batch) <= max_keys
        assert len(batch) == 1 or sum(10 + len(k) + 16 for k in batch) <= max_bytes
    snapshot_a, snapshot_b = dict(a), dict(b)
    for batch in plan.push:
        for key in batch:
            lww_apply(b, key, snapshot_a[key])
    for batch in plan.pull:
        for key in batch:
            lww_apply(a, key, snapshot_b[key])
    assert RangeDigest.build(trange, items(a), depth) == RangeDigest.build(trange, items(b), depth)
    # Nothing outside the range moved; nothing was sent that the other side did not need.
    assert {k: v for k, v in a.items() if key_token(k) not in trange} == {
        k: v for k, v in snapshot_a.items() if key_token(k) not in trange
    }
    assert plan.push_keys + plan.pull_keys == len(
        {
            k
            for k in set(snapshot_a) | set(snapshot_b)
            if snapshot_a.get(k) != snapshot_b.get(k) and key_token(k) in trange
        }
    )


def test_check_key_list_refuses_keys_not_asked_for() -> None:
    t = key_token(b"k")
    r = TokenRange((t + 1) % TOKEN_SPACE, (t + 100) % TOKEN_SPACE)
    with pytest.raises(RemoteProtocolError, match="not asked"):
        check_key_list([KeyVersion(b"k", 1)], r, 3, range(8))
    with pytest.raises(RemoteProtocolError, match="twice"):
        check_key_list([KeyVersion(b"k", 1), KeyVersion(b"k", 2)], WHOLE, 3, range(8))
    with pytest.raises(RemoteProtocolError):
        KeyVersion.from_wire([b"k", -1, False, 0, 0])
    with pytest.raises(RemoteProtocolError, match="tie-break"):
        KeyVersion.from_wire([b"k", 1, False, 0, 2**64])
    with pytest.raises(RemoteProtocolError, match="tie"):
        KeyVersion.from_wire([b"k", 1, False, 0])
    wire = KeyVersion(b"k", 1, False, 3, 2**64 - 1).to_wire()
    assert KeyVersion.from_wire(wire) == (b"k", 1, False, 3, 2**64 - 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def ms(self) -> int:
        return int(self.now * 1000)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_two_real_stores_converge_in_one_round(seed: int) -> None:
    """Replicas that each missed some writes and deletes agree after one round."""
    rng = random.Random(seed)
    clock = Clock()
    stores = [
        Store(clock=clock, hlc=HLC(clock.ms), tombstone_grace_s=3600, rng=random.Random(i))
        for i in range(2)
    ]
    base = clock.ms() - 10_000
    for i in range(60):
        key = b"key%d" % rng.randrange(25)
        version = make_version(base + i)
        record = (
            Tombstone(version)
            if rng.random() < 0.3
            else EntryView("bytes", b"v%d" % i, None, version)
        )
        for store in stores:
            if rng.random() < 0.7:  # each replica misses some
                apply_record(store, "default", key, record)
    trange = TokenRange(rng.randrange(TOKEN_SPACE), rng.randrange(TOKEN_SPACE))
    a, b = stores
    ia, ib = list(store_items(a, "default", trange)), list(store_items(b, "default", trange))
    buckets = compare(RangeDigest.build(trange, ia, 3), RangeDigest.build(trange, ib, 3))
    plan = plan_repair(
        keys_in_buckets(ia, trange, 3, buckets),
        keys_in_buckets(ib, trange, 3, buckets),
        max_keys=4,
    )
    for src, dst, batches in ((a, b, plan.push), (b, a, plan.pull)):
        for batch in batches:
            for key in batch:
                held = read_record(src, "default", key)
                assert held is not None
                assert apply_record(dst, "default", key, held)
    after_a = RangeDigest.build(trange, store_items(a, "default", trange), 3)
    after_b = RangeDigest.build(trange, store_items(b, "default", trange), 3)
    assert after_a == after_b


def test_key_version_agrees_with_store_items() -> None:
    clock = Clock()
    store = Store(clock=clock, hlc=HLC(clock.ms), tombstone_grace_s=3600)
    base = clock.ms() - 1000
    apply_record(store, "default", b"live", EntryView("bytes", b"value", None, make_version(base)))
    apply_record(store, "default", b"gone", Tombstone(make_version(base + 1)))
    apply_record(
        store, "default", b"h", EntryView("hash", {b"f": b"v"}, None, make_version(base + 2))
    )
    listed = {item.key: item for item in store_items(store, "default", WHOLE)}
    assert set(listed) == {b"live", b"gone", b"h"}
    for key, item in listed.items():
        assert key_version(store, "default", key) == item
    assert key_version(store, "default", b"never") is None
