from __future__ import annotations

import math

import pytest

from meshcache.errors import NotFloatError, NotIntegerError, OverflowCommandError, WrongTypeError

from .conftest import Harness


def test_hash_ops(h: Harness) -> None:
    assert h.run("HGETALL", b"h") == {}
    assert h.run("HLEN", b"h") == 0
    assert h.run("HGET", b"h", b"f") is None
    assert h.run("HSET", b"h", b"a", b"1", b"b", b"2") == 2
    assert h.run("HSET", b"h", b"a", b"10", b"c", b"3") == 1
    assert h.run("HGET", b"h", b"a") == b"10"
    assert h.run("HGETALL", b"h") == {b"a": b"10", b"b": b"2", b"c": b"3"}
    assert h.run("HLEN", b"h") == 3
    h.check_accounting()
    assert h.run("HDEL", b"h", b"a", b"zz", b"a") == 1
    assert h.run("HINCRBY", b"h", b"b", 5) == 7
    assert h.run("HINCRBY", b"h", b"new", -3) == -3
    assert h.run("HGET", b"h", b"b") == b"7"
    assert h.run("HSET", b"h", b"c", b"x") == 0
    with pytest.raises(NotIntegerError):
        h.run("HINCRBY", b"h", b"c", 1)
    h.run("HSET", b"h", b"big", str(2**63 - 1).encode())
    with pytest.raises(OverflowCommandError):
        h.run("HINCRBY", b"h", b"big", 1)
    h.check_accounting()
    assert h.run("HDEL", b"h", b"b", b"c", b"new", b"big") == 4
    assert h.run("EXISTS", b"h") == 0  # an emptied hash is deleted
    assert h.ks().used == 0
    assert h.run("HDEL", b"h", b"x") == 0


def test_failing_hincrby_changes_nothing(h: Harness) -> None:
    assert h.run("HINCRBY", b"h", b"f", -1) == -1
    with pytest.raises(OverflowCommandError):
        h.run("HINCRBY", b"h", b"f", -(2**63))
    assert h.run("HGET", b"h", b"f") == b"-1"
    h.check_accounting()


def test_list_ops(h: Harness) -> None:
    assert h.run("LPUSH", b"l", b"a", b"b", b"c") == 3  # c b a
    assert h.run("RPUSH", b"l", b"d", b"e") == 5  # c b a d e
    assert h.run("LRANGE", b"l", 0, -1) == [b"c", b"b", b"a", b"d", b"e"]
    assert h.run("LRANGE", b"l", 1, 2) == [b"b", b"a"]
    assert h.run("LRANGE", b"l", -2, -1) == [b"d", b"e"]
    assert h.run("LRANGE", b"l", -100, 1) == [b"c", b"b"]
    assert h.run("LRANGE", b"l", 3, 100) == [b"d", b"e"]
    assert h.run("LRANGE", b"l", 4, 3) == []
    assert h.run("LRANGE", b"l", 5, 10) == []
    assert h.run("LRANGE", b"l", -1, -2) == []
    assert h.run("LRANGE", b"l", 0, -6) == []
    assert h.run("LRANGE", b"missing", 0, -1) == []
    assert h.run("LLEN", b"l") == 5
    assert h.run("LPOP", b"l") == b"c"
    assert h.run("RPOP", b"l") == b"e"
    h.check_accounting()
    assert [h.run("RPOP", b"l") for _ in range(4)] == [b"d", b"a", b"b", None]
    assert h.run("EXISTS", b"l") == 0
    assert h.run("LPOP", b"l") is None
    assert h.ks().used == 0


def test_lrange_matches_python_slicing_on_long_list(h: Harness) -> None:
    items = [b"%d" % i for i in range(200)]
    h.run("RPUSH", b"l", *items)
    for start, stop in [(0, 9), (150, 199), (-10, -1), (100, -50), (190, 500), (-300, 5)]:
        n = len(items)
        lo = max(start + n if start < 0 else start, 0)
        hi = min((stop + n if stop < 0 else stop), n - 1) + 1
        assert h.run("LRANGE", b"l", start, stop) == items[lo:hi], (start, stop)


def test_set_ops(h: Harness) -> None:
    assert h.run("SADD", b"s", b"b", b"a", b"b") == 2
    assert h.run("SADD", b"s", b"a") == 0
    assert h.run("SISMEMBER", b"s", b"a") is True
    assert h.run("SISMEMBER", b"s", b"z") is False
    assert h.run("SISMEMBER", b"nope", b"z") is False
    assert h.run("SMEMBERS", b"s") == [b"a", b"b"]
    assert h.run("SCARD", b"s") == 2
    assert h.run("SREM", b"s", b"a", b"q") == 1
    h.check_accounting()
    assert h.run("SREM", b"s", b"b") == 1
    assert h.run("EXISTS", b"s") == 0
    assert h.run("SMEMBERS", b"s") == []
    assert h.run("SCARD", b"s") == 0


