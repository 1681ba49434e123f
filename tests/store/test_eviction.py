from __future__ import annotations

import pytest

from meshcache.errors import OutOfMemoryError, TooLargeError
from meshcache.store import NamespacePolicy, sizes

from .conftest import FakeClock, Harness


def plain(key: bytes, value: bytes) -> int:
    return sizes.plain_cost(len(key), sizes.VERSION_HEADER + len(value))


def keys_of(h: Harness, ns: str = "default") -> list[bytes]:
    return list(h.ks(ns))


def test_lru_evicts_least_recently_used(clock: FakeClock) -> None:
    h = Harness(clock, default=NamespacePolicy(eviction="lru", max_items=3))
    for k in (b"a", b"b", b"c"):
        h.run("SET", k, b"v")
    h.run("GET", b"a")  # a is now the most recent
    h.run("SET", b"d", b"v")
    assert sorted(keys_of(h)) == [b"a", b"c", b"d"]
    assert h.store.stats()["default"].evictions["max_items"] == 1
    h.check_accounting()


def test_lru_max_bytes(clock: FakeClock) -> None:
    one = plain(b"k0", b"x" * 100)
    h = Harness(clock, default=NamespacePolicy(eviction="lru", max_bytes=3 * one))
    for i in range(3):
        h.run("SET", b"k%d" % i, b"x" * 100)
    assert h.ks().used == 3 * one
    h.run("GET", b"k0")
    h.run("SET", b"k3", b"x" * 100)
    assert sorted(keys_of(h)) == [b"k0", b"k2", b"k3"]
    assert h.store.stats()["default"].evictions["max_bytes"] == 1
    # A bigger value evicts as many keys as it takes, never itself.
    h.run("SET", b"big", b"x" * 250)
    assert b"big" in keys_of(h)
    assert h.ks().used <= 3 * one
    h.check_accounting()


def test_value_larger_than_max_bytes_is_too_large(clock: FakeClock) -> None:
    h = Harness(clock, default=NamespacePolicy(max_bytes=1500))
    h.run("SET", b"a", b"v")
    with pytest.raises(TooLargeError):
        h.run("SET", b"b", b"x" * 1600)
    with pytest.raises(TooLargeError):
        h.run("MSET", b"c", b"v", b"b", b"x" * 1600)
    assert keys_of(h) == [b"a"]
    with pytest.raises(TooLargeError):
        h.run("RPUSH", b"l", b"x" * 1600)
    h.run("RPUSH", b"l", b"x")
    with pytest.raises(TooLargeError):
        h.run("RPUSH", b"l", b"x" * 700)
    assert h.run("LRANGE", b"l", 0, -1) == [b"x"]
    h.check_accounting()


def test_lfu_keeps_frequent_keys(clock: FakeClock) -> None:
    h = Harness(clock, default=NamespacePolicy(eviction="lfu", max_items=3))
    for k in (b"a", b"b", b"c"):
        h.run("SET", k, b"v")
    for _ in range(20):
        h.run("GET", b"a")
        h.run("GET", b"c")
    h.run("GET", b"b")  # b is the most recent, but the least used
    h.run("SET", b"d", b"v")
    assert sorted(keys_of(h)) == [b"a", b"c", b"d"]
    h.check_accounting()


def test_lfu_ageing_lets_old_popularity_fade(clock: FakeClock) -> None:
    h = Harness(clock, default=NamespacePolicy(eviction="lfu", max_items=3))
    h.run("SET", b"old", b"v")
    for _ in range(200):
        h.run("GET", b"old")  # popular an hour ago
    old_counter = h.ks().lfu_counter(b"old")
    assert old_counter is not None and old_counter > 10
    clock.advance(3600)
    h.run("SET", b"now1", b"v")
    h.run("SET", b"now2", b"v")
    for _ in range(3):
        h.run("GET", b"now1")  # a little popular now
    assert h.ks().lfu_counter(b"old") == 0
    h.run("SET", b"new", b"v")
    assert sorted(keys_of(h)) == [b"new", b"now1", b"now2"]
    h.check_accounting()


def test_lfu_without_ageing_would_keep_old_key(clock: FakeClock) -> None:
    # Control for the test above: within one decay period the old key wins.
    h = Harness(clock, default=NamespacePolicy(eviction="lfu", max_items=3))
    h.run("SET", b"old", b"v")
    for _ in range(200):
        h.run("GET", b"old")
    clock.advance(1)
    h.run("SET", b"now1", b"v")
    h.run("SET", b"now2", b"v")
    h.run("SET", b"new", b"v")
    assert b"old" in keys_of(h)


