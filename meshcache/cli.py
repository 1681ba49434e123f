"""The ``meshcache`` command: run a node, or send one command to a node.

``meshcache start`` runs a node with settings from flags, a TOML file and ``MESHCACHE_*``
variables (see :mod:`meshcache.settings` and docs/operations.md). The other subcommands connect
to ``--host``/``--port`` and run one op. Every failure is one line on stderr, never a traceback,
and the exit code says what kind of failure it was:

====  ========================================================================================
0     success
1     the answer was "no": the key is absent, nothing was deleted, a condition failed (``set
      --nx``), or the node stopped with an error (``start``)
2     usage or configuration error (bad flag, bad config value, unknown TOML key)
3     the node could not be reached, or did not answer in time, or did not speak the protocol
      (``dbsize``: a ring member could not be asked, or the ring kept changing while counting)
4     the node refused the command; the line carries its error code (e.g. ``WRONGTYPE``)
====  ========================================================================================

Output is for humans by default; ``--json`` prints one JSON document instead. Values that are
valid UTF-8 print as text; in JSON, other values print as ``{"base64": "..."}``.

One rule for reads that find nothing (:data:`EMPTY_RULE`): a missing key, field or member, or an
empty range, exits 1 and prints nothing (``null`` with ``--json``); a count of 0 prints ``0``
and exits 1; ``mget`` prints ``(nil)`` for each missing key and exits 1 when every key is
missing. An empty hash, list, set or sorted set does not exist, so it reads as missing.

Start-up time matters (one process per command): modules a command does not need — trio, the
node, structlog, the client's front ends — are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from meshcache._version import __version__
from meshcache.errors import (
    CommandError,
    ConfigError,
    LocalProtocolError,
    MeshcacheConnectionError,
    MeshcacheError,
    MeshcacheTimeout,
    RemoteProtocolError,
)
from meshcache.settings import (
    SETTINGS,
    SETTINGS_BY_NAME,
    check_namespace_name,
    parse_address,
    parse_duration,
    parse_port,
    parse_size,
)
from meshcache.wire.address import format_address
from meshcache.wire.names import NAMESPACE_NAME_RULE

if TYPE_CHECKING:
    from meshcache.client.commands import Binary
    from meshcache.client.sync import Client
    from meshcache.settings import NodeSettings

EXIT_OK = 0
EXIT_FALSE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 4

PROG = "meshcache"
#: Where the client commands find their user and password (``--user`` overrides the first).
USER_ENV = "MESHCACHE_USER"
PASSWORD_ENV = "MESHCACHE_PASSWORD"

#: ``meshcache leave`` and ``join`` wait this much longer for the answer than the node may take
#: to hand its keys over or pull them.
LEAVE_ANSWER_SLACK = 5.0
LEAVE_CONNECT_TIMEOUT = 5.0
#: How many times ``meshcache dbsize`` counts again when the members answered by different rings.
DBSIZE_ROUNDS = 3
#: The keys ``meshcache keys`` asks each step of its walk for (a hint, as SCAN's count).
KEYS_STEP = 1000

#: What a read prints when it finds nothing; in every client command's help.
EMPTY_RULE = (
    "Reads that find nothing: a missing key, field or member, or an empty range, exits 1 and "
    "prints nothing (--json: null); a count of 0 prints 0 and exits 1; mget prints (nil) for "
    "each missing key and exits 1 when every key is missing. An empty hash, list, set or "
    "sorted set does not exist: it reads as missing."
)
#: Ring states in which a member owns keys.
RING_STATES = ("joining", "active", "leaving")
#: Ring states whose members serve reads: each key is counted at its first read owner.
READ_STATES = ("active", "leaving")


class _UsageError(Exception):
    """A bad command line, raised instead of argparse's print-usage-and-exit."""


class _Unstable(MeshcacheError):
    """The members of a ring did not all count by the same ring version."""


class _Exit(Exception):
    """argparse finished the command itself (``--help``, ``--version``)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting: :func:`main` returns a code, prints one line.

    With ``intermixed`` set (the client commands), options may come between positionals:
    ``set KEY --ttl 60 VALUE``. Plain argparse gives an optional positional (``VALUE``) nothing
    once an option follows the one before it, and then rejects ``VALUE`` as unrecognized.
    """

    intermixed = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if not self.intermixed:
            return super().parse_known_args(args, namespace)
        # parse_known_intermixed_args parses twice through parse_known_args: plainly then.
        self.intermixed = False
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self.intermixed = True

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


# --- output ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Output:
    """What a client command prints: ``text`` for humans, ``data`` under ``--json``."""

    data: Any
    text: str | bytes | None
    status: int = EXIT_OK


#: A read that found nothing: no text, ``null`` in JSON, exit 1 (see :data:`EMPTY_RULE`).
ABSENT = Output(None, None, EXIT_FALSE)


def _text(value: bytes) -> str:
    """A value for a human: UTF-8 text, with undecodable bytes as ``\\xNN`` escapes."""
    return value.decode("utf-8", "backslashreplace")


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {
            (_text(k) if isinstance(k, bytes) else str(k)): _jsonable(v) for k, v in value.items()
        }
    if isinstance(value, set | frozenset):
        return [_jsonable(v) for v in sorted(value)]
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf; "inf" / "-inf" is what Python's float() reads back
    return value


def _write(data: str | bytes) -> None:
    if isinstance(data, bytes):
        stream = getattr(sys.stdout, "buffer", None)
        if stream is not None:
            # Raw bytes (undecodable ones as they are), then the newline every output line
            # ends with; `get --file` writes a value without it.
            sys.stdout.flush()
            stream.write(data + b"\n")
            stream.flush()
            return
        data = _text(data)
    sys.stdout.write(data + "\n")
    sys.stdout.flush()


def _lines(items: Sequence[bytes | None]) -> str:
    return "\n".join("(nil)" if item is None else _text(item) for item in items)


def _number(value: float) -> str:
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return repr(value)  # 2.5, inf, -inf


