"""ZADD's options (nx, xx, gt, lt, ch, incr) in the store, against a model written from Redis's
documentation of ZADD, and the refusals of options that exclude each other."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.errors import BadRequestError, NotFloatError, WrongArityError, WrongTypeError

from .conftest import FakeClock, Harness

FLAGS = ("nx", "xx", "gt", "lt", "ch", "incr")


def model_zadd(
    zset: dict[bytes, float] | None, pairs: list[tuple[float, bytes]], flags: set[str]
) -> tuple[dict[bytes, float] | None, Any]:
    """Redis's ZADD on a dict (None: no key): the new dict and the answer. Raises ValueError
    for a NaN result of ``incr``, before anything changes (incr takes one pair)."""
    if zset is None and "xx" in flags:
        return None, None if "incr" in flags else 0
    out = dict(zset or {})
    added = changed = 0
    processed = False
    score = 0.0
    for score, member in pairs:
        if member not in out:
            if "xx" in flags:
                continue
            out[member] = score
            added += 1
            processed = True
            continue
        if "nx" in flags:
            continue
        old = out[member]
        if "incr" in flags:
            score += old
            if math.isnan(score):
                raise ValueError("nan")
        if ("gt" in flags and score <= old) or ("lt" in flags and score >= old):
            continue
        processed = True
        if score != old:
            out[member] = score
            changed += 1
    if "incr" in flags:
        return out or None, score if processed else None
    return out or None, added + changed if "ch" in flags else added


def valid(flags: set[str]) -> bool:
    return not ({"nx", "xx"} <= flags or len(flags & {"nx", "gt", "lt"}) > 1)


def stored(h: Harness, key: bytes) -> dict[bytes, float] | None:
    pairs = h.run("ZRANGE", key, 0, -1, {"withscores": True})
    return {member: score for member, score in pairs} or None


def test_each_option(h: Harness) -> None:
    assert h.run("ZADD", b"z", 1, b"a", {"xx": True}) == 0
    assert h.run("EXISTS", b"z") == 0  # xx never creates the key
    assert h.run("ZADD", b"z", 1, b"a", {"xx": True, "incr": True}) is None
    assert h.run("ZADD", b"z", 1, b"a", 2, b"b", {"nx": True}) == 2
    assert h.run("ZADD", b"z", 5, b"a", 3, b"c", {"nx": True}) == 1
    assert stored(h, b"z") == {b"a": 1.0, b"b": 2.0, b"c": 3.0}
    assert h.run("ZADD", b"z", 9, b"a", 9, b"new", {"xx": True, "ch": True}) == 1
    assert h.run("ZADD", b"z", 0, b"a", 4, b"b", 7, b"d", {"gt": True}) == 1
    assert stored(h, b"z") == {b"a": 9.0, b"b": 4.0, b"c": 3.0, b"d": 7.0}
    assert h.run("ZADD", b"z", 10, b"a", 1, b"b", {"lt": True, "ch": True}) == 1
    assert h.run("ZADD", b"z", 2, b"c", {"incr": True}) == 5.0
    assert h.run("ZADD", b"z", -1, b"c", {"incr": True, "gt": True}) is None
    assert h.run("ZADD", b"z", 0, b"c", {"incr": True}) == 5.0  # unchanged, still processed
    assert h.run("ZADD", b"z", 1, b"c", {"incr": True, "nx": True}) is None
    assert h.run("ZADD", b"z", 2, b"e", {"incr": True, "nx": True}) == 2.0
    h.check_accounting()


@pytest.mark.parametrize(
    "flags",
    [{"nx": True, "xx": True}, {"nx": True, "gt": True}, {"nx": True, "lt": True},
     {"gt": True, "lt": True}],
)  # fmt: skip
def test_options_that_exclude_each_other_are_refused(h: Harness, flags: dict[str, bool]) -> None:
    with pytest.raises(BadRequestError):
        h.run("ZADD", b"z", 1, b"a", flags)
    assert h.run("EXISTS", b"z") == 0


def test_incr_takes_one_pair_and_refuses_nan(h: Harness) -> None:
    with pytest.raises(BadRequestError):
        h.run("ZADD", b"z", 1, b"a", 2, b"b", {"incr": True})
    with pytest.raises(BadRequestError):
        h.run("ZADD", b"z", 1, b"a", {"bogus": True})
    with pytest.raises(BadRequestError):  # a map where the member goes
        h.run("ZADD", b"z", 1, {"nx": True})
    with pytest.raises(WrongArityError):
        h.run("ZADD", b"z", 1, b"a", 2, {"nx": True})
    assert h.run("ZADD", b"z", math.inf, b"a") == 1
    with pytest.raises(NotFloatError):
        h.run("ZADD", b"z", -math.inf, b"a", {"incr": True})
    assert stored(h, b"z") == {b"a": math.inf}
    h.run("SET", b"s", b"v")
    with pytest.raises(WrongTypeError):
        h.run("ZADD", b"s", 1, b"a", {"xx": True})
    h.check_accounting()


SCORES = st.sampled_from([-math.inf, -2.0, -1.0, 0.0, 0.5, 1.0, 2.0, math.inf])
MEMBERS = st.sampled_from([b"a", b"b", b"c"])
STEP = st.tuples(
    st.sets(st.sampled_from(FLAGS)),
    st.lists(st.tuples(SCORES, MEMBERS), min_size=1, max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=12))
def test_zadd_matches_the_model(steps: list[tuple[set[str], list[tuple[float, bytes]]]]) -> None:
    h = Harness(FakeClock())
    model: dict[bytes, float] | None = None
    for flags, pairs in steps:
        args: list[Any] = [b"z"]
        for score, member in pairs:
            args += (score, member)
        args.append(dict.fromkeys(flags, True))
        if not valid(flags) or ("incr" in flags and len(pairs) != 1):
            with pytest.raises(BadRequestError):
                h.run("ZADD", *args)
        else:
            try:
                model, want = model_zadd(model, pairs, flags)
            except ValueError:
                with pytest.raises(NotFloatError):
                    h.run("ZADD", *args)
            else:
                assert h.run("ZADD", *args) == want
        assert stored(h, b"z") == model
        h.check_accounting()
