"""Request encoders and reply scanners for the two servers the generator drives.

A :class:`Protocol` builds complete request frames (bytes, built once, before the run) and finds
where one reply ends in a receive buffer. The hot loop never calls either: it compares received
bytes with the reply it expects (see ``engine``); the scanner is the slow path that counts
replies when they differ (a miss, an error, a ring version that changed).
"""

from __future__ import annotations

import struct
from typing import Final

import msgpack

from meshcache.wire import pack_frame

_U32: Final = struct.Struct(">I")

# Request ids for meshcache frames. The node answers in order, so the generator matches replies
# by position; a constant id per op makes every reply to an op byte-identical, which is what
# lets the hot loop check a whole pipelined batch with one bytes comparison.
GET_ID: Final = 1
SET_ID: Final = 2


class ReplyKind:
    """What a scanned reply was (small ints, not an Enum: the slow path classifies many)."""

    OK = 0  # a success reply (a hit, a stored SET, or anything that is not an error or a miss)
    MISS = 1  # GET found nothing
    ERROR = 2  # the server refused the request


class Protocol:
    """How to speak to one kind of server. Subclasses are stateless and cheap."""

    name: str = ""

    def get(self, key: bytes) -> bytes:
        raise NotImplementedError

    def set(self, key: bytes, value: bytes) -> bytes:
        raise NotImplementedError

    def ping(self) -> bytes:
        raise NotImplementedError

    def reply_end(self, buf: bytes | bytearray, pos: int) -> int:
        """The offset just past the reply that starts at ``pos``, or -1 if it is incomplete.

        Raises:
            ValueError: the bytes at ``pos`` cannot be the start of a reply (framing is lost).
        """
        raise NotImplementedError

    def classify(self, reply: bytes) -> int:
        """The :class:`ReplyKind` of one complete reply."""
        raise NotImplementedError


class RedisProtocol(Protocol):
    """RESP2: requests as arrays of bulk strings; replies to GET/SET/PING are one line or a bulk."""

    name = "redis"

    @staticmethod
    def command(*parts: bytes) -> bytes:
        out = [b"*%d\r\n" % len(parts)]
        for part in parts:
            out.append(b"$%d\r\n%s\r\n" % (len(part), part))
        return b"".join(out)

    def get(self, key: bytes) -> bytes:
        return self.command(b"GET", key)

    def set(self, key: bytes, value: bytes) -> bytes:
        return self.command(b"SET", key, value)

    def ping(self) -> bytes:
        return self.command(b"PING")

    def reply_end(self, buf: bytes | bytearray, pos: int) -> int:
        if pos >= len(buf):
            return -1
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return -1
        lead = buf[pos]
        if lead in b"+-:":
            return line_end + 2
        if lead == ord("$"):
            size = int(buf[pos + 1 : line_end])
            if size < 0:
                return line_end + 2
            end = line_end + 2 + size + 2
            return end if end <= len(buf) else -1
        raise ValueError(f"unexpected RESP reply type {bytes(buf[pos : pos + 16])!r}")

    def classify(self, reply: bytes) -> int:
        if reply.startswith(b"-"):
            return ReplyKind.ERROR
        if reply.startswith(b"$-1\r\n"):
            return ReplyKind.MISS
        return ReplyKind.OK


class MeshcacheProtocol(Protocol):
    """docs/protocol.md: ``u32 length`` + msgpack ``[id, op, namespace, args]``."""

    name = "meshcache"

    def __init__(self, namespace: str = "default") -> None:
        self.namespace = namespace

    def get(self, key: bytes) -> bytes:
        return pack_frame([GET_ID, "GET", self.namespace, [key]])

    def set(self, key: bytes, value: bytes) -> bytes:
        return pack_frame([SET_ID, "SET", self.namespace, [key, value]])

    def ping(self) -> bytes:
        return pack_frame([1, "PING", "default", []])

    def reply_end(self, buf: bytes | bytearray, pos: int) -> int:
        if len(buf) - pos < 4:
            return -1
        end = pos + 4 + _U32.unpack_from(buf, pos)[0]
        return end if end <= len(buf) else -1

    def classify(self, reply: bytes) -> int:
        try:
            obj = msgpack.unpackb(reply[4:], raw=False)
        except Exception:  # any undecodable body is the server's error, counted as such
            return ReplyKind.ERROR
        # [id, status, payload, ring_version, hints?]: a node with hot keys adds the hints.
        if type(obj) is not list or not 4 <= len(obj) <= 5 or obj[1] != 0:
            return ReplyKind.ERROR
        return ReplyKind.MISS if obj[2] is None else ReplyKind.OK


def protocol_named(name: str) -> Protocol:
    """``"redis"`` or ``"meshcache"``."""
    if name == "redis":
        return RedisProtocol()
    if name == "meshcache":
        return MeshcacheProtocol()
    raise ValueError(f"unknown protocol {name!r}")