def _plain_text(value: Any) -> str:
    """A value from a node's answer for a human: no Python reprs, lists as ``a, b``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, float):
        return _number(value) if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        if not value:
            return "none"
        return ", ".join(f"{_plain_text(k)} {_plain_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_plain_text(v) for v in value) if value else "none"
    return str(value)


_BYTES_REPR = re.compile(r"""(?<![\w'"])b('(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""")


def _human(message: str) -> str:
    """``message`` with Python bytes literals (``b'user:1'``) shown as text (``'user:1'``).

    Node and client messages name keys with ``repr``; a person reading stderr should see the
    key as typed.
    """

    def shown(match: re.Match[str]) -> str:
        import ast

        try:
            raw = ast.literal_eval("b" + match.group(1))
        except (ValueError, SyntaxError):
            return match.group(0)
        return "'" + _text(raw).replace("'", "\\'") + "'"

    return _BYTES_REPR.sub(shown, message)


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned columns under upper-case headers, without trailing blanks."""
    widths = [max([len(col), *(len(r[i]) for r in rows)]) for i, col in enumerate(columns)]
    lines = ["  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return [line.rstrip() for line in lines]


def _aligned(items: Sequence[tuple[str, str]], indent: str = "") -> list[str]:
    """``key  value`` lines with the values aligned."""
    width = max((len(key) for key, _ in items), default=0)
    return [f"{indent}{key.ljust(width)}  {value}".rstrip() for key, value in items]


def _section(title: str, items: Sequence[tuple[str, str]]) -> list[str]:
    """``title``, then its ``key  value`` lines indented, the values aligned."""
    return [title, *_aligned(items, "  ")]


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested maps as dotted keys (``counters.hints.queued``); an empty map reads ``none``."""
    if isinstance(value, Mapping) and value:
        items: list[tuple[str, str]] = []
        for key, inner in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            items += _flatten(inner, name)
        return items
    return [(prefix, _plain_text(value))]


# --- argument converters -----------------------------------------------------------------------


def _arg(text: str) -> bytes:
    # argv arrives decoded with surrogateescape; fsencode gives back the exact bytes typed.
    return os.fsencode(text)


def _value(a: argparse.Namespace) -> bytes:
    """The VALUE argument: as typed, ``-`` for all of stdin, or ``--file PATH``'s bytes.

    Values travel through stdin or a file because an argument is limited by the OS (128 KiB
    for one argument on Linux, "Argument list too long").
    """
    if a.file is not None:
        if a.value is not None:
            raise _UsageError(f"{PROG} {a.command}: error: give VALUE or --file, not both")
        try:
            return Path(a.file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"--file: cannot read {a.file}: {exc.strerror or exc}") from None
    if a.value is None:
        raise _UsageError(
            f"{PROG} {a.command}: error: VALUE is required (or - to read stdin, or --file PATH)"
        )
    if a.value == "-":
        return sys.stdin.buffer.read()
    return _arg(a.value)


def _seconds(text: str, where: str) -> float:
    """A duration, or a number that may be zero or negative (EXPIRE deletes the key then)."""
    if re.fullmatch(r"\s*-?(\d+(\.\d*)?|\.\d+)\s*", text):
        return float(text)
    return parse_duration(text, where)


def _pairs(items: Sequence[str], what: str) -> list[tuple[str, str]]:
    if len(items) % 2:
        raise _UsageError(f"{PROG}: error: {what} must come in pairs, got {len(items)} words")
    return [(items[i], items[i + 1]) for i in range(0, len(items), 2)]


def _score(text: str, what: str = "score") -> float:
    try:
        score = float(text)
    except ValueError:
        raise _UsageError(f"{PROG}: error: {what} {text!r} is not a number") from None
    if math.isnan(score):
        raise _UsageError(f"{PROG}: error: {what} {text!r} is not a number")
    return score


def _whole(text: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a whole number") from None
    if value < 0:
        raise ConfigError(f"{where}: must not be negative")
    return value


# --- client commands ---------------------------------------------------------------------------

Handler = Callable[["Client", argparse.Namespace], Output]


def _ok(flag: bool) -> Output:
    return Output(flag, "OK" if flag else "(no)", EXIT_OK if flag else EXIT_FALSE)


def _yes(flag: bool) -> Output:
    return Output(flag, "yes" if flag else "no", EXIT_OK if flag else EXIT_FALSE)


def _count(n: int) -> Output:
    return Output(n, str(n), EXIT_OK if n else EXIT_FALSE)


def _new_number(value: float) -> Output:
    return Output(value, _number(value))


def _optional(value: bytes | None) -> Output:
    return ABSENT if value is None else Output(value, value)


def _optional_number(value: float | None) -> Output:
    return ABSENT if value is None else Output(value, _number(value))


def _items(items: Sequence[bytes]) -> Output:
    return Output(list(items), _lines(items)) if items else ABSENT


def _scored(items: Sequence[Any], withscores: bool) -> Output:
    if not items:
        return ABSENT
    if withscores:
        text = "\n".join(f"{_text(m)}\t{_number(s)}" for m, s in items)
        return Output([[m, s] for m, s in items], text)
    return Output(list(items), _lines(items))


def _ping(c: Client, a: argparse.Namespace) -> Output:
    c.ping()
    return Output({"reply": "PONG", "address": a.where}, "PONG")


def _get(c: Client, a: argparse.Namespace) -> Output:
    if a.file == "-" and a.json:
        raise _UsageError(
            f"{PROG} get: error: --file - writes the value itself to stdout, so there is no JSON"
            " document to print: drop --json, or give --file a PATH"
        )
    value = c.get(_arg(a.key), namespace=a.namespace)
    if value is None or a.file is None:
        return _optional(value)
    if a.file == "-":
        stream = sys.stdout.buffer
        stream.write(value)
        stream.flush()
    else:
        try:
            Path(a.file).write_bytes(value)
        except OSError as exc:
            raise ConfigError(f"--file: cannot write {a.file}: {exc.strerror or exc}") from None
    return Output(len(value), None)


def _gets(c: Client, a: argparse.Namespace) -> Output:
    found = c.gets(_arg(a.key), namespace=a.namespace)
    if found is None:
        return ABSENT
    value, version = found
    return Output({"version": version, "value": value}, b"%d\t" % version + value)


def _set(c: Client, a: argparse.Namespace) -> Output:
    ttl = None if a.ttl is None else parse_duration(a.ttl, "--ttl")
    value = _value(a)
    stored = c.set(
        _arg(a.key), value, ttl, namespace=a.namespace, nx=a.nx, xx=a.xx, keepttl=a.keepttl
    )
    return _ok(bool(stored))


def _cas(c: Client, a: argparse.Namespace) -> Output:
    ttl = None if a.ttl is None else parse_duration(a.ttl, "--ttl")
    value = _value(a)
    return _ok(c.cas(_arg(a.key), value, a.version, ttl, namespace=a.namespace))


def _del(c: Client, a: argparse.Namespace) -> Output:
    return _count(c.delete(*map(_arg, a.keys), namespace=a.namespace))


def _exists(c: Client, a: argparse.Namespace) -> Output:
    return _count(c.exists(*map(_arg, a.keys), namespace=a.namespace))


def _incr(c: Client, a: argparse.Namespace) -> Output:
    return _new_number(c.incr(_arg(a.key), a.by, namespace=a.namespace))


def _decr(c: Client, a: argparse.Namespace) -> Output:
    return _new_number(c.decr(_arg(a.key), a.by, namespace=a.namespace))


def _getdel(c: Client, a: argparse.Namespace) -> Output:
    return _optional(c.getdel(_arg(a.key), namespace=a.namespace))


def _append(c: Client, a: argparse.Namespace) -> Output:
    return _new_number(c.append(_arg(a.key), _value(a), namespace=a.namespace))


def _strlen(c: Client, a: argparse.Namespace) -> Output:
    return _count(c.strlen(_arg(a.key), namespace=a.namespace))


def _incrbyfloat(c: Client, a: argparse.Namespace) -> Output:
    amount = _score(a.amount, "AMOUNT")
    return _new_number(c.incrbyfloat(_arg(a.key), amount, namespace=a.namespace))


def _type(c: Client, a: argparse.Namespace) -> Output:
    kind = c.type(_arg(a.key), namespace=a.namespace)
    return ABSENT if kind == "none" else Output(kind, kind)


def _ttl(c: Client, a: argparse.Namespace) -> Output:
    left = c.ttl(_arg(a.key), namespace=a.namespace)
    if left == -2:
        return ABSENT
    return Output(left, "no expiry" if left == -1 else _number(left))


def _expire(c: Client, a: argparse.Namespace) -> Output:
    return _ok(c.expire(_arg(a.key), _seconds(a.seconds, "SECONDS"), namespace=a.namespace))


def _persist(c: Client, a: argparse.Namespace) -> Output:
    return _ok(c.persist(_arg(a.key), namespace=a.namespace))


def _mget(c: Client, a: argparse.Namespace) -> Output:
    values = c.mget([_arg(k) for k in a.keys], namespace=a.namespace)
    found = any(v is not None for v in values)
    return Output(values, _lines(values), EXIT_OK if found else EXIT_FALSE)


def _mset(c: Client, a: argparse.Namespace) -> Output:
    pairs = _pairs(a.pairs, "keys and values")
    return _ok(c.mset({_arg(k): _arg(v) for k, v in pairs}, namespace=a.namespace))


def _info(c: Client, a: argparse.Namespace) -> Output:
    info = c.info()
    return Output(info, _format_info(info))


def _ring_states(c: Client) -> dict[str, str] | None:
    """Ring member → ring state, or None when the node has no ring (not part of a mesh)."""
    try:
        ring = c.ring()
    except CommandError:
        return None
    if not ring.get("version"):
        return None
    return {str(m.get("node_id")): str(m.get("state")) for m in ring.get("members", [])}


def _members(c: Client, a: argparse.Namespace) -> Output:
    members = sorted(c.members(), key=lambda m: str(m.get("name")))
    ring = _ring_states(c)
    for member in members:
        member["ring_state"] = None if ring is None else ring.get(str(member.get("name")))
    columns = ("name", "address", "gossip", "ring", "incarnation", "zone", "config_version")

    def ring_text(member: Mapping[str, Any]) -> str:
        if ring is None:
            return "-"  # no ring at all: a node outside any mesh
        state = member["ring_state"]
        return "not in ring" if state is None else str(state)

    rows = [
        [
            _plain_text(m.get("name")),
            _plain_text(m.get("address")),
            _plain_text(m.get("state")),
            ring_text(m),
            _plain_text(m.get("incarnation")),
            _plain_text(m.get("zone")),
            _plain_text(m.get("config_version")),
        ]
        for m in members
    ]
    return Output(members, "\n".join(_table(columns, rows)))


def _policy_fields(a: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if a.eviction is not None:
        fields["eviction"] = a.eviction
    if a.max_bytes is not None:
        fields["max_bytes"] = parse_size(a.max_bytes, "--max-bytes") if a.max_bytes != "0" else None
    if a.max_items is not None:
        fields["max_items"] = _whole(a.max_items, "--max-items") or None
    if a.ttl is not None:
        fields["default_ttl"] = parse_duration(a.ttl, "--ttl") if a.ttl != "0" else None
    if a.replicas is not None:
        replicas = _whole(a.replicas, "--replicas")
        if replicas < 1:
            raise ConfigError("--replicas: must be at least 1")
        fields["replicas"] = replicas
    if a.consistency is not None:
        fields["consistency"] = a.consistency
    return fields


def _hot_fields(c: Client, a: argparse.Namespace) -> dict[str, Any]:
    """``{"hot": table}`` when a ``--hot-*`` flag was given: the namespace's hot-key table
    with the flags applied (fields not given keep their values), else ``{}``."""
    changes: dict[str, Any] = {}
    if a.hot_keys is not None:
        changes["enabled"] = a.hot_keys == "on"
    for flag, name in (("hot_share", "share"), ("hot_rate", "rate"), ("hot_area", "area")):
        value = getattr(a, flag)
        if value is not None:
            try:
                changes[name] = float(value)
            except ValueError:
                raise ConfigError(f"--{flag.replace('_', '-')}: not a number: {value!r}") from None
    if a.hot_lease is not None:
        changes["lease"] = parse_duration(a.hot_lease, "--hot-lease")
    if a.hot_copies is not None:
        changes["copies"] = None if a.hot_copies == "all" else _whole(a.hot_copies, "--hot-copies")
    if not changes:
        return {}
    current = c.ns_list().get(a.name, {}).get("hot") or {}
    table = {**current, **changes}
    return {"hot": {k: v for k, v in table.items() if v is not None}}


def _hotkeys(c: Client, a: argparse.Namespace) -> Output:
    """Every ring member's HOTKEYS, merged: the hot keys with their owner, and each node's
    copies (exit 3 when a member cannot be asked)."""
    answers: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for member in c.ring().get("members", []):
        node_id, address = str(member.get("node_id")), str(member.get("address"))
        try:
            if address == a.where:
                answers[node_id] = _node_op(c, "HOTKEYS", [])
            else:
                with _connect(
                    address,
                    connect_timeout=a.call_timeout,
                    timeout=a.call_timeout,
                    tls=_tls_of(a),
                ) as other:
                    answers[node_id] = _node_op(other, "HOTKEYS", [])
        except (MeshcacheConnectionError, MeshcacheTimeout, RemoteProtocolError, OSError) as exc:
            _warn(f"ring member {node_id} ({address}) could not be asked ({type(exc).__name__})")
            missing.append(node_id)
    hot = [
        {**row, "owner": node_id}
        for node_id, answer in answers.items()
        for row in answer.get("hot", [])
    ]
    hot.sort(key=lambda row: -float(row.get("rate") or 0))
    nodes = {
        node_id: {"copies": len(answer.get("copies", [])), "area_bytes": answer.get("area_bytes")}
        for node_id, answer in answers.items()
    }
    columns = ("namespace", "key", "owner", "rate", "share", "holders")
    rows = [
        [
            _plain_text(row.get("namespace")),
            _plain_text(row.get("key")),
            _plain_text(row.get("owner")),
            _plain_text(row.get("rate")),
            _plain_text(row.get("share")),
            ", ".join(map(str, row.get("holders", []))) or "-",
        ]
        for row in hot
    ]
    lines = _table(columns, rows) if rows else ["no hot keys"]
    lines += ["", *_table(("node", "copies", "area_bytes"), [
        [node_id, str(n["copies"]), _plain_text(n["area_bytes"])] for node_id, n in nodes.items()
    ])]  # fmt: skip
    data = {"hot": hot, "nodes": nodes, "unreachable": missing}
    return Output(data, "\n".join(lines), EXIT_UNREACHABLE if missing else EXIT_OK)


def _format_policies(policies: Mapping[str, Any]) -> str:
    lines = []
    for name, policy in sorted(policies.items()):
        described = " ".join(f"{k}={_plain_text(v)}" for k, v in sorted(policy.items()))
        lines.append(f"{name:<16}{described}")
    return "\n".join(lines)


def _warn(message: str) -> None:
    sys.stderr.write(f"{PROG}: warning: {message}\n")
    sys.stderr.flush()


def _ns(c: Client, a: argparse.Namespace) -> Output:
    if a.action != "list" and not a.name:
        raise ConfigError(f"ns {a.action}: NAME is required")
    if a.action == "list":
        policies = c.ns_list()
        return Output(policies, _format_policies(policies))
    if a.action == "show":
        policies = c.ns_list()
        if a.name not in policies:
            return ABSENT
        return Output(policies[a.name], _format_policies({a.name: policies[a.name]}))
    if a.action == "set":
        check_namespace_name(a.name, "NAME")
        fields = _policy_fields(a)
        fields.update(_hot_fields(c, a))
        fields.update(_loader_fields(c, a))
        policy = c.ns_set(a.name, fields)
        _warn_replicas(c, a.name, policy)
        return Output(policy, _format_policies({a.name: policy}))
    return _ok(c.ns_drop(a.name))


#: ``ns set`` flag -> loader field; durations are parsed, the rest taken as text.
_LOADER_FLAGS = {
    "loader_source": "source",
    "loader_query": "query",
    "loader_batch_query": "batch_query",
    "loader_ttl": "ttl",
    "loader_negative_ttl": "negative_ttl",
    "loader_timeout": "load_timeout",
    "loader_refresh_ahead": "refresh_ahead",
    "loader_channel": "channel",
    "loader_stale_if_error": "stale_if_error",
    "loader_on_notify": "on_notify",
}
_LOADER_DURATIONS = frozenset({"ttl", "negative_ttl", "load_timeout", "stale_if_error"})


def _loader_fields(c: Client, a: argparse.Namespace) -> dict[str, Any]:
    """The ``loader`` change of ``ns set``: the namespace's loader with the given flags
    applied (a flag set to ``""`` clears that field), or None with ``--no-loader``."""
    if a.no_loader:
        return {"loader": None}
    given = {
        f: getattr(a, flag) for flag, f in _LOADER_FLAGS.items() if getattr(a, flag) is not None
    }
    if not given:
        return {}
    current = c.ns_list().get(a.name, {}).get("loader") or {}
    loader = dict(current)
    for name, text in given.items():
        if text == "":
            loader.pop(name, None)
        elif name in _LOADER_DURATIONS:
            loader[name] = parse_duration(text, f"--loader-{name.replace('_', '-')}")
        elif name == "refresh_ahead":
            try:
                loader[name] = float(text)
            except ValueError:
                raise ConfigError(f"--loader-refresh-ahead: {text!r} is not a number") from None
        else:
            loader[name] = text
    return {"loader": loader}


def _loader(c: Client, a: argparse.Namespace) -> Output:
    from meshcache.node.loader.sql import trigger_sql

    policy = c.ns_list().get(a.name)
    if policy is None:
        raise ConfigError(f"loader sql: no namespace {a.name!r}")
    channel = (policy.get("loader") or {}).get("channel")
    if channel is None:
        raise ConfigError(
            f"loader sql: namespace {a.name!r} names no channel "
            f"(meshcache ns set {a.name} --loader-channel NAME)"
        )
    sql = trigger_sql(channel, a.table, a.key_column)
    return Output({"channel": channel, "sql": sql}, sql.rstrip("\n"))


def _warn_replicas(c: Client, name: str, policy: Mapping[str, Any]) -> None:
    """Say what happens when a namespace asks for more copies than the ring has members."""
    replicas = policy.get("replicas")
    states = _ring_states(c)
    if not isinstance(replicas, int) or not states:
        return
    members = sum(state in RING_STATES for state in states.values())
    if 0 < members < replicas:
        _warn(
            f"namespace {name!r} asks for {replicas} replicas but the ring has {members}"
            f" {'member' if members == 1 else 'members'}: each key is kept once on every member"
            f" until more nodes join (quorum and all count the owners that exist)"
        )


def _ring(c: Client, a: argparse.Namespace) -> Output:
    ring = c.ring()
    columns = ("node_id", "address", "state", "zone", "weight", "share")
    rows = []
    for m in ring.get("members", []):
        share = m.get("share")
        rows.append(
            [_plain_text(m.get(col)) for col in columns[:-1]]
            + [f"{share * 100:.1f}%" if isinstance(share, int | float) else _plain_text(share)]
        )
    lines = [f"ring version {_plain_text(ring.get('version'))}", *_table(columns, rows)]
    return Output(ring, "\n".join(lines))


def _raft(c: Client, a: argparse.Namespace) -> Output:
    if a.action == "status":
        status = c.raft_status()
    else:
        if not a.address:
            raise ConfigError(f"raft {a.action}: ADDR is required")
        address = parse_address(a.address, "ADDR")
        status = c.raft_add(address) if a.action == "add" else c.raft_remove(address)
    return Output(status, "\n".join(_aligned(_flatten(status))))


def _node_op(c: Client, op: str, args: list[Any], namespace: str = "default") -> dict[str, Any]:
    """Send an op the client has no method for (LEAVE, JOIN, DBSIZE with options) the way a
    client method would; its answer must be a map."""
    from meshcache.client import results
    from meshcache.client.core import Command

    answer: dict[str, Any] = c._execute(Command.build(op, args, namespace, results.str_map))
    return answer


def _leave(c: Client, a: argparse.Namespace) -> Output:
    drain = parse_duration(a.timeout, "--timeout")
    left = _node_op(c, "LEAVE", [{"timeout": drain}])
    moved = left.get("moved")
    text = (
        f"{_plain_text(left.get('node_id'))} left the ring: {_plain_text(moved)}"
        f" {'key' if moved == 1 else 'keys'} handed over, ring version"
        f" {_plain_text(left.get('ring_version'))}"
    )
    return Output(left, text)


def _join(c: Client, a: argparse.Namespace) -> Output:
    pull = parse_duration(a.timeout, "--timeout")
    joined = _node_op(c, "JOIN", [{"timeout": pull}])
    pulled = joined.get("pulled")
    text = (
        f"{_plain_text(joined.get('node_id'))} is back on the ring"
        f" ({_plain_text(joined.get('state'))}): {_plain_text(pulled)}"
        f" {'key' if pulled == 1 else 'keys'} pulled, ring version"
        f" {_plain_text(joined.get('ring_version'))}"
    )
    return Output(joined, text)


def _dbsize(c: Client, a: argparse.Namespace) -> Output:
    """The namespace's keys: on a ring, the sum of every read member's owned count (each key
    counted once, at its first read owner); ``--node`` or no ring: the asked node's count."""
    if a.node:
        return _count(c.dbsize(namespace=a.namespace))
    for _ in range(DBSIZE_ROUNDS):
        ring = c.ring()
        readers = [m for m in ring.get("members", []) if m.get("state") in READ_STATES]
        if not ring.get("version") or not readers:
            # A node outside a mesh holds the whole namespace.
            return _count(c.dbsize(namespace=a.namespace))
        counted = _owned_counts(c, a, readers)
        versions = {version for _, version in counted.values()}
        if versions <= {ring["version"]}:
            break
    else:
        raise _Unstable(
            f"the ring changed while counting (members answered by versions"
            f" {', '.join(map(str, sorted(versions | {ring['version']})))}); run dbsize again"
        )
    total = sum(count for count, _ in counted.values())
    missing = [m for m in readers if m.get("node_id") not in counted]
    if not missing:
        return _count(total)
    return Output(total, str(total), EXIT_UNREACHABLE)


def _owned_counts(
    c: Client, a: argparse.Namespace, readers: Sequence[Mapping[str, Any]]
) -> dict[str, tuple[int, int]]:
    """Each reachable read member's ``(owned count, ring version)`` by node id; a warning on
    stderr for each member that could not be asked (a refusal still raises)."""
    counted: dict[str, tuple[int, int]] = {}
    for member in readers:
        node_id, address = str(member.get("node_id")), str(member.get("address"))
        args = [{"owned": True}]
        try:
            if address == a.where:
                answer = _node_op(c, "DBSIZE", args, a.namespace)
            else:
                with _connect(
                    address,
                    connect_timeout=a.call_timeout,
                    timeout=a.call_timeout,
                    tls=_tls_of(a),
                ) as other:
                    answer = _node_op(other, "DBSIZE", args, a.namespace)
            count, version = answer.get("count"), answer.get("ring_version")
            if type(count) is not int or type(version) is not int:
                raise RemoteProtocolError(f"DBSIZE answered {answer!r}"[:200])
        except (MeshcacheConnectionError, MeshcacheTimeout, RemoteProtocolError, OSError) as exc:
            _warn(
                f"ring member {node_id} ({address}) could not be asked"
                f" ({_human(str(exc)) or type(exc).__name__}): its keys are not counted"
            )
            continue
        counted[node_id] = (count, version)
    return counted


def _flush(c: Client, a: argparse.Namespace) -> Output:
    if not a.yes:
        raise _UsageError(
            f"{PROG} flush: error: this deletes every key of namespace {a.namespace!r}; "
            "add --yes to confirm"
        )
    return _ok(c.flush(namespace=a.namespace))


def _hget(c: Client, a: argparse.Namespace) -> Output:
    return _optional(c.hget(_arg(a.key), _arg(a.field), namespace=a.namespace))


def _hset(c: Client, a: argparse.Namespace) -> Output:
    pairs = _pairs(a.pairs, "fields and values")
    n = c.hset(_arg(a.key), {_arg(f): _arg(v) for f, v in pairs}, namespace=a.namespace)
    return Output(n, str(n))


def _hdel(c: Client, a: argparse.Namespace) -> Output:
    return _count(c.hdel(_arg(a.key), *map(_arg, a.fields), namespace=a.namespace))


def _hgetall(c: Client, a: argparse.Namespace) -> Output:
    fields = c.hgetall(_arg(a.key), namespace=a.namespace)
    if not fields:
        return ABSENT
    text = "\n".join(f"{_text(f)}\t{_text(v)}" for f, v in sorted(fields.items()))
    return Output(fields, text)


def _hincrby(c: Client, a: argparse.Namespace) -> Output:
    return _new_number(c.hincrby(_arg(a.key), _arg(a.field), a.by, namespace=a.namespace))


def _hlen(c: Client, a: argparse.Namespace) -> Output:
    return _count(c.hlen(_arg(a.key), namespace=a.namespace))


def _push(left: bool) -> Handler:
    def run(c: Client, a: argparse.Namespace) -> Output:
        push = c.lpush if left else c.rpush
        n = push(_arg(a.key), *map(_arg, a.values), namespace=a.namespace)
        return Output(n, str(n))

    return run


def _pop(left: bool) -> Handler:
    def run(c: Client, a: argparse.Namespace) -> Output:
        pop = c.lpop if left else c.rpop
        return _optional(pop(_arg(a.key), namespace=a.namespace))

    return run


def _lrange(c: Client, a: argparse.Namespace) -> Output:
    return _items(c.lrange(_arg(a.key), a.start, a.stop, namespace=a.namespace))


def _llen(c: Client, a: argparse.Namespace) -> Output:
    return _count(c.llen(_arg(a.key), namespace=a.namespace))


def _sadd(c: Client, a: argparse.Namespace) -> Output:
    n = c.sadd(_arg(a.key), *map(_arg, a.members), namespace=a.namespace)
    return Output(n, str(n))


def _srem(c: Client, a: argparse.Namespace) -> Output:
    return _count(c.srem(_arg(a.key), *map(_arg, a.members), namespace=a.namespace))


def _sismember(c: Client, a: argparse.Namespace) -> Output:
    return _yes(c.sismember(_arg(a.key), _arg(a.member), namespace=a.namespace))


def _keys_walk(c: Client, a: argparse.Namespace) -> Output:
    """Every key of the namespace matching the pattern, over the whole mesh (SCAN's steps)."""
    match = None if a.pattern == "*" else _arg(a.pattern)
    found: dict[bytes, None] = {}  # a walk may give a key twice
    cursor = 0
    while True:
        cursor, page = c.scan(
            cursor, match=match, count=KEYS_STEP, type=a.type, namespace=a.namespace
        )
        found.update(dict.fromkeys(page))
        if not cursor:
            return _items(sorted(found))


def _smembers(c: Client, a: argparse.Namespace) -> Output:
    return _items(sorted(c.smembers(_arg(a.key), namespace=a.namespace)))


def _scard(c: Client, a: argparse.Namespace) -> Output:
    return _count(c.scard(_arg(a.key), namespace=a.namespace))


def _spop(c: Client, a: argparse.Namespace) -> Output:
    if a.count is None:
        return _optional(c.spop(_arg(a.key), namespace=a.namespace))
    return _items(sorted(c.spop(_arg(a.key), a.count, namespace=a.namespace)))


def _zadd(c: Client, a: argparse.Namespace) -> Output:
    pairs = _pairs(a.pairs, "scores and members")
    mapping: dict[Binary, float] = {_arg(member): _score(score) for score, member in pairs}
    n = c.zadd(
        _arg(a.key), mapping, nx=a.nx, xx=a.xx, gt=a.gt, lt=a.lt, ch=a.ch, namespace=a.namespace
    )
    return Output(n, str(n))


def _zrem(c: Client, a: argparse.Namespace) -> Output:
    return _count(c.zrem(_arg(a.key), *map(_arg, a.members), namespace=a.namespace))


def _zscore(c: Client, a: argparse.Namespace) -> Output:
    return _optional_number(c.zscore(_arg(a.key), _arg(a.member), namespace=a.namespace))


def _zincrby(c: Client, a: argparse.Namespace) -> Output:
    by = _score(a.by, "--by")
    if a.nx or a.xx or a.gt or a.lt:  # ZADD ... INCR: nothing printed when a condition stops it
        return _optional_number(
            c.zadd_incr(
                _arg(a.key), by, _arg(a.member), nx=a.nx, xx=a.xx, gt=a.gt, lt=a.lt,
                namespace=a.namespace,
            )
        )  # fmt: skip
    return _new_number(c.zincrby(_arg(a.key), by, _arg(a.member), namespace=a.namespace))


def _zrank(c: Client, a: argparse.Namespace) -> Output:
    return _optional_number(c.zrank(_arg(a.key), _arg(a.member), namespace=a.namespace))


def _zcard(c: Client, a: argparse.Namespace) -> Output:
    return _count(c.zcard(_arg(a.key), namespace=a.namespace))


def _zpop(highest: bool) -> Handler:
    def run(c: Client, a: argparse.Namespace) -> Output:
        pop = c.zpopmax if highest else c.zpopmin
        return _scored(pop(_arg(a.key), a.count, namespace=a.namespace), withscores=True)

    return run


def _zrange(c: Client, a: argparse.Namespace) -> Output:
    items = c.zrange(
        _arg(a.key), a.start, a.stop, namespace=a.namespace, withscores=a.withscores, desc=a.desc
    )
    return _scored(items, a.withscores)


def _zrangebyscore(c: Client, a: argparse.Namespace) -> Output:
    if (a.offset is None) != (a.count is None):
        raise _UsageError(f"{PROG} zrangebyscore: error: --offset and --count go together")
    items = c.zrangebyscore(
        _arg(a.key),
        _score(a.min, "MIN"),
        _score(a.max, "MAX"),
        namespace=a.namespace,
        withscores=a.withscores,
        offset=a.offset,
        count=a.count,
    )
    return _scored(items, a.withscores)


def _format_info(info: Mapping[str, Any]) -> str:
    """INFO for humans: one section per part (the node, each namespace, gossip, mesh, and any
    part a newer node adds), each a list of ``key  value`` lines with the values aligned."""
    first = [key for key in ("node_id", "version", "uptime_s") if key in info]
    scalars = [key for key in info if key not in first and not isinstance(info[key], Mapping)]
    sections = [_section("node", [(key, _plain_text(info[key])) for key in first + scalars])]
    for part, value in info.items():
        if not isinstance(value, Mapping):
            continue
        if part == "namespaces":
            for name, figures in sorted(value.items()):
                sections.append(_section(f"namespace {name}", _flatten(figures)))
        else:
            sections.append(_section(part, _flatten(value) if value else [("", "none")]))
    return "\n\n".join("\n".join(lines) for lines in sections)


def _connect(
    where: str,
    *,
    connect_timeout: float,
    timeout: float,
    user: str | None = None,
    stdin_holds: str | None = None,
    tls: Mapping[str, Any] | None = None,
) -> Client:
    """A client of the node at ``where``; with ``user``, its password is read first
    (:func:`_read_password`; ``stdin_holds`` names what the command reads from stdin)."""
    from meshcache.client.sync import Client

    password = None
    if user is not None:
        password = _read_password(f"password for {user}: ", stdin_holds=stdin_holds)
    # One-shot commands talk to the node they name: it forwards a key to its owner itself,
    # which costs less than learning the ring first.
    return Client(
        where,
        connect_timeout=connect_timeout,
        timeout=timeout,
        smart=False,
        username=user,
        password=password,
        **(tls or {}),
    )


def _tls_of(args: argparse.Namespace) -> dict[str, Any]:
    """The client's TLS keyword arguments from ``--tls``, ``--cacert``, ``--cert``, ``--key``."""
    if not getattr(args, "tls", False) and not getattr(args, "tls_ca", None):
        if getattr(args, "tls_cert", None) or getattr(args, "tls_key", None):
            raise ConfigError("--cert and --key need --tls")
        return {}
    return {
        "tls": True,
        "ca_file": args.tls_ca,
        "cert_file": args.tls_cert,
        "key_file": args.tls_key,
    }


def _tls_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--tls", action="store_true", help="speak TLS to the node (its tls_cert_file is set)"
    )
    group.add_argument(
        "--cacert",
        dest="tls_ca",
        metavar="FILE",
        help="PEM CA the node's certificate is checked against (implies --tls)",
    )
    group.add_argument(
        "--cert", dest="tls_cert", metavar="FILE", help="PEM client certificate (with --tls)"
    )
    group.add_argument("--key", dest="tls_key", metavar="FILE", help="PEM key of --cert")


def _read_password(prompt: str, *, confirm: bool = False, stdin_holds: str | None = None) -> str:
    """``$MESHCACHE_PASSWORD``; else one typed at the terminal (never from the command line);
    else, when stdin is not a terminal, its first line.

    A command that reads something else from stdin (``stdin_holds`` names it: a value given as
    ``-``) never takes the password from there: it asks at the controlling terminal
    (``/dev/tty``), and without one it is a :class:`ConfigError`.
    """
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    if sys.stdin.isatty():
        password = _ask_password(prompt, confirm)
    elif stdin_holds is not None:
        if not _have_terminal():
            raise ConfigError(
                f"{stdin_holds} is read from stdin, so the password cannot be: set "
                f"${PASSWORD_ENV}, or run the command where it can ask at a terminal"
            )
        password = _ask_password(prompt, confirm)
    else:
        password = _first_line_of_stdin()
    if not password:
        raise ConfigError(f"no password given (type one, pipe it in, or set ${PASSWORD_ENV})")
    return password


def _ask_password(prompt: str, confirm: bool) -> str:
    """A password typed at the controlling terminal (not echoed)."""
    import getpass

    password = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != password:
        raise ConfigError("the two passwords differ")
    return password


def _have_terminal() -> bool:
    """Whether this process has a controlling terminal that getpass can ask at (it would
    read stdin instead, with only a warning, when it has none)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _first_line_of_stdin() -> str:
    """Stdin's first line without its line break, read through the binary layer: the text
    layer reads ahead, and what it took would be missing from a later read of stdin."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text stream with no bytes beneath it (an embedding program's)
        return sys.stdin.readline().rstrip("\r\n")
    line: bytes = stream.readline()
    try:
        return line.rstrip(b"\r\n").decode(sys.stdin.encoding or "utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"the password on stdin is not {sys.stdin.encoding or 'utf-8'} text"
        ) from None


def _stdin_holds(args: argparse.Namespace) -> str | None:
    """What a client command reads from stdin, if anything: VALUE given as ``-``, or a
    ``--file`` that is stdin itself (``/dev/stdin``)."""
    if not hasattr(args, "value"):
        return None
    if args.value == "-":
        return "the value (VALUE -)"
    if args.file is not None and _is_stdin(args.file):
        return f"the value (--file {args.file})"
    return None


def _is_stdin(path: str) -> bool:
    try:
        named, stdin = os.stat(path), os.fstat(0)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (stdin.st_dev, stdin.st_ino)


def _passwd(args: argparse.Namespace) -> int:
    from meshcache.security.hashing import hash_password

    n = _whole(args.cost, "--cost")
    _write(hash_password(_read_password("password: ", confirm=True), n=n))
    return EXIT_OK


def _passwd_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "passwd",
        help=_SHORT_HELP["passwd"],
        description="Print the scrypt hash of a password, for the password key of a "
        "[users.NAME] table in a node's config (docs/security.md). The password is typed at "
        f"the terminal (twice), read from ${PASSWORD_ENV}, or read from stdin's first line; "
        "never from the command line, where other users of the machine could see it.",
    )
    p.add_argument(
        "--cost",
        default="16384",
        metavar="N",
        help="scrypt's N, a power of two (default 16384: about 16 MiB and tens of ms per check)",
    )
    p.set_defaults(run=_passwd)


def _certs(args: argparse.Namespace) -> int:
    from meshcache.security import tls

    directory = Path(args.dir).expanduser()
    days = _whole(args.days, "--days") if args.days is not None else None
    if args.what == "init":
        days = tls.CA_DAYS if days is None else days
        issued = tls.make_ca(directory, days=days, force=args.force)
    elif args.what == "node":
        days = tls.DEFAULT_DAYS if days is None else days
        issued = tls.make_node_cert(
            directory, args.name, hosts=args.host, days=days, force=args.force
        )
    else:
        days = tls.DEFAULT_DAYS if days is None else days
        issued = tls.make_client_cert(directory, args.name, days=days, force=args.force)
    _write(f"wrote {issued.cert} and {issued.key} (mode 0600)")
    return EXIT_OK


def _certs_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "certs",
        help=_SHORT_HELP["certs"],
        description="Make a development CA and certificates for TLS (docs/security.md): "
        "'init' writes ca.pem and ca.key into --dir; 'node NAME' writes NAME.pem and NAME.key, "
        "a certificate for a node (server and peer use) naming --host addresses plus "
        "127.0.0.1, ::1 and localhost; 'client NAME' writes a client certificate. Keys are "
        "written with mode 0600; existing files are kept unless --force.",
    )
    p.add_argument("what", choices=("init", "node", "client"), help="what to make")
    p.add_argument("name", nargs="?", default=None, help="the certificate's name (node, client)")
    p.add_argument(
        "--dir", default="certs", metavar="DIR", help="where the CA lives (default: certs)"
    )
    p.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="HOST",
        help="an address or DNS name of the node (repeatable)",
    )
    p.add_argument("--days", default=None, metavar="N", help="validity in days")
    p.add_argument("--force", action="store_true", help="replace existing files")

    def run(args: argparse.Namespace) -> int:
        if args.what == "init" and args.name is not None:
            raise _UsageError(f"{PROG} certs init takes no name (the CA is {args.dir}/ca.pem)")
        if args.what != "init" and not args.name:
            raise _UsageError(f"{PROG} certs {args.what}: give the certificate's NAME")
        if args.what != "node" and args.host:
            raise _UsageError(f"{PROG} certs {args.what}: --host is for node certificates")
        return _certs(args)

    p.set_defaults(run=run)


