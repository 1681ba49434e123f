"""Every client method, written once: what it sends and how its result is shaped.

:class:`Commands` holds one *builder* per method. A builder checks its arguments and returns a
:class:`~meshcache.client.core.Command`; the :func:`command` descriptor turns it into a method
whose call hands that command to the object's ``_execute``. What ``_execute`` does depends on the
front end, and the descriptor's overloads tell type checkers what the method returns there:

* :class:`SyncExecutor` (``meshcache.Client``): ``_execute`` sends and returns the result,
  so ``client.get(k)`` is ``bytes | None``;
* :class:`AsyncExecutor` (``TrioClient``, ``AsyncClient``): ``_execute`` is a coroutine,
  so ``await client.get(k)`` is ``bytes | None``;
* :class:`CommandQueue` (pipelines): ``_execute`` queues the command and returns the pipeline,
  so calls chain: ``pipe.set(k, v).get(k)``.

Keys, values, fields and members may be ``str`` (sent as UTF-8) or bytes-like. Stored data comes
back as ``bytes``, or as ``str`` from a client made with ``decode_responses=True`` (the
annotations show ``bytes``; read them as ``str`` for such a client).
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Self,
    TypeAlias,
    TypeVar,
    overload,
)

from meshcache.client import results
from meshcache.client.core import Command
from meshcache.errors import RemoteProtocolError

T = TypeVar("T")
P = ParamSpec("P")
Q = TypeVar("Q", bound="CommandQueue")

#: A key, value, field or member as callers may pass it; str is encoded as UTF-8.
Binary: TypeAlias = str | bytes | bytearray | memoryview

DEFAULT_NAMESPACE = "default"


class SyncExecutor:
    """Base of front ends whose methods block and return the result."""

    def _execute(self, command: Command[T]) -> T:
        raise NotImplementedError


class AsyncExecutor:
    """Base of front ends whose methods return an awaitable of the result."""

    async def _execute(self, command: Command[T]) -> T:
        raise NotImplementedError


class CommandQueue:
    """Base of pipelines: methods queue their command and return the pipeline."""

    def _execute(self, command: Command[Any]) -> Self:
        raise NotImplementedError


if TYPE_CHECKING:

    class command(Generic[P, T]):  # lower case: used as a decorator
        """Decorator turning a builder ``(self, *args) -> Command[T]`` into a client method.

        This class is what type checkers see: its ``__get__`` overloads say what the method
        returns on each kind of front end. At run time ``command`` is the function below.
        """

        def __init__(self, build: Callable[Concatenate[Any, P], Command[T]]) -> None: ...

        @overload
        def __get__(self, obj: None, owner: type[Any]) -> command[P, T]: ...
        @overload
        def __get__(self, obj: SyncExecutor, owner: type[Any]) -> Callable[P, T]: ...
        @overload
        def __get__(self, obj: AsyncExecutor, owner: type[Any]) -> Callable[P, Awaitable[T]]: ...
        @overload
        def __get__(self, obj: Q, owner: type[Any]) -> Callable[P, Q]: ...
        def __get__(self, obj: Any, owner: type[Any]) -> Any: ...

else:

    def command(build):  # lower case: used as a decorator
        """Decorator turning a builder ``(self, *args) -> Command[T]`` into a client method.

        The method is a plain function, so Python binds it the way it binds any method (no
        descriptor call and no closure per ``client.get``): it builds the command and hands it
        to ``self._execute``. Its name, docstring and signature (what help() and IDEs show) are
        the builder's.
        """

        def method(self, /, *args, **kwargs):
            return self._execute(build(self, *args, **kwargs))

        signature = inspect.signature(build)
        method.__name__ = build.__name__
        method.__qualname__ = build.__qualname__
        method.__doc__ = build.__doc__
        method.__module__ = build.__module__
        method.__signature__ = signature.replace(return_annotation=inspect.Signature.empty)
        return method


def _keys(keys: Binary | Iterable[Binary], more: tuple[Binary, ...]) -> list[Any]:
    if isinstance(keys, str | bytes | bytearray | memoryview):
        return [keys, *more]
    return [*keys, *more]


def _float_text(value: Any) -> float:
    """INCRBYFLOAT's answer: the decimal text the node stored, as a float."""
    return float(results.binary(value))


