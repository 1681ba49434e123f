"""The sans-I/O client: commands in, request frames out; bytes in, results out.

Nothing here touches a socket or a clock. A front end (:mod:`meshcache.client.sync`,
:mod:`~meshcache.client.trio_client`, :mod:`~meshcache.client.asyncio_client`) owns one
:class:`ClientProtocol` per connection and moves bytes:

.. code-block:: python

    exchange = Exchange(protocol, commands)
    send(exchange.outgoing)
    while not exchange.receive_data(recv()):
        pass
    results = exchange.results(raise_on_error=True)

Responses are matched to requests by id, so any number of requests may be in flight on one
connection (the node answers in order, but nothing here relies on it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from meshcache.errors import (
    CommandError,
    LocalProtocolError,
    MeshcacheError,
    RemoteProtocolError,
    TooLargeError,
)
from meshcache.wire import (
    DEFAULT_MAX_FRAME,
    OPS,
    FrameReader,
    FrameTooLarge,
    Limits,
    OpKind,
    OpSpec,
    Response,
    decode_response,
    encode_request,
    normalize_args,
)
from meshcache.wire.frame import HEADER_SIZE

T = TypeVar("T")

# The node enforces the real size limits and answers TOO_LARGE; the client only checks types and
# arity, so a node configured with larger limits is not second-guessed.
_CLIENT_LIMITS = Limits(max_key_bytes=2**63, max_value_bytes=2**63, max_args=2**63)

# Request ids are u64 on the wire; 0 is what the node uses for errors that belong to no request
# (TOO_MANY_CONNECTIONS, an undecodable frame), so the client never hands it out.
_MAX_REQUEST_ID = 2**64 - 1

# The first request id of a connection. msgpack writes it as ce 0d 0a 0d 0a, so the first request
# carries CR LF CR LF, which ends an HTTP request head: a client pointed at an HTTP port (a node's
# admin port) gets an HTTP answer at once, and says so, instead of waiting out its timeout. The
# ids that follow take the same five bytes each; the node treats ids as opaque.
FIRST_REQUEST_ID = 0x0D0A0D0A

# How many of the first bytes a peer sends are kept to say what it is, should they not be a reply.
_HEAD_BYTES = 16


def _identity(value: Any) -> Any:
    return value


# Ops whose first argument is the key they act on (a router places them by it). Looked up by name
# because OpSpec.keyed is a computed property and this is asked once per request.
_KEYED_OPS = frozenset(name for name, spec in OPS.items() if spec.keyed)


# Not frozen: a frozen dataclass's __init__ pays object.__setattr__ per field, which was a
# measurable share of a request's CPU. Treat a Command as immutable all the same.
@dataclass(slots=True)
class Command(Generic[T]):
    """One request, checked and ready to encode, with the function that shapes its result.

    ``args`` are already normalized by :func:`meshcache.wire.normalize_args` (str turned into
    bytes, an options map appended when the op takes one). ``decode`` turns the raw msgpack
    result into what the caller gets, raising :class:`RemoteProtocolError` when the node sent a
    result of the wrong shape. Commands are values: do not change one after it is built.
    """

    spec: OpSpec
    namespace: str
    args: list[Any]
    decode: Callable[[Any], T] = field(default=_identity)

    @classmethod
    def build(
        cls,
        op: str,
        args: list[Any],
        namespace: str,
        decode: Callable[[Any], T],
    ) -> Command[T]:
        """Check ``args`` against the op table and build the command.

        Raises:
            BadRequestError: an argument has the wrong type (e.g. an int where a key goes).
            WrongArityError: wrong number of arguments.
            LocalProtocolError: ``namespace`` is not a str.
        """
        if type(namespace) is not str:
            raise LocalProtocolError(f"namespace must be a str, not {type(namespace).__name__}")
        spec = OPS[op]
        return cls(spec, namespace, normalize_args(spec, args, _CLIENT_LIMITS), decode)

    @property
    def op(self) -> str:
        return self.spec.name

    @property
    def idempotent(self) -> bool:
        """True when sending it twice has the same effect as once (safe to retry)."""
        return self.spec.idempotent

    @property
    def key(self) -> bytes | None:
        """The key the command acts on (what a router places it by), or None for meta ops."""
        if self.spec.name in _KEYED_OPS and self.args:
            key: bytes = self.args[0]
            return key
        return None


def batch_route(commands: Sequence[Command[Any]]) -> tuple[bytes | None, bool]:
    """What a front end needs to send a batch: the key to route it by and whether it may retry.

    The key is the first command's key that is not None (None when no command has one); a batch
    may be retried only when every command in it is idempotent.
    """
    if len(commands) == 1:
        only = commands[0]
        return only.key, only.spec.idempotent
    key = next((k for c in commands if (k := c.key) is not None), None)
    return key, all(c.spec.idempotent for c in commands)


@dataclass(frozen=True, slots=True)
class Reply:
    """The node's answer to one request id."""

    request_id: int
    response: Response


