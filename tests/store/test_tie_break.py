"""Last-writer-wins between records of one version: ``tie_break`` decides, the same on every
replica, whatever order the records arrive in and whichever apply path they take."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.hlc import make_version
from meshcache.node.data.replication.tombstones import Tombstone, lww_order, wins
from meshcache.store import EntryView, tie_break
from meshcache.store.values import PLAIN, TYPES

from .conftest import FakeClock, Harness

GRACE = 3600.0
NS = "default"
KEY = b"k"

# One write: (path, version offset in ms, value choice, with an expiry). Few offsets and values,
# so most examples hold several writes of one version with different values.
Write = tuple[str, int, int, bool]
PATHS = ["entry", "plain", "blob", "hash", "set", "zset", "list", "delete"]


def _contents(path: str, choice: int) -> Any:
    """The value a write of ``path`` carries, as a peer would send it (not yet canonical)."""
    if path == "hash":
        fields = [(b"f%d" % i, b"v%d" % (choice * i)) for i in range(choice % 3 + 1)]
        return dict(reversed(fields) if choice % 2 else fields)
    if path == "set":
        return [b"m%d" % (choice % 2), b"m%d" % choice, b"m%d" % choice]  # a duplicate
    if path == "zset":
        return [[b"a", choice], [b"b", float(choice % 2)]]  # an int score, as msgpack gives it
    if path == "list":
        return [b"x%d" % choice, b"y"]
    return b"v%d" % choice


def _record(write: Write, base: int, now: float) -> EntryView | Tombstone:
    path, offset, choice, expiring = write
    version = make_version(base + offset)
    if path == "delete":
        return Tombstone(version)
    if path in ("plain", "blob"):
        return EntryView(PLAIN, _contents(path, choice), None, version)
    kind = PLAIN if path == "entry" else path
    return EntryView(kind, _contents(path, choice), now + 100.0 if expiring else None, version)


def _apply(h: Harness, write: Write, record: EntryView | Tombstone) -> None:
    path = write[0]
    if isinstance(record, Tombstone):
        h.store.apply_tombstone(NS, KEY, record.version)
    elif path == "plain":
        h.store.apply_plain(NS, KEY, record.value, record.version)
    elif path == "blob":
        blob = record.version.to_bytes(8, "big") + record.value
        done = h.store.apply_blobs(NS, [KEY], [blob], h.hlc.drift_limit())
        assert not done.ahead and not done.refused
    else:
        h.store.apply_entry(NS, KEY, record)


def _canonical(record: EntryView | Tombstone) -> tuple[str, Any, float | None, int]:
    """What a store holding ``record`` shows of it."""
    if isinstance(record, Tombstone):
        return ("tombstone", None, None, record.version)
    value = record.value
    if record.type != PLAIN:
        value = TYPES[record.type].from_contents(value, record.version).contents()
    return (record.type, value, record.expires_at, record.version)


def _state(h: Harness) -> tuple[str, Any, float | None, int] | None:
    entry = h.store.get_entry(NS, KEY)
    if entry is not None:
        assert h.store.get_tombstone(NS, KEY) is None
        return (entry.type, entry.value, entry.expires_at, entry.version)
    version = h.store.get_tombstone(NS, KEY)
    return None if version is None else ("tombstone", None, None, version)


writes_strategy = st.lists(
    st.tuples(st.sampled_from(PATHS), st.integers(0, 2), st.integers(0, 5), st.booleans()),
    min_size=1,
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(writes=writes_strategy, seed=st.integers(0, 2**32 - 1))
def test_admission_is_order_independent(writes: list[Write], seed: int) -> None:
    """Any order of the same writes (plain, typed, with or without expiry, deletes; many of one
    version) ends in the same entry, the greatest by ``lww_order``, on every apply path."""
    clock = FakeClock()
    base = clock.ms() - 1000

    def replay(order: list[Write]) -> tuple[str, Any, float | None, int] | None:
        h = Harness(clock, tombstone_grace_s=GRACE)
        for write in order:
            _apply(h, write, _record(write, base, clock.now))
        h.check_accounting()
        return _state(h)

    shuffled = list(writes)
    random.Random(seed).shuffle(shuffled)
    first = replay(writes)
    assert replay(shuffled) == first
    assert replay(list(reversed(writes))) == first
    winner = max((_record(w, base, clock.now) for w in writes), key=lww_order)
    assert first == _canonical(winner)


def test_equal_versions_keep_the_greater_tie_break_either_way() -> None:
    """Two values of one version, applied in both orders on two replicas: both keep the one
    whose tie-break is greater (a replica never keeps whichever came first)."""
    clock = FakeClock()
    version = make_version(clock.ms() - 10)
    a = EntryView(PLAIN, b"from-side-a", None, version)
    b = EntryView(PLAIN, b"from-side-b", None, version)
    expected = max(a, b, key=lambda r: r.tie())
    held = []
    for order in ((a, b), (b, a)):
        h = Harness(clock, tombstone_grace_s=GRACE)
        applied = [h.store.apply_entry(NS, KEY, r) for r in order]
        held.append(h.store.get_entry(NS, KEY))
        # The second write is applied exactly when it is the winner.
        assert applied == [True, order[1] is expected]
    assert held == [expected, expected]
    assert wins(expected, a if expected is b else b)
    assert not wins(expected, expected)


def test_a_delete_wins_a_tie_against_any_value() -> None:
    clock = FakeClock()
    version = make_version(clock.ms() - 10)
    value = EntryView(PLAIN, b"\xff" * 32, None, version)
    for deleted_first in (True, False):
        h = Harness(clock, tombstone_grace_s=GRACE)
        if deleted_first:
            assert h.store.apply_tombstone(NS, KEY, version)
            assert not h.store.apply_entry(NS, KEY, value)
        else:
            assert h.store.apply_entry(NS, KEY, value)
            assert h.store.apply_tombstone(NS, KEY, version)
        assert h.store.get_entry(NS, KEY) is None
        assert h.store.get_tombstone(NS, KEY) == version
    assert wins(Tombstone(version), value) and not wins(value, Tombstone(version))


def test_tie_break_covers_type_expiry_and_contents() -> None:
    """Records that differ in anything a reader sees get different tie-breaks; one record in
    two encodings of the same contents (hash field order, set duplicates, int scores) the same."""
    ties = {
        tie_break(PLAIN, b"v", None),
        tie_break(PLAIN, b"w", None),
        tie_break(PLAIN, b"v", 1.0),
        tie_break(PLAIN, b"v", 2.0),
        tie_break("list", [b"v"], None),
        tie_break("set", [b"v"], None),
        tie_break("list", [b"a", b"b"], None),
        tie_break("list", [b"ab"], None),  # framing: not the concatenation
        tie_break("hash", {b"a": b"b"}, None),
        tie_break("hash", {b"ab": b""}, None),
        tie_break("zset", [[b"a", 1.0]], None),
        tie_break("zset", [[b"a", 2.0]], None),
    }
    assert len(ties) == 12
    v = make_version(1_700_000_000_000)
    assert (
        EntryView("hash", {b"a": b"1", b"b": b"2"}, None, v).tie()
        == EntryView("hash", {b"b": b"2", b"a": b"1"}, None, v).tie()
    )
    assert (
        EntryView("set", [b"b", b"a", b"a"], None, v).tie()
        == EntryView("set", [b"a", b"b"], None, v).tie()
    )
    assert (
        EntryView("zset", [[b"a", 1]], None, v).tie()
        == EntryView("zset", [[b"a", 1.0]], None, v).tie()
    )
    assert 0 <= tie_break(PLAIN, memoryview(b"v"), None) == tie_break(PLAIN, b"v", None) < 2**64
