"""Random op sequences keep the byte counter equal to the sum of entry costs."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshcache.errors import CommandError, ErrorCode
from meshcache.store import NamespacePolicy

from .conftest import FakeClock, Harness

KEYS = [b"a", b"b", b"c", b"dd", b"eee"]
MEMBERS = [b"m", b"n", b"oo", b"p" * 30]
VALUES = [b"", b"1", b"12", b"-7", b"x" * 50, b"y" * 300]


def random_op(rng: random.Random) -> tuple[Any, ...]:
    k = rng.choice(KEYS)
    m = rng.choice(MEMBERS)
    v = rng.choice(VALUES)
    n = rng.randint(-3, 3)
    ops: list[tuple[Any, ...]] = [
        ("SET", k, v),
        ("SET", k, v, {"ttl": rng.choice([0.5, 2, 10])}),
        ("SET", k, v, {"keepttl": True, "get": False}),
        ("SET", k, v, {"nx": True}),
        ("GET", k),
        ("DELETE", k, rng.choice(KEYS)),
        ("EXPIRE", k, rng.choice([-1, 0.5, 3, float("inf")])),
        ("PERSIST", k),
        ("INCRBY", k, n),
        ("MSET", k, v, rng.choice(KEYS), v),
        ("HSET", k, m, v, rng.choice(MEMBERS), v),
        ("HDEL", k, m),
        ("HINCRBY", k, m, n),
        ("LPUSH", k, v, v),
        ("RPUSH", k, v),
        ("LPOP", k),
        ("RPOP", k),
        ("SADD", k, m, rng.choice(MEMBERS)),
        ("SREM", k, m),
        ("ZADD", k, float(n), m, 1.5, rng.choice(MEMBERS)),
        ("ZINCRBY", k, float(n), m),
        ("ZREM", k, m),
    ]
    return rng.choice(ops)


POLICIES = [
    NamespacePolicy(),
    NamespacePolicy(eviction="lru", max_bytes=3000),
    NamespacePolicy(eviction="lfu", max_items=3, max_bytes=4000),
    NamespacePolicy(eviction="ttl", max_bytes=2500, default_ttl=5),
    NamespacePolicy(eviction="none", max_bytes=3000, max_items=4),
]


@pytest.mark.parametrize("split", [False, True], ids=["one-table", "split"])
@pytest.mark.parametrize("policy", POLICIES, ids=["unbounded", "lru", "lfu", "ttl", "none"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 120))
def test_accounting_exact_under_random_ops(
    policy: NamespacePolicy, split: bool, seed: int, steps: int
) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    h = Harness(clock, default=policy)
    if split:  # as a namespace past SPLIT_AT keys is, with a handful of keys
        h.ks().split()
    for _ in range(steps):
        op = random_op(rng)
        # get_entry expires lazily, so `before` holds only live keys: a refused write must
        # leave exactly this state (it may only purge expired keys, and there are none left).
        before = {k: h.store.get_entry("default", k) for k in KEYS}
        before_used = h.ks().used
        try:
            h.run(*op)
        except CommandError as exc:
            if exc.code in ("OUT_OF_MEMORY", "TOO_LARGE"):
                assert h.ks().used == before_used, op
                assert {k: h.store.get_entry("default", k) for k in KEYS} == before, op
        h.check_accounting()
        ks = h.ks()
        if policy.eviction != "none":
            if policy.max_bytes is not None:
                assert ks.used <= policy.max_bytes
            if policy.max_items is not None:
                assert len(ks) <= policy.max_items
        if rng.random() < 0.2:
            clock.advance(rng.choice([0.3, 1, 4]))
        if rng.random() < 0.1:
            h.store.expire_cycle()
            h.check_accounting()
    h.store.set_policy("default", NamespacePolicy(eviction="lfu", max_bytes=1500))
    h.check_accounting()
    h.store.set_policy("default", NamespacePolicy(eviction="lru"))
    h.check_accounting()


def test_a_set_over_an_expired_key_of_a_full_namespace_under_none_keeps_the_counts(
    clock: FakeClock,
) -> None:
    """Under ``none``, a write that would not fit first purges expired keys: the key written
    may be one of them, and it is then a new key that must fit as one."""
    h = Harness(clock, default=NamespacePolicy(eviction="none", max_items=2, max_bytes=2000))
    h.run("SET", b"a", b"x" * 100, {"ttl": 1})
    h.run("SET", b"b", b"x" * 100)
    clock.advance(2)  # a expired, not purged yet
    with pytest.raises(CommandError) as big:  # as a new key beside b it does not fit
        h.run("SET", b"a", b"y" * 1600)
    assert big.value.code is ErrorCode.OUT_OF_MEMORY
    h.check_accounting()
    assert h.ks().count == 1  # the expired a is gone, b stays
    assert h.run("SET", b"a", b"y" * 1000) is True
    h.check_accounting()
    with pytest.raises(CommandError) as full:
        h.run("SET", b"c", b"z")  # two keys held: max_items
    assert full.value.code is ErrorCode.OUT_OF_MEMORY
    assert h.run("DELETE", b"a", b"b") == 2
    h.check_accounting()
    assert (h.ks().count, h.ks().used) == (0, 0)
