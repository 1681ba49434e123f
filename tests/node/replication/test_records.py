"""Tombstone records, version clamping, ownership checks and the byte budget."""

from __future__ import annotations

import random

import pytest

from meshcache.errors import ConfigError, RemoteProtocolError
from meshcache.hlc import HLC, make_version, physical_ms
from meshcache.node.data.replication import ByteBudget, VersionClamp
from meshcache.node.data.replication.ownership import foreign_keys, owns_range, range_within
from meshcache.node.data.replication.tombstones import (
    Tombstone,
    apply_record,
    lww_order,
    read_record,
    record_from_wire,
    wins,
)
from meshcache.ring import Ring, RingMember, TokenRange
from meshcache.ring.tokens import TOKEN_SPACE
from meshcache.store import EntryView, Store

NOW_MS = 1_700_000_000_000


def make_store() -> Store:
    return Store(
        clock=lambda: NOW_MS / 1000,
        hlc=HLC(lambda: NOW_MS),
        tombstone_grace_s=60,
        rng=random.Random(1),
    )


def test_record_wire_forms() -> None:
    t = Tombstone(42)
    assert record_from_wire(t.to_wire()) == t
    e = EntryView("bytes", b"v", None, 7)
    assert record_from_wire(e.to_wire()) == e
    for bad in (["tombstone", None, None, -1], ["tombstone", b"x", None, 1], ["nope", 1, 2, 3]):
        with pytest.raises(RemoteProtocolError):
            record_from_wire(bad)
    with pytest.raises(RemoteProtocolError):
        EntryView.from_wire(t.to_wire())  # a tombstone is never read as a value


def test_lww_order() -> None:
    e = EntryView("bytes", b"v", None, 7)
    assert lww_order(Tombstone(7)) > lww_order(e) > lww_order(Tombstone(6))
    assert wins(e, None) and wins(Tombstone(7), e) and not wins(e, e)


def test_read_and_apply_records() -> None:
    store = make_store()
    v = make_version(NOW_MS - 100)
    assert read_record(store, "default", b"k") is None
    assert apply_record(store, "default", b"k", EntryView("bytes", b"x", None, v))
    assert read_record(store, "default", b"k") == EntryView("bytes", b"x", None, v)
    assert apply_record(store, "default", b"k", Tombstone(v + 1))
    assert read_record(store, "default", b"k") == Tombstone(v + 1)


def test_clamp_counts_far_future_versions_per_peer() -> None:
    hlc = HLC(lambda: NOW_MS, max_drift_ms=1000)
    clamp = VersionClamp(hlc)
    ok = clamp.admit(make_version(NOW_MS + 500), "b")
    assert not ok.clamped and ok.version == make_version(NOW_MS + 500)
    far = make_version(NOW_MS + 86_400_000)
    adm = clamp.admit(far, "b")
    assert adm.clamped and physical_ms(adm.version) == NOW_MS + 1000
    assert adm.ahead_ms == 86_400_000 - 1000
    assert clamp.clamped == 1 and clamp.by_peer == {"b": 1}
    assert hlc.now() > adm.version  # the next local write beats the clamped one
    record, adm2 = clamp.admit_record(Tombstone(far), "c")
    assert record == Tombstone(adm2.version) and adm2.clamped and clamp.by_peer["c"] == 1
    entry, _ = clamp.admit_record(EntryView("bytes", b"v", None, far))
    assert isinstance(entry, EntryView) and entry.version < far and entry.value == b"v"


def test_range_within_on_the_wrapping_ring() -> None:
    whole = TokenRange(5, 5)
    assert range_within(TokenRange(1, 2), whole)
    assert not range_within(whole, TokenRange(1, 2))
    wrap = TokenRange(TOKEN_SPACE - 10, 10)
    assert range_within(TokenRange(TOKEN_SPACE - 5, 3), wrap)
    assert range_within(TokenRange(TOKEN_SPACE - 10, 10), wrap)
    assert not range_within(TokenRange(TOKEN_SPACE - 11, 3), wrap)
    assert not range_within(TokenRange(5, 11), wrap)
    assert range_within(TokenRange(0, 10), wrap)


def test_ownership_checks() -> None:
    ring = Ring([RingMember(n, f"127.0.0.1:{7000 + i}") for i, n in enumerate("abc")], 1)
    for node in "abc":
        for owned in ring.owned_ranges(node, 2):
            assert owns_range(ring, node, owned, 2)
    not_b = [r for r, owners in ring.ranges(2) if all(m.node_id != "b" for m in owners)]
    assert not_b and not owns_range(ring, "b", not_b[0], 2)
    keys = [b"k%d" % i for i in range(100)]
    foreign = foreign_keys(ring, "b", keys, 2)
    assert foreign and all(all(m.node_id != "b" for m in ring.owners(k, 2)) for k in foreign)
    assert foreign_keys(ring, "b", keys, 3) == []


def test_byte_budget() -> None:
    b = ByteBudget(rate=100, burst=200, now=0)
    assert b.take(150, 0) and not b.take(100, 0)
    assert b.delay(100, 0) == pytest.approx(0.5)
    assert b.take(100, 0.5)
    # An oversized request waits for a full bucket, then goes alone and leaves a debt.
    assert not b.take(1000, 1.0)
    assert b.take(1000, 3.0) and b.delay(1, 3.0) > 8
    assert b.granted == 1250
    with pytest.raises(ConfigError):
        ByteBudget(rate=0, burst=1, now=0)
