"""The op table: every request the data port understands, its arguments and its kind.

Each op has a *signature* in a tiny language that docs/protocol.md explains:

====  =====================================================================
k     a key: bin (or str, taken as UTF-8)
v     a value: bin (or str, taken as UTF-8)
m     a member or field of a typed value: bin (or str, taken as UTF-8)
s     text: str (or bin, taken as UTF-8)
d     a map with str keys
i     an integer (signed 64-bit); booleans are refused
u     an integer (unsigned 64-bit: 0 to 2**64-1, e.g. a version); booleans are refused
f     a number (integer or float, finite or ±inf); booleans are refused
l     an array (its items are checked by the op's handler)
a     any value (checked by the op's handler; node-to-node ops only)
o?    an optional trailing options map with str keys (only the keys the op names)
(..)+ the group repeats one or more times; a lone ``k+`` repeats one letter
====  =====================================================================

:func:`normalize_args` checks a request's arguments against its op and returns them with str
converted to bytes, or raises a :class:`~meshcache.errors.CommandError`. It is sans-I/O and shared
by the node and by anyone who wants to check a request before sending it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from meshcache.errors import BadRequestError, ErrorCode, TooLargeError, WrongArityError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


class OpKind(Enum):
    """What an op does to the data: routing, replication and retries depend on it."""

    READ = "read"
    WRITE = "write"
    META = "meta"  # about the node or the namespace, not one key


class Permission(Enum):
    """What a caller must be allowed to do to send an op."""

    READ = "read"  # read keys, or look at the node and the cluster
    WRITE = "write"  # change keys
    ADMIN = "admin"  # change the cluster: namespaces, the ring, Raft voters, draining, flushing
    PEER = "peer"  # node-to-node traffic: only other nodes of the cluster send these
    NONE = "none"  # anyone, before authenticating too: PING and AUTH itself


class Scope(Enum):
    """Whose keys an op reads or changes: what a user limited to some namespaces
    (``[users.NAME] namespaces``) may send (:mod:`meshcache.security.acl`)."""

    NAMESPACE = "namespace"  # the request's namespace: data ops, FLUSH, SCAN, DBSIZE
    NAMED = "named"  # the namespace its first argument names: NS_SET, NS_DROP
    EVERY = "every"  # keys or policies of every namespace at once: HOTKEYS, CONFIG_PROPOSE
    NODE = "node"  # the node or the cluster, no namespace's keys: PING, INFO, RING, ...

    # Node-to-node ops keep the default of their handler: no user holds ``peer``.


#: ``OpSpec.handler`` of the ops the data plane coordinates and the store executes.
DATA_HANDLER = "data"
#: ``OpSpec.handler`` of the ops that change the connection itself (``AUTH``): answered by the
#: connection's session in the dispatcher, never routed.
SESSION_HANDLER = "session"
#: ``OpSpec.handler`` of ``RELAY``, whose argument is request frames another node passes on:
#: answered by the dispatcher, a response frame for each (``meshcache.node.net.relay``).
RELAY_HANDLER = "relay"


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied while checking arguments (bytes)."""

    max_key_bytes: int = 16 * 1024
    max_value_bytes: int = 8 * 1024 * 1024
    max_args: int = 1_000_000


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One op: its name, signature, kind, whether a retry is safe, and the options it takes."""

    name: str
    signature: str
    kind: OpKind
    idempotent: bool
    options: frozenset[str] = frozenset()
    fixed: tuple[str, ...] = ()
    repeat: tuple[str, ...] = ()
    has_options: bool = False
    # For ops whose fixed arguments are all byte strings (GET, SET, HGET, ...): the size limit
    # that applies to each, so the common well-formed request is checked without the generic
    # walk. None when the op has other argument kinds or a repeated group.
    bytes_only: tuple[bool, ...] | None = None
    #: Who answers it on a node: :data:`DATA_HANDLER` (routed to the key's owners and run by
    #: the store), or the name of a method of the node's op routes
    #: (:class:`meshcache.node.routes.Routes`), called as ``method(namespace, args)``.
    handler: str = DATA_HANDLER
    permission: Permission = Permission.READ
    #: The op takes many keys (``MGET``, ``MSET``, ``DELETE``, ``EXISTS``): nodes and smart
    #: clients split it by owner.
    multi_key: bool = False
    #: Whose keys it reads or changes: a namespace-limited user may send an op of
    #: :attr:`Scope.NAMESPACE` or :attr:`Scope.NAMED` only for its namespaces, and never one of
    #: :attr:`Scope.EVERY`.
    scope: Scope = Scope.NODE

    @property
    def min_args(self) -> int:
        return len(self.fixed) + len(self.repeat)

    @property
    def max_args(self) -> int | None:
        if self.repeat:
            return None
        return len(self.fixed) + (1 if self.has_options else 0)

    @property
    def keyed(self) -> bool:
        """True when the first argument is the key the op acts on."""
        return (bool(self.fixed) and self.fixed[0] == "k") or self.repeat[:1] == ("k",)


def _parse_signature(sig: str) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    has_options = sig.endswith("o?")
    if has_options:
        sig = sig[:-2]
    repeat: tuple[str, ...] = ()
    if sig.endswith(")+"):
        start = sig.index("(")
        repeat = tuple(sig[start + 1 : -2])
        sig = sig[:start]
    elif sig.endswith("+"):
        repeat = (sig[-2],)
        sig = sig[:-2]
    return tuple(sig), repeat, has_options


def _op(
    name: str,
    signature: str,
    kind: OpKind,
    *,
    idempotent: bool | None = None,
    options: tuple[str, ...] = (),
    handler: str = DATA_HANDLER,
    permission: Permission | None = None,
    scope: Scope | None = None,
) -> OpSpec:
    fixed, repeat, has_options = _parse_signature(signature)
    if scope is None:
        scope = Scope.NAMESPACE if handler == DATA_HANDLER else Scope.NODE
    if permission is None:
        permission = Permission.WRITE if kind is OpKind.WRITE else Permission.READ
    return OpSpec(
        name=name,
        signature=signature,
        kind=kind,
        idempotent=kind is not OpKind.WRITE if idempotent is None else idempotent,
        options=frozenset(options),
        fixed=fixed,
        repeat=repeat,
        has_options=has_options,
        bytes_only=(
            tuple(letter == "k" for letter in fixed)
            if fixed and not repeat and set(fixed) <= {"k", "v", "m"}
            else None
        ),
        handler=handler,
        permission=permission,
        multi_key=not fixed and repeat[:1] == ("k",),
        scope=scope,
    )


R, W, M = OpKind.READ, OpKind.WRITE, OpKind.META
ADMIN, PEER = Permission.ADMIN, Permission.PEER
NAMESPACE, NAMED, EVERY = Scope.NAMESPACE, Scope.NAMED, Scope.EVERY

_SPECS = [
    # node and namespace
    _op("PING", "", M, handler="ping", permission=Permission.NONE),
    # who the connection is: a user (user, password) or a node of the cluster
    _op("AUTH", "ss", M, handler=SESSION_HANDLER, permission=Permission.NONE),
    _op("INFO", "", M, handler="info"),
    _op("DBSIZE", "o?", M, options=("owned", "mesh"), handler="dbsize", scope=NAMESPACE),
    # one step of a walk over the namespace's keys on every member, and a member's part of it
    _op("SCAN", "uo?", M, options=("count", "match", "type"), handler="scan", scope=NAMESPACE),
    _op("FLUSH", "", W, idempotent=True, permission=ADMIN),
    _op("MEMBERS", "", M, handler="members"),
    # node to node: one SWIM push/pull exchange (HMAC-signed payload in, reply payload out)
    _op("GOSSIP", "v", M, handler="gossip", permission=PEER),
    # the cluster config (meshcache/control): answered by any node
    _op("CONFIG_GET", "", M, handler="config_get"),
    _op(
        "CONFIG_PROPOSE",
        "d",
        M,
        idempotent=False,
        handler="config_propose",
        permission=ADMIN,
        scope=EVERY,
    ),
    _op("NS_LIST", "", M, handler="ns_list"),
    _op("NS_SET", "sd", M, idempotent=True, handler="ns_set", permission=ADMIN, scope=NAMED),
    _op("NS_DROP", "s", M, idempotent=True, handler="ns_drop", permission=ADMIN, scope=NAMED),
    _op("RING", "", M, handler="ring"),
    _op("RAFT_STATUS", "", M, handler="raft_status"),
    _op("RAFT_ADD", "s", M, idempotent=False, handler="raft_add", permission=ADMIN),
    _op("RAFT_REMOVE", "s", M, idempotent=False, handler="raft_remove", permission=ADMIN),
    # the data plane between nodes (docs/replication.md): a request forwarded by a node that
    # does not own its key, replica writes, range hand-off, anti-entropy, draining a node
    _op(
        "FWD",
        "slo?",
        M,
        idempotent=False,
        options=("version",),
        handler="forwarded",
        permission=PEER,
    ),
    _op("RELAY", "l", M, idempotent=True, handler=RELAY_HANDLER, permission=PEER),
    _op("REPL", "l", M, idempotent=True, handler="replicated", permission=PEER),
    _op("BULK", "l", M, idempotent=True, handler="bulk", permission=PEER),
    _op("RECORDS", "l", M, handler="records", permission=PEER),
    _op("CLOCK", "", M, handler="clock", permission=PEER),
    _op("HANDOFF", "a", M, idempotent=True, handler="handoff", permission=PEER),
    _op("AE_DIGEST", "a", M, handler="ae_digest", permission=PEER),
    _op("AE_KEYS", "a", M, handler="ae_keys", permission=PEER),
    _op("AE_PULL", "a", M, handler="ae_pull", permission=PEER),
    _op("AE_PUSH", "a", M, idempotent=True, handler="ae_push", permission=PEER),
    _op(
        "SCAN_PART",
        "io?",
        M,
        options=("count", "match", "type", "aim"),
        handler="scan_part",
        permission=PEER,
    ),
    # hot keys (docs/hotkeys.md): the owner's copies of a hot key on other nodes, and a look
    _op("HOT_PUSH", "sufl", M, idempotent=True, handler="hot_push", permission=PEER),
    _op("HOT_DROP", "sul", M, idempotent=True, handler="hot_drop", permission=PEER),
    _op("HOTKEYS", "", M, handler="hotkeys", scope=EVERY),
    _op("LEAVE", "o?", M, idempotent=True, options=("timeout",), handler="leave", permission=ADMIN),
    _op("JOIN", "o?", M, idempotent=True, options=("timeout",), handler="join", permission=ADMIN),
    # plain values
    _op("GET", "k", R),
    _op("GETS", "k", R),
    # a GET of a hot key by a client that wrote it: not from a copy older than the version
    _op("HOT_GET", "ku", R),
    _op(
        "SET",
        "kvo?",
        W,
        idempotent=True,
        options=("ttl", "nx", "xx", "get", "keepttl", "consistency"),
    ),
    _op("DELETE", "k+", W, idempotent=True),
    _op("EXISTS", "k+", R),
    _op("EXPIRE", "kfo?", W, idempotent=True, options=("nx", "xx", "gt", "lt")),
    _op("PERSIST", "k", W, idempotent=True),
    _op("TTL", "k", R),
    _op("INCR", "k", W),
    _op("DECR", "k", W),
    _op("INCRBY", "ki", W),
    _op("DECRBY", "ki", W),
    _op("MGET", "k+", R),
    _op("MSET", "(kv)+", W, idempotent=True),
    _op("CAS", "kuvo?", W, options=("ttl",)),
    _op("GETDEL", "k", W),
    _op("APPEND", "kv", W),
    _op("STRLEN", "k", R),
    _op("INCRBYFLOAT", "kf", W),
    _op("TYPE", "k", R),
    # hashes
    _op("HSET", "k(mv)+", W, idempotent=True),
    _op("HGET", "km", R),
    _op("HDEL", "km+", W, idempotent=True),
    _op("HGETALL", "k", R),
    _op("HINCRBY", "kmi", W),
    _op("HLEN", "k", R),
    # lists
    _op("LPUSH", "kv+", W),
    _op("RPUSH", "kv+", W),
    _op("LPOP", "ko?", W, options=("count",)),
    _op("RPOP", "ko?", W, options=("count",)),
    _op("LRANGE", "kii", R),
    _op("LLEN", "k", R),
    # sets
    _op("SADD", "km+", W, idempotent=True),
    _op("SREM", "km+", W, idempotent=True),
    _op("SISMEMBER", "km", R),
    _op("SMEMBERS", "k", R),
    _op("SCARD", "k", R),
    _op("SPOP", "ko?", W, options=("count",)),
    # sorted sets
    # not idempotent: with ``incr`` a repeat adds twice
    _op("ZADD", "k(fm)+o?", W, options=("nx", "xx", "gt", "lt", "ch", "incr")),
    _op("ZREM", "km+", W, idempotent=True),
    _op("ZSCORE", "km", R),
    _op("ZINCRBY", "kfm", W),
    _op("ZRANGE", "kiio?", R, options=("withscores", "rev")),
    _op("ZRANGEBYSCORE", "kffo?", R, options=("withscores", "offset", "count")),
    _op("ZRANK", "km", R),
    _op("ZCARD", "k", R),
    _op("ZPOPMIN", "ko?", W, options=("count",)),
    _op("ZPOPMAX", "ko?", W, options=("count",)),
]

OPS: dict[str, OpSpec] = {spec.name: spec for spec in _SPECS}

#: The reads a node may pass on to their key's owner as the client sent them (``RELAY``): the
#: data ops of one key that change nothing (``HOT_GET``, answered by the coordinator itself,
#: excepted).
RELAYABLE = frozenset(
    name
    for name, spec in OPS.items()
    if spec.handler == DATA_HANDLER
    and spec.kind is OpKind.READ
    and spec.keyed
    and not spec.multi_key
    and name != "HOT_GET"
)

_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "ttl": (int, float),
    "nx": (bool,),
    "xx": (bool,),
    "get": (bool,),
    "keepttl": (bool,),
    "gt": (bool,),
    "lt": (bool,),
    "ch": (bool,),
    "incr": (bool,),
    "withscores": (bool,),
    "rev": (bool,),
    "offset": (int,),
    "count": (int,),
    "timeout": (int, float),
    "consistency": (str,),
    "owned": (bool,),
    "mesh": (bool,),
    "match": (bytes, str),
    "type": (str,),
    "version": (int,),
    "aim": (int,),
}

#: Options that take one of a few values; any other is refused before the op runs.
_OPTION_VALUES: dict[str, frozenset[str]] = {
    "consistency": frozenset({"one", "quorum", "all"}),
}


def _as_bytes(value: Any, what: str, limit: int, op: str) -> bytes:
    if type(value) is bytes:
        data = value
    elif type(value) is str:
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    else:
        raise BadRequestError(message=f"{op}: {what} must be bin or str, not {_typename(value)}")
    if len(data) > limit:
        raise TooLargeError(message=f"{op}: {what} is {len(data)} bytes, the limit is {limit}")
    return data


def _typename(value: Any) -> str:
    return "nil" if value is None else type(value).__name__


def _check(letter: str, value: Any, op: str, limits: Limits) -> Any:
    if letter == "k":
        return _as_bytes(value, "key", limits.max_key_bytes, op)
    if letter == "v":
        return _as_bytes(value, "value", limits.max_value_bytes, op)
    if letter == "m":
        return _as_bytes(value, "member", limits.max_value_bytes, op)
    if letter == "s":
        if type(value) is str:
            return value
        if type(value) is bytes:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequestError(message=f"{op}: text is not UTF-8") from None
        raise BadRequestError(message=f"{op}: expected text, got {_typename(value)}")
    if letter == "d":
        if type(value) is not dict or not all(type(k) is str for k in value):
            raise BadRequestError(message=f"{op}: expected a map with str keys")
        return value
    if letter == "l":
        if type(value) is not list:
            raise BadRequestError(message=f"{op}: expected an array, got {_typename(value)}")
        return value
    if letter == "a":
        return value
    if letter == "i":
        if type(value) is not int:
            raise BadRequestError(message=f"{op}: expected an integer, got {_typename(value)}")
        if not INT64_MIN <= value <= INT64_MAX:
            raise BadRequestError(message=f"{op}: integer {value} does not fit in 64 bits")
        return value
    if letter == "u":
        if type(value) is not int:
            raise BadRequestError(message=f"{op}: expected an integer, got {_typename(value)}")
        if not 0 <= value <= UINT64_MAX:
            raise BadRequestError(
                message=f"{op}: integer {value} is not an unsigned 64-bit integer"
            )
        return value
    if letter == "f":
        if type(value) is int:
            return float(value)
        if type(value) is not float or math.isnan(value):
            raise BadRequestError(message=f"{op}: expected a number, got {_typename(value)}")
        return value
    raise AssertionError(f"unknown signature letter {letter!r}")


def _check_options(spec: OpSpec, options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if type(options) is not dict:
        raise BadRequestError(
            message=f"{spec.name}: options must be a map, not {_typename(options)}"
        )
    for name, value in options.items():
        if name not in spec.options:
            allowed = ", ".join(sorted(spec.options)) or "none"
            raise BadRequestError(
                message=f"{spec.name}: unknown option {name!r} (allowed: {allowed})"
            )
        types = _OPTION_TYPES[name]
        if type(value) not in types and value is not None:
            raise BadRequestError(message=f"{spec.name}: option {name!r} has the wrong type")
        values = _OPTION_VALUES.get(name)
        if values is not None and value is not None and value not in values:
            raise BadRequestError(
                message=f"{spec.name}: option {name!r} is one of {', '.join(sorted(values))},"
                f" not {value!r}"
            )
    return options


def _encoded_fit(fast: tuple[bool, ...], args: list[Any], max_key: int, max_value: int) -> bool:
    """Encode the text among ``args`` in place; True if all are then bytes within limits."""
    for i in range(len(fast)):
        arg = args[i]
        if type(arg) is str:
            arg = args[i] = arg.encode("utf-8", "surrogatepass")
        if type(arg) is not bytes or len(arg) > (max_key if fast[i] else max_value):
            return False
    return True


def normalize_args(spec: OpSpec, args: Any, limits: Limits) -> list[Any]:
    """Check ``args`` against ``spec``; return them with str turned into bytes.

    When the op takes options, the returned list always ends with the options dict (``{}`` when
    the request had none), so executors can unpack a fixed shape.

    Raises:
        BadRequestError: ``args`` is not an array or an argument has the wrong type.
        WrongArityError: too few or too many arguments, or an incomplete repeated group.
        TooLargeError: a key, value or member is over its limit.
    """
    if type(args) is not list:
        raise BadRequestError(message=f"{spec.name}: arguments must be an array")
    fast = spec.bytes_only
    if fast is not None and len(args) == len(fast):
        # Hot path: exactly the fixed arguments, all bytes (or text, encoded in place) within
        # limits. ``args`` is reused, so callers hand over a list they no longer need.
        max_key, max_value = limits.max_key_bytes, limits.max_value_bytes
        # Equal lengths (checked above); a keyword would cost zip the slower call.
        for is_key, arg in zip(fast, args):  # noqa: B905
            if type(arg) is not bytes or len(arg) > (max_key if is_key else max_value):
                break
        else:
            if spec.has_options:
                args.append({})
            return args
        if type(arg) is str and _encoded_fit(fast, args, max_key, max_value):
            if spec.has_options:
                args.append({})
            return args
    n = len(args)
    if n > limits.max_args:
        raise TooLargeError(message=f"{spec.name}: {n} arguments, the limit is {limits.max_args}")
    options: Any = None
    if (
        spec.has_options
        and (n == spec.min_args + 1 or (spec.repeat and n > spec.min_args))
        and (type(args[-1]) is dict or args[-1] is None)
    ):
        options = args[-1]
        n -= 1
    nfixed = len(spec.fixed)
    if n < spec.min_args:
        raise WrongArityError(message=f"{spec.name} takes {_arity_text(spec)} arguments, got {n}")
    if spec.repeat:
        if (n - nfixed) % len(spec.repeat):
            raise WrongArityError(
                message=f"{spec.name}: the arguments after the first {nfixed} must come in "
                f"groups of {len(spec.repeat)}"
            )
    elif n > nfixed:
        raise WrongArityError(message=f"{spec.name} takes {_arity_text(spec)} arguments, got {n}")
    out = [_check(letter, args[i], spec.name, limits) for i, letter in enumerate(spec.fixed)]
    if spec.repeat:
        width = len(spec.repeat)
        for i in range(nfixed, n):
            out.append(_check(spec.repeat[(i - nfixed) % width], args[i], spec.name, limits))
    if spec.has_options:
        out.append(_check_options(spec, options))
    return out


def _arity_text(spec: OpSpec) -> str:
    if spec.repeat:
        return f"at least {spec.min_args}"
    if spec.has_options:
        return f"{spec.min_args} or {spec.min_args + 1}"
    return str(spec.min_args)


__all__ = [
    "DATA_HANDLER",
    "OPS",
    "RELAYABLE",
    "RELAY_HANDLER",
    "SESSION_HANDLER",
    "ErrorCode",
    "Limits",
    "OpKind",
    "OpSpec",
    "Permission",
    "Scope",
    "normalize_args",
]