def _options(**options: Any) -> dict[str, Any]:
    # Only options that differ from the node's defaults go on the wire.
    return {
        name: value for name, value in options.items() if value is not None and value is not False
    }


class Commands:
    """The data-port ops as methods. See docs/protocol.md for their exact semantics.

    Every method about keys takes ``namespace`` as a keyword argument; when it is not given, the
    client's namespace is used (``Client(..., namespace="sessions")``; ``"default"`` unless
    given). Errors the node reports are raised as the :class:`~meshcache.errors.CommandError`
    subclass for their code; arguments of the wrong type raise
    :class:`~meshcache.errors.BadRequestError` before anything is sent.
    """

    #: The namespace of calls that name none.
    _namespace: str = DEFAULT_NAMESPACE
    #: The decoders of stored data: :data:`results.BINARY` (bytes) or :data:`results.TEXT` (str).
    _decoders: results.Decoders = results.BINARY

    # -- node and namespace ---------------------------------------------------------------------

    @command
    def ping(self) -> Command[bool]:
        """True when the node answers PONG."""
        return Command.build("PING", [], DEFAULT_NAMESPACE, results.pong)

    @command
    def info(self) -> Command[dict[str, Any]]:
        """The node's INFO map (version, node_id, uptime_s, namespaces, connections)."""
        return Command.build("INFO", [], DEFAULT_NAMESPACE, results.str_map)

    @command
    def members(self) -> Command[list[dict[str, Any]]]:
        """The node's gossip view: one map per member (name, address, state, incarnation, ...)."""
        return Command.build("MEMBERS", [], DEFAULT_NAMESPACE, results.map_list)

    @command
    def config(self) -> Command[dict[str, Any]]:
        """The cluster config the node holds: version, ring members, namespace policies."""
        return Command.build("CONFIG_GET", [], DEFAULT_NAMESPACE, results.str_map)

    @command
    def config_propose(self, command: Mapping[str, Any]) -> Command[dict[str, Any]]:
        """Commit a raw compare-and-set config command; the committed config comes back."""
        return Command.build("CONFIG_PROPOSE", [dict(command)], DEFAULT_NAMESPACE, results.str_map)

    @command
    def ns_list(self) -> Command[dict[str, Any]]:
        """Every namespace with its policy."""
        return Command.build("NS_LIST", [], DEFAULT_NAMESPACE, results.str_map)

    @command
    def ns_set(self, name: str, fields: Mapping[str, Any]) -> Command[dict[str, Any]]:
        """Create namespace ``name`` or change the given policy fields; the committed policy.

        ``fields`` are policy fields: eviction, max_bytes, max_items, default_ttl, replicas
        (None clears an optional bound).
        """
        return Command.build("NS_SET", [name, dict(fields)], DEFAULT_NAMESPACE, results.str_map)

    @command
    def ns_drop(self, name: str) -> Command[bool]:
        """Delete namespace ``name`` cluster-wide."""
        return Command.build("NS_DROP", [name], DEFAULT_NAMESPACE, results.boolean)

    @command
    def ring(self) -> Command[dict[str, Any]]:
        """The committed ring: version and members with their share of the key space."""
        return Command.build("RING", [], DEFAULT_NAMESPACE, results.str_map)

    @command
    def raft_status(self) -> Command[dict[str, Any]]:
        """The config plane's Raft status, from this node if a voter, else from a voter."""
        return Command.build("RAFT_STATUS", [], DEFAULT_NAMESPACE, results.str_map)

    @command
    def raft_add(self, address: str) -> Command[dict[str, Any]]:
        """Add a voter by Raft address (host:port)."""
        return Command.build("RAFT_ADD", [address], DEFAULT_NAMESPACE, results.str_map)

    @command
    def raft_remove(self, address: str) -> Command[dict[str, Any]]:
        """Remove a voter by Raft address (host:port)."""
        return Command.build("RAFT_REMOVE", [address], DEFAULT_NAMESPACE, results.str_map)

    @command
    def dbsize(self, *, namespace: str | None = None) -> Command[int]:
        """How many live keys the namespace holds on the node."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("DBSIZE", [], ns, results.integer)

    @command
    def scan(
        self,
        cursor: int = 0,
        *,
        match: Binary | None = None,
        count: int | None = None,
        type: str | None = None,
        namespace: str | None = None,
    ) -> Command[tuple[int, list[bytes]]]:
        """One step of a walk over the namespace's keys on every member of the mesh: the next
        cursor (0 when the walk is over) and some keys. Start at 0 and pass each step's cursor
        to the next; a key held throughout comes back at least once (docs/protocol.md).
        ``match`` is a Redis glob, ``count`` a hint of how many keys a step gives, ``type``
        one of ``string``, ``list``, ``set``, ``zset``, ``hash``."""
        ns = self._namespace if namespace is None else namespace
        options: dict[str, Any] = {}
        if match is not None:
            options["match"] = match if isinstance(match, str | bytes) else bytes(match)
        if count is not None:
            options["count"] = count
        if type is not None:
            options["type"] = type
        keys = self._decoders.value_list

        def step(value: Any) -> tuple[int, list[bytes]]:
            if builtins.type(value) is not list or len(value) != 2:
                got = f"{value!r}"[:200]
                raise RemoteProtocolError(f"expected [cursor, keys] from the node, got {got}")
            return results.integer(value[0]), keys(value[1])

        return Command.build("SCAN", [cursor, options], ns, step)

    @command
    def flush(self, *, namespace: str | None = None) -> Command[bool]:
        """Delete every key of the namespace; True."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("FLUSH", [], ns, results.boolean)

    # -- plain values ---------------------------------------------------------------------------

    @command
    def get(self, key: Binary, *, namespace: str | None = None) -> Command[bytes | None]:
        """The value, or None when the key is missing or expired."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("GET", [key], ns, self._decoders.optional_value)

    @command
    def set(
        self,
        key: Binary,
        value: Binary,
        ttl: float | None = None,
        *,
        nx: bool = False,
        xx: bool = False,
        get: bool = False,
        keepttl: bool = False,
        consistency: str | None = None,
        namespace: str | None = None,
    ) -> Command[Any]:
        """Store ``value`` under ``key``, expiring after ``ttl`` seconds when given.

        ``nx``: only if the key is absent; ``xx``: only if present; ``keepttl``: keep the current
        expiry. ``consistency`` (``"one"``, ``"quorum"`` or ``"all"``): how many of the key's
        owners must apply the write before it is acknowledged, instead of the namespace's level
        (a write that misses it raises :class:`~meshcache.errors.WriteFailedError`). Returns True
        when stored and False when an ``nx``/``xx`` condition failed; with ``get=True`` returns
        the old value (bytes or None) instead.
        """
        ns = self._namespace if namespace is None else namespace
        decode = self._decoders.set_result
        if (
            ttl is None
            and nx is False
            and xx is False
            and get is False
            and keepttl is False
            and consistency is None
        ):
            # No options: normalize_args appends the empty map itself, on its fast path.
            return Command.build("SET", [key, value], ns, decode)
        options = _options(ttl=ttl, nx=nx, xx=xx, get=get, keepttl=keepttl, consistency=consistency)
        return Command.build("SET", [key, value, options], ns, decode)

    @command
    def delete(self, *keys: Binary, namespace: str | None = None) -> Command[int]:
        """Delete the keys; return how many existed."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("DELETE", list(keys), ns, results.integer)

    @command
    def exists(self, *keys: Binary, namespace: str | None = None) -> Command[int]:
        """How many of the keys exist (a key named twice counts twice)."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("EXISTS", list(keys), ns, results.integer)

    @command
    def expire(
        self,
        key: Binary,
        seconds: float,
        *,
        nx: bool = False,
        xx: bool = False,
        gt: bool = False,
        lt: bool = False,
        namespace: str | None = None,
    ) -> Command[bool]:
        """Make the key expire in ``seconds`` (<= 0 deletes it); False when it is missing or a
        condition fails: ``nx`` only if it has no expiry, ``xx`` only if it has one, ``gt``
        only if the new expiry is later, ``lt`` only if it is sooner (no expiry is never)."""
        ns = self._namespace if namespace is None else namespace
        options = _options(nx=nx, xx=xx, gt=gt, lt=lt)
        return Command.build("EXPIRE", [key, seconds, options], ns, results.boolean)

    @command
    def persist(self, key: Binary, *, namespace: str | None = None) -> Command[bool]:
        """Remove the key's expiry; True if it had one."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("PERSIST", [key], ns, results.boolean)

    @command
    def ttl(self, key: Binary, *, namespace: str | None = None) -> Command[float]:
        """Seconds left; -1.0 when the key has no expiry, -2.0 when it is missing."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("TTL", [key], ns, results.number)

    @command
    def incr(self, key: Binary, amount: int = 1, *, namespace: str | None = None) -> Command[int]:
        """Add ``amount`` to the integer stored at ``key`` (missing counts as 0); the new value."""
        ns = self._namespace if namespace is None else namespace
        if amount == 1 and type(amount) is int:
            return Command.build("INCR", [key], ns, results.integer)
        return Command.build("INCRBY", [key, amount], ns, results.integer)

    @command
    def decr(self, key: Binary, amount: int = 1, *, namespace: str | None = None) -> Command[int]:
        """Subtract ``amount`` from the integer stored at ``key``; the new value."""
        ns = self._namespace if namespace is None else namespace
        if amount == 1 and type(amount) is int:
            return Command.build("DECR", [key], ns, results.integer)
        return Command.build("DECRBY", [key, amount], ns, results.integer)

    @command
    def mget(
        self,
        keys: Binary | Iterable[Binary],
        *more: Binary,
        namespace: str | None = None,
    ) -> Command[list[bytes | None]]:
        """The values of the keys in order, None for missing ones (or typed values).

        Keys as an iterable, ``mget(["a", "b"])``, or as arguments, ``mget("a", "b")``.
        """
        ns = self._namespace if namespace is None else namespace
        return Command.build("MGET", _keys(keys, more), ns, self._decoders.optional_value_list)

    @command
    def mset(
        self, mapping: Mapping[Binary, Binary], *, namespace: str | None = None
    ) -> Command[bool]:
        """Set every key of ``mapping`` to its value; True."""
        ns = self._namespace if namespace is None else namespace
        args = [item for pair in mapping.items() for item in pair]
        return Command.build("MSET", args, ns, results.boolean)

    @command
    def gets(
        self, key: Binary, *, namespace: str | None = None
    ) -> Command[tuple[bytes, int] | None]:
        """``(value, version)`` for :meth:`cas`, or None when the key is missing."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("GETS", [key], ns, self._decoders.versioned)

    @command
    def cas(
        self,
        key: Binary,
        value: Binary,
        version: int,
        ttl: float | None = None,
        *,
        namespace: str | None = None,
    ) -> Command[bool]:
        """Replace the value only if the key's version is still ``version`` (from :meth:`gets`).

        Returns True when replaced, False when the key is gone or was written since.
        """
        ns = self._namespace if namespace is None else namespace
        options = _options(ttl=ttl)
        return Command.build("CAS", [key, version, value, options], ns, results.boolean)

    @command
    def getdel(self, key: Binary, *, namespace: str | None = None) -> Command[bytes | None]:
        """Delete the key and return the value it held, or None when it was missing."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("GETDEL", [key], ns, self._decoders.optional_value)

    @command
    def append(self, key: Binary, value: Binary, *, namespace: str | None = None) -> Command[int]:
        """Append ``value`` to the key's value (a missing key starts empty); the new length."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("APPEND", [key, value], ns, results.integer)

    @command
    def strlen(self, key: Binary, *, namespace: str | None = None) -> Command[int]:
        """The length of the key's value in bytes (0 when missing)."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("STRLEN", [key], ns, results.integer)

    @command
    def incrbyfloat(
        self, key: Binary, amount: float, *, namespace: str | None = None
    ) -> Command[float]:
        """Add ``amount`` to the decimal number stored at ``key`` (missing counts as 0); the new
        value. The node stores it as decimal text, printed as Redis prints it."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("INCRBYFLOAT", [key, amount], ns, _float_text)

    @command
    def type(self, key: Binary, *, namespace: str | None = None) -> Command[str]:
        """``none``, ``string``, ``hash``, ``list``, ``set`` or ``zset``."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("TYPE", [key], ns, results.name)

    # -- hashes ---------------------------------------------------------------------------------

    @command
    def hset(
        self,
        key: Binary,
        field: Binary | Mapping[Binary, Binary] | None = None,
        value: Binary | None = None,
        *,
        mapping: Mapping[Binary, Binary] | None = None,
        namespace: str | None = None,
    ) -> Command[int]:
        """Set one field (``hset(k, f, v)``), many (``hset(k, mapping={f: v, ...})``, or
        ``hset(k, {f: v, ...})``), or both at once; how many fields were new."""
        ns = self._namespace if namespace is None else namespace
        args: list[Any] = [key]
        if isinstance(field, Mapping):
            args += (item for pair in field.items() for item in pair)
        elif field is not None or value is not None:
            args += (field, value)
        if mapping is not None:
            args += (item for pair in mapping.items() for item in pair)
        return Command.build("HSET", args, ns, results.integer)

    @command
    def hget(
        self, key: Binary, field: Binary, *, namespace: str | None = None
    ) -> Command[bytes | None]:
        """The field's value, or None."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("HGET", [key, field], ns, self._decoders.optional_value)

    @command
    def hdel(self, key: Binary, *fields: Binary, namespace: str | None = None) -> Command[int]:
        """Remove the fields; how many existed."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("HDEL", [key, *fields], ns, results.integer)

    @command
    def hgetall(self, key: Binary, *, namespace: str | None = None) -> Command[dict[bytes, bytes]]:
        """Every field and value (empty when the key is missing)."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("HGETALL", [key], ns, self._decoders.value_map)

    @command
    def hincrby(
        self, key: Binary, field: Binary, amount: int = 1, *, namespace: str | None = None
    ) -> Command[int]:
        """Add ``amount`` to the integer in the field; the new value."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("HINCRBY", [key, field, amount], ns, results.integer)

    @command
    def hlen(self, key: Binary, *, namespace: str | None = None) -> Command[int]:
        """How many fields the hash has."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("HLEN", [key], ns, results.integer)

    # -- lists ----------------------------------------------------------------------------------

    @command
    def lpush(self, key: Binary, *values: Binary, namespace: str | None = None) -> Command[int]:
        """Push each value in turn to the head; the new length."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("LPUSH", [key, *values], ns, results.integer)

    @command
    def rpush(self, key: Binary, *values: Binary, namespace: str | None = None) -> Command[int]:
        """Append the values to the tail; the new length."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("RPUSH", [key, *values], ns, results.integer)

    @command
    def lpop(
        self, key: Binary, count: int | None = None, *, namespace: str | None = None
    ) -> Command[Any]:
        """Remove and return the head, or None when the list is empty; with ``count``, a list
        of up to that many elements (None when the list is missing)."""
        return self._pop("LPOP", key, count, namespace)

    @command
    def rpop(
        self, key: Binary, count: int | None = None, *, namespace: str | None = None
    ) -> Command[Any]:
        """Remove and return the tail, or None when the list is empty; with ``count``, a list
        of up to that many elements from the tail (None when the list is missing)."""
        return self._pop("RPOP", key, count, namespace)

    def _pop(self, op: str, key: Binary, count: int | None, namespace: str | None) -> Command[Any]:
        ns = self._namespace if namespace is None else namespace
        if count is None:
            return Command.build(op, [key], ns, self._decoders.optional_value)
        value_list = self._decoders.value_list
        return Command.build(
            op, [key, {"count": count}], ns, lambda v: None if v is None else value_list(v)
        )

    @command
    def lrange(
        self, key: Binary, start: int, stop: int, *, namespace: str | None = None
    ) -> Command[list[bytes]]:
        """Elements ``start..stop`` inclusive; negative indexes count from the end."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("LRANGE", [key, start, stop], ns, self._decoders.value_list)

    @command
    def llen(self, key: Binary, *, namespace: str | None = None) -> Command[int]:
        """The list's length."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("LLEN", [key], ns, results.integer)

    # -- sets -----------------------------------------------------------------------------------

    @command
    def sadd(self, key: Binary, *members: Binary, namespace: str | None = None) -> Command[int]:
        """Add the members; how many were new."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("SADD", [key, *members], ns, results.integer)

    @command
    def srem(self, key: Binary, *members: Binary, namespace: str | None = None) -> Command[int]:
        """Remove the members; how many were there."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("SREM", [key, *members], ns, results.integer)

    @command
    def sismember(
        self, key: Binary, member: Binary, *, namespace: str | None = None
    ) -> Command[bool]:
        """Whether ``member`` is in the set."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("SISMEMBER", [key, member], ns, results.boolean)

    @command
    def smembers(
        self, key: Binary, *, namespace: str | None = None
    ) -> Command[builtins.set[bytes]]:
        """Every member (an empty set when the key is missing)."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("SMEMBERS", [key], ns, self._decoders.value_set)

    @command
    def spop(
        self, key: Binary, count: int | None = None, *, namespace: str | None = None
    ) -> Command[Any]:
        """Remove and return a random member (None when the set is missing); with ``count``, a
        list of up to that many."""
        ns = self._namespace if namespace is None else namespace
        if count is None:
            return Command.build("SPOP", [key], ns, self._decoders.optional_value)
        return Command.build("SPOP", [key, {"count": count}], ns, self._decoders.value_list)

    @command
    def scard(self, key: Binary, *, namespace: str | None = None) -> Command[int]:
        """How many members the set has."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("SCARD", [key], ns, results.integer)

    # -- sorted sets ----------------------------------------------------------------------------

    @command
    def zadd(
        self,
        key: Binary,
        mapping: Mapping[Binary, float],
        *,
        nx: bool = False,
        xx: bool = False,
        gt: bool = False,
        lt: bool = False,
        ch: bool = False,
        namespace: str | None = None,
    ) -> Command[int]:
        """Give each member of ``mapping`` its score; how many members were new (with ``ch``:
        new or given another score).

        ``nx``: only add new members; ``xx``: only update members that exist (a missing key
        stays missing); ``gt``/``lt``: update a member only to a greater / lower score (new
        members are still added). ``nx`` excludes ``xx``, ``gt`` and ``lt``; ``gt`` excludes
        ``lt`` (``BadRequestError``).
        """
        ns = self._namespace if namespace is None else namespace
        args: list[Any] = [key]
        for member, score in mapping.items():
            args += (score, member)
        options = _options(nx=nx, xx=xx, gt=gt, lt=lt, ch=ch)
        if options:
            args.append(options)
        return Command.build("ZADD", args, ns, results.integer)

    @command
    def zadd_incr(
        self,
        key: Binary,
        amount: float,
        member: Binary,
        *,
        nx: bool = False,
        xx: bool = False,
        gt: bool = False,
        lt: bool = False,
        namespace: str | None = None,
    ) -> Command[float | None]:
        """Add ``amount`` to the member's score under ZADD's conditions (Redis's ``ZADD ...
        INCR``); the new score, or None when a condition stopped it (``nx`` and the member
        exists, ``xx`` and it does not, ``gt``/``lt`` and the new score is not greater / lower).
        """
        ns = self._namespace if namespace is None else namespace
        options = _options(nx=nx, xx=xx, gt=gt, lt=lt, incr=True)
        return Command.build("ZADD", [key, amount, member, options], ns, results.optional_number)

    @command
    def zrem(self, key: Binary, *members: Binary, namespace: str | None = None) -> Command[int]:
        """Remove the members; how many were there."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("ZREM", [key, *members], ns, results.integer)

    @command
    def zscore(
        self, key: Binary, member: Binary, *, namespace: str | None = None
    ) -> Command[float | None]:
        """The member's score, or None."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("ZSCORE", [key, member], ns, results.optional_number)

    @command
    def zincrby(
        self, key: Binary, amount: float, member: Binary, *, namespace: str | None = None
    ) -> Command[float]:
        """Add ``amount`` to the member's score (a new member starts at 0); the new score."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("ZINCRBY", [key, amount, member], ns, results.number)

    @command
    def zrange(
        self,
        key: Binary,
        start: int,
        stop: int,
        desc: bool = False,
        withscores: bool = False,
        *,
        namespace: str | None = None,
        rev: bool | None = None,
    ) -> Command[list[Any]]:
        """Members by rank ``start..stop`` inclusive (``desc``: from the highest score).

        A list of bytes; with ``withscores``, a list of ``(member, score)`` tuples. ``rev`` is
        the deprecated name of ``desc`` (the wire option is still called ``rev``).
        """
        ns = self._namespace if namespace is None else namespace
        if rev is not None:
            desc = desc or rev
        options = _options(withscores=withscores, rev=desc)
        decode = self._decoders.scored_pairs if withscores else self._decoders.value_list
        return Command.build("ZRANGE", [key, start, stop, options], ns, decode)

    @command
    def zrangebyscore(
        self,
        key: Binary,
        min: float,  # min/max shadow builtins: they are the Redis names
        max: float,
        offset: int | None = None,
        count: int | None = None,
        withscores: bool = False,
        *,
        namespace: str | None = None,
    ) -> Command[list[Any]]:
        """Members with ``min <= score <= max`` ascending, optionally paged by offset/count.

        A list of bytes; with ``withscores``, a list of ``(member, score)`` tuples.
        """
        ns = self._namespace if namespace is None else namespace
        options = _options(withscores=withscores, offset=offset, count=count)
        decode = self._decoders.scored_pairs if withscores else self._decoders.value_list
        return Command.build("ZRANGEBYSCORE", [key, min, max, options], ns, decode)

    @command
    def zrank(
        self, key: Binary, member: Binary, *, namespace: str | None = None
    ) -> Command[int | None]:
        """The member's 0-based rank by ascending score, or None."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("ZRANK", [key, member], ns, results.optional_integer)

    @command
    def zcard(self, key: Binary, *, namespace: str | None = None) -> Command[int]:
        """How many members the sorted set has."""
        ns = self._namespace if namespace is None else namespace
        return Command.build("ZCARD", [key], ns, results.integer)

    @command
    def zpopmin(
        self, key: Binary, count: int | None = None, *, namespace: str | None = None
    ) -> Command[list[Any]]:
        """Remove the ``count`` (default 1) lowest-scoring members; ``(member, score)`` tuples,
        lowest first."""
        return self._zpop("ZPOPMIN", key, count, namespace)

    @command
    def zpopmax(
        self, key: Binary, count: int | None = None, *, namespace: str | None = None
    ) -> Command[list[Any]]:
        """Remove the ``count`` (default 1) highest-scoring members; ``(member, score)`` tuples,
        highest first."""
        return self._zpop("ZPOPMAX", key, count, namespace)

    def _zpop(
        self, op: str, key: Binary, count: int | None, namespace: str | None
    ) -> Command[list[Any]]:
        ns = self._namespace if namespace is None else namespace
        options = _options(count=count)
        return Command.build(op, [key, options], ns, self._decoders.scored_pairs)


__all__ = [
    "DEFAULT_NAMESPACE",
    "AsyncExecutor",
    "Binary",
    "CommandQueue",
    "Commands",
    "SyncExecutor",
    "command",
]
