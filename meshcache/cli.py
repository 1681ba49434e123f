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
4     the node refused the command; the line carries its error code (e.g. ``WRONGTYPE``)
====  ========================================================================================

Output is for humans by default; ``--json`` prints one JSON document instead. Values that are
valid UTF-8 print as text; in JSON, other values print as ``{"base64": "..."}``.
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
    MeshcacheTimeout,
    RemoteProtocolError,
)
from meshcache.settings import (
    SETTINGS,
    SETTINGS_BY_NAME,
    load_settings,
    parse_address,
    parse_duration,
    parse_port,
    parse_size,
    settings_as_toml,
    unknown_env_vars,
)

if TYPE_CHECKING:
    from meshcache.client.commands import Binary
    from meshcache.client.sync import Client

EXIT_OK = 0
EXIT_FALSE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 4

PROG = "meshcache"

#: ``meshcache leave`` waits this much longer for the answer than the node may take to drain.
LEAVE_ANSWER_SLACK = 5.0
LEAVE_CONNECT_TIMEOUT = 5.0


class _UsageError(Exception):
    """A bad command line, raised instead of argparse's print-usage-and-exit."""


class _Exit(Exception):
    """argparse finished the command itself (``--help``, ``--version``)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting: :func:`main` returns a code, prints one line."""

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
            # Raw bytes, so `meshcache get k > file` returns exactly what was stored.
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


# --- argument converters -----------------------------------------------------------------------


def _arg(text: str) -> bytes:
    # argv arrives decoded with surrogateescape; fsencode gives back the exact bytes typed.
    return os.fsencode(text)


def _seconds(text: str, where: str) -> float:
    """A duration, or a number that may be zero or negative (EXPIRE deletes the key then)."""
    if re.fullmatch(r"\s*-?(\d+(\.\d*)?|\.\d+)\s*", text):
        return float(text)
    return parse_duration(text, where)


def _pairs(items: Sequence[str], what: str) -> list[tuple[str, str]]:
    if len(items) % 2:
        raise _UsageError(f"{PROG}: error: {what} must come in pairs, got {len(items)} words")
    return [(items[i], items[i + 1]) for i in range(0, len(items), 2)]


def _score(text: str) -> float:
    try:
        score = float(text)
    except ValueError:
        raise _UsageError(f"{PROG}: error: score {text!r} is not a number") from None
    if math.isnan(score):
        raise _UsageError(f"{PROG}: error: score {text!r} is not a number")
    return score


# --- client commands ---------------------------------------------------------------------------

Handler = Callable[["Client", argparse.Namespace], Output]


def _ok(flag: bool) -> Output:
    return Output(flag, "OK" if flag else "(no)", EXIT_OK if flag else EXIT_FALSE)


def _count(n: int) -> Output:
    return Output(n, str(n), EXIT_OK if n else EXIT_FALSE)


def _optional(value: bytes | None) -> Output:
    if value is None:
        return Output(None, None, EXIT_FALSE)
    return Output(value, value)


def _ping(c: Client, a: argparse.Namespace) -> Output:
    return Output(c.ping(), "PONG")


def _get(c: Client, a: argparse.Namespace) -> Output:
    return _optional(c.get(_arg(a.key), namespace=a.namespace))


def _set(c: Client, a: argparse.Namespace) -> Output:
    ttl = None if a.ttl is None else parse_duration(a.ttl, "--ttl")
    stored = c.set(
        _arg(a.key), _arg(a.value), ttl, namespace=a.namespace, nx=a.nx, xx=a.xx, keepttl=a.keepttl
    )
    return _ok(bool(stored))


def _del(c: Client, a: argparse.Namespace) -> Output:
    return _count(c.delete(*map(_arg, a.keys), namespace=a.namespace))


def _exists(c: Client, a: argparse.Namespace) -> Output:
    return _count(c.exists(*map(_arg, a.keys), namespace=a.namespace))


