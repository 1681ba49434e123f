"""Reading RESP2/RESP3 values (replies): the client side of the protocol, sans-I/O.

The node never parses replies; this reader exists so that what the encoder writes can be
checked against an independent reading (the round-trip property tests), and for tools and tests
that talk RESP without a client library. It reads every RESP3 type:

=====  ======================  ===========================================
type   RESP                    Python value
=====  ======================  ===========================================
``+``  simple string           :class:`~meshcache.resp.encoder.SimpleString`
``-``  error                   :class:`~meshcache.resp.encoder.ErrorReply`
``:``  integer                 ``int``
``$``  bulk string             ``bytes`` (``$-1``: ``None``)
``*``  array                   ``list`` (``*-1``: ``None``)
``_``  null                    ``None``
``,``  double                  ``float``
``#``  boolean                 ``bool``
``%``  map                     ``dict``
``~``  set                     ``set``
``=``  verbatim string         :class:`~meshcache.resp.encoder.Verbatim`
``(``  big number              ``int``
``!``  blob error              :class:`~meshcache.resp.encoder.ErrorReply`
``>``  push                    :class:`Push` (a list)
=====  ======================  ===========================================

Attributes (``|``) are read and dropped. Nesting deeper than ``max_depth`` and lengths over
``max_length`` raise :class:`~meshcache.resp.reader.RespProtocolError` before anything is
allocated for them.
"""

from __future__ import annotations

from typing import Any

from meshcache.resp.encoder import ErrorReply, SimpleString, Verbatim
from meshcache.resp.reader import MAX_HEADER_BYTES, RespProtocolError


class Push(list[Any]):
    """A RESP3 out-of-band push message (``>``)."""

    __slots__ = ()


class _Incomplete(Exception):
    pass


_AGGREGATES = frozenset(b"*%~>|")


class ValueReader:
    """Splits a byte stream into RESP values. ``feed`` bytes; ``next_value`` returns
    ``(True, value)`` for the next complete value or ``(False, None)`` when more is needed."""

    __slots__ = ("_buf", "_pos", "max_depth", "max_length")

    def __init__(self, *, max_depth: int = 64, max_length: int = 512 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_depth = max_depth
        self.max_length = max_length

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_value(self) -> tuple[bool, Any]:
        """Raises :class:`RespProtocolError` for bytes that are not RESP."""
        try:
            value, end = self._value(self._pos, 1)
        except _Incomplete:
            return False, None
        self._pos = end
        return True, value

    def next_raw(self) -> bytes | None:
        """The bytes of the next complete value as they arrived, or None when more is needed
        (for byte-exact comparisons of replies)."""
        start = self._pos
        done, _ = self.next_value()
        return bytes(self._buf[start : self._pos]) if done else None

    def _line(self, pos: int) -> tuple[bytes, int]:
        nl = self._buf.find(b"\r\n", pos)
        if nl < 0:
            if len(self._buf) - pos > MAX_HEADER_BYTES:
                raise RespProtocolError("line too long", "header_too_long")
            raise _Incomplete
        return bytes(self._buf[pos:nl]), nl + 2

    def _length(self, line: bytes, what: str) -> int:
        if line.isdigit() and len(line) <= 18:
            n = int(line)
        elif line == b"-1":
            return -1
        else:
            raise RespProtocolError(f"invalid {what} length", f"invalid_{what}_length")
        if n > self.max_length:
            raise RespProtocolError(f"invalid {what} length", f"invalid_{what}_length")
        return n

    def _blob(self, pos: int, n: int) -> tuple[bytes, int]:
        buf = self._buf
        if len(buf) - pos < n + 2:
            raise _Incomplete
        if buf[pos + n : pos + n + 2] != b"\r\n":
            raise RespProtocolError("expected CRLF after a blob", "missing_crlf")
        return bytes(buf[pos : pos + n]), pos + n + 2

    def _value(self, pos: int, depth: int) -> tuple[Any, int]:
        buf = self._buf
        if pos >= len(buf):
            raise _Incomplete
        kind = buf[pos]
        if kind in _AGGREGATES and depth > self.max_depth:
            raise RespProtocolError("nesting too deep", "too_deep")
        line, pos = self._line(pos + 1)
        if kind == 0x2B:  # +
            return SimpleString(line.decode("utf-8", "replace")), pos
        if kind == 0x2D:  # -
            return ErrorReply(line.decode("utf-8", "replace")), pos
        if kind in (0x3A, 0x28):  # : (
            try:
                return int(line), pos
            except ValueError:
                raise RespProtocolError("invalid integer", "invalid_integer") from None
        if kind == 0x24:  # $
            n = self._length(line, "bulk")
            if n < 0:
                return None, pos
            return self._blob(pos, n)
        if kind == 0x5F:  # _
            if line:
                raise RespProtocolError("invalid null", "invalid_null")
            return None, pos
        if kind == 0x2C:  # ,
            try:
                return float(line), pos
            except ValueError:
                raise RespProtocolError("invalid double", "invalid_double") from None
        if kind == 0x23:  # #
            if line not in (b"t", b"f"):
                raise RespProtocolError("invalid boolean", "invalid_boolean")
            return line == b"t", pos
        if kind in (0x3D, 0x21):  # = !
            n = self._length(line, "bulk")
            if n < 0:
                raise RespProtocolError("invalid bulk length", "invalid_bulk_length")
            data, pos = self._blob(pos, n)
            if kind == 0x21:
                return ErrorReply(data.decode("utf-8", "replace")), pos
            if len(data) < 4 or data[3:4] != b":":
                raise RespProtocolError("invalid verbatim string", "invalid_verbatim")
            return Verbatim(data[:3].decode("ascii", "replace"), data[4:]), pos
        if kind in _AGGREGATES:
            n = self._length(line, "multibulk")
            if n < 0:
                if kind != 0x2A:
                    raise RespProtocolError("invalid multibulk length", "invalid_length")
                return None, pos
            count = 2 * n if kind in (0x25, 0x7C) else n
            items: list[Any] = []
            for _ in range(count):
                item, pos = self._value(pos, depth + 1)
                items.append(item)
            if kind == 0x25:  # %
                try:
                    return dict(zip(items[::2], items[1::2], strict=True)), pos
                except TypeError:
                    raise RespProtocolError("unhashable map key", "unhashable") from None
            if kind == 0x7E:  # ~
                try:
                    return set(items), pos
                except TypeError:
                    raise RespProtocolError("unhashable set member", "unhashable") from None
            if kind == 0x3E:  # >
                return Push(items), pos
            if kind == 0x7C:  # | an attribute: dropped, the value it annotates follows
                return self._value(pos, depth)
            return items, pos
        shown = chr(kind) if 32 <= kind < 127 else f"\\x{kind:02x}"
        raise RespProtocolError(f"unknown type byte '{shown}'", "unknown_type")


def decode_all(data: bytes, **limits: int) -> list[Any]:
    """Every complete value in ``data``.

    Raises:
        RespProtocolError: ``data`` is not RESP, or ends inside a value.
    """
    reader = ValueReader(**limits)
    reader.feed(data)
    out: list[Any] = []
    while True:
        done, value = reader.next_value()
        if not done:
            break
        out.append(value)
    if reader._pos != len(reader._buf):
        raise RespProtocolError("incomplete value at the end", "incomplete")
    return out


__all__ = ["Push", "ValueReader", "decode_all"]
