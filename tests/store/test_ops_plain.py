from __future__ import annotations

import pytest

from meshcache.errors import (
    BadRequestError,
    NoSuchNamespaceError,
    NotIntegerError,
    OverflowCommandError,
    UnknownOpError,
    WrongTypeError,
)
from meshcache.hlc import physical_ms

from .conftest import FakeClock, Harness

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def test_get_set_roundtrip_and_missing(h: Harness) -> None:
    assert h.run("GET", b"k") is None
    assert h.run("SET", b"k", b"v") is True
    assert h.run("GET", b"k") == b"v"
    assert h.run("SET", "k", "w") is True  # str taken as UTF-8
    assert h.run("GET", b"k") == b"w"
    h.check_accounting()


def test_unknown_namespace_and_op(h: Harness) -> None:
    with pytest.raises(NoSuchNamespaceError):
        h.store.execute("nope", "GET", [b"k"])
    with pytest.raises(UnknownOpError):
        h.store.execute("default", "PING", [])


def test_set_nx_xx(h: Harness) -> None:
    assert h.run("SET", b"k", b"1", {"xx": True}) is False
    assert h.run("GET", b"k") is None
    assert h.run("SET", b"k", b"1", {"nx": True}) is True
    assert h.run("SET", b"k", b"2", {"nx": True}) is False
    assert h.run("GET", b"k") == b"1"
    assert h.run("SET", b"k", b"3", {"xx": True}) is True
    assert h.run("GET", b"k") == b"3"
    with pytest.raises(BadRequestError):
        h.run("SET", b"k", b"4", {"nx": True, "xx": True})


def test_set_get_returns_old_value(h: Harness) -> None:
    assert h.run("SET", b"k", b"1", {"get": True}) is None
    assert h.run("SET", b"k", b"2", {"get": True}) == b"1"
    assert h.run("SET", b"k", b"3", {"get": True, "nx": True}) == b"2"
    assert h.run("GET", b"k") == b"2"
    h.run("RPUSH", b"l", b"x")
    with pytest.raises(WrongTypeError):
        h.run("SET", b"l", b"v", {"get": True})
    assert h.run("LLEN", b"l") == 1
    # Without get, SET replaces a typed value.
    assert h.run("SET", b"l", b"v") is True
    assert h.run("GET", b"l") == b"v"
    h.check_accounting()


def test_set_ttl_and_keepttl(h: Harness, clock: FakeClock) -> None:
    h.run("SET", b"k", b"1", {"ttl": 10})
    assert h.run("TTL", b"k") == 10.0
    h.run("SET", b"k", b"2", {"keepttl": True})
    assert h.run("TTL", b"k") == 10.0
    h.run("SET", b"k", b"3")
    assert h.run("TTL", b"k") == -1
    with pytest.raises(BadRequestError):
        h.run("SET", b"k", b"4", {"ttl": 0})
    with pytest.raises(BadRequestError):
        h.run("SET", b"k", b"4", {"ttl": -1.5})
    with pytest.raises(BadRequestError):
        h.run("SET", b"k", b"4", {"ttl": float("nan")})
    with pytest.raises(BadRequestError):
        h.run("SET", b"k", b"4", {"ttl": 5, "keepttl": True})
    h.run("SET", b"k", b"5", {"ttl": 0.5})
    clock.advance(0.25)
    assert h.run("TTL", b"k") == 0.25
    clock.advance(0.25)
    assert h.run("GET", b"k") is None
    assert h.run("TTL", b"k") == -2
    h.check_accounting()


def test_default_ttl_applies_without_ttl(clock: FakeClock) -> None:
    from meshcache.store import NamespacePolicy

    h = Harness(clock, default=NamespacePolicy(default_ttl=30))
    h.run("SET", b"k", b"v")
    assert h.run("TTL", b"k") == 30.0
    h.run("MSET", b"a", b"1", b"b", b"2")
    assert h.run("TTL", b"b") == 30.0
    h.run("INCR", b"n")
    assert h.run("TTL", b"n") == 30.0
    h.run("HSET", b"h", b"f", b"v")
    assert h.run("TTL", b"h") == 30.0
    h.run("SET", b"k", b"v", {"ttl": 5})
    assert h.run("TTL", b"k") == 5.0
    h.check_accounting()


def test_gets_and_cas(h: Harness, clock: FakeClock) -> None:
    assert h.run("GETS", b"k") is None
    assert h.run("CAS", b"k", 1, b"x") is False
    h.run("SET", b"k", b"v1")
    value, version = h.run("GETS", b"k")
    assert value == b"v1"
    assert physical_ms(version) == clock.ms()
    assert h.run("CAS", b"k", version + 1, b"v2") is False
    assert h.run("CAS", b"k", version, b"v2") is True
    assert h.run("GET", b"k") == b"v2"
    assert h.run("CAS", b"k", version, b"v3") is False  # the version moved on
    _, version2 = h.run("GETS", b"k")
    assert version2 > version
    assert h.run("CAS", b"k", version2, b"v3", {"ttl": 7}) is True
    assert h.run("TTL", b"k") == 7.0
    _, version3 = h.run("GETS", b"k")
    assert h.run("CAS", b"k", version3, b"v4") is True
    assert h.run("TTL", b"k") == 7.0  # CAS without ttl keeps the expiry
    h.run("SADD", b"s", b"m")
    with pytest.raises(WrongTypeError):
        h.run("GETS", b"s")
    with pytest.raises(WrongTypeError):
        h.run("CAS", b"s", 1, b"x")
    h.check_accounting()


