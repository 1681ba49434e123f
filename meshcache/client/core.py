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
)
from meshcache.wire import (
    DEFAULT_MAX_FRAME,
    OPS,
    FrameReader,
    Limits,
    OpSpec,
    Response,
    decode_response,
    encode_request,
    normalize_args,
)

T = TypeVar("T")

# The node enforces the real size limits and answers TOO_LARGE; the client only checks types and
# arity, so a node configured with larger limits is not second-guessed.
_CLIENT_LIMITS = Limits(max_key_bytes=2**63, max_value_bytes=2**63, max_args=2**63)

# Request ids are u64 on the wire; 0 is what the node uses for errors that belong to no request
# (TOO_MANY_CONNECTIONS, an undecodable frame), so the client never hands it out.
_MAX_REQUEST_ID = 2**64 - 1


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Command(Generic[T]):
    """One request, checked and ready to encode, with the function that shapes its result.

    ``args`` are already normalized by :func:`meshcache.wire.normalize_args` (str turned into
    bytes, an options map appended when the op takes one). ``decode`` turns the raw msgpack
    result into what the caller gets, raising :class:`RemoteProtocolError` when the node sent a
    result of the wrong shape.
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
        if self.spec.keyed and self.args:
            key: bytes = self.args[0]
            return key
        return None


@dataclass(frozen=True, slots=True)
class Reply:
    """The node's answer to one request id."""

    request_id: int
    response: Response


class ClientProtocol:
    """State of one client connection: ids handed out, requests awaiting an answer, the decoder.

    ``send`` queues a request and returns its id; ``data_to_send`` drains the bytes to write;
    ``receive_data`` takes bytes read and returns the replies completed by them. After the node
    sends a connection-level error (request id 0, e.g. ``TOO_MANY_CONNECTIONS``) or breaks the
    protocol, the object is *dead*: ``error`` holds why, and every request still awaiting an
    answer gets that error as its reply. A dead protocol refuses ``send``.
    """

    __slots__ = ("_next_id", "_outbox", "_pending", "_reader", "error", "ring_version")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._reader = FrameReader(max_frame)
        self._next_id = 1
        self._outbox = bytearray()
        # dict as an insertion-ordered set of ids awaiting a response.
        self._pending: dict[int, None] = {}
        self.error: MeshcacheError | None = None
        #: The highest ring version any response carried (0 on a node outside a mesh).
        self.ring_version = 0

    @property
    def pending(self) -> int:
        """How many requests were sent and not answered yet."""
        return len(self._pending)

    def send(self, command: Command[Any]) -> int:
        """Queue ``command`` for sending; return the request id its reply will carry."""
        if self.error is not None:
            raise LocalProtocolError(f"the connection is unusable: {self.error}")
        rid = self._next_id
        self._next_id = rid + 1 if rid < _MAX_REQUEST_ID else 1
        self._outbox += encode_request(rid, command.op, command.namespace, command.args)
        self._pending[rid] = None
        return rid

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
                afterwards; the caller must close the connection.
        """
        if isinstance(self.error, RemoteProtocolError):
            raise self.error
        if self.error is not None:
            # After a connection-level error frame the node closes the connection; nothing
            # that still arrives can answer anything.
            return []
        self._reader.feed(data)
        replies: list[Reply] = []
        try:
            while (body := self._reader.next_body()) is not None:
                response = decode_response(body)
                if response.id in self._pending:
                    del self._pending[response.id]
                    self.ring_version = max(self.ring_version, response.ring_version)
                    replies.append(Reply(response.id, response))
                elif response.id == 0 and not response.ok:
                    replies.extend(self._fail_all(response))
                    break
                else:
                    raise RemoteProtocolError(
                        f"the node answered request id {response.id}, which was not asked"
                    )
        except RemoteProtocolError as exc:
            self.error = exc
            raise
        return replies

    def _fail_all(self, response: Response) -> list[Reply]:
        code, message = response.value
        self.error = CommandError(code, message)
        replies = [Reply(rid, response) for rid in self._pending]
        self._pending.clear()
        return replies


class Exchange:
    """One batch of commands sent together on a :class:`ClientProtocol` and their replies.

    Built with the protocol the batch goes on; ``outgoing`` holds the bytes to write.
    ``receive_data`` returns True once every command has its reply; ``results`` then gives the
    decoded results in command order.
    """

    __slots__ = ("_commands", "_ids", "_protocol", "_replies", "outgoing")

    def __init__(self, protocol: ClientProtocol, commands: Sequence[Command[Any]]) -> None:
        self._protocol = protocol
        self._commands = commands
        self._ids = [protocol.send(command) for command in commands]
        self._replies: dict[int, Response] = {}
        self.outgoing = protocol.data_to_send()

    @property
    def done(self) -> bool:
        return len(self._replies) == len(self._ids)

    def receive_data(self, data: bytes) -> bool:
        """Feed bytes read; return True when every command has been answered.

        Raises:
            RemoteProtocolError: see :meth:`ClientProtocol.receive_data`.
        """
        for reply in self._protocol.receive_data(data):
            self._replies[reply.request_id] = reply.response
        return self.done

    def results(self, *, raise_on_error: bool = True) -> list[Any]:
        """The decoded result of every command, in the order given.

        With ``raise_on_error`` the first error (a :class:`CommandError` from the node, or a
        :class:`RemoteProtocolError` for a result of the wrong shape) is raised; without it the
        exception objects stand in the list in place of their results.
        """
        if not self.done:
            raise LocalProtocolError("results asked for before every reply arrived")
        out: list[Any] = []
        for command, rid in zip(self._commands, self._ids, strict=True):
            out.append(_outcome(command, self._replies[rid]))
        if raise_on_error:
            for item in out:
                if isinstance(item, MeshcacheError):
                    raise item
        return out


def _outcome(command: Command[Any], response: Response) -> Any:
    if not response.ok:
        code, message = response.value
        return CommandError(code, message)
    try:
        return command.decode(response.value)
    except RemoteProtocolError as exc:
        return exc


__all__ = ["ClientProtocol", "Command", "Exchange", "Reply"]
