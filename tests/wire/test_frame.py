"""The frame codec: round trips, partial input, limits and hostile bytes."""

from __future__ import annotations

import contextlib
import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshcache.errors import BadRequestError, RemoteProtocolError, WrongTypeError
from meshcache.wire import (
    FrameReader,
    FrameTooLarge,
    decode_request,
    decode_response,
    encode_error,
    encode_ok,
    encode_request,
)

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.binary(max_size=64)
    | st.text(max_size=32),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


def _bodies(data: bytes, reader: FrameReader) -> list[bytes]:
    reader.feed(data)
    out = []
    while (body := reader.next_body()) is not None:
        out.append(body)
    return out


@given(
    rid=st.integers(min_value=1, max_value=2**64 - 1),
    op=st.text(max_size=16),
    ns=st.text(max_size=16),
    args=st.lists(msgpack_values, max_size=6),
)
def test_request_round_trip(rid: int, op: str, ns: str, args: list[object]) -> None:
    frame = encode_request(rid, op, ns, args)
    [body] = _bodies(frame, FrameReader())
    req = decode_request(body)
    assert (req.id, req.op, req.namespace, req.args) == (rid, op, ns, args)


@given(value=msgpack_values, rid=st.integers(min_value=0, max_value=2**32), rv=st.integers(0, 99))
def test_response_round_trip(value: object, rid: int, rv: int) -> None:
    [body] = _bodies(encode_ok(rid, value, rv), FrameReader())
    resp = decode_response(body)
    assert (resp.id, resp.ok, resp.value, resp.ring_version) == (rid, True, value, rv)
    assert resp.result() == value


def test_error_response_raises_the_subclass_for_its_code() -> None:
    [body] = _bodies(encode_error(7, "WRONGTYPE", "a list"), FrameReader())
    resp = decode_response(body)
    assert not resp.ok
    with pytest.raises(WrongTypeError, match="a list"):
        resp.result()


