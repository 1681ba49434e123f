"""The hand-off's bulk form: ``Store.plain_blobs`` on the sender, ``Store.apply_blobs`` on the
receiver — the same last-writer-wins as ``apply_plain``, one pass per batch."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.errors import CommandError, ErrorCode
from meshcache.hlc import make_version
from meshcache.store import EntryView, NamespacePolicy
from meshcache.store.keyspace import SPLIT_AT, pack_version
from meshcache.store.store import BlobsApplied, Store

from .conftest import FakeClock, Harness
from .test_tombstones import tomb_harness


def blob(version: int, value: bytes) -> bytes:
    return pack_version(version) + value


def apply(h: Harness, pairs: list[tuple[bytes, bytes]], ns: str = "default") -> BlobsApplied:
    return h.store.apply_blobs(
        ns, [k for k, _ in pairs], [b for _, b in pairs], h.hlc.drift_limit()
    )


def _items(store: Store) -> tuple[list[bytes], list[Any]]:
    """Every key of ``default`` and its entry, from the store's table parts."""
    keys: list[bytes] = []
    entries: list[Any] = []
    for part_keys, part_entries in store.item_parts("default"):
        keys += part_keys
        entries += part_entries
    return keys, entries


def test_plain_blobs_splits_plain_values_from_the_rest(clock: FakeClock) -> None:
    h = tomb_harness(clock)
    h.run("SET", b"plain", b"v")
    h.run("SET", b"ttl", b"w", {"ttl": 30})
    h.run("HSET", b"hash", b"f", b"1")
    keys, entries = _items(h.store)
    assert sorted(keys) == [b"hash", b"plain", b"ttl"]
    flat, rest = h.store.plain_blobs("default", keys, entries)
    assert sorted(rest) == [b"hash", b"ttl"]
    assert flat[0] == b"plain" and len(flat) == 2
    view = h.store.get_entry("default", b"plain")
    assert view is not None and flat[1] == blob(view.version, b"v")


def test_a_batch_round_trips_between_two_stores(clock: FakeClock) -> None:
    source, target = tomb_harness(clock), tomb_harness(clock)
    keys = [b"k%d" % i for i in range(50)]
    for k in keys:
        source.run("SET", k, k * 3)
    flat, rest = source.store.plain_blobs("default", *_items(source.store))
    assert rest == [] and sorted(flat[0::2]) == sorted(keys)
    done = target.store.apply_blobs("default", flat[0::2], flat[1::2], target.hlc.drift_limit())
    assert (done.applied, done.stale, done.refused, done.ahead) == (50, 0, {}, [])
    for k in keys:
        assert target.store.get_entry("default", k) == source.store.get_entry("default", k)
    target.check_accounting()
    # Every version applied was witnessed: the target's next write is newer than all of them.
    newest = max(e.version for k in keys if (e := source.store.get_entry("default", k)))
    target.run("SET", b"after", b"x")
    after = target.store.get_entry("default", b"after")
    assert after is not None and after.version > newest
    # The same batch again changes nothing.
    again = target.store.apply_blobs("default", flat[0::2], flat[1::2], target.hlc.drift_limit())
    assert (again.applied, again.stale) == (0, 50)


def test_last_writer_wins_against_entries_and_tombstones(clock: FakeClock) -> None:
    h = tomb_harness(clock)
    old, mid, new = (make_version(clock.ms() - 1000 + d) for d in (0, 10, 20))
    h.store.apply_entry("default", b"newer-held", EntryView("bytes", b"held", None, new))
    h.store.apply_entry("default", b"older-held", EntryView("bytes", b"held", None, old))
    h.store.apply_tombstone("default", b"buried-newer", new)
    h.store.apply_tombstone("default", b"buried-older", old)
    h.store.apply_tombstone("default", b"buried-tie", mid)
    done = apply(
        h,
        [
            (b"newer-held", blob(mid, b"in")),
            (b"older-held", blob(mid, b"in")),
            (b"buried-newer", blob(mid, b"in")),
            (b"buried-older", blob(mid, b"in")),
            (b"buried-tie", blob(mid, b"in")),  # a delete wins a tie
        ],
    )
    assert (done.applied, done.stale) == (2, 3)
    got = {k: h.run("GET", k) for k in (b"newer-held", b"older-held", b"buried-older")}
    assert got == {b"newer-held": b"held", b"older-held": b"in", b"buried-older": b"in"}
    assert h.run("GET", b"buried-newer") is None and h.run("GET", b"buried-tie") is None
    assert h.store.get_tombstone("default", b"buried-older") is None
    h.check_accounting()


def test_versions_beyond_the_limit_are_left_to_the_caller(clock: FakeClock) -> None:
    h = tomb_harness(clock)
    limit = h.hlc.drift_limit()
    done = h.store.apply_blobs(
        "default", [b"ok", b"far"], [blob(limit, b"a"), blob(limit + 1, b"b")], limit
    )
    assert (done.applied, done.ahead) == (1, [1])
    assert h.run("GET", b"far") is None


