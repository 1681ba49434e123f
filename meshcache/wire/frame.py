"""Framing: every message on the data port is ``u32 big-endian length`` + one msgpack object.

Sans-I/O: :class:`FrameReader` takes bytes in and hands complete frame bodies out; the encode
functions return bytes. Nothing here touches a socket or a clock.

Requests are ``[request_id, op, namespace, args]``; responses are
``[request_id, status, payload, ring_version]`` with status 0 (payload is the result) or 1
(payload is ``[code, message]``). docs/protocol.md is the normative description.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from meshcache.errors import BadRequestError, CommandError, RemoteProtocolError

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

STATUS_OK = 0
STATUS_ERROR = 1

MIN_REQUEST_ID = 1
"""The smallest id a request may carry."""
MAX_REQUEST_ID = 2**64 - 1
"""The largest id a request may carry (msgpack's largest unsigned integer)."""
CONNECTION_ID = 0
"""The id of an answer about the connection rather than one request: a body that is not
msgpack, an oversized frame whose id cannot be read, too many connections."""


# Body bytes enough to read a request's id: the longest array header (5) and uint64 (9).
ID_HEAD_BYTES = 16


class FrameTooLarge(RemoteProtocolError):
    """A frame announced a length over the limit.

    The reader has dropped every byte it held; ``rest`` more bytes of that body are still to
    come, and what follows them cannot be read before they are discarded.

    Attributes:
        length: the body length the header announced.
        request_id: the id read from the start of the body when it is a request (the first item
            of an array, an int), else :data:`CONNECTION_ID`.
        rest: bytes of the body not received yet.
    """

    def __init__(self, message: str, *, length: int, request_id: int, rest: int) -> None:
        super().__init__(message)
        self.length = length
        self.request_id = request_id
        self.rest = rest


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    op: str
    namespace: str
    args: list[Any]


@dataclass(slots=True)
class Response:
    """One decoded response. Not frozen (building a frozen dataclass costs 4x on the client's
    hot path); treat it as read-only."""

    id: int
    ok: bool
    value: Any
    ring_version: int
    #: The optional 5th element: hints about hot keys (``hot``: the node's hot-set version;
    #: ``version``: the version a write to a hot key left), None when the node sent none.
    hints: dict[str, Any] | None = None

    def result(self) -> Any:
        """The value, or the :class:`CommandError` subclass for the error code, raised."""
        if self.ok:
            return self.value
        code, message = self.value
        raise CommandError(code, message)


class FrameReader:
    """Splits a byte stream into frame bodies.

    ``feed`` appends bytes; ``next_body`` returns the next complete body (a ``bytes``) or None.
    A length over ``max_frame`` raises :class:`FrameTooLarge`, and the reader drops every byte
    it holds; the caller discards the ``rest`` of the body as it arrives (or closes the
    connection). A reader of ``requests`` raises it only once the first :data:`ID_HEAD_BYTES`
    of that body (all of it, if shorter) are buffered, so that it names the request's id;
    another raises it as soon as the header is in.

    ``borrow`` is ``feed`` without the copy, for a caller that reads into one buffer it reuses:
    bodies are sliced straight out of the caller's buffer, and ``release`` — which the caller
    must call before that buffer is written again — copies only the unread rest.
    """

    __slots__ = ("_buf", "_head", "_pos", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, *, requests: bool = False) -> None:
        # The common case is a read that holds whole frames: keep those bytes as they are and
        # slice bodies out of them (one copy). Only a partial frame moves into a bytearray,
        # which then grows in amortised O(n) however many reads a large frame takes.
        self._buf: bytes | bytearray | memoryview = b""
        self._pos = 0
        self.max_frame = max_frame
        self._head = ID_HEAD_BYTES if requests else 0  # body bytes an oversize frame waits for

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
            return
        if type(buf) is bytearray:
            if pos:
                del buf[:pos]
        else:
            buf = self._buf = bytearray(memoryview(buf)[pos:])
        self._pos = 0
        buf += data

    def borrow(self, data: memoryview) -> None:
        """Like :meth:`feed`, but keep a reference to ``data`` instead of copying it when
        nothing is buffered; :meth:`release` must follow before ``data`` changes."""
        if self._pos < len(self._buf):
            self.feed(data)
        else:
            self._buf = data
            self._pos = 0

    def release(self) -> None:
        """Stop referring to a borrowed buffer: copy its unread bytes (usually none)."""
        buf = self._buf
        if type(buf) is memoryview:
            self._buf = bytes(buf[self._pos :])
            self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a body."""
        return len(self._buf) - self._pos

    def next_body(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < HEADER_SIZE:
            return None
        (length,) = HEADER.unpack_from(buf, pos)
        if length > self.max_frame:
            self._too_large(length)  # raises once the body's head is in
            return None
        end = pos + HEADER_SIZE + length
        if len(buf) < end:
            return None
        body = buf[pos + HEADER_SIZE : end]
        self._pos = end
        return body if type(body) is bytes else bytes(body)

    def _too_large(self, length: int) -> None:
        """Raise :class:`FrameTooLarge` for the frame at the read position once its head is
        buffered (None until then), dropping every byte buffered."""
        start = self._pos + HEADER_SIZE
        held = len(self._buf) - start
        if held < min(length, self._head):
            return None
        rid = request_id_of(bytes(self._buf[start : start + self._head]))
        self._buf = b""
        self._pos = 0
        raise FrameTooLarge(
            f"frame of {length} bytes is over the {self.max_frame}-byte limit",
            length=length,
            request_id=rid,
            rest=max(0, length - held),
        )


def request_id_of(head: bytes) -> int:
    """The request id at the start of a request body (of its first bytes): the first item of
    the array when it is an int — the id :func:`decode_request` answers a malformed request
    with — else :data:`CONNECTION_ID`."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(head)
    try:
        if unpacker.read_array_header() < 1:
            return CONNECTION_ID
        rid = unpacker.unpack()
    except Exception:  # not an array, or its first item does not fit in ``head``
        return CONNECTION_ID
    return rid if type(rid) is int else CONNECTION_ID


def _packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, autoreset=True)


