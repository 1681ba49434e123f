"""Relaying: the reads a non-owner passes on to one owner, a round's worth in one frame.

A client that does not route by key (any Redis client, a plain meshcache client) sends every
request to the node it is connected to. A read of one key another node coordinates (``GET``,
``HGET``, ``LRANGE``: :data:`~meshcache.wire.ops.RELAYABLE`) is passed on to that node **as the
client sent it**: its frame body, the client's request id inside. The bodies bound for one
owner in one reactor round travel in one ``RELAY`` frame (at most :data:`MAX_BATCH_ITEMS` of
them, :data:`MAX_BATCH_BYTES` in all), and the owner answers the frame with the response frame
of each body, in order, as it would have answered its client
(:meth:`~meshcache.node.net.dispatch.Dispatcher.relayed`). The non-owner writes those frames
to its client as they came: it neither encodes a request nor decodes an answer per read.

Only reads of a namespace without read-through are relayed (a load is timed), and in a
namespace with hot keys only those this node holds no fresh copy for (a copy answers here);
writes and everything else are forwarded one request at a time (``FWD``). A batch that fails as
a whole (the connection broke, no answer in time, an owner that does not know ``RELAY``) hands
each of its reads to ``failed``, which forwards it again the usual way.
"""

from __future__ import annotations

from collections.abc import Callable

from meshcache.errors import CommandError, RemoteProtocolError
from meshcache.wire.frame import Response
from meshcache.wire.pending import Later

#: Bodies in one ``RELAY`` frame: the owner answers a frame in one step of its loop, about
#: 5 us a ``GET``.
MAX_BATCH_ITEMS = 64
#: Bytes of bodies in one ``RELAY`` frame.
MAX_BATCH_BYTES = 64 * 1024
#: Bytes of response frames an owner puts in one ``RELAY`` answer: the bodies after the one
#: that reaches it are not executed, and their node forwards them one at a time.
MAX_ANSWER_BYTES = 1024 * 1024

# What a body the owner left out of its answer fails with, before it is forwarded again.
_NOT_RELAYED = RemoteProtocolError("the owner's RELAY answer was full")

Failed = Callable[[bytes, Later, BaseException], None]
"""What a batch calls for each of its bodies when the batch fails as a whole."""


class RelayBatch:
    """The bodies queued for one owner's connection since its last write, and who waits for
    each answer."""

    __slots__ = ("bodies", "failed", "laters", "size", "timeout")

    def __init__(self, failed: Failed, timeout: float) -> None:
        self.bodies: list[bytes] = []
        self.laters: list[Later] = []
        self.size = 0
        self.failed = failed
        self.timeout = timeout

    @property
    def full(self) -> bool:
        return len(self.bodies) >= MAX_BATCH_ITEMS or self.size >= MAX_BATCH_BYTES

    def add(self, body: bytes, later: Later) -> None:
        self.bodies.append(body)
        self.laters.append(later)
        self.size += len(body)

    def answered(self, response: Response | BaseException) -> None:
        """The peer connection's callback for the batch's ``RELAY``: each ``Later`` gets its
        response frame, or every body goes to ``failed``."""
        laters = self.laters
        error: BaseException
        if isinstance(response, Response):
            if response.ok:
                frames = response.value
                if type(frames) is list and len(frames) == len(laters):
                    failed = self.failed
                    for body, later, frame in zip(self.bodies, laters, frames, strict=True):
                        if type(frame) is bytes:
                            later.resolve(frame)
                        else:  # past the owner's MAX_ANSWER_BYTES: not executed there
                            failed(body, later, _NOT_RELAYED)
                    return
                error = RemoteProtocolError("a RELAY answer does not match its batch")
            else:
                code, message = response.value
                error = CommandError(code, message)
        else:
            error = response
        failed = self.failed
        for body, later in zip(self.bodies, laters, strict=True):
            failed(body, later, error)


__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_ITEMS",
    "RelayBatch",
]