def _incr(c: Client, a: argparse.Namespace) -> Output:
    value = c.incr(_arg(a.key), a.by, namespace=a.namespace)
    return Output(value, str(value))


def _decr(c: Client, a: argparse.Namespace) -> Output:
    value = c.decr(_arg(a.key), a.by, namespace=a.namespace)
    return Output(value, str(value))


def _ttl(c: Client, a: argparse.Namespace) -> Output:
    left = c.ttl(_arg(a.key), namespace=a.namespace)
    if left == -2:
        return Output(left, None, EXIT_FALSE)
    return Output(left, "no expiry" if left == -1 else _number(left))


def _expire(c: Client, a: argparse.Namespace) -> Output:
    return _ok(c.expire(_arg(a.key), _seconds(a.seconds, "SECONDS"), namespace=a.namespace))


def _persist(c: Client, a: argparse.Namespace) -> Output:
    return _ok(c.persist(_arg(a.key), namespace=a.namespace))


def _mget(c: Client, a: argparse.Namespace) -> Output:
    values = c.mget([_arg(k) for k in a.keys], namespace=a.namespace)
    return Output(values, _lines(values))


def _mset(c: Client, a: argparse.Namespace) -> Output:
    pairs = _pairs(a.pairs, "keys and values")
    return _ok(c.mset({_arg(k): _arg(v) for k, v in pairs}, namespace=a.namespace))


def _info(c: Client, a: argparse.Namespace) -> Output:
    info = c.info()
    return Output(info, _format_info(info))


