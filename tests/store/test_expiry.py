from __future__ import annotations

from meshcache.store import NamespacePolicy
from meshcache.store.keyspace import HEAP_SLACK

from .conftest import FakeClock, Harness


def test_lazy_expiry_on_access(h: Harness, clock: FakeClock) -> None:
    h.run("SET", b"k", b"v", {"ttl": 2})
    clock.advance(1.999)
    assert h.run("GET", b"k") == b"v"
    clock.advance(0.001)
    assert h.run("GET", b"k") is None
    stats = h.store.stats()["default"]
    assert stats.expirations == 1
    assert stats.items == 0
    assert stats.bytes == 0


def test_active_expiry_removes_keys_never_read_again(h: Harness, clock: FakeClock) -> None:
    for i in range(50):
        h.run("SET", b"k%d" % i, b"v", {"ttl": 1 + i})
    h.run("SET", b"keep", b"v")
    assert h.store.expire_cycle() == 0
    clock.advance(10.5)
    assert h.store.expire_cycle() == 10
    assert len(h.ks()) == 41
    clock.advance(100)
    assert h.store.expire_cycle(budget=15) == 15
    assert h.store.expire_cycle(budget=1000) == 25
    assert list(h.ks()) == [b"keep"]
    assert h.store.stats()["default"].expirations == 50
    h.check_accounting()


def test_expire_cycle_takes_now_and_spans_namespaces(clock: FakeClock) -> None:
    h = Harness(clock, other=NamespacePolicy(default_ttl=5))
    h.run("SET", b"a", b"v", {"ttl": 1})
    h.run("SET", b"b", b"v", ns="other")
    assert h.store.expire_cycle(now=clock.now + 2) == 1
    assert h.store.expire_cycle(now=clock.now + 6) == 1
    assert h.run("DBSIZE") == 0
    assert h.run("DBSIZE", ns="other") == 0


def test_changed_expiry_invalidates_old_heap_entry(h: Harness, clock: FakeClock) -> None:
    h.run("SET", b"k", b"v", {"ttl": 1})
    h.run("EXPIRE", b"k", 100)
    clock.advance(2)
    assert h.store.expire_cycle() == 0
    assert h.run("GET", b"k") == b"v"
    h.run("PERSIST", b"k")
    clock.advance(200)
    assert h.store.expire_cycle() == 0
    assert h.run("GET", b"k") == b"v"


def test_heap_is_compacted(h: Harness) -> None:
    for round_ in range(20):
        for i in range(100):
            h.run("SET", b"k%d" % i, b"v", {"ttl": 100 + round_})
    ks = h.ks()
    assert len(ks.expires) == 100
    assert len(ks.heap) <= 2 * len(ks.expires) + HEAP_SLACK
    h.check_accounting()


def test_expired_typed_values_vanish(h: Harness, clock: FakeClock) -> None:
    h.run("RPUSH", b"l", b"a")
    h.run("EXPIRE", b"l", 1)
    clock.advance(1)
    assert h.run("LLEN", b"l") == 0
    assert h.run("RPUSH", b"l", b"b") == 1  # a fresh list, without the old expiry
    assert h.run("TTL", b"l") == -1
    h.check_accounting()


def test_expire_cycle_budget_is_shared_fairly(clock: FakeClock) -> None:
    h = Harness(clock, a=NamespacePolicy(default_ttl=1), b=NamespacePolicy(default_ttl=1))
    for ns in ("a", "b"):
        for i in range(100):
            h.run("SET", b"k%d" % i, b"v", ns=ns)
    clock.advance(2)
    for _ in range(4):
        h.store.expire_cycle(budget=40)
    stats = h.store.stats()
    assert stats["a"].expirations > 0
    assert stats["b"].expirations > 0