@given(frames=st.lists(st.binary(max_size=300), min_size=1, max_size=8), data=st.data())
def test_any_split_of_a_stream_yields_the_same_bodies(
    frames: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(struct.pack(">I", len(f)) + f for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader = FrameReader()
    got: list[bytes] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        got += _bodies(stream[prev:cut], reader)
        prev = cut
    assert got == frames
    assert reader.buffered == 0


@given(
    frames=st.lists(st.binary(max_size=300), min_size=1, max_size=8),
    data=st.data(),
    stop_early=st.booleans(),
)
def test_borrowed_reads_from_one_reused_buffer_yield_the_same_bodies(
    frames: list[bytes], data: st.DataObject, stop_early: bool
) -> None:
    # The data port's way: every read lands in the same buffer, which is overwritten with
    # garbage after release; bodies handed out before must not change, nor must the rest.
    stream = b"".join(struct.pack(">I", len(f)) + f for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    shared = bytearray(len(stream) + 1)
    view = memoryview(shared)
    reader = FrameReader()
    got: list[bytes] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        n = cut - prev
        shared[:n] = stream[prev:cut]
        reader.borrow(view[:n])
        # Sometimes leave complete frames unread (a paused connection) for the next read.
        while (not stop_early or n % 2) and (body := reader.next_body()) is not None:
            got.append(body)
        reader.release()
        shared[:] = b"\xff" * len(shared)
        prev = cut
    while (body := reader.next_body()) is not None:
        got.append(body)
    assert got == frames
    assert reader.buffered == 0


def test_oversized_frame_is_refused_once_its_id_can_be_read() -> None:
    frame = encode_request(2**40, "SET", "default", [b"k", b"v" * 2000])
    reader = FrameReader(max_frame=1024, requests=True)
    # The header and the body's first 15 bytes: not enough to be sure of the id yet.
    reader.feed(frame[:19])
    assert reader.next_body() is None
    reader.feed(frame[19:20])
    with pytest.raises(FrameTooLarge) as info:
        reader.next_body()
    length = len(frame) - 4
    assert (info.value.request_id, info.value.length) == (2**40, length)
    assert info.value.rest == length - 16  # the reader dropped the 16 bytes it held
    assert reader.buffered == 0
    assert str(info.value) == f"frame of {length} bytes is over the 1024-byte limit"


def test_a_reader_of_answers_refuses_an_oversized_frame_on_its_header() -> None:
    reader = FrameReader(max_frame=1024)
    reader.feed(struct.pack(">I", 1025) + b"+OK")
    with pytest.raises(FrameTooLarge) as info:
        reader.next_body()
    assert (info.value.request_id, info.value.length, info.value.rest) == (0, 1025, 1022)


@pytest.mark.parametrize(
    ("body", "rid"),
    [
        (msgpack.packb([7, "SET"]), 7),  # a short head is enough when it is the whole body
        (msgpack.packb([-3, "SET", "default", [b"x" * 100]]), -3),  # answered with its own id
        (msgpack.packb(["7", "SET", "default", [b"x" * 100]]), 0),
        (msgpack.packb({"id": 7, "x": b"x" * 100}), 0),
        (msgpack.packb([b"k" * 100, 7]), 0),  # the first item does not fit in the head
        (b"\xc1" * 200, 0),
    ],
)
def test_an_oversized_frame_names_its_id_when_it_can(body: bytes, rid: int) -> None:
    reader = FrameReader(max_frame=1, requests=True)
    reader.feed(struct.pack(">I", len(body)) + body + b"next frame")
    with pytest.raises(FrameTooLarge) as info:
        reader.next_body()
    assert (info.value.request_id, info.value.length, info.value.rest) == (rid, len(body), 0)


@given(head=st.binary(max_size=40))
def test_any_oversized_head_gives_an_id_or_zero(head: bytes) -> None:
    reader = FrameReader(max_frame=8, requests=True)
    reader.feed(struct.pack(">I", 1000) + head)
    if len(head) < 16:
        assert reader.next_body() is None
        return
    with pytest.raises(FrameTooLarge) as info:
        reader.next_body()
    assert type(info.value.request_id) is int and info.value.rest == 1000 - len(head)


@given(body=st.binary(max_size=200))
def test_garbage_bodies_raise_only_protocol_errors(body: bytes) -> None:
    for decode in (decode_request, decode_response):
        with contextlib.suppress(RemoteProtocolError, BadRequestError):
            decode(body)


@pytest.mark.parametrize(
    "obj",
    [
        [1, "GET", "default"],
        [-1, "GET", "default", []],
        [1, 2, "default", []],
        [1, "GET", None, []],
        [1, "GET", "default", {}],
        {"id": 1},
    ],
)
def test_malformed_requests_are_bad_requests(obj: object) -> None:
    with pytest.raises(BadRequestError):
        decode_request(msgpack.packb(obj))


@pytest.mark.parametrize("rid", [0, -1, -(2**63)])
def test_request_ids_start_at_1_and_a_refusal_keeps_the_id(rid: int) -> None:
    with pytest.raises(BadRequestError, match="request ids start at 1") as caught:
        decode_request(msgpack.packb([rid, "GET", "default", [b"k"]]))
    assert caught.value.request_id == rid  # type: ignore[attr-defined]


def test_the_largest_request_id_is_accepted() -> None:
    assert decode_request(msgpack.packb([2**64 - 1, "PING", "default", []])).id == 2**64 - 1


@pytest.mark.parametrize(
    ("obj", "rid"),
    [
        ([7, "GET", "default"], 7),
        ([7, "GET", "default", [], "extra"], 7),
        ([7], 7),
        ([7, 2, "default", []], 7),
        ([7, "GET", None, []], 7),
        ([7, "GET", "default", {}], 7),
        (["7", "GET", "default", []], 0),
        ([True, "GET", "default", []], 0),
        ([7.0, "GET", "default", []], 0),
        ([], 0),
        ({"id": 7}, 0),
        (7, 0),
    ],
)
def test_a_malformed_request_is_refused_with_its_id_when_it_can_be_read(
    obj: object, rid: int
) -> None:
    with pytest.raises(BadRequestError) as caught:
        decode_request(msgpack.packb(obj))
    assert caught.value.request_id == rid  # type: ignore[attr-defined]
