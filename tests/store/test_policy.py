from __future__ import annotations

import pytest

from meshcache.errors import ConfigError, NoSuchNamespaceError
from meshcache.store import DEFAULT_POLICY, NamespacePolicy

from .conftest import FakeClock, Harness


def test_defaults() -> None:
    assert (
        NamespacePolicy(
            eviction="lru", max_bytes=None, max_items=None, default_ttl=None, replicas=2
        )
        == DEFAULT_POLICY
    )
    assert DEFAULT_POLICY.validate() is DEFAULT_POLICY


@pytest.mark.parametrize(
    "changes",
    [
        {"eviction": "fifo"},
        {"max_bytes": -1},
        {"max_items": -5},
        {"max_items": 0},  # holds nothing (under lru it kept the key just written)
        {"max_bytes": 0},
        {"max_bytes": 1.5},
        {"default_ttl": 0},
        {"default_ttl": -1.0},
        {"default_ttl": float("inf")},
        {"replicas": 0},
        {"replicas": True},
        {"consistency": "most"},
    ],
)
def test_validate_refuses(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        NamespacePolicy(**changes).validate()  # type: ignore[arg-type]


def test_mapping_roundtrip() -> None:
    policy = NamespacePolicy(eviction="lfu", max_bytes=1 << 20, default_ttl=30.0, replicas=3)
    mapping = policy.to_mapping()
    assert mapping == {
        "eviction": "lfu",
        "max_bytes": 1 << 20,
        "default_ttl": 30.0,
        "replicas": 3,
        "consistency": "one",
    }
    assert NamespacePolicy.from_mapping(mapping) == policy
    assert NamespacePolicy.from_mapping({}) == DEFAULT_POLICY
    assert NamespacePolicy.from_mapping({"default_ttl": 5}).default_ttl == 5.0
    with pytest.raises(ConfigError):
        NamespacePolicy.from_mapping({"evicton": "lru"})
    with pytest.raises(ConfigError):
        NamespacePolicy.from_mapping({"eviction": "random"})


def test_store_namespace_management(clock: FakeClock) -> None:
    h = Harness(clock)
    assert h.store.namespace_names() == ["default"]
    h.store.set_policy("sessions", NamespacePolicy(default_ttl=60))
    assert h.store.namespace_names() == ["default", "sessions"]
    assert h.store.policy("sessions").default_ttl == 60
    with pytest.raises(ConfigError):
        h.store.set_policy("bad", NamespacePolicy(max_items=-1))
    assert "bad" not in h.store.namespace_names()
    with pytest.raises(ConfigError):
        h.store.drop_namespace("default")
    with pytest.raises(NoSuchNamespaceError):
        h.store.drop_namespace("nope")
    h.store.drop_namespace("sessions")
    with pytest.raises(NoSuchNamespaceError):
        h.run("GET", b"k", ns="sessions")


def test_default_namespace_policy_can_be_given(clock: FakeClock) -> None:
    h = Harness(clock, default=NamespacePolicy(eviction="none", max_items=1))
    assert h.store.policy("default").eviction == "none"


def test_stats(clock: FakeClock) -> None:
    h = Harness(clock)
    h.run("SET", b"a", b"v", {"ttl": 1})
    h.run("GET", b"a")
    h.run("GET", b"b")
    h.run("MGET", b"a", b"b")
    clock.advance(2)
    h.store.expire_cycle()
    stats = h.store.stats()["default"]
    assert (stats.hits, stats.misses, stats.expirations, stats.items, stats.bytes) == (
        2,
        2,
        1,
        0,
        0,
    )
    assert stats.evictions_total == 0
    assert stats.policy == DEFAULT_POLICY