def test_sorted_set_ops(h: Harness) -> None:
    assert h.run("ZADD", b"z", 2, b"b", 1, b"a", 2, b"c") == 3
    assert h.run("ZADD", b"z", 0.5, b"c") == 0
    assert h.run("ZRANGE", b"z", 0, -1) == [b"c", b"a", b"b"]
    assert h.run("ZRANGE", b"z", 0, -1, {"withscores": True}) == [
        [b"c", 0.5],
        [b"a", 1.0],
        [b"b", 2.0],
    ]
    assert h.run("ZRANGE", b"z", 0, 1, {"rev": True}) == [b"b", b"a"]
    assert h.run("ZRANGE", b"z", -1, -1, {"rev": True}) == [b"c"]
    assert h.run("ZRANGE", b"z", 5, 9) == []
    assert h.run("ZSCORE", b"z", b"a") == 1.0
    assert h.run("ZSCORE", b"z", b"x") is None
    assert h.run("ZRANK", b"z", b"b") == 2
    assert h.run("ZRANK", b"z", b"x") is None
    assert h.run("ZCARD", b"z") == 3
    assert h.run("ZINCRBY", b"z", 2.5, b"a") == 3.5
    assert h.run("ZINCRBY", b"z", 1, b"new") == 1.0
    assert h.run("ZRANGE", b"z", 0, -1) == [b"c", b"new", b"b", b"a"]
    h.check_accounting()
    assert h.run("ZREM", b"z", b"a", b"zz") == 1
    assert h.run("ZCARD", b"z") == 3
    assert h.run("ZREM", b"z", b"b", b"c", b"new") == 3
    assert h.run("EXISTS", b"z") == 0


def test_sorted_set_ties_by_member_and_infinities(h: Harness) -> None:
    h.run("ZADD", b"z", 1, b"b", 1, b"a", float("inf"), b"top", float("-inf"), b"bottom")
    assert h.run("ZRANGE", b"z", 0, -1) == [b"bottom", b"a", b"b", b"top"]
    h.run("ZINCRBY", b"z", float("-inf"), b"a")
    with pytest.raises(NotFloatError):
        h.run("ZINCRBY", b"z", float("inf"), b"a")  # -inf + inf is not a number
    assert h.run("ZSCORE", b"z", b"a") == -math.inf


def test_zrangebyscore(h: Harness) -> None:
    h.run("ZADD", b"z", 1, b"a", 2, b"b", 2, b"c", 3, b"d", float("inf"), b"e")
    assert h.run("ZRANGEBYSCORE", b"z", 2, 3) == [b"b", b"c", b"d"]
    assert h.run("ZRANGEBYSCORE", b"z", 2, 2, {"withscores": True}) == [[b"b", 2.0], [b"c", 2.0]]
    assert h.run("ZRANGEBYSCORE", b"z", float("-inf"), float("inf")) == [
        b"a",
        b"b",
        b"c",
        b"d",
        b"e",
    ]
    assert h.run("ZRANGEBYSCORE", b"z", 1.5, 2.5, {"offset": 1, "count": 5}) == [b"c"]
    assert h.run("ZRANGEBYSCORE", b"z", 0, 10, {"offset": 1, "count": 2}) == [b"b", b"c"]
    assert h.run("ZRANGEBYSCORE", b"z", 0, 10, {"offset": 0, "count": -1}) == [
        b"a",
        b"b",
        b"c",
        b"d",
    ]
    assert h.run("ZRANGEBYSCORE", b"z", 3, 2) == []
    assert h.run("ZRANGEBYSCORE", b"missing", 0, 1) == []


@pytest.mark.parametrize(
    ("setup", "op"),
    [
        (("SET", b"k", b"v"), ("HGET", b"k", b"f")),
        (("SET", b"k", b"v"), ("LPUSH", b"k", b"x")),
        (("SET", b"k", b"v"), ("SADD", b"k", b"x")),
        (("SET", b"k", b"v"), ("ZADD", b"k", 1, b"x")),
        (("HSET", b"k", b"f", b"v"), ("LRANGE", b"k", 0, 1)),
        (("HSET", b"k", b"f", b"v"), ("GET", b"k")),
        (("LPUSH", b"k", b"v"), ("SMEMBERS", b"k")),
        (("LPUSH", b"k", b"v"), ("HSET", b"k", b"f", b"v")),
        (("SADD", b"k", b"v"), ("ZSCORE", b"k", b"v")),
        (("SADD", b"k", b"v"), ("LPOP", b"k")),
        (("ZADD", b"k", 1, b"v"), ("SREM", b"k", b"v")),
        (("ZADD", b"k", 1, b"v"), ("HDEL", b"k", b"v")),
        (("ZADD", b"k", 1, b"v"), ("INCRBY", b"k", 1)),
        (("LPUSH", b"k", b"v"), ("ZRANGEBYSCORE", b"k", 0, 1)),
    ],
)
def test_wrongtype_across_types(
    h: Harness, setup: tuple[object, ...], op: tuple[object, ...]
) -> None:
    h.run(*setup)  # type: ignore[arg-type]
    before = h.ks().used
    with pytest.raises(WrongTypeError):
        h.run(*op)  # type: ignore[arg-type]
    assert h.ks().used == before
    h.check_accounting()
