"""The ops that do in one step what Redis does atomically on one key: GETDEL, APPEND, STRLEN,
INCRBYFLOAT, TYPE, SPOP, ZPOPMIN/ZPOPMAX, LPOP/RPOP with a count and EXPIRE's conditions.
Their Redis replies are checked byte for byte against redis-server in tests/resp/test_parity.py;
here: their results as ops, their refusals, and the byte accounting under random sequences."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshcache.errors import BadRequestError, CommandError, NotFloatError, TooLargeError
from meshcache.hlc import HLC
from meshcache.store import NamespacePolicy, Store
from meshcache.wire.ops import OPS, Limits, normalize_args

from .conftest import FakeClock, Harness
from .test_accounting import KEYS, MEMBERS, POLICIES, VALUES
from .test_accounting import random_op as plain_random_op


@pytest.fixture
def h() -> Harness:
    return Harness(FakeClock())


def test_getdel_append_strlen(h: Harness) -> None:
    assert h.run("GETDEL", "k") is None
    assert h.run("APPEND", "k", "ab") == 2
    assert h.run("APPEND", "k", "cde") == 5
    assert h.run("STRLEN", "k") == 5
    assert h.run("STRLEN", "nope") == 0
    assert h.run("GETDEL", "k") == b"abcde"
    assert h.run("GET", "k") is None and h.run("STRLEN", "k") == 0
    h.run("SET", "t", "x", {"ttl": 50})
    assert h.run("APPEND", "t", "y") == 2
    assert 49 < h.run("TTL", "t") <= 50  # APPEND keeps the expiry
    h.run("HSET", "h", "f", "v")
    for op, args in (("GETDEL", ["h"]), ("APPEND", ["h", "x"]), ("STRLEN", ["h"])):
        with pytest.raises(CommandError) as refused:
            h.run(op, *args)
        assert refused.value.code == "WRONGTYPE"
    h.check_accounting()


def test_append_stops_at_the_value_limit() -> None:
    clock = FakeClock()
    store = Store(clock=clock, hlc=HLC(clock.ms), max_value_bytes=10)

    def run(op: str, *args: Any) -> Any:
        return store.execute("default", op, normalize_args(OPS[op], list(args), Limits()))

    assert run("APPEND", "k", "x" * 10) == 10
    with pytest.raises(TooLargeError, match="would be 11 bytes, the limit is 10"):
        run("APPEND", "k", "y")
    assert run("GET", "k") == b"x" * 10


def test_incrbyfloat_prints_as_redis(h: Harness) -> None:
    assert h.run("INCRBYFLOAT", "f", 0.1) == b"0.1"
    assert h.run("INCRBYFLOAT", "f", 0.2) == b"0.3"
    assert h.run("INCRBYFLOAT", "f", 10) == b"10.3"
    assert h.run("INCRBYFLOAT", "f", -10.3) == b"0"
    h.run("SET", "n", "5.0e3")
    assert h.run("INCRBYFLOAT", "n", 1.5) == b"5001.5"
    h.run("SET", "bad", " 1")
    with pytest.raises(NotFloatError, match="not a valid float"):
        h.run("INCRBYFLOAT", "bad", 1)
    with pytest.raises(NotFloatError, match="NaN or Infinity"):
        h.run("INCRBYFLOAT", "f", float("inf"))
    h.run("SET", "big", "1e308")
    with pytest.raises(NotFloatError, match="NaN or Infinity"):
        h.run("INCRBYFLOAT", "big", 1e308)
    assert h.run("GET", "big") == b"1e308"  # a refused sum changes nothing


def test_type_names_every_kind(h: Harness) -> None:
    h.run("SET", "s", "v")
    h.run("HSET", "h", "f", "v")
    h.run("RPUSH", "l", "a")
    h.run("SADD", "st", "m")
    h.run("ZADD", "z", 1, "m")
    kinds = [h.run("TYPE", k) for k in ("s", "h", "l", "st", "z", "nope")]
    assert kinds == ["string", "hash", "list", "set", "zset", "none"]
    assert h.ks().hits == 0 and h.ks().misses == 0  # TYPE is not a read of the value


def test_pops_with_a_count(h: Harness) -> None:
    h.run("RPUSH", "l", "a", "b", "c", "d")
    assert h.run("LPOP", "l", {"count": 2}) == [b"a", b"b"]
    assert h.run("RPOP", "l", {"count": 0}) == []
    assert h.run("RPOP", "l", {"count": 5}) == [b"d", b"c"]
    assert h.run("LPOP", "l", {"count": 1}) is None  # the emptied list is gone
    assert h.run("LPOP", "l") is None
    with pytest.raises(BadRequestError, match="count must be >= 0"):
        h.run("LPOP", "l", {"count": -1})
    h.run("ZADD", "z", 1, "a", 2, "b", 3, "c")
    assert h.run("ZPOPMIN", "z") == [[b"a", 1.0]]
    assert h.run("ZPOPMAX", "z", {"count": 5}) == [[b"c", 3.0], [b"b", 2.0]]
    assert h.run("ZPOPMIN", "z") == [] and h.run("TYPE", "z") == "none"
    h.check_accounting()


def test_spop_draws_with_the_seeded_generator() -> None:
    def draws(seed: int) -> list[Any]:
        clock = FakeClock()
        store = Store(clock=clock, hlc=HLC(clock.ms), rng=random.Random(seed))

        def run(op: str, *args: Any) -> Any:
            return store.execute("default", op, normalize_args(OPS[op], list(args), Limits()))

        run("SADD", "s", *(b"m%d" % i for i in range(20)))
        return [run("SPOP", "s"), run("SPOP", "s", {"count": 3}), run("SCARD", "s")]

    first = draws(1)
    assert first == draws(1)  # one seed, one history
    assert first[2] == 16 and len(set(first[1])) == 3 and first[0] not in first[1]
    h = Harness(FakeClock())
    assert h.run("SPOP", "nope") is None and h.run("SPOP", "nope", {"count": 2}) == []
    h.run("SADD", "s", "x", "y")
    assert h.run("SPOP", "s", {"count": 9}) == [b"x", b"y"]
    assert h.run("TYPE", "s") == "none"


SET_MEMBERS = [b"m%d" % i for i in range(12)]
set_steps = st.lists(
    st.one_of(
        st.tuples(st.just("SADD"), st.lists(st.sampled_from(SET_MEMBERS), min_size=1, max_size=5)),
        st.tuples(st.just("SREM"), st.lists(st.sampled_from(SET_MEMBERS), min_size=1, max_size=2)),
        st.tuples(st.just("SPOP"), st.none() | st.integers(0, 4)),
        st.tuples(st.just("DELETE"), st.none()),
        st.tuples(st.just("EXPIRE"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(set_steps, st.integers(0, 2**32))
def test_spop_pops_as_if_it_sorted_the_members_every_time(
    steps: list[tuple[str, Any]], seed: int
) -> None:
    """A pop after pops reuses the order the one before left; any other write of the set
    makes the next pop sort again: the draws are those of a seeded generator over the members
    in bytewise order, every time."""
    clock = FakeClock()
    store = Store(clock=clock, hlc=HLC(clock.ms), rng=random.Random(seed))
    model: set[bytes] = set()
    model_rng = random.Random(seed)

    def run(op: str, *args: Any) -> Any:
        return store.execute("default", op, normalize_args(OPS[op], list(args), Limits()))

    for op, arg in steps:
        if op == "SADD":
            run("SADD", "s", *arg)
            model.update(arg)
        elif op == "SREM":
            run("SREM", "s", *arg)
            model.difference_update(arg)
        elif op == "DELETE":
            run("DELETE", "s")
            model.clear()
        elif op == "EXPIRE":
            run("EXPIRE", "s", 1000)
        else:
            got = run("SPOP", "s") if arg is None else run("SPOP", "s", {"count": arg})
            wanted = 1 if arg is None else min(arg, len(model))
            members = sorted(model)
            if not model or not wanted:
                expected: Any = None if arg is None else []
            else:
                popped = members if wanted == len(members) else model_rng.sample(members, wanted)
                model.difference_update(popped)
                expected = popped[0] if arg is None else popped
            assert got == expected
        assert sorted(run("SMEMBERS", "s")) == sorted(model)


def test_expire_conditions(h: Harness) -> None:
    h.run("SET", "k", "v")
    assert h.run("EXPIRE", "k", 100, {"xx": True}) is False
    assert h.run("EXPIRE", "k", 100, {"gt": True}) is False  # no expiry counts as never
    assert h.run("EXPIRE", "k", 100, {"lt": True}) is True
    assert h.run("EXPIRE", "k", 200, {"nx": True}) is False
    assert h.run("EXPIRE", "k", 50, {"gt": True}) is False
    assert h.run("EXPIRE", "k", 300, {"gt": True}) is True
    assert h.run("EXPIRE", "k", 400, {"lt": True}) is False
    assert h.run("EXPIRE", "k", 60, {"xx": True, "lt": True}) is True
    assert 59 < h.run("TTL", "k") <= 60
    for bad in ({"nx": True, "xx": True}, {"nx": True, "gt": True}, {"gt": True, "lt": True}):
        with pytest.raises(BadRequestError):
            h.run("EXPIRE", "k", 10, bad)
    assert h.run("EXPIRE", "k", -1, {"gt": True}) is False  # sooner: GT refuses, key stays
    assert h.run("EXPIRE", "k", -1, {"lt": True}) is True
    assert h.run("TYPE", "k") == "none"


def random_op(rng: random.Random) -> tuple[Any, ...]:
    """The accounting test's ops, and these ones half of the time."""
    if rng.random() < 0.5:
        return plain_random_op(rng)
    k = rng.choice(KEYS)
    count = {"count": rng.randint(0, 3)}
    ops: list[tuple[Any, ...]] = [
        ("GETDEL", k),
        ("APPEND", k, rng.choice(VALUES)),
        ("INCRBYFLOAT", k, rng.choice([0.5, -2.25, 10.0])),
        ("SPOP", k),
        ("SPOP", k, count),
        ("LPOP", k, count),
        ("RPOP", k, count),
        ("ZPOPMIN", k, count),
        ("ZPOPMAX", k),
        ("EXPIRE", k, rng.choice([-1, 0.5, 3]), {rng.choice(["nx", "xx", "gt", "lt"]): True}),
        ("SADD", k, rng.choice(MEMBERS)),
    ]
    return rng.choice(ops)


@pytest.mark.parametrize("policy", POLICIES, ids=["unbounded", "lru", "lfu", "ttl", "none"])
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 120))
def test_accounting_stays_exact(policy: NamespacePolicy, seed: int, steps: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    h = Harness(clock, default=policy)
    for _ in range(steps):
        op = random_op(rng)
        # Reading every key expires the expired ones (lazily), so a refused write, which may
        # only purge expired keys, must leave exactly this state.
        before = {k: h.store.get_entry("default", k) for k in KEYS}
        before_used = h.ks().used
        try:
            h.run(*op)
        except CommandError as exc:
            if exc.code in ("OUT_OF_MEMORY", "TOO_LARGE"):
                assert h.ks().used == before_used, op
                assert {k: h.store.get_entry("default", k) for k in KEYS} == before, op
        h.check_accounting()
        if rng.random() < 0.2:
            clock.advance(rng.choice([0.3, 1, 4]))
