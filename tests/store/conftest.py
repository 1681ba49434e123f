"""Fixtures for store tests: a fake clock and a store driven through the wire's arg checks."""

from __future__ import annotations

import random
from typing import Any

import pytest

from meshcache.hlc import HLC
from meshcache.store import NamespacePolicy, Store, sizes
from meshcache.store.keyspace import Keyspace
from meshcache.store.values import TypedValue
from meshcache.wire.ops import OPS, Limits, normalize_args


class FakeClock:
    """Unix seconds that only move when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def ms(self) -> int:
        return int(self.now * 1000)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Harness:
    """A store plus helpers: ``run(op, *args)`` normalizes args as the node does."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        tombstone_grace_s: float | None = None,
        max_tombstones: int = 1_000_000,
        **policies: NamespacePolicy,
    ) -> None:
        self.clock = clock
        self.hlc = HLC(clock.ms)
        self.store = Store(
            clock=clock,
            hlc=self.hlc,
            policies=policies or None,
            rng=random.Random(7),
            tombstone_grace_s=tombstone_grace_s,
            max_tombstones=max_tombstones,
        )

    def run(self, op: str, *args: Any, ns: str = "default") -> Any:
        normalized = normalize_args(OPS[op], list(args), Limits())
        return self.store.execute(ns, op, normalized)

    def ks(self, ns: str = "default") -> Keyspace:
        return self.store.keyspace(ns)

    def check_accounting(self, ns: str = "default") -> None:
        check_accounting(self.ks(ns))


def check_accounting(ks: Keyspace) -> None:
    """The byte counter equals the sum of every entry's cost computed from scratch; the key
    counter, the keys held; every key is in its own table."""
    assert ks.count == sum(len(table) for table in ks.tables)
    assert all(ks.table(key) is table for table in ks.tables for key in table)
    total = 0
    for key, entry in ks.items():
        if isinstance(entry, TypedValue):
            assert entry.size == entry.measure(), key
            assert len(entry) > 0, key
        total += ks.full_cost(key, entry)
    assert ks.used == total
    assert set(ks.expires) <= set(ks)
    if ks.lfu is not None:
        assert set(ks.lfu) == set(ks)
    live_heap = {(e, k) for e, k in ks.heap if ks.expires.get(k) == e}
    assert live_heap == {(e, k) for k, e in ks.expires.items()}
    assert ks.tomb_used == sum(sizes.tombstone_cost(len(k)) for k in ks.tombstones)
    live_tombs = {(v, k) for v, k in ks.tomb_heap if ks.tombstones.get(k) == v}
    assert live_tombs == {(v, k) for k, v in ks.tombstones.items()}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def h(clock: FakeClock) -> Harness:
    return Harness(clock)
