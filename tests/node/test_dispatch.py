"""The node's request path without sockets: every kind of bad input gets a counted error frame."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.errors import CommandError, ErrorCode, WrongTypeError
from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.net.dispatch import Dispatcher
from meshcache.wire import FrameReader, Limits, decode_response, encode_request


class FakeStore:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.calls: list[tuple[str, str, list[Any]]] = []

    def execute(self, ns: str, op: str, args: list[Any]) -> Any:
        self.calls.append((ns, op, args))
        if op == "GET":
            return self.data.get(args[0])
        if op == "SET":
            self.data[args[0]] = args[1]
            return True
        if op == "LPUSH":
            raise WrongTypeError(message="not a list")
        if op == "INCR":
            raise ZeroDivisionError("a bug")
        raise CommandError(ErrorCode.UNKNOWN_OP, op)


ROUTES = {
    "PING": lambda ns, args: "PONG",
    "INFO": lambda ns, args: {"node_id": "n1"},
}


@pytest.fixture
def setup() -> tuple[Dispatcher, FakeStore, NodeCounters]:
    store = FakeStore()
    counters = NodeCounters()
    d = Dispatcher(
        execute=store.execute,
        routes=ROUTES,
        limits=Limits(max_key_bytes=16, max_value_bytes=64),
        counters=counters,
        ring_version=3,
    )
    return d, store, counters


def answer(d: Dispatcher, frame: bytes) -> Any:
    reader = FrameReader()
    reader.feed(frame)
    body = reader.next_body()
    assert body is not None
    out = d.handle(body)
    assert struct.unpack(">I", out[:4])[0] == len(out) - 4
    return decode_response(out[4:])


def test_ok_path_carries_id_and_ring_version(setup: Any) -> None:
    d, store, counters = setup
    r = answer(d, encode_request(5, "SET", "default", ["k", "v"]))
    assert (r.id, r.ok, r.value, r.ring_version) == (5, True, True, 3)
    assert store.data == {b"k": b"v"}
    assert answer(d, encode_request(6, "GET", "default", [b"k"])).value == b"v"
    assert answer(d, encode_request(7, "PING", "default", [])).value == "PONG"
    assert counters.requests["SET"] == 1 and counters.requests["PING"] == 1


@pytest.mark.parametrize(
    ("frame", "code", "kind", "rid"),
    [
        (struct.pack(">I", 3) + b"\xc1\xc1\xc1", "BAD_REQUEST", "malformed_msgpack", 0),
        (struct.pack(">I", 1) + b"\x01", "BAD_REQUEST", "bad_request", 0),
        (encode_request(9, "NOPE", "default", []), "UNKNOWN_OP", "unknown_op", 9),
        (encode_request(9, "GET", "default", []), "WRONG_ARITY", "wrong_arity", 9),
        (encode_request(9, "GET", "default", [1]), "BAD_REQUEST", "bad_request", 9),
        (encode_request(9, "GET", "default", {"a": 1}), "BAD_REQUEST", "bad_request", 9),
        (encode_request(9, "GET", "default", ["k" * 17]), "TOO_LARGE", "too_large", 9),
        (encode_request(9, "SET", "default", ["k", "v" * 65]), "TOO_LARGE", "too_large", 9),
        (encode_request(9, "INCR", "default", ["k"]), "INTERNAL", "internal", 9),
    ],
)
def test_bad_input_is_answered_and_counted(
    setup: Any, frame: bytes, code: str, kind: str, rid: int
) -> None:
    d, store, counters = setup
    r = answer(d, frame)
    assert not r.ok and r.id == rid and r.value[0] == code
    assert counters.errors[code] == 1
    assert counters.bad_input[kind] == 1
    assert store.data == {}


def test_data_errors_are_errors_but_not_bad_input(setup: Any) -> None:
    d, _, counters = setup
    r = answer(d, encode_request(2, "LPUSH", "default", ["k", "v"]))
    assert r.value == ["WRONGTYPE", "not a list"]
    assert counters.errors["WRONGTYPE"] == 1 and not counters.bad_input


@settings(max_examples=300)
@given(body=st.binary(max_size=100))
def test_garbage_bodies_always_get_exactly_one_answer(body: bytes) -> None:
    d = Dispatcher(
        execute=FakeStore().execute, routes=ROUTES, limits=Limits(), counters=NodeCounters()
    )
    out = d.handle(body)
    resp = decode_response(out[4:])
    assert resp.ok or resp.value[0] in {c.value for c in ErrorCode}


@given(
    obj=st.lists(
        st.one_of(
            st.integers(-(2**63), 2**64 - 1),
            st.text(max_size=8),
            st.binary(max_size=8),
            st.none(),
            st.lists(st.integers(-(2**63), 2**64 - 1), max_size=3),
        ),
        max_size=5,
    )
)
def test_arbitrary_request_shapes_never_escape(obj: list[Any]) -> None:
    d = Dispatcher(
        execute=FakeStore().execute, routes=ROUTES, limits=Limits(), counters=NodeCounters()
    )
    out = d.handle(msgpack.packb(obj))
    decode_response(out[4:])


def test_a_result_that_cannot_be_encoded_is_an_internal_error() -> None:
    counters = NodeCounters()
    d = Dispatcher(
        execute=lambda ns, op, args: object(),  # a bug in an executor, not in the request
        routes=ROUTES,
        limits=Limits(),
        counters=counters,
    )
    r = answer(d, encode_request(9, "GET", "default", [b"k"]))
    assert (r.id, r.ok, r.value[0]) == (9, False, ErrorCode.INTERNAL.value)
    assert counters.errors[ErrorCode.INTERNAL.value] == 1
    assert counters.requests["GET"] == 1  # counted once, as the error it became