class ClientProtocol:
    """State of one client connection: ids handed out, requests awaiting an answer, the decoder.

    ``send`` queues a request and returns its id, refusing one whose frame is over ``max_frame``
    (the node's limit by default) with :class:`~meshcache.errors.TooLargeError` before anything
    is queued; ``data_to_send`` drains the bytes to write;
    ``receive_data`` takes bytes read and returns the replies completed by them. After the node
    sends a connection-level error (request id 0, e.g. ``TOO_MANY_CONNECTIONS``) or breaks the
    protocol, the object is *dead*: ``error`` holds why, and every request still awaiting an
    answer gets that error as its reply. A dead protocol refuses ``send``.

    Until the first reply, it keeps the first bytes the peer sent, so that a peer which is not a
    node's data port is named for what it is (:meth:`receive_data`, :meth:`no_answer`). ``peer``
    is how messages name the other end (``host:port``).
    """

    __slots__ = (
        "_head",
        "_next_id",
        "_outbox",
        "_pending",
        "_reader",
        "answered",
        "error",
        "hot_version",
        "peer",
        "ring_version",
    )

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, peer: str = "the node") -> None:
        self._reader = FrameReader(max_frame)
        self._next_id = FIRST_REQUEST_ID
        self._outbox = bytearray()
        # dict as an insertion-ordered set of ids awaiting a response.
        self._pending: dict[int, None] = {}
        self.error: MeshcacheError | None = None
        #: The highest ring version any response carried (0 on a node outside a mesh).
        self.ring_version = 0
        #: The hot-set version the last response that had one carried (0: none did yet).
        self.hot_version = 0
        self.peer = peer
        #: True once the peer has sent one well-formed reply: it speaks the data protocol.
        self.answered = False
        self._head = b""

    @property
    def pending(self) -> int:
        """How many requests were sent and not answered yet."""
        return len(self._pending)

    def send(self, command: Command[Any]) -> int:
        """Queue ``command`` for sending; return the request id its reply will carry."""
        rid, frame = self._encode(command)
        self._outbox += frame
        return rid

    def _encode(self, command: Command[Any]) -> tuple[int, bytes]:
        """Hand out the next id to ``command``; its request frame, not queued anywhere.

        Raises:
            TooLargeError: the frame is over ``max_frame``; no id awaits an answer for it.
        """
        if self.error is not None:
            raise LocalProtocolError(f"the connection is unusable: {self.error}")
        rid = self._next_id
        self._next_id = rid + 1 if rid < _MAX_REQUEST_ID else 1
        frame = encode_request(rid, command.spec.name, command.namespace, command.args)
        if len(frame) - HEADER_SIZE > self._reader.max_frame:
            raise TooLargeError(
                message=f"the {command.spec.name} request is {len(frame) - HEADER_SIZE} bytes,"
                f" over the {self._reader.max_frame}-byte frame limit; it was not sent"
            )
        self._pending[rid] = None
        return rid, frame

    def data_to_send(self) -> bytes:
        """The bytes queued by ``send`` since the last call (empty when none)."""
        data = bytes(self._outbox)
        self._outbox.clear()
        return data

    def receive_data(self, data: bytes) -> list[Reply]:
        """Feed bytes read from the connection; return the replies they complete, in order.

        Raises:
            RemoteProtocolError: the node sent bytes that break framing or the response format,
                or answered a request id that is not awaiting an answer. The protocol is dead
                afterwards; the caller must close the connection. When the peer never sent a
                reply, the message says what answered instead (HTTP, the Redis protocol, other
                bytes) and that a node's data port is needed.
        """
        return [Reply(rid, response) for rid, response in self._receive(data)]

    def _receive(self, data: bytes) -> list[tuple[int, Response]]:
        """:meth:`receive_data` as (request id, response) pairs, without a Reply per answer."""
        if self.error is not None:
            if isinstance(self.error, RemoteProtocolError):
                raise self.error
            # After a connection-level error frame the node closes the connection; nothing
            # that still arrives can answer anything.
            return []
        if not self.answered and len(self._head) < _HEAD_BYTES:
            self._head += data[: _HEAD_BYTES - len(self._head)]
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        replies: list[tuple[int, Response]] = []
        try:
            while (body := reader.next_body()) is not None:
                try:
                    response = decode_response(body)
                except RemoteProtocolError:
                    if not self.answered:
                        raise self._not_a_reply() from None
                    raise
                self.answered = True
                rid = response.id
                if rid in pending:
                    del pending[rid]
                    if response.ring_version > self.ring_version:
                        self.ring_version = response.ring_version
                    hints = response.hints
                    if hints is not None:
                        hot = hints.get("hot")
                        if type(hot) is int:
                            self.hot_version = hot
                    replies.append((rid, response))
                elif rid == 0 and not response.ok:
                    replies.extend(self._fail_all(response))
                    break
                else:
                    raise RemoteProtocolError(
                        f"the node answered request id {rid}, which was not asked"
                    )
        except FrameTooLarge as exc:
            self.error = exc if self.answered else self._not_a_reply()
            raise self.error from None
        except RemoteProtocolError as exc:
            self.error = exc
            raise
        return replies

    def _not_a_reply(self) -> RemoteProtocolError:
        """The error for a peer whose very first bytes are not a meshcache reply."""
        head = self._head
        if head.startswith(b"HTTP"):
            what = "HTTP: that is a node's admin port (or another web server)"
        elif head[:1] in (b"-", b"+") or head.startswith((b"$", b"*", b"%")):
            what = "in the Redis protocol (RESP): that is a node's RESP port"
        else:
            what = f"with bytes that are not a meshcache reply ({head!r}): not a node's data port"
        return RemoteProtocolError(f"{self.peer} answered {what}; use its data port")

    def no_answer(self, seconds: float | None) -> str:
        """Why nothing usable came back within ``seconds``: what the peer sent, if anything.

        For the message of a timeout. A peer that accepted the connection and never sent a
        byte is named as possibly not a data port (a node's Raft port, for one, stays silent).
        """
        within = "" if seconds is None else f" within {seconds:g} s"
        if self.answered:
            return f"no answer from {self.peer}{within}"
        if not self._head:
            return (
                f"no answer from {self.peer}{within}: it accepted the connection but sent"
                " nothing back (if it is not a node's data port, e.g. its Raft port, use the"
                " data port)"
            )
        return (
            f"no answer from {self.peer}{within}: it sent bytes that are not a meshcache reply"
            f" ({self._head!r}): if it is not a node's data port, use the data port"
        )

    def _fail_all(self, response: Response) -> list[tuple[int, Response]]:
        code, message = response.value
        self.error = CommandError(code, message)
        replies = [(rid, response) for rid in self._pending]
        self._pending.clear()
        return replies