def test_delete_exists(h: Harness) -> None:
    h.run("SET", b"a", b"1")
    h.run("SET", b"b", b"2")
    h.run("SADD", b"s", b"m")
    assert h.run("EXISTS", b"a", b"a", b"zz", b"s") == 3
    assert h.run("DELETE", b"a", b"a", b"zz", b"s") == 2
    assert h.run("EXISTS", b"a", b"s") == 0
    assert h.run("DBSIZE") == 1
    h.check_accounting()


def test_expire_persist_ttl(h: Harness, clock: FakeClock) -> None:
    assert h.run("EXPIRE", b"k", 10) is False
    assert h.run("PERSIST", b"k") is False
    assert h.run("TTL", b"k") == -2
    h.run("SET", b"k", b"v")
    assert h.run("PERSIST", b"k") is False
    _, v1 = h.run("GETS", b"k")
    assert h.run("EXPIRE", b"k", 2.5) is True
    _, v2 = h.run("GETS", b"k")
    assert v2 > v1  # a metadata write is a write
    assert h.run("TTL", b"k") == 2.5
    assert h.run("PERSIST", b"k") is True
    assert h.run("TTL", b"k") == -1
    assert h.run("EXPIRE", b"k", float("inf")) is True
    assert h.run("TTL", b"k") == -1
    assert h.run("EXPIRE", b"k", 0) is True
    assert h.run("EXISTS", b"k") == 0
    h.run("SET", b"k", b"v")
    assert h.run("EXPIRE", b"k", -3) is True
    assert h.run("GET", b"k") is None
    h.run("HSET", b"h", b"f", b"v")
    assert h.run("EXPIRE", b"h", 1) is True
    clock.advance(1)
    assert h.run("HGETALL", b"h") == {}
    h.check_accounting()


def test_incr_family(h: Harness) -> None:
    assert h.run("INCR", b"n") == 1
    assert h.run("INCRBY", b"n", 41) == 42
    assert h.run("GET", b"n") == b"42"
    assert h.run("DECR", b"n") == 41
    assert h.run("DECRBY", b"n", 50) == -9
    assert h.run("GET", b"n") == b"-9"
    assert h.run("DECR", b"m") == -1
    h.check_accounting()


@pytest.mark.parametrize(
    "bad", [b"abc", b"", b" 1", b"1 ", b"+1", b"1_0", b"01", b"1.5", b"9" * 25]
)
def test_incr_not_integer(h: Harness, bad: bytes) -> None:
    h.run("SET", b"n", bad)
    with pytest.raises(NotIntegerError):
        h.run("INCR", b"n")
    assert h.run("GET", b"n") == bad


def test_incr_overflow(h: Harness) -> None:
    h.run("SET", b"n", str(INT64_MAX).encode())
    with pytest.raises(OverflowCommandError):
        h.run("INCR", b"n")
    assert h.run("GET", b"n") == str(INT64_MAX).encode()
    h.run("SET", b"n", str(INT64_MIN).encode())
    with pytest.raises(OverflowCommandError):
        h.run("DECR", b"n")
    h.run("SET", b"n", b"0")
    with pytest.raises(OverflowCommandError):
        h.run("DECRBY", b"n", INT64_MIN)
    assert h.run("INCRBY", b"n", INT64_MIN) == INT64_MIN
    h.run("SET", b"n", str(2**63).encode())
    with pytest.raises(NotIntegerError):
        h.run("INCR", b"n")


def test_incr_keeps_expiry_and_refuses_typed(h: Harness) -> None:
    h.run("SET", b"n", b"5", {"ttl": 9})
    h.run("INCR", b"n")
    assert h.run("TTL", b"n") == 9.0
    h.run("LPUSH", b"l", b"x")
    with pytest.raises(WrongTypeError):
        h.run("INCR", b"l")


def test_mget_mset(h: Harness) -> None:
    assert h.run("MSET", b"a", b"1", b"b", b"2", b"a", b"3") is True
    h.run("SADD", b"s", b"m")
    assert h.run("MGET", b"a", b"b", b"c", b"s") == [b"3", b"2", None, None]
    h.check_accounting()


def test_get_on_typed_value_is_wrongtype(h: Harness) -> None:
    h.run("HSET", b"h", b"f", b"v")
    with pytest.raises(WrongTypeError):
        h.run("GET", b"h")


def test_dbsize_flush(h: Harness, clock: FakeClock) -> None:
    h.run("SET", b"a", b"1")
    h.run("SET", b"b", b"1", {"ttl": 1})
    h.run("ZADD", b"z", 1, b"m")
    assert h.run("DBSIZE") == 3
    clock.advance(1)
    assert h.run("DBSIZE") == 2
    assert h.run("FLUSH") is True
    assert h.run("DBSIZE") == 0
    assert h.ks().used == 0
    h.check_accounting()


def test_versions_of_a_key_only_grow(h: Harness, clock: FakeClock) -> None:
    h.run("SET", b"k", b"1")
    _, v1 = h.run("GETS", b"k")
    clock.advance(-100)  # the wall clock steps back
    h.run("SET", b"k", b"2")
    _, v2 = h.run("GETS", b"k")
    assert v2 > v1
