"""Tombstones in the store: deletes that last-writer-wins across replicas can see."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.errors import CommandError
from meshcache.hlc import make_version
from meshcache.store import EntryView, NamespacePolicy, sizes

from .conftest import FakeClock, Harness

GRACE = 60.0


def tomb_harness(clock: FakeClock, max_tombstones: int = 1_000_000) -> Harness:
    return Harness(clock, tombstone_grace_s=GRACE, max_tombstones=max_tombstones)


def test_off_by_default_no_tombstones(h: Harness) -> None:
    h.run("SET", b"k", b"v")
    assert h.run("DELETE", b"k", b"missing") == 1
    assert h.store.get_tombstone("default", b"k") is None
    stats = h.store.stats()["default"]
    assert (stats.tombstones, stats.tombstone_bytes) == (0, 0)
    h.check_accounting()


def test_delete_leaves_a_tombstone_newer_than_the_value(clock: FakeClock) -> None:
    h = tomb_harness(clock)
    h.run("SET", b"k", b"v")
    _, written = h.run("GETS", b"k")
    assert h.run("DELETE", b"k", b"never-here") == 1
    tomb = h.store.get_tombstone("default", b"k")
    assert tomb is not None and tomb > written
    # A missing key is buried too: a replica may hold it.
    assert h.store.get_tombstone("default", b"never-here") is not None
    stats = h.store.stats()["default"]
    assert stats.tombstones == 2
    assert stats.tombstone_bytes == sizes.tombstone_cost(1) + sizes.tombstone_cost(10)
    assert stats.bytes == 0  # tombstones are not in the values' bytes
    h.check_accounting()


def test_every_deleting_write_buries(clock: FakeClock) -> None:
    h = tomb_harness(clock)
    h.run("SET", b"e", b"v")
    h.run("EXPIRE", b"e", -1)
    h.run("SADD", b"s", b"m")
    h.run("SREM", b"s", b"m")
    h.run("RPUSH", b"l", b"x")
    h.run("LPOP", b"l")
    for key in (b"e", b"s", b"l"):
        assert h.store.get_entry("default", key) is None
        assert h.store.get_tombstone("default", key) is not None, key
    h.check_accounting()


def test_expiry_and_eviction_leave_no_tombstone(clock: FakeClock) -> None:
    h = tomb_harness(clock)
    h.run("SET", b"k", b"v", {"ttl": 1})
    clock.advance(2)
    assert h.run("GET", b"k") is None
    assert h.store.get_tombstone("default", b"k") is None
    assert h.store.stats()["default"].tombstones == 0


def test_a_newer_local_write_supersedes_the_tombstone(clock: FakeClock) -> None:
    h = tomb_harness(clock)
    h.run("SET", b"k", b"v")
    h.run("DELETE", b"k")
    h.run("SET", b"k", b"again")
    assert h.store.get_tombstone("default", b"k") is None
    assert list(h.store.tombstones("default")) == []
    assert h.run("GET", b"k") == b"again"


def test_replicated_lww_between_entries_and_tombstones(clock: FakeClock) -> None:
    h = tomb_harness(clock)
    ms = clock.ms()
    old = EntryView("bytes", b"old", None, make_version(ms - 10))
    new = EntryView("bytes", b"new", None, make_version(ms - 5))
    assert h.store.apply_entry("default", b"k", old)
    # A delete at v beats a write below v ...
    assert h.store.apply_tombstone("default", b"k", make_version(ms - 7))
    assert h.store.get_entry("default", b"k") is None
    assert not h.store.apply_entry("default", b"k", old)
    # ... and a tie ...
    tie = EntryView("bytes", b"tie", None, make_version(ms - 7))
    assert not h.store.apply_entry("default", b"k", tie)
    # ... and an older delete changes nothing; a newer write beats the tombstone.
    assert not h.store.apply_tombstone("default", b"k", make_version(ms - 8))
    assert h.store.apply_entry("default", b"k", new)
    assert h.store.get_tombstone("default", b"k") is None
    assert h.store.stats()["default"].tombstones == 0
    assert not h.store.apply_tombstone("default", b"k", make_version(ms - 6))
    # A delete of equal version beats the write (delete wins ties, in either order).
    assert h.store.apply_tombstone("default", b"k", make_version(ms - 5))
    assert h.store.get_entry("default", b"k") is None
    h.check_accounting()


def test_tombstone_outside_grace_removes_but_is_not_kept(clock: FakeClock) -> None:
    h = tomb_harness(clock)
    h.run("SET", b"k", b"v")
    _, written = h.run("GETS", b"k")
    clock.advance(GRACE + 5)
    # A delete whose version is older than the grace period: too old to keep, yet it is newer
    # than the value here, so the value goes.
    late = written + 1
    assert h.store.apply_tombstone("default", b"k", late)
    assert h.store.get_entry("default", b"k") is None
    assert h.store.get_tombstone("default", b"k") is None
    h.check_accounting()


def test_purge_after_grace_by_version_time(clock: FakeClock) -> None:
    h = tomb_harness(clock)
    h.run("DELETE", b"a")
    clock.advance(GRACE / 2)
    h.run("DELETE", b"b")
    clock.advance(GRACE / 2 - 0.001)
    assert h.store.expire_cycle() == 0
    clock.advance(0.002)
    assert h.store.expire_cycle() == 1
    assert [k for k, _ in h.store.tombstones("default")] == [b"b"]
    clock.advance(GRACE)
    assert h.store.expire_cycle(budget=10) == 1
    assert h.store.stats()["default"].tombstone_bytes == 0
    h.check_accounting()


def test_max_tombstones_drops_oldest_and_counts(clock: FakeClock) -> None:
    h = tomb_harness(clock, max_tombstones=3)
    for i in range(5):
        clock.advance(0.001)
        h.run("DELETE", b"k%d" % i)
    assert sorted(k for k, _ in h.store.tombstones("default")) == [b"k2", b"k3", b"k4"]
    assert h.store.stats()["default"].tombstones_dropped == 2
    h.check_accounting()


def test_flush_forgets_tombstones(clock: FakeClock) -> None:
    h = tomb_harness(clock)
    h.run("DELETE", b"a")
    h.run("FLUSH")
    assert h.store.stats()["default"].tombstones == 0
    h.check_accounting()


def test_far_future_tombstone_is_clamped(clock: FakeClock) -> None:
    h = tomb_harness(clock)
    far = make_version(clock.ms() + 10 * 24 * 3600 * 1000)
    assert h.store.apply_tombstone("default", b"k", far)
    held = h.store.get_tombstone("default", b"k")
    assert held is not None and held < far
    assert h.hlc.clamped == 1
    # A local write right after beats the clamped delete.
    h.run("SET", b"k", b"v")
    assert h.run("GET", b"k") == b"v"


Op = tuple[str, int]  # ("set" | "plain" | "del", version offset in ms)


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["set", "plain", "del"]), st.integers(0, 40)),
        min_size=1,
        max_size=12,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_lww_is_order_independent(ops: list[Op], seed: int) -> None:
    """Any permutation of the same replicated writes and deletes ends in the same state."""
    clock = FakeClock()
    base = clock.ms() - 1000

    def replay(order: list[Op]) -> tuple[EntryView | None, int | None]:
        h = tomb_harness(clock)
        for kind, offset in order:
            version = make_version(base + offset)
            if kind == "del":
                h.store.apply_tombstone("default", b"k", version)
            elif kind == "plain":  # the hand-off's fast path must order exactly like apply_entry
                h.store.apply_plain("default", b"k", b"%d" % offset, version)
            else:
                view = EntryView("bytes", b"%d" % offset, None, version)
                h.store.apply_entry("default", b"k", view)
        h.check_accounting()
        return h.store.get_entry("default", b"k"), h.store.get_tombstone("default", b"k")

    shuffled = list(ops)
    random.Random(seed).shuffle(shuffled)
    assert replay(ops) == replay(shuffled)
    # And the winner is the greatest (version, is-delete) pair.
    kind, offset = max(ops, key=lambda op: (op[1], op[0] == "del"))
    # (a "set" and a "plain" at one version write the same value: either may win the tie)
    entry, tomb = replay(ops)
    if kind == "del":
        assert entry is None and tomb == make_version(base + offset)
    else:
        assert entry is not None and entry.value == b"%d" % offset and tomb is None


def test_entry_wire_is_the_entry_views_wire_form(clock: FakeClock) -> None:
    h = tomb_harness(clock)
    h.run("SET", b"plain", b"v")
    h.run("SET", b"ttl", b"w", {"ttl": 30})
    h.run("HSET", b"hash", b"f", b"1")
    h.run("ZADD", b"zset", 1.5, b"m")
    for key in (b"plain", b"ttl", b"hash", b"zset"):
        view = h.store.get_entry("default", key)
        assert view is not None
        assert h.store.entry_wire("default", key) == view.to_wire()
    h.run("DELETE", b"plain")
    assert h.store.entry_wire("default", b"plain") is None
    assert h.store.entry_wire("default", b"never") is None


def test_a_replicated_write_the_store_refuses_leaves_the_tombstone(clock: FakeClock) -> None:
    """A newer replicated write that does not fit changes nothing: the delete's tombstone
    stays, and an older write of the key that arrives later is still refused."""
    h = Harness(
        clock, tombstone_grace_s=GRACE, default=NamespacePolicy(eviction="none", max_bytes=1200)
    )
    before_delete = h.hlc.now()  # a write made before the delete, still on its way
    h.run("SET", b"k", b"v1")
    h.run("DELETE", b"k")
    tomb = h.store.get_tombstone("default", b"k")
    h.run("SET", b"filler", b"x" * 700)
    with pytest.raises(CommandError):
        h.store.apply_entry("default", b"k", EntryView("bytes", b"y" * 600, None, h.hlc.now()))
    assert h.store.get_tombstone("default", b"k") == tomb
    h.run("DELETE", b"filler")
    late = EntryView("bytes", b"from before the delete", None, before_delete)
    assert h.store.apply_entry("default", b"k", late) is False
    assert h.run("GET", b"k") is None
    h.check_accounting()