def _run_client(args: argparse.Namespace) -> int:
    port = parse_port(args.port, "--port")
    if port == 0:
        raise ConfigError("--port: 0 is not a port a node listens on")
    host = args.host.strip()
    if not host:
        raise ConfigError("--host: must not be empty")
    from meshcache.client.url import MAX_TIMEOUT

    timeout = parse_duration(args.timeout, "--timeout")
    if timeout > MAX_TIMEOUT:
        raise ConfigError(
            f"--timeout: {args.timeout!r} is longer than the longest a client waits, "
            f"{MAX_TIMEOUT:.0f} s (one year)"
        )
    where = args.where = format_address(host, port)
    args.call_timeout = timeout
    handler: Handler = args.handler
    connect_timeout = timeout
    if handler is _leave or handler is _join:
        # Their --timeout is how long the node may take to move its keys; the answer comes after.
        connect_timeout = LEAVE_CONNECT_TIMEOUT
        timeout = min(timeout + LEAVE_ANSWER_SLACK, MAX_TIMEOUT)
    try:
        with _connect(
            where,
            connect_timeout=connect_timeout,
            timeout=timeout,
            user=args.user,
            stdin_holds=_stdin_holds(args),
            tls=_tls_of(args),
        ) as client:
            out = handler(client, args)
    except MeshcacheTimeout as exc:
        # It names the address and the time, and what answered if anything did (a silent
        # peer may be a node's Raft port: the message says to use the data port).
        return _fail(str(exc), EXIT_UNREACHABLE)
    except MeshcacheConnectionError as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)  # it names the address and the OS's reason
    except RemoteProtocolError as exc:
        return _fail(f"{where} does not speak the meshcache protocol: {exc}", EXIT_UNREACHABLE)
    except OSError as exc:
        return _fail(f"cannot reach {where}: {exc.strerror or exc}", EXIT_UNREACHABLE)
    except _Unstable as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    if args.json:
        _write(json.dumps(_jsonable(out.data), ensure_ascii=False))
    elif isinstance(out.text, bytes) or out.text:
        # A stored value prints even when empty; an empty list prints nothing, not a blank line.
        _write(out.text)
    return out.status