_PACK = _packer().pack


def pack_frame(obj: Any) -> bytes:
    """One frame: header + msgpack body."""
    body: bytes = _PACK(obj)
    return HEADER.pack(len(body)) + body


def unpack_body(body: bytes) -> Any:
    """Decode one frame body; raise :class:`RemoteProtocolError` unless it is one msgpack object."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise RemoteProtocolError(f"malformed msgpack body: {exc}") from None
    except Exception as exc:  # msgpack raises several undocumented types on hostile input
        raise RemoteProtocolError(f"malformed msgpack body: {exc!r}") from None


def encode_request(request_id: int, op: str, namespace: str, args: list[Any]) -> bytes:
    return pack_frame([request_id, op, namespace, args])


def decode_request(body: bytes) -> Request:
    """Decode a request body.

    A well-formed request is ``[id, op, namespace, args]`` with an int id from
    :data:`MIN_REQUEST_ID` to :data:`MAX_REQUEST_ID`, str op and namespace, and an array of
    args; id 0 is kept for answers about the connection rather than a request.

    Raises:
        RemoteProtocolError: the body is not msgpack (framing is intact; answer and go on).
        BadRequestError: the body is msgpack but not a well-formed request. Its ``request_id``
            attribute is the id to answer with: the request's id whenever the body is an array
            whose first item is an int (even one out of range, so the sender can match the
            answer), else 0.
    """
    obj = unpack_body(body)
    readable = type(obj) is list and len(obj) > 0 and type(obj[0]) is int
    rid: int = obj[0] if readable else CONNECTION_ID
    if type(obj) is not list or len(obj) != 4:
        raise _bad(rid, "a request is an array [id, op, namespace, args]")
    if not readable:
        raise _bad(rid, "the request id must be an integer")
    if rid < MIN_REQUEST_ID:  # msgpack holds no integer above MAX_REQUEST_ID
        raise _bad(
            rid,
            f"request ids start at {MIN_REQUEST_ID} (0 marks answers about the "
            f"connection), got {rid}",
        )
    _, op, ns, args = obj
    if type(op) is not str:
        raise _bad(rid, "op must be a string")
    if type(ns) is not str:
        raise _bad(rid, "namespace must be a string")
    if type(args) is not list:
        raise _bad(rid, "args must be an array")
    return Request(rid, op, ns, args)


def _bad(rid: int, message: str) -> BadRequestError:
    exc = BadRequestError(message=message)
    exc.request_id = rid  # type: ignore[attr-defined]
    return exc


def encode_ok(request_id: int, value: Any, ring_version: int = 0) -> bytes:
    return pack_frame([request_id, STATUS_OK, value, ring_version])


def encode_error(request_id: int, code: str, message: str, ring_version: int = 0) -> bytes:
    return pack_frame([request_id, STATUS_ERROR, [str(code), message], ring_version])


def decode_response(body: bytes) -> Response:
    """Decode a response body; raise :class:`RemoteProtocolError` on anything malformed."""
    obj = unpack_body(body)
    if type(obj) is not list or not 4 <= len(obj) <= 5:
        raise RemoteProtocolError(
            "a response is an array [id, status, payload, ring_version, hints?]"
        )
    rid, status, payload, ring_version = obj[:4]
    if type(rid) is not int or type(ring_version) is not int or status not in (0, 1):
        raise RemoteProtocolError("malformed response header")
    hints = obj[4] if len(obj) == 5 else None
    if hints is not None and type(hints) is not dict:
        raise RemoteProtocolError("a response's hints are a map")
    if status == STATUS_ERROR and not (
        type(payload) is list
        and len(payload) == 2
        and type(payload[0]) is str
        and type(payload[1]) is str
    ):
        raise RemoteProtocolError("an error payload is [code, message]")
    return Response(rid, status == STATUS_OK, payload, ring_version, hints)