def test_ttl_evicts_soonest_to_expire_first(clock: FakeClock) -> None:
    h = Harness(clock, default=NamespacePolicy(eviction="ttl", max_items=3))
    h.run("SET", b"forever", b"v")
    h.run("SET", b"late", b"v", {"ttl": 100})
    h.run("SET", b"soon", b"v", {"ttl": 10})
    h.run("SET", b"x", b"v")
    assert sorted(keys_of(h)) == [b"forever", b"late", b"x"]
    h.run("SET", b"y", b"v")
    assert sorted(keys_of(h)) == [b"forever", b"x", b"y"]
    # No key with an expiry left: the least recently used goes.
    h.run("SET", b"z", b"v")
    assert sorted(keys_of(h)) == [b"x", b"y", b"z"]
    h.check_accounting()


def test_none_refuses_and_changes_nothing(clock: FakeClock) -> None:
    one = plain(b"a", b"v")
    h = Harness(clock, default=NamespacePolicy(eviction="none", max_bytes=2 * one + 50))
    h.run("SET", b"a", b"v")
    h.run("SET", b"b", b"v")
    before = (h.ks().used, list(h.ks().items()))
    with pytest.raises(OutOfMemoryError):
        h.run("SET", b"c", b"v")
    with pytest.raises(OutOfMemoryError):
        h.run("MSET", b"a", b"w", b"c", b"v")
    with pytest.raises(OutOfMemoryError):
        h.run("SET", b"a", b"v" * 100)
    with pytest.raises(OutOfMemoryError):
        h.run("HSET", b"h", b"f", b"v")
    assert (h.ks().used, list(h.ks().items())) == before
    # Writes that do not grow the namespace still work.
    assert h.run("SET", b"a", b"w") is True
    assert h.run("DELETE", b"b") == 1
    assert h.run("SET", b"c", b"v") is True
    h.check_accounting()


def test_none_typed_growth_rolls_back(clock: FakeClock) -> None:
    h = Harness(clock, default=NamespacePolicy(eviction="none", max_bytes=4000))
    h.run("RPUSH", b"l", b"a", b"b")
    h.run("SADD", b"s", *[b"m%d" % i for i in range(10)])
    h.run("ZADD", b"z", 1, b"x")
    before_used = h.ks().used
    with pytest.raises(OutOfMemoryError):
        h.run("SADD", b"s", *[b"n%d" % i for i in range(30)])
    with pytest.raises(OutOfMemoryError):
        h.run("ZADD", b"z", *[v for i in range(8) for v in (i, b"m%d" % i)])
    assert h.run("SCARD", b"s") == 10
    assert h.run("ZCARD", b"z") == 1
    assert h.ks().used == before_used
    h.check_accounting()


def test_none_max_items(clock: FakeClock) -> None:
    h = Harness(clock, default=NamespacePolicy(eviction="none", max_items=1))
    h.run("SET", b"a", b"v", {"ttl": 1})
    with pytest.raises(OutOfMemoryError):
        h.run("SET", b"b", b"v")
    with pytest.raises(OutOfMemoryError):
        h.run("LPUSH", b"l", b"v")
    clock.advance(1)  # the expired key makes room
    assert h.run("SET", b"b", b"v") is True
    h.check_accounting()


def test_switching_policy_live(clock: FakeClock) -> None:
    h = Harness(clock)
    for i in range(100):
        h.run("SET", b"k%03d" % i, b"v" * 10)
    h.run("GET", b"k000")
    h.store.set_policy("default", NamespacePolicy(eviction="lfu"))
    h.check_accounting()
    assert h.ks().lfu is not None
    h.store.set_policy("default", NamespacePolicy(eviction="lru", max_items=10))
    assert h.run("DBSIZE") == 10
    assert b"k000" in keys_of(h)  # most recently used survives
    h.check_accounting()
    per_key = h.ks().used // 10
    h.store.set_policy("default", NamespacePolicy(eviction="ttl", max_bytes=per_key * 5))
    assert h.run("DBSIZE") == 5
    assert h.ks().used <= per_key * 5
    h.check_accounting()
    # Shrinking a none namespace keeps data but refuses growth.
    h.store.set_policy("default", NamespacePolicy(eviction="none", max_items=2))
    assert h.run("DBSIZE") == 5
    with pytest.raises(OutOfMemoryError):
        h.run("SET", b"new", b"v")
    survivor = keys_of(h)[0]
    assert h.run("SET", survivor, b"w" * 10) is True  # no growth: allowed, evicts nothing
    assert h.run("DBSIZE") == 5
    h.store.set_policy("default", NamespacePolicy(eviction="lru", max_items=2))
    assert h.run("DBSIZE") == 2
    h.check_accounting()


def test_namespaces_are_separate(clock: FakeClock) -> None:
    h = Harness(clock, small=NamespacePolicy(max_items=1))
    h.run("SET", b"k", b"default")
    h.run("SET", b"k", b"small", ns="small")
    h.run("SET", b"j", b"small", ns="small")
    assert h.run("GET", b"k") == b"default"
    assert h.run("GET", b"k", ns="small") is None
    assert h.store.namespace_names() == ["default", "small"]
    stats = h.store.stats()
    assert stats["small"].items == 1
    assert stats["small"].evictions["max_items"] == 1
    h.store.drop_namespace("small")
    assert h.store.namespace_names() == ["default"]
