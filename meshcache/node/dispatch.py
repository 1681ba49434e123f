"""Turn one request frame body into one response frame: the node's sans-I/O request path.

:class:`Dispatcher` knows nothing about sockets. The data port feeds it frame bodies and writes
back the bytes it returns, so everything about decoding, checking, executing and answering a
request — including every kind of bad input — can be tested without a network.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from types import CoroutineType
from typing import Any

import msgpack

from meshcache.errors import CommandError, ErrorCode
from meshcache.node.metrics import NodeCounters
from meshcache.wire.frame import HEADER, STATUS_ERROR, STATUS_OK, decode_request
from meshcache.wire.ops import OPS, Limits, OpKind, normalize_args

STORE_META = frozenset({"DBSIZE", "FLUSH"})

# Bad input is counted under the snake_case of its error code, plus a few framing-level kinds.
_BAD_KIND = {code: code.value.lower() for code in ErrorCode}

# Answered by the node itself rather than by the store (every op of kind META but the
# store's DBSIZE and FLUSH).
NODE_OPS = frozenset(
    name for name, spec in OPS.items() if spec.kind is OpKind.META and name not in STORE_META
)

Executor = Callable[[str, str, list[Any]], Any]

# Bound once: the hot path pays for no module attribute lookups.
_unpackb = msgpack.unpackb
_pack_header = HEADER.pack


class Dispatcher:
    """Decodes, checks and executes requests; never raises for anything a client sends.

    Args:
        execute: runs a data op: ``execute(namespace, op, normalized_args) -> result``; raises
            :class:`CommandError` to refuse.
        meta: answers node-level ops (``PING``, ``INFO``) the same way.
        limits: key, value and argument-count limits checked before ``execute`` runs.
        counters: where requests, errors and bad input are counted.

    ``ring_version`` is the ring version every response carries; the node assigns it when the
    ring changes (a plain attribute, so the hot path does not pay for a call).
    """

    __slots__ = ("_execute", "_limits", "_meta", "_pack", "counters", "ring_version")

    def __init__(
        self,
        *,
        execute: Executor,
        meta: Executor,
        limits: Limits,
        counters: NodeCounters,
        ring_version: int = 0,
    ) -> None:
        self._execute = execute
        self._meta = meta
        self._limits = limits
        self.counters = counters
        self.ring_version = ring_version
        self._pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack

    def handle(self, body: bytes) -> bytes | Coroutine[Any, Any, bytes]:
        """Answer one frame body with one complete response frame (header included).

        Node ops that must wait (a config change going through Raft) return a coroutine that
        produces the frame; the caller awaits it before answering the next request, so answers
        stay in request order.
        """
        try:
            rid, op, ns, args = _unpackb(body, raw=False, strict_map_key=False)
            if type(rid) is not int or type(op) is not str or type(ns) is not str:
                raise ValueError
        except Exception:
            return self._bad_frame(body)
        spec = OPS.get(op)
        try:
            if spec is None:
                raise CommandError(ErrorCode.UNKNOWN_OP, f"unknown op {op[:64]!r}")
            args = normalize_args(spec, args, self._limits)
            result = self._meta(ns, op, args) if op in NODE_OPS else self._execute(ns, op, args)
            if type(result) is CoroutineType:
                return self._finish(rid, op, result)
            out: bytes = self._pack([rid, STATUS_OK, result, self.ring_version])
        except CommandError as exc:
            return self._error(rid, op if spec else "unknown", exc)
        except Exception as exc:  # a bug in the node (or a result msgpack cannot encode)
            return self._error(rid, op, CommandError(ErrorCode.INTERNAL, type(exc).__name__))
        self.counters.requests[op] += 1
        return _pack_header(len(out)) + out

    async def _finish(self, rid: int, op: str, pending: Coroutine[Any, Any, Any]) -> bytes:
        try:
            out = self._ok(rid, await pending)
        except CommandError as exc:
            return self._error(rid, op, exc)
        except Exception as exc:  # a bug in the node (or a result msgpack cannot encode)
            return self._error(rid, op, CommandError(ErrorCode.INTERNAL, type(exc).__name__))
        self.counters.requests[op] += 1
        return out

    def _ok(self, rid: int, result: Any) -> bytes:
        body: bytes = self._pack([rid, STATUS_OK, result, self.ring_version])
        return HEADER.pack(len(body)) + body

    def _error(self, rid: int, op: str, exc: CommandError) -> bytes:
        code = str(exc.code)
        self.counters.errors[code] += 1
        if exc.code not in (ErrorCode.WRONGTYPE, ErrorCode.OUT_OF_MEMORY, ErrorCode.NOT_INTEGER):
            # Refusals caused by the request itself, as opposed to by the data it met.
            self.counters.bad_input[_BAD_KIND.get(exc.code, code.lower())] += 1
        self.counters.requests[op] += 1
        body: bytes = self._pack([rid, STATUS_ERROR, [code, exc.message], self.ring_version])
        return HEADER.pack(len(body)) + body

    def _bad_frame(self, body: bytes) -> bytes:
        """The slow path for a body that is not a well-formed request: say exactly why."""
        try:
            decode_request(body)
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
        # decode_request accepted what the fast path refused (e.g. a 4-element tuple-ish edge).
        return self._error(0, "invalid", CommandError(ErrorCode.BAD_REQUEST, "malformed request"))

    def frame_too_large(self, message: str) -> bytes:
        """The answer sent before closing a connection whose framing is lost."""
        self.counters.bad_input["frame_too_large"] += 1
        self.counters.errors[ErrorCode.TOO_LARGE.value] += 1
        body: bytes = self._pack(
            [0, STATUS_ERROR, [ErrorCode.TOO_LARGE.value, message], self.ring_version]
        )
        return HEADER.pack(len(body)) + body
