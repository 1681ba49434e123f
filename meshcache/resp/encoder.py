"""Encoding replies in RESP2 or RESP3: the sans-I/O reply side of the protocol.

A connection speaks RESP2 until it says ``HELLO 3``. The two differ only in how some replies
look on the wire; :data:`RESP2` and :data:`RESP3` are one :class:`Encoder` each, and a
connection swaps which one it uses:

============  ==========================  =====================================
reply         RESP2                       RESP3
============  ==========================  =====================================
null          ``$-1`` (``*-1`` arrays)    ``_``
map           flat array k1 v1 k2 v2 ...  ``%`` map
set           array                       ``~`` set
double        bulk string ``"1.5"``       ``,1.5``
boolean       integer 1 / 0               ``#t`` / ``#f``
verbatim      bulk string                 ``=`` verbatim string (``txt:`` ...)
============  ==========================  =====================================

Simple strings, errors, integers, bulk strings and arrays are the same in both.

Handlers build replies from the pieces (:meth:`Encoder.bulk`, :meth:`Encoder.array` of encoded
items, ...), which is what the hot path uses. :meth:`Encoder.value` encodes a whole Python value
for the rest: ``None``, ``bool``, ``int``, ``float``, ``bytes``, ``str`` (as a bulk string),
``list``/``tuple`` (array), ``dict`` (map), ``set``/``frozenset`` (set), and the marker types
:class:`SimpleString`, :class:`ErrorReply` and :class:`Verbatim`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class SimpleString(str):
    """A status reply (``+OK``): text without CR or LF."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error reply; ``message`` starts with its code (``ERR ...``, ``WRONGTYPE ...``)."""

    message: str


@dataclass(frozen=True, slots=True)
class Verbatim:
    """A RESP3 verbatim string: a three-letter ``format`` (``txt``, ``mkd``) and the text."""

    format: str
    text: bytes


def format_double(x: float) -> bytes:
    """A double as text: ``inf``, ``-inf``, ``nan``; a whole number under 1e17 in magnitude as
    an integer (``3``, ``-0.0`` as ``0``); any other as Python's ``repr``, the shortest digits
    that read back as the same double (``0.1``, ``1e-05``, ``1e+17``). docs/resp.md lists where
    this differs from Redis 7.2."""
    if x != x:
        return b"nan"
    if x in (math.inf, -math.inf):
        return b"inf" if x > 0 else b"-inf"
    if x.is_integer() and abs(x) < 1e17:
        return b"%d" % x
    return repr(x).encode()


def bulk(data: bytes) -> bytes:
    """A bulk string."""
    return b"$%d\r\n%s\r\n" % (len(data), data)


def integer(n: int) -> bytes:
    return b":%d\r\n" % n


def simple(text: str) -> bytes:
    """A status reply; CR and LF in ``text`` become spaces, as Redis does."""
    return b"+%s\r\n" % text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


def error(message: str) -> bytes:
    """An error reply; ``message`` starts with its code. CR and LF become spaces, as Redis does."""
    return b"-%s\r\n" % message.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
EMPTY_ARRAY = b"*0\r\n"


class Encoder:
    """The replies of one protocol version (2 or 3); see the module docstring."""

    __slots__ = ("empty_map", "empty_set", "null", "null_array", "protocol")

    def __init__(self, protocol: int) -> None:
        if protocol not in (2, 3):
            raise ValueError(f"RESP{protocol} does not exist")
        self.protocol = protocol
        three = protocol == 3
        #: The null reply: a missing value.
        self.null = b"_\r\n" if three else b"$-1\r\n"
        #: The null reply where RESP2 uses a null array (``LPOP key count`` of a missing key).
        self.null_array = b"_\r\n" if three else b"*-1\r\n"
        self.empty_map = b"%0\r\n" if three else EMPTY_ARRAY
        self.empty_set = b"~0\r\n" if three else EMPTY_ARRAY

    # --- pieces ---------------------------------------------------------------------------

    def bulk_or_null(self, data: bytes | None) -> bytes:
        if data is None:
            return self.null
        return b"$%d\r\n%s\r\n" % (len(data), data)

    def array(self, items: list[bytes]) -> bytes:
        """An array of already encoded items."""
        return b"*%d\r\n%s" % (len(items), b"".join(items))

    def bulks(self, items: Iterable[bytes | None]) -> bytes:
        """An array of bulk strings (None items are nulls)."""
        parts = [self.bulk_or_null(item) for item in items]
        return b"*%d\r\n%s" % (len(parts), b"".join(parts))

    def map(self, pairs: list[tuple[bytes, bytes]]) -> bytes:
        """A map of already encoded keys and values (a flat array in RESP2)."""
        body = b"".join(k + v for k, v in pairs)
        if self.protocol == 3:
            return b"%%%d\r\n%s" % (len(pairs), body)
        return b"*%d\r\n%s" % (2 * len(pairs), body)

    def set(self, items: list[bytes]) -> bytes:
        """A set of already encoded items (an array in RESP2)."""
        mark = b"~" if self.protocol == 3 else b"*"
        return b"%s%d\r\n%s" % (mark, len(items), b"".join(items))

    def double(self, x: float) -> bytes:
        text = format_double(x)
        if self.protocol == 3:
            return b",%s\r\n" % text
        return b"$%d\r\n%s\r\n" % (len(text), text)

    def boolean(self, flag: bool) -> bytes:
        if self.protocol == 3:
            return b"#t\r\n" if flag else b"#f\r\n"
        return b":1\r\n" if flag else b":0\r\n"

    def verbatim(self, text: bytes, format: str = "txt") -> bytes:
        if self.protocol == 3:
            body = format.encode() + b":" + text
            return b"=%d\r\n%s\r\n" % (len(body), body)
        return bulk(text)

    # --- whole values ---------------------------------------------------------------------

    def value(self, v: Any) -> bytes:
        """Encode a Python value (see the module docstring for the mapping).

        Raises:
            TypeError: a value of another type.
        """
        if v is None:
            return self.null
        t = type(v)
        if t is bytes:
            return b"$%d\r\n%s\r\n" % (len(v), v)
        if t is bool:
            return self.boolean(v)
        if t is int:
            return b":%d\r\n" % v
        if t is SimpleString:
            return simple(v)
        if t is str:
            return bulk(v.encode("utf-8", "surrogatepass"))
        if t is float:
            return self.double(v)
        if t is list or t is tuple:
            return self.array([self.value(item) for item in v])
        if t is dict:
            return self.map([(self.value(k), self.value(x)) for k, x in v.items()])
        if t is set or t is frozenset:
            return self.set([self.value(item) for item in v])
        if t is ErrorReply:
            return error(v.message)
        if t is Verbatim:
            return self.verbatim(v.text, v.format)
        if isinstance(v, bytearray | memoryview):
            return bulk(bytes(v))
        raise TypeError(f"no RESP encoding for {t.__name__}")


RESP2 = Encoder(2)
RESP3 = Encoder(3)
ENCODERS = {2: RESP2, 3: RESP3}

__all__ = [
    "EMPTY_ARRAY",
    "ENCODERS",
    "OK",
    "PONG",
    "RESP2",
    "RESP3",
    "Encoder",
    "ErrorReply",
    "SimpleString",
    "Verbatim",
    "bulk",
    "error",
    "format_double",
    "integer",
    "simple",
]
