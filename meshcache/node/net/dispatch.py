"""Turn one request frame body into one response frame: the node's sans-I/O request path.

:class:`Dispatcher` knows nothing about sockets. The data port feeds it frame bodies and writes
back the bytes it returns, so everything about decoding, checking, executing and answering a
request — including every kind of bad input — can be tested without a network.

Every request of a known op is timed into the node's latency histograms
(:mod:`meshcache.node.admin.latency`): from the start of its decoding until its answer's bytes
exist, the wait of a pending answer included.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Iterator
from types import CoroutineType
from typing import Any, TypeVar

import msgpack

from meshcache.errors import CommandError, ErrorCode, RemoteProtocolError
from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.net.relay import MAX_ANSWER_BYTES, MAX_BATCH_ITEMS, RelayAnswer
from meshcache.security.guard import Guard, Session
from meshcache.wire.frame import HEADER, STATUS_ERROR, STATUS_OK, decode_request
from meshcache.wire.ops import (
    DATA_HANDLER,
    OPS,
    RELAY_HANDLER,
    RELAYABLE,
    Limits,
    OpKind,
    OpSpec,
    normalize_args,
)
from meshcache.wire.pending import FailedOver, Later, Parts, Pending, Relayed

# Bad input is counted under the snake_case of its error code, plus a few framing-level kinds.
_BAD_KIND = {code: code.value.lower() for code in ErrorCode}
# Refusals caused by the data a request met rather than by the request: not bad input.
_DATA_REFUSALS = frozenset((ErrorCode.WRONGTYPE, ErrorCode.OUT_OF_MEMORY, ErrorCode.NOT_INTEGER))
# The byte after a response's msgpack array head: its id, whose length its first byte says.
_UINT_SIZES = {0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9}


def _status_of(frame: bytes) -> int:
    """The status of a response frame, read without decoding it (``[id, status, ...]``, the id
    a positive int); ``STATUS_ERROR`` when it cannot be read so."""
    if len(frame) < HEADER.size + 3:
        return STATUS_ERROR
    head = frame[HEADER.size + 1]
    at = HEADER.size + 1 + (1 if head < 0x80 else _UINT_SIZES.get(head, len(frame)))
    return frame[at] if at < len(frame) else STATUS_ERROR


Executor = Callable[[str, str, list[Any]], Any]
Route = Callable[[str, list[Any]], Any]
Relay = Callable[[str, str, list[Any], bytes], Any]


def _pending(
    answer: Coroutine[Any, Any, bytes | Parts], spec: OpSpec, ns: str, args: list[Any]
) -> Pending:
    if not spec.keyed:
        return Pending(answer, fans_out=spec.name not in _ONE_HOP)
    # Many-key ops (MGET, MSET, DELETE, EXISTS) repeat a key group and are split by owner.
    if not spec.fixed and len(args) > len(spec.repeat):
        return Pending(answer, fans_out=True)
    return Pending(answer, key=(ns, args[0]))


def _unrouted(namespace: str, args: list[Any]) -> Any:
    raise CommandError(ErrorCode.UNKNOWN_OP, "this node does not serve that op")


# Bound once: the hot path pays for no module attribute lookups.
_unpackb = msgpack.unpackb
_pack_header = HEADER.pack
_clock_ns = time.perf_counter_ns
# The ops whose first argument is their key (OpSpec.keyed, a property, asked per request).
_KEYED = frozenset(name for name, spec in OPS.items() if spec.keyed)
# The identity of a caller inside the process: no users, no cluster key, every op allowed.
_TRUSTED = Guard().session("")
# Node-to-node ops whose requests this node executes itself and never passes on: later
# requests on their connection need not wait for them.
_ONE_HOP = frozenset(("FWD", "RELAY"))
# An answer as a handler returns it: whole, or in parts.
_A = TypeVar("_A", bytes, "bytes | Parts")


def _framed(second: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    """Response frame bodies with their headers, ``second`` first."""
    yield _pack_header(len(second)) + second
    for body in rest:
        yield _pack_header(len(body)) + body


class Dispatcher:
    """Decodes, checks and executes requests; never raises for anything a client sends.

    Args:
        execute: runs a data op: ``execute(namespace, op, normalized_args) -> result``; raises
            :class:`CommandError` to refuse.
        routes: the handler of every other op, ``route(namespace, normalized_args) -> result``
            (:meth:`meshcache.node.routes.Routes.table`); an op of the table with no route
            is refused as ``UNKNOWN_OP``.
        limits: key, value and argument-count limits checked before ``execute`` runs.
        counters: where requests, errors, bad input and request latency are counted.
        guard: the node's users and cluster key; the data port asks it for each connection's
            :class:`~meshcache.security.guard.Session`. Default: no users, no cluster key.
        answer_bytes: the bytes of response frames in one frame of a ``RELAY``'s answer
            (:func:`~meshcache.node.net.relay.answer_bytes_for` the frame limit).

    ``ring_version`` is the ring version every response carries; the node assigns it when the
    ring changes (a plain attribute, so the hot path does not pay for a call).
    """

    __slots__ = (
        "_answer_bytes",
        "_execute",
        "_forwarded",
        "_latency",
        "_limits",
        "_ops",
        "_pack",
        "counters",
        "guard",
        "hot",
        "relay",
        "ring_version",
    )

    def __init__(
        self,
        *,
        execute: Executor,
        routes: dict[str, Route],
        limits: Limits,
        counters: NodeCounters,
        ring_version: int = 0,
        guard: Guard | None = None,
        answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._execute = execute
        # The bytes of response frames in one frame of a RELAY's answer (answer_bytes_for).
        self._answer_bytes = answer_bytes
        self.guard = Guard() if guard is None else guard
        self._latency = latency = counters.latency
        # One lookup per request gives the op's spec, its route, its latency histogram and
        # whether it may be relayed. Every op that is not a data op gets a route, refusing when
        # none was given: no route means a data op.
        self._ops: dict[str, tuple[OpSpec, Route | None, list[int], bool]] = {
            name: (
                spec,
                self.relayed
                if spec.handler == RELAY_HANDLER
                else routes.get(name, _unrouted)
                if spec.handler != DATA_HANDLER or name in routes
                else None,
                latency.counts(name),
                name in RELAYABLE and name not in routes,
            )
            for name, spec in OPS.items()
        }
        # FWD's route: a relayed read is executed by its rules.
        self._forwarded = routes.get("FWD", _unrouted)
        self._limits = limits
        self.counters = counters
        self.ring_version = ring_version
        #: The node's hot-key layer (:class:`~meshcache.node.data.hot.HotKeys`; the assembly
        #: wires it): responses to data ops carry its hints as their 5th element.
        self.hot: Any = None
        #: Runs a read like ``execute``, given its frame as the client sent it too
        #: (``relay(namespace, op, args, body)``; the assembly wires the coordinator's
        #: ``execute``): a read of a key another node coordinates may then be passed on to
        #: that node as it came, answered as a :class:`~meshcache.wire.pending.Relayed`.
        self.relay: Relay | None = None
        self._pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack

    def handle(self, body: bytes, session: Session = _TRUSTED) -> bytes | Pending | Parts:
        """Answer one frame body with one complete response frame (header included).

        ``session`` is the connection's identity: an op outside ``session.allowed`` goes
        through :meth:`Session.gate` (``AUTH``, ``NOAUTH``, ``NOPERM``). This is the one place
        permissions are enforced. The data port passes each connection's session; callers
        inside the process (the simulation, tests) may leave the default, which may send
        anything.

        A request whose op must wait (a forward to the key's owner, a quorum write, a config
        change through Raft) is answered with a :class:`Pending` instead; the caller writes its
        frame once it is done, in request order.
        """
        started = _clock_ns()
        try:
            rid, op, ns, args = _unpackb(body, raw=False, strict_map_key=False)
            if type(rid) is not int or rid < 1 or type(op) is not str or type(ns) is not str:
                raise ValueError
        except Exception:
            return self._bad_frame(body)
        entry = self._ops.get(op)
        if entry is None:
            unknown = CommandError(ErrorCode.UNKNOWN_OP, f"unknown op {op[:64]!r}")
            return self._error(rid, "unknown", unknown)
        spec, route, histogram, relayable = entry
        try:
            if op not in session.allowed:
                auth = session.gate(spec, ns, args)
                if auth is not None:
                    return _pending(self._finish(rid, op, auth, started, histogram), spec, ns, [])
            args = normalize_args(spec, args, self._limits)
            if route is not None:
                result = route(ns, args)
                if type(result) is RelayAnswer:  # RELAY's, all its reads answered at once
                    self.counters.requests[op] += 1
                    return self._timed(histogram, started, self._relay_answer(rid, result))
            elif relayable and self.relay is not None:
                result = self.relay(ns, op, args, body)
                if type(result) is Relayed:  # passed on to the key's owner as it came
                    finish = self._relayed_answer(rid, op, started, histogram, spec, ns, args)
                    return Pending(None, later=result, finish=finish)
            else:
                result = self._execute(ns, op, args)
            if type(result) is CoroutineType:
                answer = self._finish(rid, op, result, started, histogram, spec, ns, args)
                return _pending(answer, spec, ns, args)
            if type(result) is Later:  # a forward submitted, or a miss loading: no task
                finish = self._later(rid, op, started, histogram, spec, ns, args)
                key = (ns, args[0]) if op in _KEYED else None
                return Pending(None, key=key, later=result, finish=finish)
            hot = self.hot
            if hot is None or hot.hint is None:  # no key was ever hot here
                out: bytes = self._pack([rid, STATUS_OK, result, self.ring_version])
            elif spec.handler != DATA_HANDLER:
                # A forwarded write to a key hot here or lately says the versions it left, so
                # that its forwarder refuses older copies, as when the answer waits (_later).
                forwarded = hot.forward_hint(ns, args) if op == "FWD" else None
                out = self._pack(
                    [rid, STATUS_OK, result, self.ring_version]
                    if forwarded is None
                    else [rid, STATUS_OK, result, self.ring_version, forwarded]
                )
            elif hot.cooled and spec.kind is OpKind.WRITE:  # a key that was hot says its version
                hints = hot.ack_hint(ns, op, args)
                out = self._pack([rid, STATUS_OK, result, self.ring_version, hints])
            else:
                out = self._pack([rid, STATUS_OK, result, self.ring_version, hot.hint])
        except CommandError as exc:
            return self._timed(histogram, started, self._error(rid, op, exc))
        except Exception as exc:  # a bug in the node (or a result msgpack cannot encode)
            bug = CommandError(ErrorCode.INTERNAL, type(exc).__name__)
            return self._timed(histogram, started, self._error(rid, op, bug))
        self.counters.requests[op] += 1
        # The latency histogram, inline (see RequestLatency): one clock read and one slot.
        now = _clock_ns()
        if now >= self._latency.rotate_at:
            self._latency.rotate(now)
        took = now - started
        histogram[(took * took).bit_length()] += 1
        return _pack_header(len(out)) + out

    async def _finish(
        self,
        rid: int,
        op: str,
        pending: Coroutine[Any, Any, Any],
        started: int,
        histogram: list[int],
        spec: OpSpec | None = None,
        ns: str = "",
        args: list[Any] | None = None,
    ) -> bytes | Parts:
        out: bytes | Parts
        try:
            value = await pending
            hot = self.hot
            if type(value) is RelayAnswer:  # a RELAY some of whose reads waited
                out = self._relay_answer(rid, value)
            elif hot is not None and op == "FWD" and args is not None:
                # A forwarded write to a hot key: the versions it left, for its forwarder.
                out = self._ok(rid, value, hot.forward_hint(ns, args))
            elif hot is None or spec is None or spec.handler != DATA_HANDLER:
                out = self._ok(rid, value)
            elif spec.kind is OpKind.WRITE and args is not None:
                # A write this node coordinated: to a hot key, its answer says the version.
                out = self._ok(rid, value, hot.ack_hint(ns, op, args))
            else:
                out = self._ok(rid, value, hot.hint)
        except CommandError as exc:
            out = self._error(rid, op, exc)
        except Exception as exc:  # a bug in the node (or a result msgpack cannot encode)
            out = self._error(rid, op, CommandError(ErrorCode.INTERNAL, type(exc).__name__))
        else:
            self.counters.requests[op] += 1
        return self._timed(histogram, started, out)

    def _later(
        self,
        rid: int,
        op: str,
        started: int,
        histogram: list[int],
        spec: OpSpec,
        ns: str,
        args: list[Any],
    ) -> Callable[[Any, BaseException | None], bytes]:
        """What makes the answer frame of a result that arrives later, with the hints
        :meth:`_finish` gives it (a forward's or a read-through miss's answer, a write's to a
        hot key once its copies are updated): :attr:`Pending.finish`, called once, from the
        callback that settles it."""
        hinted = spec.handler == DATA_HANDLER
        write = spec.kind is OpKind.WRITE
        counters = self.counters
        latency = self._latency

        def settled(value: Any, error: BaseException | None) -> bytes:
            if error is None:
                hot = self.hot
                if hot is None:
                    hints = None
                elif op == "FWD":
                    hints = hot.forward_hint(ns, args)
                elif not hinted:
                    hints = None
                else:
                    hints = hot.ack_hint(ns, op, args) if write else hot.hint
                try:
                    if hints is None:
                        body: bytes = self._pack([rid, STATUS_OK, value, self.ring_version])
                    else:
                        body = self._pack([rid, STATUS_OK, value, self.ring_version, hints])
                except Exception as exc:  # a result msgpack cannot encode
                    error = exc
                else:
                    counters.requests[op] += 1
                    out = _pack_header(len(body)) + body
            if error is not None:
                if not isinstance(error, CommandError):
                    error = CommandError(ErrorCode.INTERNAL, type(error).__name__)
                out = self._error(rid, op, error)
            # The latency histogram, inline (see RequestLatency), as in handle.
            now = _clock_ns()
            if now >= latency.rotate_at:
                latency.rotate(now)
            took = now - started
            histogram[(took * took).bit_length()] += 1
            return out

        return settled

    def _relayed_answer(
        self,
        rid: int,
        op: str,
        started: int,
        histogram: list[int],
        spec: OpSpec,
        ns: str,
        args: list[Any],
    ) -> Callable[[Any, BaseException | None], bytes]:
        """What answers a relayed read's client (:attr:`Pending.finish`): the owner's response
        frame as it came; or, when its batch failed and it was forwarded again
        (:class:`~meshcache.wire.pending.FailedOver`), a frame made here."""
        counters = self.counters

        def settled(value: Any, error: BaseException | None) -> bytes:
            if error is None and type(value) is bytes:
                if _status_of(value) != STATUS_OK:  # a refusal: counted here too, as FWD's
                    self._count_refused(value)
                counters.requests[op] += 1
                return self._timed(histogram, started, value)
            if type(value) is FailedOver:
                value = value.value
            elif error is None:
                error = RemoteProtocolError("a relayed answer is not a response frame")
            return self._later(rid, op, started, histogram, spec, ns, args)(value, error)

        return settled

    def relayed(self, namespace: str, args: list[Any]) -> Any:
        """``RELAY``: answer each client request body another node passed on here
        (:mod:`meshcache.node.net.relay`) with the response frame its client would have had
        from this node, executed by the rules of ``FWD`` (here, never passed on again).

        Only the reads of :data:`~meshcache.wire.ops.RELAYABLE` are relayed. Every body is
        executed, in order, before the requests that came after the ``RELAY``: a read must not
        see a write its client sent after it. The answer may take several frames
        (:class:`~meshcache.node.net.relay.RelayAnswer`)."""
        bodies = args[0]
        if len(bodies) > MAX_BATCH_ITEMS:
            raise CommandError(
                ErrorCode.BAD_REQUEST, f"RELAY carries at most {MAX_BATCH_ITEMS} requests"
            )
        forwarded = self._forwarded
        items: list[bytes | tuple[int, Any] | None] = []
        waiting: list[tuple[int, int, Any]] | None = None
        # Frames are made now while the answer fits one frame (the common case: it is then
        # packed at once); past that, each read's result waits for its part.
        limit = self._answer_bytes
        size = 0
        for body in bodies:
            if type(body) is not bytes:
                raise CommandError(ErrorCode.BAD_REQUEST, "RELAY carries request frame bodies")
            try:
                rid, op, ns, request_args = _unpackb(body, raw=False, strict_map_key=False)
                if type(rid) is not int or rid < 1 or type(op) is not str or type(ns) is not str:
                    raise ValueError
            except Exception:
                item: bytes | tuple[int, Any] = self._bad_frame(body)
            else:
                if op not in RELAYABLE:
                    refused = CommandError(ErrorCode.BAD_REQUEST, f"RELAY cannot carry {op[:64]!r}")
                    item = self._error(rid, "RELAY", refused)
                else:
                    try:
                        result = forwarded(ns, [op, request_args])
                        if type(result) is Later or type(result) is CoroutineType:
                            if waiting is None:
                                waiting = []
                            waiting.append((len(items), rid, result))
                            items.append(None)
                            continue
                        # Past the limit, a read's frame is made when its part is.
                        item = self._ok(rid, result) if size <= limit else (rid, result)
                    except CommandError as exc:
                        item = self._error(rid, "RELAY", exc)
                    except Exception as exc:  # a bug (or a value msgpack cannot encode)
                        bug = CommandError(ErrorCode.INTERNAL, type(exc).__name__)
                        item = self._error(rid, "RELAY", bug)
            if type(item) is bytes:
                size += len(item)
            items.append(item)
        if waiting is None:
            # No None left: none waits.
            return RelayAnswer(items, size)  # type: ignore[arg-type]
        return self._relayed_later(items, waiting)

    async def _relayed_later(
        self, items: list[bytes | tuple[int, Any] | None], waiting: list[tuple[int, int, Any]]
    ) -> RelayAnswer:
        """The answer of a ``RELAY`` some of whose reads wait (a read-through load)."""
        for index, rid, result in waiting:
            try:
                items[index] = (rid, await (result.wait() if type(result) is Later else result))
            except CommandError as exc:
                items[index] = self._error(rid, "RELAY", exc)
            except Exception as exc:  # a bug
                bug = CommandError(ErrorCode.INTERNAL, type(exc).__name__)
                items[index] = self._error(rid, "RELAY", bug)
        return RelayAnswer(items)  # type: ignore[arg-type]  # every one answered now

    def _relay_answer(self, rid: int, answer: RelayAnswer) -> bytes | Parts:
        """The response frames (headers included) of a ``RELAY``'s answer: one frame's bytes,
        or :class:`Parts` when it takes more, each made once the one before it was written."""
        if answer.size <= self._answer_bytes:  # every frame made, and one frame holds them
            body: bytes = self._pack([rid, STATUS_OK, answer.items, self.ring_version])
            return _pack_header(len(body)) + body
        bodies = answer.parts(
            rid, self.ring_version, self._pack, self._relay_frame, self._answer_bytes
        )
        first = next(bodies)
        second = next(bodies, None)
        if second is None:
            return _pack_header(len(first)) + first
        return Parts(_pack_header(len(first)) + first, _framed(second, bodies))

    def _relay_frame(self, rid: int, value: Any) -> bytes:
        """A relayed read's response frame (an error frame for a value msgpack cannot encode)."""
        try:
            return self._ok(rid, value)
        except Exception as exc:  # a bug: a value msgpack cannot encode
            return self._error(rid, "RELAY", CommandError(ErrorCode.INTERNAL, type(exc).__name__))

    def _count_refused(self, frame: bytes) -> None:
        """An owner's error frame for a relayed request, counted as :meth:`_error` counts."""
        try:
            code = _unpackb(frame[HEADER.size :], raw=False, strict_map_key=False)[2][0]
            ErrorCode(code)
        except Exception:
            return  # not an error frame after all, or a code this node does not know
        self.counters.errors[code] += 1
        if code not in _DATA_REFUSALS:
            self.counters.bad_input[_BAD_KIND[ErrorCode(code)]] += 1

    def _timed(self, histogram: list[int], started: int, answer: _A) -> _A:
        """``answer``, once the request that started at ``started`` is counted as done."""
        now = _clock_ns()
        if now >= self._latency.rotate_at:
            self._latency.rotate(now)
        took = now - started
        histogram[(took * took).bit_length()] += 1
        return answer

    def _ok(self, rid: int, result: Any, hints: dict[str, Any] | None = None) -> bytes:
        if hints is None:
            body: bytes = self._pack([rid, STATUS_OK, result, self.ring_version])
        else:
            body = self._pack([rid, STATUS_OK, result, self.ring_version, hints])
        return HEADER.pack(len(body)) + body

    def _error(self, rid: int, op: str, exc: CommandError) -> bytes:
        code = str(exc.code)
        self.counters.errors[code] += 1
        if exc.code not in _DATA_REFUSALS:
            # Refusals caused by the request itself, as opposed to by the data it met.
            self.counters.bad_input[_BAD_KIND.get(exc.code, code.lower())] += 1
        self.counters.requests[op] += 1
        body: bytes = self._pack([rid, STATUS_ERROR, [code, exc.message], self.ring_version])
        return HEADER.pack(len(body)) + body

    def _bad_frame(self, body: bytes) -> bytes:
        """The slow path for a body that is not a well-formed request: say exactly why.

        The answer carries the request's id whenever one can be read (an array whose first
        item is an int, an id out of range included), so a pipelining client can match it;
        id 0 only when there is none (the body is not msgpack, or has no int id).
        """
        try:
            request = decode_request(body)
        except CommandError as exc:
            rid = getattr(exc, "request_id", 0)
            return self._error(rid, "invalid", exc)
        except Exception as exc:
            self.counters.bad_input["malformed_msgpack"] += 1
            self.counters.errors[ErrorCode.BAD_REQUEST.value] += 1
            message = f"malformed frame: {exc}"[:200]
            out: bytes = self._pack(
                [0, STATUS_ERROR, [ErrorCode.BAD_REQUEST.value, message], self.ring_version]
            )
            return HEADER.pack(len(out)) + out
        # decode_request accepted what the fast path refused: still a bad request, but its id
        # is known.
        return self._error(
            request.id, "invalid", CommandError(ErrorCode.BAD_REQUEST, "malformed request")
        )

    def frame_too_large(self, message: str, request_id: int = 0) -> bytes:
        """The answer to a frame over the size limit (``request_id``: the id read from its
        head, 0 when none could be); the connection ends after it."""
        self.counters.bad_input["frame_too_large"] += 1
        self.counters.errors[ErrorCode.TOO_LARGE.value] += 1
        body: bytes = self._pack(
            [request_id, STATUS_ERROR, [ErrorCode.TOO_LARGE.value, message], self.ring_version]
        )
        return HEADER.pack(len(body)) + body