def _fail(message: str, status: int) -> int:
    sys.stderr.write(f"{PROG}: {_human(message)}\n")
    return status


# --- start -------------------------------------------------------------------------------------


def _unbindable(settings: NodeSettings) -> str | None:
    """Bind each port the node will bind, and release it; the first failure, named, or None.

    The node binds its ports one after another and would report a clash as a bare OS error;
    this says which port and which setting. (Another process may still take a port between
    this check and the node's own bind; the node then fails as it always did.)
    """
    import socket

    from meshcache.settings import node_ports

    for use in node_ports(settings):
        if not use.port:
            continue  # the kernel picks a free one
        kind = socket.SOCK_STREAM if use.transport == "tcp" else socket.SOCK_DGRAM
        flag = SETTINGS_BY_NAME[use.setting].flag
        try:
            family, type_, proto, _, address = socket.getaddrinfo(
                use.host, use.port, type=kind, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as exc:
            return f"cannot bind the {use.describe()}: unknown host {use.host!r} ({exc.strerror})"
        with socket.socket(family, type_, proto) as probe:
            if kind == socket.SOCK_STREAM:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the node does
            try:
                probe.bind(address)
            except OSError as exc:
                return f"cannot bind the {use.describe()}: {exc.strerror or exc} (see {flag})"
    return None


def _start(args: argparse.Namespace) -> int:
    from meshcache.settings import load_settings, settings_as_toml, unknown_env_vars

    overrides = {name: value for name, value in vars(args).items() if name in SETTINGS_BY_NAME}
    for listed in ("join", "raft_peers"):
        if listed in overrides:
            overrides[listed] = ",".join(overrides[listed])
    settings = load_settings(config_file=args.config, environ=os.environ, overrides=overrides)
    if args.print_config:
        sys.stdout.write(settings_as_toml(settings))
        return EXIT_OK

    import structlog

    from meshcache.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    log = structlog.get_logger("meshcache.cli")
    for name in unknown_env_vars(os.environ):
        log.warning("unknown_env_var", name=name, note="not a meshcache setting; ignored")
    problem = _unbindable(settings)
    if problem is not None:
        log.error("node_failed", error=problem)
        return EXIT_FALSE
    # Imported here: the node pulls in trio, the store and prometheus, which the client
    # commands never need.
    from meshcache.node.node import run

    def reload() -> NodeSettings:
        return load_settings(config_file=args.config, environ=os.environ, overrides=overrides)

    return run(settings, reload=reload)


# --- the parser --------------------------------------------------------------------------------


def _key(p: argparse.ArgumentParser) -> None:
    p.add_argument("key", metavar="KEY")


def _add_get(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument(
        "--file",
        metavar="PATH",
        help="write the value to this file exactly as stored, with no newline added, and print "
        "nothing (--json: its length); - for stdout, without --json; nothing is written when "
        "the key is missing",
    )


def _keys(p: argparse.ArgumentParser) -> None:
    p.add_argument("keys", metavar="KEY", nargs="+")


def _nothing(p: argparse.ArgumentParser) -> None:
    pass


def _add_value(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "value",
        metavar="VALUE",
        nargs="?",
        help="the value; - reads it from stdin (up to the node's max_value_bytes, 8 MiB by"
        " default; an argument is limited to 128 KiB by the OS)",
    )
    p.add_argument(
        "--file", metavar="PATH", help="read the value from this file (up to max_value_bytes)"
    )
    p.add_argument("--ttl", metavar="DURATION", help="expire after this long (300, 1.5s, 5m)")


def _add_set(p: argparse.ArgumentParser) -> None:
    _key(p)
    _add_value(p)
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--nx", action="store_true", help="only if the key is absent")
    cond.add_argument("--xx", action="store_true", help="only if the key exists")
    p.add_argument("--keepttl", action="store_true", help="keep the key's current expiry")


def _add_cas(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("version", type=int, metavar="VERSION", help="the version gets printed")
    _add_value(p)


def _add_append(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument(
        "value", metavar="VALUE", nargs="?", help="what to append; - reads it from stdin"
    )
    p.add_argument("--file", metavar="PATH", help="read what to append from this file")


def _add_incrbyfloat(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("amount", metavar="AMOUNT", help="a number, may be fractional or negative")


def _add_count(what: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        _key(p)
        p.add_argument("--count", type=int, metavar="N", help=f"{what} (default 1)")

    return add


def _add_by(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("--by", type=int, default=1, metavar="N", help="amount (default 1)")


def _add_expire(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("seconds", metavar="SECONDS", help="300, 1.5s, 5m; 0 or less deletes the key")


def _add_pairs(words: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("pairs", metavar=words, nargs="+")

    return add


def _add_key_pairs(words: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        _key(p)
        _add_pairs(words)(p)

    return add


def _add_zadd(p: argparse.ArgumentParser) -> None:
    _add_key_pairs("SCORE_MEMBER")(p)
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--nx", action="store_true", help="only add new members")
    cond.add_argument("--xx", action="store_true", help="only update existing members")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--gt", action="store_true", help="update a member only to a higher score")
    order.add_argument("--lt", action="store_true", help="update a member only to a lower score")
    p.add_argument("--ch", action="store_true", help="print how many were added or changed")


def _add_dbsize(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--node",
        action="store_true",
        help="count the keys the node asked holds, copies of other members' keys included, "
        "instead of the namespace's keys",
    )


def _add_keys(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "pattern",
        metavar="PATTERN",
        nargs="?",
        default="*",
        help="a Redis glob: * any run of bytes, ? one byte, [a-z] or [^a-z] a class, \\x the "
        "byte x (default: every key)",
    )
    p.add_argument(
        "--type", choices=["string", "hash", "list", "set", "zset"], help="only keys of this type"
    )


def _add_flush(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true", help="confirm deleting every key")


def _add_field(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("field", metavar="FIELD")


def _add_fields(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("fields", metavar="FIELD", nargs="+")


def _add_hincrby(p: argparse.ArgumentParser) -> None:
    _add_field(p)
    p.add_argument("--by", type=int, default=1, metavar="N", help="amount (default 1)")


def _add_values(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("values", metavar="VALUE", nargs="+")


def _add_member(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("member", metavar="MEMBER")


def _add_members(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("members", metavar="MEMBER", nargs="+")


def _add_zincrby(p: argparse.ArgumentParser) -> None:
    _add_member(p)
    p.add_argument("--by", default="1", metavar="N", help="amount, may be fractional (default 1)")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--nx", action="store_true", help="only if the member is new")
    cond.add_argument("--xx", action="store_true", help="only if the member exists")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--gt", action="store_true", help="only if the new score is higher")
    order.add_argument("--lt", action="store_true", help="only if the new score is lower")


def _add_range(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("start", type=int, metavar="START")
    p.add_argument("stop", type=int, metavar="STOP", help="inclusive; -1 is the last")


def _add_withscores(p: argparse.ArgumentParser) -> None:
    p.add_argument("--withscores", action="store_true", help="print each member's score")


def _add_zrange(p: argparse.ArgumentParser) -> None:
    _add_range(p)
    _add_withscores(p)
    p.add_argument(
        "--desc", "--rev", action="store_true", help="rank from the highest score (--rev: the same)"
    )


def _add_zrangebyscore(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("min", metavar="MIN", help="lowest score (inf and -inf work; -inf after --)")
    p.add_argument("max", metavar="MAX", help="highest score, inclusive")
    _add_withscores(p)
    p.add_argument("--offset", type=int, metavar="N", help="skip the first N (with --count)")
    p.add_argument("--count", type=int, metavar="N", help="print at most N (with --offset)")


def _add_ns(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "show", "set", "drop"))
    p.add_argument("name", nargs="?", metavar="NAME", help=f"a namespace: {NAMESPACE_NAME_RULE}")
    p.add_argument("--eviction", choices=("lru", "lfu", "ttl", "none"))
    p.add_argument("--max-bytes", metavar="SIZE", help="e.g. 256MiB; 0 = unbounded")
    p.add_argument("--max-items", metavar="N", help="0 = unbounded")
    p.add_argument("--ttl", metavar="DURATION", help="default TTL, e.g. 300 or 5m; 0 = none")
    p.add_argument(
        "--replicas",
        metavar="N",
        help="copies of each key; a ring with fewer members keeps one on each member",
    )
    p.add_argument(
        "--consistency",
        choices=("one", "quorum", "all"),
        help="when a write is acknowledged: by one owner, a majority of owners, or all",
    )
    hot = p.add_argument_group("hot keys (docs/hotkeys.md)")
    hot.add_argument(
        "--hot-keys", choices=("on", "off"), help="copy keys that take a large share of reads"
    )
    hot.add_argument("--hot-share", metavar="F", help="share of an owner's reads (default 0.01)")
    hot.add_argument("--hot-rate", metavar="N", help="reads per second (default 100)")
    hot.add_argument(
        "--hot-copies", metavar="N", help="nodes holding a copy beyond the owner (default all)"
    )
    hot.add_argument(
        "--hot-lease", metavar="DURATION", help="a copy's life without renewal (default 2s)"
    )
    hot.add_argument(
        "--hot-area", metavar="F", help="hot area, a fraction of max_bytes (default 0.125)"
    )
    loader = p.add_argument_group(
        "read-through loader (docs/loader.md); a flag given as '' clears its field"
    )
    loader.add_argument("--loader-source", metavar="NAME", help="a [sources.NAME] of the nodes")
    loader.add_argument("--loader-query", metavar="SQL", help="loads one key ($1); one value")
    loader.add_argument(
        "--loader-batch-query", metavar="SQL", help="loads many keys ($1 an array): key, value"
    )
    loader.add_argument("--loader-ttl", metavar="DURATION", help="TTL of loaded values")
    loader.add_argument(
        "--loader-negative-ttl", metavar="DURATION", help="remember keys without a row this long"
    )
    loader.add_argument("--loader-timeout", metavar="DURATION", help="a load's time limit")
    loader.add_argument(
        "--loader-refresh-ahead",
        metavar="FRACTION",
        help="reload a key read after this fraction of its TTL (e.g. 0.8)",
    )
    loader.add_argument("--loader-channel", metavar="NAME", help="LISTEN channel (invalidation)")
    loader.add_argument(
        "--loader-stale-if-error",
        metavar="DURATION",
        help="keep loaded values this long past their TTL, served when a reload fails",
    )
    loader.add_argument(
        "--loader-on-notify",
        choices=["drop", "reload", ""],
        help="a key announced on the channel: drop it (default), or reload it at its owner",
    )
    loader.add_argument("--no-loader", action="store_true", help="remove the namespace's loader")


def _add_loader(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("sql",))
    p.add_argument("name", metavar="NAME", help="a namespace with a loader that names a channel")
    p.add_argument("--table", required=True, help="the table the loader query reads")
    p.add_argument("--key-column", required=True, metavar="COLUMN", help="the table's key column")


def _add_raft(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("status", "add", "remove"))
    p.add_argument("address", nargs="?", metavar="ADDR", help="a voter's Raft address host:port")


#: name, handler, one-line help, arguments. The order is the order of ``meshcache --help``.
_CLIENT_SPECS: list[tuple[str, Handler, str, Callable[[argparse.ArgumentParser], None]]] = [
    ("ping", _ping, "check that the node answers", _nothing),
    ("get", _get, "print a key's value (or write it to a file: --file)", _add_get),
    ("gets", _gets, "print a key's version and value (VERSION<TAB>VALUE), for cas", _key),
    ("set", _set, "store a value (VALUE, - for stdin, or --file PATH)", _add_set),
    ("cas", _cas, "replace a value only if its version is still VERSION", _add_cas),
    ("del", _del, "delete keys; print how many existed", _keys),
    ("exists", _exists, "print how many of the keys exist", _keys),
    ("incr", _incr, "add to an integer value; print the new value", _add_by),
    ("decr", _decr, "subtract from an integer value; print the new value", _add_by),
    ("getdel", _getdel, "print a key's value and delete the key", _key),
    ("append", _append, "append to a value; print its new length", _add_append),
    ("strlen", _strlen, "print the length of a value in bytes", _key),
    (
        "incrbyfloat",
        _incrbyfloat,
        "add AMOUNT to a decimal number value; print the new value",
        _add_incrbyfloat,
    ),
    ("type", _type, "print a key's type: string, hash, list, set or zset", _key),
    ("ttl", _ttl, "print the seconds a key has left, or 'no expiry'", _key),
    ("expire", _expire, "set a key's expiry (exit 1 when absent)", _add_expire),
    ("persist", _persist, "remove a key's expiry (exit 1 when it had none)", _key),
    ("mget", _mget, "print the values of several keys, (nil) for missing ones", _keys),
    ("mset", _mset, "set several keys: KEY VALUE [KEY VALUE ...]", _add_pairs("KEY_VALUE")),
    ("info", _info, "print the node's identity and figures, by section", _nothing),
    ("members", _members, "print the gossip view of the members and their ring state", _nothing),
    (
        "dbsize",
        _dbsize,
        "print how many keys the namespace holds: each ring member counts the keys it owns "
        "first (exit 3 when a member cannot be asked); --node: one node's keys",
        _add_dbsize,
    ),
    (
        "keys",
        _keys_walk,
        "print the namespace's keys matching PATTERN, sorted, from every member of the mesh "
        "(exit 1: none)",
        _add_keys,
    ),
    ("flush", _flush, "delete every key of the namespace (needs --yes)", _add_flush),
    ("hget", _hget, "print a hash field", _add_field),
    (
        "hset",
        _hset,
        "set hash fields: KEY FIELD VALUE [FIELD VALUE ...]",
        _add_key_pairs("FIELD_VALUE"),
    ),
    ("hdel", _hdel, "remove hash fields; print how many existed", _add_fields),
    ("hgetall", _hgetall, "print every field and value of a hash", _key),
    ("hincrby", _hincrby, "add to an integer hash field; print the new value", _add_hincrby),
    ("hlen", _hlen, "print how many fields a hash has", _key),
    ("lpush", _push(left=True), "push values to the head of a list", _add_values),
    ("rpush", _push(left=False), "append values to the tail of a list", _add_values),
    ("lpop", _pop(left=True), "remove and print the head of a list", _key),
    ("rpop", _pop(left=False), "remove and print the tail of a list", _key),
    ("lrange", _lrange, "print list elements START..STOP (inclusive)", _add_range),
    ("llen", _llen, "print a list's length", _key),
    ("sadd", _sadd, "add members to a set", _add_members),
    ("srem", _srem, "remove members from a set; print how many were there", _add_members),
    ("sismember", _sismember, "print yes if MEMBER is in the set (exit 1: no)", _add_member),
    ("smembers", _smembers, "print a set's members", _key),
    ("scard", _scard, "print how many members a set has", _key),
    (
        "spop",
        _spop,
        "remove and print a random member of a set (--count N: up to N of them)",
        _add_count("how many members, printed one a line"),
    ),
    (
        "zadd",
        _zadd,
        "add scored members: KEY SCORE MEMBER [SCORE MEMBER ...]; print how many were new",
        _add_zadd,
    ),
    ("zrem", _zrem, "remove sorted-set members; print how many were there", _add_members),
    ("zscore", _zscore, "print a member's score", _add_member),
    ("zincrby", _zincrby, "add to a member's score; print the new score", _add_zincrby),
    ("zrank", _zrank, "print a member's rank (0 = lowest score)", _add_member),
    ("zcard", _zcard, "print how many members a sorted set has", _key),
    (
        "zpopmin",
        _zpop(highest=False),
        "remove and print the lowest-scoring members (MEMBER<TAB>SCORE)",
        _add_count("how many members"),
    ),
    (
        "zpopmax",
        _zpop(highest=True),
        "remove and print the highest-scoring members (MEMBER<TAB>SCORE)",
        _add_count("how many members"),
    ),
    ("zrange", _zrange, "print sorted-set members by rank START..STOP", _add_zrange),
    (
        "zrangebyscore",
        _zrangebyscore,
        "print sorted-set members with MIN <= score <= MAX",
        _add_zrangebyscore,
    ),
    (
        "ns",
        _ns,
        "namespaces: ns list | ns show NAME | ns set NAME [--eviction ...] | ns drop NAME",
        _add_ns,
    ),
    (
        "loader",
        _loader,
        "loader sql NAME --table T --key-column C: print the trigger that NOTIFYs changed keys",
        _add_loader,
    ),
    ("ring", _ring, "print the committed ring: version, members, state, zone, share", _nothing),
    (
        "hotkeys",
        _hotkeys,
        "print the hot keys of every namespace cluster-wide: owner, rate, share, holders, and "
        "each node's copies (exit 3 when a member cannot be asked)",
        _nothing,
    ),
    ("raft", _raft, "config voters: raft status | raft add ADDR | raft remove ADDR", _add_raft),
]


def _client_options() -> _Parser:
    common = _Parser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument("--host", default="127.0.0.1", help="node address (default 127.0.0.1)")
    group.add_argument("--port", default="7400", help="node data port (default 7400)")
    group.add_argument(
        "--namespace", "-n", default="default", metavar="NAME", help="namespace (default default)"
    )
    group.add_argument(
        "--timeout",
        default="5",
        metavar="DURATION",
        help="connect and answer timeout (default 5s, at most 365d)",
    )
    group.add_argument("--json", action="store_true", help="print JSON instead of text")
    _user_option(group)
    _tls_options(group)
    return common


def _user_option(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--user",
        default=os.environ.get(USER_ENV) or None,
        metavar="NAME",
        help=f"authenticate as this user (${USER_ENV}); the password comes from "
        f"${PASSWORD_ENV}, or is asked at the terminal, or is stdin's first line (never when "
        "stdin carries the value)",
    )


def _start_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "start",
        help=_SHORT_HELP["start"],
        description="Run a node. Precedence: defaults < TOML file < MESHCACHE_* environment "
        "< these flags. Sizes take units (512k, 256MiB, 1GB); durations too (300, 1.5s, 5m). "
        "Before starting, each port is bound once to check it is free; a port in use is named "
        "with its setting (exit 1).",
    )
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML file (or $MESHCACHE_CONFIG)")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective settings as TOML and exit without starting",
    )
    node = p.add_argument_group("node settings")
    limits = p.add_argument_group("limits")
    for spec in SETTINGS:
        group = node if spec.table == "node" else limits
        kwargs: dict[str, Any] = {}
        if spec.key in ("join", "raft_peers"):
            kwargs["action"] = "append"
        elif spec.key in ("bootstrap", "insecure"):
            kwargs.update(action="store_const", const=True)
            kwargs.pop("metavar", None)
        group.add_argument(
            spec.flag,
            dest=spec.name,
            metavar=spec.metavar,
            default=argparse.SUPPRESS,  # absent flags must not override the file or environment
            help=f"{spec.help} (${spec.env})",
            **kwargs,
        )
    p.set_defaults(run=_start)


def _ring_change_parser(
    sub: argparse._SubParsersAction[_Parser], name: str, handler: Handler, outcome: str, moves: str
) -> None:
    """``leave`` and ``join``: one node op sent to the node named by --host/--port."""
    help = _SHORT_HELP[name]
    p = sub.add_parser(name, help=help, description=f"{help.capitalize()}. {outcome}")
    group = p.add_argument_group("connection and output")
    group.add_argument("--host", default="127.0.0.1", help="node address (default 127.0.0.1)")
    group.add_argument("--port", default="7400", help="node data port (default 7400)")
    group.add_argument(
        "--timeout",
        default="30",
        metavar="DURATION",
        help=f"how long the node may take to {moves} (default 30s); the answer is "
        f"awaited {LEAVE_ANSWER_SLACK:g} s longer",
    )
    group.add_argument("--json", action="store_true", help="print JSON instead of text")
    _user_option(group)
    _tls_options(group)
    p.set_defaults(run=_run_client, handler=handler)


def _leave_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    _ring_change_parser(
        sub,
        "leave",
        _leave,
        "The node keeps running until you stop it; the ring no longer lists it.",
        "hand its keys over",
    )


def _join_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    _ring_change_parser(
        sub,
        "join",
        _join,
        "For a running node that left the ring with 'leave': it registers as joining, pulls "
        "every range it will own, and answers once it is active. A node on the ring already "
        "is refused (exit 4, INVALID_TRANSITION).",
        "pull the keys it will own",
    )


def _demo(args: argparse.Namespace) -> int:
    from meshcache.demo import DemoOptions, run

    options = DemoOptions(
        nodes=_whole(args.nodes, "--nodes"),
        base_port=parse_port(args.base_port, "--base-port"),
        data_dir=args.data_dir,
        start_timeout=parse_duration(args.timeout, "--timeout"),
        with_postgres=args.with_postgres,
        tls=args.tls,
    )
    return run(options)


def _demo_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "demo",
        help=_SHORT_HELP["demo"],
        description="Start N nodes on this host, each in its own process, wait until the ring "
        "lists them all, print their addresses, and stop them all on Ctrl-C or SIGTERM (on "
        "Linux the nodes also stop when the demo is killed). Node i gets data port BASE+2i "
        "(gossip UDP on the same number, Raft on the next), admin port BASE+2000+i; the first "
        "three nodes are the Raft voters. Members suspected or declared dead are reported as "
        "they happen, and counted when the demo stops.",
    )
    p.add_argument("--nodes", default="3", metavar="N", help="how many nodes (default 3)")
    p.add_argument(
        "--base-port",
        default="7400",
        metavar="PORT",
        help="data port of node 0 (default 7400); 0 lets the kernel pick every port",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="keep the nodes' files in DIR/node<i> (default: a temporary directory, removed "
        "unless a node failed to start)",
    )
    p.add_argument(
        "--timeout",
        default="60",
        metavar="DURATION",
        help="how long the mesh may take to form (default 60s)",
    )
    p.add_argument(
        "--with-postgres",
        action="store_true",
        help="also start a throwaway PostgreSQL (initdb/postgres must be installed) with a "
        "sample table 'items' read through by namespace 'items', invalidated by NOTIFY",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="make a development CA and certificates in the demo's directory and serve TLS on "
        "every data, RESP and peer connection (mutual TLS between the nodes)",
    )
    p.set_defaults(run=_demo)


def _top(args: argparse.Namespace) -> int:
    from meshcache.tui.main import run

    if args.url is None:
        tls = _tls_of(args)
    else:  # the URL may say TLS (meshcaches://): the flags add to it
        flags = {"tls": args.tls, "ca_file": args.tls_ca}
        flags.update(cert_file=args.tls_cert, key_file=args.tls_key)
        tls = {name: value for name, value in flags.items() if value}
    password = None if args.user is None else _read_password(f"password for {args.user}: ")
    return run(
        host=args.host,
        port=args.port,
        url=args.url,
        refresh=args.refresh,
        read_only=args.read_only,
        username=args.user,
        password=password,
        tls=tls,
    )


def _top_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    help = _SHORT_HELP["top"]
    p = sub.add_parser(
        "top",
        help=help,
        description=f"{help.capitalize()}. Connects to any node, finds every member and polls "
        "each one directly. Keys: 1-5 views, s/r sort, / filter, d drain, x remove a dead "
        "node, e edit a namespace policy, ? help, q quit.",
    )
    p.add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help="the node as meshcache://host:port, or meshcaches://host:port?ca_file=FILE for "
        "TLS (instead of --host and --port)",
    )
    p.add_argument("--host", help="any node of the cluster (default 127.0.0.1)")
    p.add_argument("--port", help="its data port (default 7400)")
    p.add_argument(
        "--refresh",
        default="1s",
        metavar="DURATION",
        help="poll every node this often (default 1s)",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="watch only: drain, remove and policy edits are refused",
    )
    _user_option(p.add_argument_group("authentication"))
    _tls_options(p.add_argument_group("TLS"))
    p.set_defaults(run=_top)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``meshcache`` argument parser (raises instead of exiting; use :func:`main`).

    With ``command``, only that subcommand is added: one command line needs one subparser,
    and building all fifty is a measurable part of a one-shot command's start-up.
    """
    parser = _Parser(
        prog=PROG,
        description="meshcache: run a node, or send one command to a node.",
        epilog="Exit codes: 0 ok, 1 absent/false, 2 usage or config error, "
        f"3 cannot reach the node, 4 the node refused the command. {EMPTY_RULE}",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, add in (
        ("start", _start_parser),
        ("demo", _demo_parser),
        ("leave", _leave_parser),
        ("join", _join_parser),
        ("top", _top_parser),
        ("passwd", _passwd_parser),
        ("certs", _certs_parser),
    ):
        if command is None or command == name:
            add(sub)
    if command is not None and command not in _CLIENT_NAMES:
        return parser
    common = _client_options()
    for name, handler, help, add_args in _CLIENT_SPECS:
        if command is not None and command != name:
            continue
        p = sub.add_parser(
            name, help=help, description=f"{help[0].upper()}{help[1:]}.", parents=[common]
        )
        p.epilog = EMPTY_RULE
        p.intermixed = True
        add_args(p)
        p.set_defaults(run=_run_client, handler=handler)
    return parser


_CLIENT_NAMES = frozenset(name for name, *_ in _CLIENT_SPECS)
_SHORT_HELP = {
    "start": "run a node until SIGTERM or SIGINT",
    "demo": "run a local mesh of N node processes until Ctrl-C",
    "leave": "drain a node: hand its keys to the other owners, then take it out of the ring",
    "join": "put a node that left the ring back on it: it pulls its keys, then serves them",
    "top": "the admin console: watch every member live, drain, remove, edit policies",
    "passwd": "print the hash of a password for a [users.NAME] table",
    "certs": "make a development CA and node or client certificates for TLS",
}


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (its first word not starting with ``-``), if known;
    ``""`` (build no subcommand) for ``--version`` before any."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in _CLIENT_NAMES or word in _SHORT_HELP else None
        if word == "--version":
            return ""
        if word in ("-h", "--help"):
            return None
    return None


def _options_before_command(argv: Sequence[str]) -> _UsageError | None:
    """The error for options written before the subcommand (``meshcache --json get k``): the
    top level takes only ``--help`` and ``--version``; every other option is a subcommand's."""
    for at, word in enumerate(argv):
        if not word.startswith("-"):
            command = word if word in _CLIENT_NAMES or word in _SHORT_HELP else None
            early = [w for w in argv[:at] if w not in ("-h", "--help", "--version", "--")]
            if command is None or not early:
                return None
            prog = f"{PROG} {command}"
            return _UsageError(
                f"{PROG}: error: {' '.join(early)}: options go after the subcommand "
                f"({prog} ... {' '.join(early)}; see '{prog} --help')"
            )
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the ``meshcache`` command line; return the process exit code (see the module doc)."""
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_of(words))
    try:
        misplaced = _options_before_command(words)
        if misplaced is not None:
            raise misplaced
        args, extra = parser.parse_known_args(words)
        if extra:
            # argparse reports these from the top parser; point at the subcommand's help.
            prog = f"{PROG} {args.command}"
            raise _UsageError(
                f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see '{prog} --help')"
            )
        status: int = args.run(args)
        return status
    except _Exit as exc:
        return exc.status
    except _UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_USAGE
    except ConfigError as exc:
        return _fail(f"error: {exc}", EXIT_USAGE)
    except LocalProtocolError as exc:
        return _fail(f"error: {exc}", EXIT_USAGE)
    except CommandError as exc:
        return _fail(f"refused: {exc.code}: {exc.message or exc.code}", EXIT_REFUSED)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`meshcache mget ... | head -1`); nothing left to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FALSE


__all__ = [
    "EMPTY_RULE",
    "EXIT_FALSE",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Output",
    "build_parser",
    "main",
]