def test_bounds_are_enforced_once_per_batch(clock: FakeClock) -> None:
    h = Harness(clock, default=NamespacePolicy(eviction="lru", max_items=10))
    for i in range(5):
        h.run("SET", b"old%d" % i, b"v")
    version = make_version(clock.ms())
    done = apply(h, [(b"new%d" % i, blob(version, b"v")) for i in range(8)])
    assert done.applied == 8
    assert len(h.ks()) == 10
    assert [k for k in h.ks() if k.startswith(b"old")] == [b"old3", b"old4"]  # LRU first
    assert h.ks().evictions["max_items"] == 3
    h.check_accounting()


def test_a_blob_bigger_than_the_namespace_is_refused(clock: FakeClock) -> None:
    h = Harness(clock, default=NamespacePolicy(eviction="lru", max_bytes=2000))
    version = make_version(clock.ms())
    done = apply(h, [(b"big", blob(version, b"x" * 5000)), (b"small", blob(version, b"y"))])
    assert (done.applied, done.refused) == (1, {"TOO_LARGE": 1})
    h.check_accounting()


def test_a_full_namespace_without_eviction_refuses_like_a_write(clock: FakeClock) -> None:
    h = Harness(clock, default=NamespacePolicy(eviction="none", max_items=2))
    version = make_version(clock.ms())
    done = apply(h, [(b"k%d" % i, blob(version, b"v")) for i in range(4)])
    assert (done.applied, done.refused) == (2, {"OUT_OF_MEMORY": 2})
    assert len(h.ks()) == 2
    h.check_accounting()


def test_a_replacement_in_a_batch_that_crosses_the_split_puts_every_key_in_its_table(
    clock: FakeClock,
) -> None:
    """New keys are counted as the batch goes; a replacement among them brings the count up
    to date first, so the write path splits the one table there, and the keys after it go to
    the tables of the split."""
    h = Harness(clock)
    version = make_version(clock.ms())
    apply(h, [(b"held%d" % i, blob(version, b"v")) for i in range(SPLIT_AT - 100)])
    assert h.ks().single is not None
    newer = make_version(clock.ms() + 1)
    batch = [(b"new%d" % i, blob(newer, b"n")) for i in range(300)]
    batch.append((b"held0", blob(newer, b"again")))
    batch += [(b"later%d" % i, blob(newer, b"l")) for i in range(100)]
    done = apply(h, batch)
    assert done.applied == len(batch)
    assert h.ks().single is None
    for key, _ in batch:
        assert key in h.ks()
    assert h.ks().peek(b"held0") == blob(newer, b"again")
    h.check_accounting()


def test_lfu_namespaces_give_new_keys_a_counter(clock: FakeClock) -> None:
    h = Harness(clock, default=NamespacePolicy(eviction="lfu", max_items=100))
    apply(h, [(b"a", blob(make_version(clock.ms()), b"v"))])
    h.check_accounting()


@pytest.mark.parametrize(
    ("keys", "blobs"),
    [
        ([b"a", "text"], [b"\0" * 8, b"\0" * 8]),
        ([b"a", b"b"], [b"\0" * 8, 7]),
        ([b"a", b"b"], [b"\0" * 8, b"short"]),
    ],
)
def test_a_bad_item_is_a_bad_request_and_keeps_what_came_before(
    clock: FakeClock, keys: list[object], blobs: list[object]
) -> None:
    h = tomb_harness(clock)
    with pytest.raises(CommandError) as err:
        h.store.apply_blobs("default", keys, blobs, h.hlc.drift_limit())  # type: ignore[arg-type]
    assert err.value.code == ErrorCode.BAD_REQUEST and "item 1" in str(err.value)
    assert h.ks().peek(b"a") == b"\0" * 8
    h.check_accounting()


@settings(max_examples=100, deadline=None)
@given(
    held=st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from(["set", "del"]), st.integers(0, 30)),
        max_size=8,
    ),
    batch=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 30)), max_size=12),
    eviction=st.sampled_from(["lru", "lfu", "none"]),
)
def test_a_batch_ends_where_applying_each_blob_does(
    held: list[tuple[int, str, int]], batch: list[tuple[int, int]], eviction: str
) -> None:
    """apply_blobs == apply_plain blob by blob, whatever the store held (ample bounds)."""
    clock = FakeClock()
    base = clock.ms() - 1000

    def prepared() -> Harness:
        h = Harness(
            clock,
            tombstone_grace_s=60.0,
            default=NamespacePolicy(eviction=eviction, max_items=1000),  # type: ignore[arg-type]
        )
        for k, kind, offset in held:
            version = make_version(base + offset)
            if kind == "del":
                h.store.apply_tombstone("default", b"k%d" % k, version)
            else:
                h.store.apply_plain("default", b"k%d" % k, b"held%d" % offset, version)
        return h

    one_by_one, at_once = prepared(), prepared()
    for k, offset in batch:
        one_by_one.store.apply_plain(
            "default", b"k%d" % k, b"in%d" % offset, make_version(base + offset)
        )
    done = apply(
        at_once, [(b"k%d" % k, blob(make_version(base + o), b"in%d" % o)) for k, o in batch]
    )
    assert done.applied + done.stale == len(batch)

    def state(h: Harness) -> dict[bytes, object]:
        return {
            b"k%d" % k: (
                h.store.get_entry("default", b"k%d" % k),
                h.store.get_tombstone("default", b"k%d" % k),
            )
            for k in range(6)
        }

    assert state(at_once) == state(one_by_one)
    at_once.check_accounting()
