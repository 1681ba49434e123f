"""The reply encoder in RESP2 and RESP3, read back by the value reader, and the reader's limits."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.resp.decoder import Push, ValueReader, decode_all
from meshcache.resp.encoder import (
    RESP2,
    RESP3,
    Encoder,
    ErrorReply,
    SimpleString,
    Verbatim,
    format_double,
)
from meshcache.resp.reader import RespProtocolError


@pytest.mark.parametrize(
    ("value", "resp2", "resp3"),
    [
        (None, b"$-1\r\n", b"_\r\n"),
        (b"hi", b"$2\r\nhi\r\n", b"$2\r\nhi\r\n"),
        ("é", b"$2\r\n\xc3\xa9\r\n", b"$2\r\n\xc3\xa9\r\n"),
        (7, b":7\r\n", b":7\r\n"),
        (-1, b":-1\r\n", b":-1\r\n"),
        (True, b":1\r\n", b"#t\r\n"),
        (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
        (math.inf, b"$3\r\ninf\r\n", b",inf\r\n"),
        (SimpleString("OK"), b"+OK\r\n", b"+OK\r\n"),
        (ErrorReply("ERR x"), b"-ERR x\r\n", b"-ERR x\r\n"),
        ([b"a", None], b"*2\r\n$1\r\na\r\n$-1\r\n", b"*2\r\n$1\r\na\r\n_\r\n"),
        ({b"k": 1}, b"*2\r\n$1\r\nk\r\n:1\r\n", b"%1\r\n$1\r\nk\r\n:1\r\n"),
        ({b"m"}, b"*1\r\n$1\r\nm\r\n", b"~1\r\n$1\r\nm\r\n"),
        (Verbatim("txt", b"a\r\nb"), b"$4\r\na\r\nb\r\n", b"=8\r\ntxt:a\r\nb\r\n"),
    ],
)
def test_each_type_in_both_protocols(value: Any, resp2: bytes, resp3: bytes) -> None:
    assert RESP2.value(value) == resp2
    assert RESP3.value(value) == resp3


def test_errors_and_statuses_cannot_break_framing() -> None:
    assert RESP3.value(ErrorReply("ERR a\r\nb")) == b"-ERR a  b\r\n"
    assert RESP3.value(SimpleString("a\nb")) == b"+a b\r\n"


@pytest.mark.parametrize(
    ("x", "text"),
    [(3.0, b"3"), (0.1, b"0.1"), (-2.5, b"-2.5"), (1e300, b"1e+300"), (-math.inf, b"-inf")],
)
def test_doubles_are_written_as_redis_does(x: float, text: bytes) -> None:
    assert format_double(x) == text


def test_unknown_types_are_refused() -> None:
    with pytest.raises(TypeError):
        RESP3.value(object())
    with pytest.raises(ValueError):
        Encoder(4)


# --- round trips --------------------------------------------------------------------------------

status_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=10
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=30),
    status_text.map(SimpleString),
    status_text.map(lambda t: ErrorReply("ERR " + t)),
    st.builds(Verbatim, st.sampled_from(["txt", "mkd"]), st.binary(max_size=20)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.binary(max_size=8), inner, max_size=4),
        st.sets(st.binary(max_size=8), max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=4), st.data())
def test_resp3_round_trips_through_any_split(items: list[Any], data: st.DataObject) -> None:
    stream = b"".join(RESP3.value(v) for v in items)
    cut = data.draw(st.integers(0, len(stream)))
    reader = ValueReader()
    got: list[Any] = []
    for part in (stream[:cut], stream[cut:]):
        reader.feed(part)
        while True:
            done, value = reader.next_value()
            if not done:
                break
            got.append(value)
    assert got == items


@settings(max_examples=200, deadline=None)
@given(values)
def test_resp2_uses_only_resp2_types(value: Any) -> None:
    encoded = RESP2.value(value)
    assert not any(
        marker in encoded.split(b"\r\n")[0][:1] for marker in (b"_", b",", b"#", b"%", b"~", b"=")
    )
    decode_all(encoded)  # well-formed


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_the_value_reader_survives_garbage(data: bytes) -> None:
    with contextlib.suppress(RespProtocolError):
        decode_all(data, max_depth=8, max_length=1000)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=9, max_value=10_000), st.sampled_from(b"*%~>"))
def test_the_value_reader_refuses_deep_nesting(depth: int, kind: int) -> None:
    data = (bytes([kind]) + b"1\r\n") * depth
    with pytest.raises(RespProtocolError) as info:
        decode_all(data, max_depth=8)
    assert info.value.kind == "too_deep"


def test_the_value_reader_refuses_huge_lengths_without_allocating() -> None:
    for data in (b"$3000000000\r\n", b"*99999999999\r\n"):
        with pytest.raises(RespProtocolError):
            decode_all(data, max_length=1 << 20)


def test_push_and_attributes() -> None:
    assert decode_all(b">2\r\n+message\r\n:1\r\n") == [Push([SimpleString("message"), 1])]
    assert decode_all(b"|1\r\n+ttl\r\n:3\r\n:42\r\n") == [42]