def _members(c: Client, a: argparse.Namespace) -> Output:
    members = sorted(c.members(), key=lambda m: str(m.get("name")))
    columns = ("name", "address", "state", "incarnation", "zone", "config_version")
    rows = [[str(m.get(col, "")) for col in columns] for m in members]
    widths = [max([len(col), *(len(r[i]) for r in rows)]) for i, col in enumerate(columns)]
    lines = ["  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return Output(members, "\n".join(line.rstrip() for line in lines))


def _policy_fields(a: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if a.eviction is not None:
        fields["eviction"] = a.eviction
    if a.max_bytes is not None:
        fields["max_bytes"] = parse_size(a.max_bytes, "--max-bytes") or None
    if a.max_items is not None:
        fields["max_items"] = _whole(a.max_items, "--max-items") or None
    if a.ttl is not None:
        fields["default_ttl"] = parse_duration(a.ttl, "--ttl") or None
    if a.replicas is not None:
        replicas = _whole(a.replicas, "--replicas")
        if replicas < 1:
            raise ConfigError("--replicas: must be at least 1")
        fields["replicas"] = replicas
    if a.consistency is not None:
        fields["consistency"] = a.consistency
    return fields


def _whole(text: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a whole number") from None
    if value < 0:
        raise ConfigError(f"{where}: must not be negative")
    return value


def _format_policies(policies: Mapping[str, Any]) -> str:
    lines = []
    for name, policy in sorted(policies.items()):
        described = " ".join(f"{k}={_plain_text(v)}" for k, v in sorted(policy.items()))
        lines.append(f"{name:<16}{described}")
    return "\n".join(lines)


def _ns(c: Client, a: argparse.Namespace) -> Output:
    if a.action != "list" and not a.name:
        raise ConfigError(f"ns {a.action}: NAME is required")
    if a.action == "list":
        policies = c.ns_list()
        return Output(policies, _format_policies(policies))
    if a.action == "show":
        policies = c.ns_list()
        if a.name not in policies:
            return Output(None, "", EXIT_FALSE)
        return Output(policies[a.name], _format_policies({a.name: policies[a.name]}))
    if a.action == "set":
        fields = _policy_fields(a)
        policy = c.ns_set(a.name, fields)
        return Output(policy, _format_policies({a.name: policy}))
    return _ok(c.ns_drop(a.name))


def _ring(c: Client, a: argparse.Namespace) -> Output:
    ring = c.ring()
    lines = [f"ring version {ring.get('version')}"]
    columns = ("node_id", "address", "state", "zone", "weight", "share")
    rows = [[_plain_text(m.get(col, "")) for col in columns] for m in ring.get("members", [])]
    widths = [max([len(col), *(len(r[i]) for r in rows)]) for i, col in enumerate(columns)]
    lines.append("  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True)))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return Output(ring, "\n".join(line.rstrip() for line in lines))


def _raft(c: Client, a: argparse.Namespace) -> Output:
    if a.action == "status":
        status = c.raft_status()
    else:
        if not a.address:
            raise ConfigError(f"raft {a.action}: ADDR is required")
        address = parse_address(a.address, "ADDR")
        status = c.raft_add(address) if a.action == "add" else c.raft_remove(address)
    text = "\n".join(f"{k:<16}{_plain_text(v)}" for k, v in status.items())
    return Output(status, text)


def _leave(c: Client, a: argparse.Namespace) -> Output:
    from meshcache.client import results
    from meshcache.client.core import Command

    # meshcache.client has no leave() method: the command is built and sent here as a client
    # method would do it.
    drain = parse_duration(a.timeout, "--timeout")
    command = Command.build("LEAVE", [{"timeout": drain}], "default", results.str_map)
    left = c._execute(command)
    moved = left.get("moved")
    text = (
        f"{_plain_text(left.get('node_id'))} left the ring: {_plain_text(moved)}"
        f" {'key' if moved == 1 else 'keys'} handed over, ring version"
        f" {_plain_text(left.get('ring_version'))}"
    )
    return Output(left, text)


def _dbsize(c: Client, a: argparse.Namespace) -> Output:
    n = c.dbsize(namespace=a.namespace)
    return Output(n, str(n))


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


def _hgetall(c: Client, a: argparse.Namespace) -> Output:
    fields = c.hgetall(_arg(a.key), namespace=a.namespace)
    text = "\n".join(f"{_text(f)}\t{_text(v)}" for f, v in sorted(fields.items()))
    return Output(fields, text, EXIT_OK if fields else EXIT_FALSE)


def _push(left: bool) -> Handler:
    def run(c: Client, a: argparse.Namespace) -> Output:
        push = c.lpush if left else c.rpush
        n = push(_arg(a.key), *map(_arg, a.values), namespace=a.namespace)
        return Output(n, str(n))

    return run


def _lrange(c: Client, a: argparse.Namespace) -> Output:
    items = c.lrange(_arg(a.key), a.start, a.stop, namespace=a.namespace)
    return Output(items, _lines(items))


def _sadd(c: Client, a: argparse.Namespace) -> Output:
    n = c.sadd(_arg(a.key), *map(_arg, a.members), namespace=a.namespace)
    return Output(n, str(n))


def _smembers(c: Client, a: argparse.Namespace) -> Output:
    members = sorted(c.smembers(_arg(a.key), namespace=a.namespace))
    return Output(members, _lines(members), EXIT_OK if members else EXIT_FALSE)


def _zadd(c: Client, a: argparse.Namespace) -> Output:
    pairs = _pairs(a.pairs, "scores and members")
    mapping: dict[Binary, float] = {_arg(member): _score(score) for score, member in pairs}
    n = c.zadd(_arg(a.key), mapping, namespace=a.namespace)
    return Output(n, str(n))


def _zrange(c: Client, a: argparse.Namespace) -> Output:
    items = c.zrange(
        _arg(a.key), a.start, a.stop, namespace=a.namespace, withscores=a.withscores, rev=a.rev
    )
    if a.withscores:
        text = "\n".join(f"{_text(m)}\t{_number(s)}" for m, s in items)
        return Output([[m, s] for m, s in items], text)
    return Output(items, _lines(items))


def _format_info(info: Mapping[str, Any]) -> str:
    """INFO for humans: the node's fields, then one block per namespace (unknown fields too)."""
    first = [key for key in ("node_id", "version", "uptime_s") if key in info]
    rest = [key for key in info if key not in first and key != "namespaces"]
    lines = [f"{key:<14}{_plain_text(info[key])}" for key in first + rest]
    namespaces = info.get("namespaces")
    if isinstance(namespaces, Mapping):
        for name, figures in sorted(namespaces.items()):
            lines += ["", f"namespace {name}"]
            if isinstance(figures, Mapping):
                lines += [f"  {key:<14}{_plain_text(value)}" for key, value in figures.items()]
    return "\n".join(lines)


def _plain_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, Mapping):
        return " ".join(f"{k}={_plain_text(v)}" for k, v in value.items())
    return str(value)


def _connect(host: str, port: int, *, connect_timeout: float, timeout: float) -> Client:
    from meshcache.client.routing import Address
    from meshcache.client.sync import Client

    # One-shot commands talk to the node they name: it forwards a key to its owner itself,
    # which costs less than learning the ring first.
    return Client(
        Address(host, port), connect_timeout=connect_timeout, timeout=timeout, smart=False
    )


def _run_client(args: argparse.Namespace) -> int:
    port = parse_port(args.port, "--port")
    if port == 0:
        raise ConfigError("--port: 0 is not a port a node listens on")
    host = args.host.strip()
    if not host:
        raise ConfigError("--host: must not be empty")
    timeout = parse_duration(args.timeout, "--timeout")
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    handler: Handler = args.handler
    connect_timeout = timeout
    if handler is _leave:
        # leave's --timeout is how long the node may take to drain; its answer comes after.
        connect_timeout = LEAVE_CONNECT_TIMEOUT
        timeout += LEAVE_ANSWER_SLACK
    try:
        with _connect(host, port, connect_timeout=connect_timeout, timeout=timeout) as client:
            out = handler(client, args)
    except MeshcacheTimeout:
        return _fail(f"no answer from {where} within {_number(timeout)} s", EXIT_UNREACHABLE)
    except MeshcacheConnectionError as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)  # it names the address and the OS's reason
    except RemoteProtocolError as exc:
        return _fail(f"{where} does not speak the meshcache protocol: {exc}", EXIT_UNREACHABLE)
    except OSError as exc:
        return _fail(f"cannot reach {where}: {exc.strerror or exc}", EXIT_UNREACHABLE)
    if args.json:
        _write(json.dumps(_jsonable(out.data), ensure_ascii=False))
    elif isinstance(out.text, bytes) or out.text:
        # A stored value prints even when empty; an empty list prints nothing, not a blank line.
        _write(out.text)
    return out.status


def _fail(message: str, status: int) -> int:
    sys.stderr.write(f"{PROG}: {message}\n")
    return status


# --- start -------------------------------------------------------------------------------------


def _start(args: argparse.Namespace) -> int:
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
    # Imported here: the node pulls in trio, the store and prometheus, which the client
    # commands never need.
    from meshcache.node.node import run

    return run(settings)


# --- the parser --------------------------------------------------------------------------------

_HANDLERS: dict[str, Handler] = {
    "ping": _ping,
    "get": _get,
    "set": _set,
    "del": _del,
    "exists": _exists,
    "incr": _incr,
    "decr": _decr,
    "ttl": _ttl,
    "expire": _expire,
    "persist": _persist,
    "mget": _mget,
    "mset": _mset,
    "info": _info,
    "members": _members,
    "ns": _ns,
    "ring": _ring,
    "raft": _raft,
    "dbsize": _dbsize,
    "flush": _flush,
    "hget": _hget,
    "hset": _hset,
    "hgetall": _hgetall,
    "lpush": _push(left=True),
    "rpush": _push(left=False),
    "lrange": _lrange,
    "sadd": _sadd,
    "smembers": _smembers,
    "zadd": _zadd,
    "zrange": _zrange,
}


def _key(p: argparse.ArgumentParser) -> None:
    p.add_argument("key", metavar="KEY")


def _keys(p: argparse.ArgumentParser) -> None:
    p.add_argument("keys", metavar="KEY", nargs="+")


def _nothing(p: argparse.ArgumentParser) -> None:
    pass


def _add_set(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("value", metavar="VALUE")
    p.add_argument("--ttl", metavar="DURATION", help="expire after this long (300, 1.5s, 5m)")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--nx", action="store_true", help="only if the key is absent")
    cond.add_argument("--xx", action="store_true", help="only if the key exists")
    p.add_argument("--keepttl", action="store_true", help="keep the key's current expiry")


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


def _add_flush(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true", help="confirm deleting every key")


def _add_hget(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("field", metavar="FIELD")


def _add_values(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("values", metavar="VALUE", nargs="+")


def _add_members(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("members", metavar="MEMBER", nargs="+")


def _add_range(p: argparse.ArgumentParser) -> None:
    _key(p)
    p.add_argument("start", type=int, metavar="START")
    p.add_argument("stop", type=int, metavar="STOP", help="inclusive; -1 is the last")


def _add_zrange(p: argparse.ArgumentParser) -> None:
    _add_range(p)
    p.add_argument("--withscores", action="store_true", help="print each member's score")
    p.add_argument("--rev", action="store_true", help="rank from the highest score")


def _add_ns(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "show", "set", "drop"))
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--eviction", choices=("lru", "lfu", "ttl", "none"))
    p.add_argument("--max-bytes", metavar="SIZE", help="e.g. 256MiB; 0 = unbounded")
    p.add_argument("--max-items", metavar="N", help="0 = unbounded")
    p.add_argument("--ttl", metavar="DURATION", help="default TTL, e.g. 300 or 5m; 0 = none")
    p.add_argument("--replicas", metavar="N")
    p.add_argument(
        "--consistency",
        choices=("one", "quorum", "all"),
        help="when a write is acknowledged: by one owner, a majority of owners, or all",
    )


def _add_raft(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("status", "add", "remove"))
    p.add_argument("address", nargs="?", metavar="ADDR", help="a voter's Raft address host:port")


_CLIENT_SPECS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = [
    ("ping", "check that the node answers", _nothing),
    ("get", "print a key's value (exit 1 when absent)", _key),
    ("set", "store a value", _add_set),
    ("del", "delete keys; print how many existed (exit 1 when none)", _keys),
    ("exists", "print how many of the keys exist (exit 1 when none)", _keys),
    ("incr", "add to an integer value; print the new value", _add_by),
    ("decr", "subtract from an integer value; print the new value", _add_by),
    ("ttl", "print seconds left (exit 1 when absent)", _key),
    ("expire", "set a key's expiry (exit 1 when absent)", _add_expire),
    ("persist", "remove a key's expiry (exit 1 when it had none)", _key),
    ("mget", "print the values of several keys, (nil) for absent ones", _keys),
    ("mset", "set several keys: KEY VALUE [KEY VALUE ...]", _add_pairs("KEY_VALUE")),
    ("info", "print the node's identity and namespace figures", _nothing),
    ("members", "print the node's gossip view of the cluster members", _nothing),
    ("dbsize", "print how many keys the namespace holds", _nothing),
    ("flush", "delete every key of the namespace (needs --yes)", _add_flush),
    ("hget", "print a hash field (exit 1 when absent)", _add_hget),
    ("hset", "set hash fields: KEY FIELD VALUE [FIELD VALUE ...]", _add_key_pairs("FIELD_VALUE")),
    ("hgetall", "print every field and value of a hash", _key),
    ("lpush", "push values to the head of a list", _add_values),
    ("rpush", "append values to the tail of a list", _add_values),
    ("lrange", "print list elements START..STOP (inclusive)", _add_range),
    ("sadd", "add members to a set", _add_members),
    ("smembers", "print a set's members", _key),
    (
        "zadd",
        "add scored members: KEY SCORE MEMBER [SCORE MEMBER ...]",
        _add_key_pairs("SCORE_MEMBER"),
    ),
    ("zrange", "print sorted-set members by rank START..STOP", _add_zrange),
    (
        "ns",
        "namespaces: ns list | ns show NAME | ns set NAME [--eviction ...] | ns drop NAME",
        _add_ns,
    ),
    ("ring", "print the committed ring: version, members, state, zone, share", _nothing),
    ("raft", "config voters: raft status | raft add ADDR | raft remove ADDR", _add_raft),
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
        "--timeout", default="5", metavar="DURATION", help="connect and answer timeout (default 5s)"
    )
    group.add_argument("--json", action="store_true", help="print JSON instead of text")
    return common


def _start_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "start",
        help="run a node until SIGTERM or SIGINT",
        description="Run a node. Precedence: defaults < TOML file < MESHCACHE_* environment "
        "< these flags. Sizes take units (512k, 256MiB, 1GB); durations too (300, 1.5s, 5m).",
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
        elif spec.key == "bootstrap":
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


def _leave_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    help = "drain a node: hand its keys to the other owners, then take it out of the ring"
    p = sub.add_parser(
        "leave",
        help=help,
        description=f"{help.capitalize()}. The node keeps running until you stop it; the ring "
        "no longer lists it.",
    )
    group = p.add_argument_group("connection and output")
    group.add_argument("--host", default="127.0.0.1", help="node address (default 127.0.0.1)")
    group.add_argument("--port", default="7400", help="node data port (default 7400)")
    group.add_argument(
        "--timeout",
        default="30",
        metavar="DURATION",
        help="how long the node may take to hand its keys over (default 30s); the answer is "
        f"awaited {LEAVE_ANSWER_SLACK:g} s longer",
    )
    group.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(run=_run_client, handler=_leave)


def _demo(args: argparse.Namespace) -> int:
    from meshcache.demo import DemoOptions, run

    options = DemoOptions(
        nodes=_whole(args.nodes, "--nodes"),
        base_port=parse_port(args.base_port, "--base-port"),
        data_dir=args.data_dir,
        start_timeout=parse_duration(args.timeout, "--timeout"),
    )
    return run(options)


def _demo_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run a local mesh of N node processes until Ctrl-C",
        description="Start N nodes on this host, each in its own process, wait until the ring "
        "lists them all, print their addresses, and stop them all on Ctrl-C or SIGTERM. Node i "
        "gets data port BASE+2i (gossip UDP on the same number, Raft on the next), admin port "
        "BASE+2000+i; the first three nodes are the Raft voters.",
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
        help="keep the nodes' files in DIR/node<i> (default: a temporary directory, removed)",
    )
    p.add_argument(
        "--timeout",
        default="60",
        metavar="DURATION",
        help="how long the mesh may take to form (default 60s)",
    )
    p.set_defaults(run=_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``meshcache`` argument parser (raises instead of exiting; use :func:`main`)."""
    parser = _Parser(
        prog=PROG,
        description="meshcache: run a node, or send one command to a node.",
        epilog="Exit codes: 0 ok, 1 absent/false, 2 usage or config error, "
        "3 cannot reach the node, 4 the node refused the command.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _start_parser(sub)
    _demo_parser(sub)
    _leave_parser(sub)
    common = _client_options()
    for name, help, add_args in _CLIENT_SPECS:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        add_args(p)
        p.set_defaults(run=_run_client, handler=_HANDLERS[name])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``meshcache`` command line; return the process exit code (see the module doc)."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
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
    "EXIT_FALSE",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Output",
    "build_parser",
    "main",
]
