"""The op table and argument checking."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshcache.errors import BadRequestError, CommandError, TooLargeError, WrongArityError
from meshcache.wire.ops import OPS, Limits, OpKind, normalize_args

LIMITS = Limits(max_key_bytes=8, max_value_bytes=16)


def norm(op: str, *args: object) -> list[object]:
    return normalize_args(OPS[op], list(args), LIMITS)


def test_every_op_is_documented_in_the_protocol() -> None:
    with open("docs/protocol.md", encoding="utf-8") as f:
        doc = f.read()
    missing = [name for name in OPS if f"`{name}`" not in doc]
    assert not missing


def test_str_becomes_utf8_bytes_and_options_are_always_last() -> None:
    assert norm("SET", "k", "vé") == [b"k", "vé".encode(), {}]
    assert norm("SET", b"k", b"v", {"ttl": 2}) == [b"k", b"v", {"ttl": 2}]
    assert norm("SET", b"k", b"v", None) == [b"k", b"v", {}]


def test_repeated_groups() -> None:
    assert norm("MSET", "a", "1", "b", "2") == [b"a", b"1", b"b", b"2"]
    assert norm("ZADD", "z", 1, "m", 2.5, "n") == [b"z", 1.0, b"m", 2.5, b"n", {}]
    assert norm("ZADD", "z", 1, "m", 2.5, "n", {"nx": True}) == [
        b"z",
        1.0,
        b"m",
        2.5,
        b"n",
        {"nx": True},
    ]
    with pytest.raises(WrongArityError):
        norm("MSET", "a", "1", "b")
    with pytest.raises(WrongArityError):
        norm("DELETE")


@pytest.mark.parametrize(
    ("op", "args", "error"),
    [
        ("GET", [], WrongArityError),
        ("GET", ["a", "b"], WrongArityError),
        ("GET", [1], BadRequestError),
        ("GET", ["x" * 9], TooLargeError),
        ("SET", ["k", "v" * 17], TooLargeError),
        ("INCRBY", ["k", True], BadRequestError),
        ("INCRBY", ["k", 1.5], BadRequestError),
        ("INCRBY", ["k", 2**63], BadRequestError),
        ("ZADD", ["k", math.nan, "m"], BadRequestError),
        ("SET", ["k", "v", {"ttl": "1"}], BadRequestError),
        ("SET", ["k", "v", {"bogus": 1}], BadRequestError),
        ("SET", ["k", "v", [1]], WrongArityError),
    ],
)
def test_bad_arguments(op: str, args: list[object], error: type[CommandError]) -> None:
    with pytest.raises(error):
        normalize_args(OPS[op], args, LIMITS)


def test_kinds_and_idempotence() -> None:
    assert OPS["GET"].kind is OpKind.READ and OPS["GET"].idempotent
    assert OPS["SET"].kind is OpKind.WRITE and OPS["SET"].idempotent
    assert not OPS["INCR"].idempotent and not OPS["LPUSH"].idempotent
    assert OPS["GET"].keyed and OPS["MSET"].keyed and not OPS["PING"].keyed


@given(
    op=st.sampled_from(sorted(OPS)),
    args=st.lists(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.binary(max_size=20),
            st.text(max_size=20),
            st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
        ),
        max_size=6,
    ),
)
def test_any_arguments_either_normalize_or_raise_a_command_error(
    op: str, args: list[object]
) -> None:
    try:
        out = normalize_args(OPS[op], args, LIMITS)
    except CommandError:
        return
    # Keys, values and members come out as bytes; text (``s``) stays text, ``a``/``l``/``d``
    # and options are the op's own to check.
    spec = OPS[op]
    n = len(out) - (1 if spec.has_options else 0)
    letters = list(spec.fixed) + [
        spec.repeat[i % len(spec.repeat)] for i in range(n - len(spec.fixed))
    ]
    assert all(
        type(a) is bytes for a, letter in zip(out[:n], letters, strict=True) if letter in "kvm"
    )