class Exchange:
    """One batch of commands sent together on a :class:`ClientProtocol` and their replies.

    Built with the protocol the batch goes on; ``outgoing`` holds the bytes to write.
    ``receive_data`` returns True once every command has its reply; ``results`` then gives the
    decoded results in command order. Building one raises
    :class:`~meshcache.errors.TooLargeError` when a command's frame is over the protocol's
    ``max_frame``; the protocol is then as it was (no id of the batch awaits an answer).
    """

    __slots__ = ("_commands", "_ids", "_protocol", "_replies", "hinted", "outgoing")

    def __init__(self, protocol: ClientProtocol, commands: Sequence[Command[Any]]) -> None:
        self._protocol = protocol
        self._commands = commands
        encode = protocol._encode
        if len(commands) == 1:
            rid, self.outgoing = encode(commands[0])
            self._ids = [rid]
        else:
            self._ids = []
            frames = []
            try:
                for command in commands:
                    rid, frame = encode(command)
                    self._ids.append(rid)
                    frames.append(frame)
            except TooLargeError:
                for rid in self._ids:
                    del protocol._pending[rid]
                raise
            self.outgoing = b"".join(frames)
        self._replies: dict[int, Response] = {}
        #: True once a reply carried the version a write left (:meth:`write_versions`).
        self.hinted = False

    @property
    def done(self) -> bool:
        return len(self._replies) == len(self._ids)

    def receive_data(self, data: bytes) -> bool:
        """Feed bytes read; return True when every command has been answered.

        Raises:
            RemoteProtocolError: see :meth:`ClientProtocol.receive_data`.
        """
        replies = self._replies
        for rid, response in self._protocol._receive(data):
            replies[rid] = response
            if response.hints is not None and "version" in response.hints:
                self.hinted = True
        return len(replies) == len(self._ids)

    def write_versions(
        self,
    ) -> list[tuple[Command[Any], int | None, list[tuple[bytes, int]] | None]]:
        """Every write of the batch with the version its answer carried (a write to a hot
        key, answered by the key's owner), or None when it carried none; and for a write of
        several keys, the keys that version is about, each with its own version (None when
        the answer does not say)."""
        out: list[tuple[Command[Any], int | None, list[tuple[bytes, int]] | None]] = []
        for command, rid in zip(self._commands, self._ids, strict=True):
            if command.spec.kind is OpKind.WRITE:
                response = self._replies.get(rid)
                hints = None if response is None or not response.ok else response.hints
                version = None if hints is None else hints.get("version")
                out.append(
                    (
                        command,
                        version if type(version) is int else None,
                        None if hints is None else _key_versions(hints.get("versions")),
                    )
                )
        return out

    def results(self, *, raise_on_error: bool = True) -> list[Any]:
        """The decoded result of every command, in the order given.

        With ``raise_on_error`` the first error (a :class:`CommandError` from the node, or a
        :class:`RemoteProtocolError` for a result of the wrong shape) is raised; without it the
        exception objects stand in the list in place of their results.
        """
        if len(self._replies) != len(self._ids):
            raise LocalProtocolError("results asked for before every reply arrived")
        replies = self._replies
        if len(self._ids) == 1:  # a single request, the common case: no zip, no loop
            only = _outcome(self._commands[0], replies[self._ids[0]])
            if raise_on_error and isinstance(only, MeshcacheError):
                raise only
            return [only]
        out = [
            _outcome(command, replies[rid])
            for command, rid in zip(self._commands, self._ids, strict=True)
        ]
        if raise_on_error:
            for item in out:
                if isinstance(item, MeshcacheError):
                    raise item
        return out


def _key_versions(versions: Any) -> list[tuple[bytes, int]] | None:
    """A write answer's ``versions`` hint (``[[key, version], ...]``) as pairs; None when it
    has none or it is not of that shape."""
    if type(versions) is not list:
        return None
    pairs = [
        (item[0], item[1])
        for item in versions
        if type(item) is list and len(item) == 2 and type(item[0]) is bytes and type(item[1]) is int
    ]
    return pairs if len(pairs) == len(versions) else None


def _outcome(command: Command[Any], response: Response) -> Any:
    if not response.ok:
        code, message = response.value
        return CommandError(code, message)
    try:
        return command.decode(response.value)
    except RemoteProtocolError as exc:
        return exc


__all__ = ["FIRST_REQUEST_ID", "ClientProtocol", "Command", "Exchange", "Reply", "batch_route"]
