"""Relaying: the reads a non-owner passes on to one owner, a round's worth in one frame.

A client that does not route by key (any Redis client, a plain meshcache client) sends every
request to the node it is connected to. A read of one key another node coordinates (``GET``,
``HGET``, ``LRANGE``: :data:`~meshcache.wire.ops.RELAYABLE`) is passed on to that node **as the
client sent it**: its frame body, the client's request id inside. The bodies bound for one
owner in one reactor round travel in one ``RELAY`` frame (at most :data:`MAX_BATCH_ITEMS` of
them, :data:`MAX_BATCH_BYTES` in all), and the owner answers the frame with the response frame
of each body, in order, as it would have answered its client
(:meth:`~meshcache.node.net.dispatch.Dispatcher.relayed`), every body where the ``RELAY``
stands among the requests of the connection, so a read never sees a write its client sent
after it; an answer whose frames pass :data:`MAX_ANSWER_BYTES` comes in several frames under
the ``RELAY``'s id (:class:`RelayAnswer`), made and written one at a time. The non-owner
writes those frames to its client as they came: it neither encodes a request nor decodes an
answer per read.

Only reads of a namespace without read-through are relayed (a load is timed), and in a
namespace with hot keys only those this node holds no fresh copy for (a copy answers here);
writes and everything else are forwarded one request at a time (``FWD``). A batch that fails
(the connection broke, no answer in time, an owner that does not know ``RELAY``) hands each of
its reads not answered yet to ``failed``, which forwards it again the usual way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from meshcache.errors import CommandError, RemoteProtocolError, UnavailableError
from meshcache.wire.frame import STATUS_OK, Response
from meshcache.wire.pending import Later

#: Bodies in one ``RELAY`` frame: the owner answers a frame in one step of its loop, about
#: 5 us a ``GET``.
MAX_BATCH_ITEMS = 64
#: Bytes of bodies in one ``RELAY`` frame.
MAX_BATCH_BYTES = 64 * 1024
#: Bytes of response frames an owner puts in one frame of its answer to a ``RELAY``: past it
#: the answer goes on in the next frame, under the same request id (:class:`RelayAnswer`).
MAX_ANSWER_BYTES = 1024 * 1024

# What a body an owner answered nil for fails with (an owner that left it out of a full
# answer instead of going on in another frame), before it is forwarded again: a refusal, like
# an owner's refusal of the whole RELAY, so the same owner is asked again at once.
_NOT_RELAYED = UnavailableError(message="the owner's RELAY answer was full")

Failed = Callable[[bytes, Later, BaseException], None]
"""What a batch calls for each of its bodies when the batch fails as a whole."""


def answer_bytes_for(max_frame_bytes: int) -> int:
    """The bytes of response frames in one frame of a ``RELAY``'s answer under a frame limit:
    :data:`MAX_ANSWER_BYTES`, or half the limit when that is smaller (a frame of the answer may
    hold one more read's frame)."""
    return max(1, min(MAX_ANSWER_BYTES, max_frame_bytes // 2))


class RelayAnswer:
    """An owner's answer to a ``RELAY``: for each body, in order, executed where the ``RELAY``
    stands among the connection's requests, its response frame, or its request id and result,
    whose frame is made only when the answer is written. Written as one response frame ``[id,
    OK, frames, ring_version]``, or as several with the same id when the frames pass
    :data:`MAX_ANSWER_BYTES` (half the frame limit when that is smaller), each with the next
    frames (at least one), so no frame of the answer is much larger than that or than one
    read's frame. The frames are made a part at a time (:meth:`parts`): until the last is made
    the owner holds the reads' results (copies of the values, as any read's answer is), not
    all their frames."""

    __slots__ = ("items", "size")

    def __init__(self, items: list[bytes | tuple[int, Any]], size: float = math.inf) -> None:
        self.items = items
        #: Bytes of the frames when every one is made (``items`` all bytes), else infinite.
        self.size = size

    def parts(
        self,
        rid: int,
        ring_version: int,
        pack: Callable[[Any], bytes],
        frame_of: Callable[[int, Any], bytes],
        limit: int = MAX_ANSWER_BYTES,
    ) -> Iterator[bytes]:
        """The answer's response frame bodies (headers not included), made one at a time,
        each with frames of at most ``limit`` bytes in all unless it holds one frame only;
        ``frame_of(rid, result)`` makes a read's response frame."""
        chunk: list[bytes] = []
        size = 0
        for item in self.items:
            frame = item if type(item) is bytes else frame_of(*item)
            if chunk and size + len(frame) > limit:
                yield pack([rid, STATUS_OK, chunk, ring_version])
                chunk, size = [], 0
            chunk.append(frame)
            size += len(frame)
        yield pack([rid, STATUS_OK, chunk, ring_version])


class RelayBatch:
    """The bodies queued for one owner's connection since its last write, and who waits for
    each answer."""

    __slots__ = ("bodies", "done", "failed", "laters", "size", "timeout")

    def __init__(self, failed: Failed, timeout: float) -> None:
        self.bodies: list[bytes] = []
        self.laters: list[Later] = []
        self.size = 0
        self.failed = failed
        self.timeout = timeout
        self.done = 0  # bodies answered so far (an answer may come in several frames)

    @property
    def full(self) -> bool:
        return len(self.bodies) >= MAX_BATCH_ITEMS or self.size >= MAX_BATCH_BYTES

    def add(self, body: bytes, later: Later) -> None:
        self.bodies.append(body)
        self.laters.append(later)
        self.size += len(body)

    def answered(self, response: Response | BaseException) -> bool:
        """The peer connection's callback for the batch's ``RELAY``: the ``Later`` of each body
        the frame answers gets its response frame, in order; or every body not answered yet
        goes to ``failed``. True while bodies wait for more frames of the answer (the
        connection keeps the request's waiter for them)."""
        laters = self.laters
        done = self.done
        error: BaseException
        if isinstance(response, Response):
            if response.ok:
                frames = response.value
                if type(frames) is list and frames and done + len(frames) <= len(laters):
                    failed = self.failed
                    bodies = self.bodies
                    for i, frame in enumerate(frames, done):
                        if type(frame) is bytes:
                            laters[i].resolve(frame)
                        else:  # an owner that did not execute it
                            failed(bodies[i], laters[i], _NOT_RELAYED)
                    self.done = done = done + len(frames)
                    return done < len(laters)
                error = RemoteProtocolError("a RELAY answer does not match its batch")
            else:
                code, message = response.value
                error = CommandError(code, message)
        else:
            error = response
        self.done = len(laters)
        failed = self.failed
        for body, later in zip(self.bodies[done:], laters[done:], strict=True):
            failed(body, later, error)
        return False


__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_ITEMS",
    "RelayAnswer",
    "RelayBatch",
    "answer_bytes_for",
]
