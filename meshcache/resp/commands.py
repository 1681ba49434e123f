"""The Redis command table: every Redis command meshcache answers, mapped onto the op table.

One :class:`Command` row per command, in :data:`COMMANDS` (keyed by the lower-case name as
bytes). A row says what Redis's ``COMMAND`` says of it — arity (Redis's convention: the
command name counts; negative means "at least"), flags, key positions, group, summary — and
which ops of :data:`meshcache.wire.ops.OPS` it runs (``ops``). Its handler turns the Redis
arguments into op arguments with Redis's checks and messages and encodes the op's result as
Redis would, in RESP2 or RESP3.

Three kinds of rows:

* **direct** — one op (GET → ``GET``, DEL → ``DELETE``, HSET → ``HSET`` ...);
* **composed** (``composed=True``) — an ``async`` handler that awaits ops (see
  :mod:`meshcache.resp.session`): FLUSHALL (one ``FLUSH`` per namespace) and INCRBYFLOAT (one
  op, whose refusals get Redis's INCRBYFLOAT texts). A command whose Redis semantics need
  several steps on one key has an op of its own (GETDEL, APPEND, SPOP, ZPOPMIN, LPOP with a
  count ...), so it is atomic on the key's coordinator wherever the client connects; one read
  answers GETRANGE, HMGET, HEXISTS, HKEYS, HVALS, SMISMEMBER, SRANDMEMBER, LINDEX, ZCOUNT.

* **connection and server** commands (PING, HELLO, SELECT, CLIENT, INFO, CONFIG, COMMAND ...)
  answered from the session and the node's routes.

What is not here answers ``ERR unknown command``, as Redis does for a command it lacks;
docs/resp.md lists it and why.
"""

from __future__ import annotations

import fnmatch
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshcache._version import __version__
from meshcache.errors import CommandError, ErrorCode
from meshcache.resp.encoder import EMPTY_ARRAY, OK, PONG, Encoder, bulk, integer, simple
from meshcache.resp.session import WRONGPASS, RedisError, Session, wrong_arity
from meshcache.wire.pending import Pending

#: The Redis version meshcache reports (HELLO, INFO): the release whose commands and replies
#: the table follows. Some clients gate features on it.
REDIS_VERSION = "7.2.0"
#: Redis's INCRBYFLOAT refusal of a sum that is not finite; the INCRBYFLOAT op's NOT_FLOAT
#: message says the same words (docs/protocol.md), the other NOT_FLOAT is a stored non-number.
NAN_OR_INFINITY = "increment would produce NaN or Infinity"

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

Handler = Callable[[Session, list[bytes]], Any]


@dataclass(frozen=True, slots=True)
class Command:
    """One Redis command (or subcommand, named ``parent|sub``)."""

    name: str
    arity: int
    flags: tuple[str, ...]
    first_key: int
    last_key: int
    step: int
    group: str
    summary: str
    run: Handler
    ops: tuple[str, ...] = ()
    composed: bool = False
    since: str = "1.0.0"
    subcommands: Mapping[str, Command] = field(default_factory=dict)


# --- argument parsing with Redis's messages ---------------------------------------------------

NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
SYNTAX = "ERR syntax error"
OUT_OF_RANGE_POSITIVE = "ERR value is out of range, must be positive"
COUNT_OUT_OF_RANGE = (
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
)


def arg_int(data: bytes, message: str = NOT_INTEGER) -> int:
    """A signed 64-bit integer written as Redis's ``string2ll`` accepts it (no sign ``+``, no
    spaces, no leading zeros)."""
    if len(data) <= 20 and (data.isdigit() or (data[:1] == b"-" and data[1:].isdigit())):
        n = int(data)
        if b"%d" % n == data and INT64_MIN <= n <= INT64_MAX:
            return n
    raise RedisError(message, "not_integer")


def arg_float(data: bytes, message: str = NOT_FLOAT) -> float:
    """A double as Redis's ``strtod`` reads it (``1.5``, ``-3e2``, ``inf``, ``+inf``); NaN and
    text with spaces or ``_`` are refused."""
    if data and not data[:1].isspace() and not data[-1:].isspace() and b"_" not in data:
        try:
            x = float(data)
        except ValueError:
            pass
        else:
            if not math.isnan(x):
                return x
    raise RedisError(message, "not_float")


_INFINITIES = frozenset({b"inf", b"infinity"})


def arg_score(data: bytes) -> float:
    """A score of ZADD or ZINCRBY: :func:`arg_float`, and, as Redis refuses what ``strtod``
    reports out of range, no number too large for a double (``1e400``) nor one so small that
    it rounds to zero (``1e-400``); ``inf`` written as such is a score."""
    x = arg_float(data)
    if math.isinf(x):
        if data.lstrip(b"+-").lower() not in _INFINITIES:
            raise RedisError(NOT_FLOAT, "not_float")
    elif x == 0.0 and any(c in b"123456789" for c in data.lower().partition(b"e")[0]):
        raise RedisError(NOT_FLOAT, "not_float")
    return x


def arg_bound(data: bytes) -> float:
    """A score bound of ZRANGEBYSCORE/ZCOUNT: ``5``, ``(5`` (exclusive), ``-inf``, ``+inf``.

    An exclusive bound becomes the nearest double past it, which selects exactly the same
    scores as the op's inclusive bounds."""
    message = "ERR min or max is not a float"
    if data[:1] == b"(":
        x = arg_float(data[1:], message)
        return x  # direction applied by the caller
    return arg_float(data, message)


def _bounds(low: bytes, high: bytes) -> tuple[float, float]:
    """Inclusive bounds selecting what Redis's bounds select; an exclusive ``(+inf`` minimum
    or ``(-inf`` maximum selects nothing (no double lies past it): ``(inf, -inf)``."""
    lo, hi = arg_bound(low), arg_bound(high)
    if low[:1] == b"(":
        if lo == math.inf:
            return math.inf, -math.inf
        lo = math.nextafter(lo, math.inf)
    if high[:1] == b"(":
        if hi == -math.inf:
            return math.inf, -math.inf
        hi = math.nextafter(hi, -math.inf)
    return lo, hi


def _count(data: bytes) -> int:
    n = arg_int(data, OUT_OF_RANGE_POSITIVE)
    if n < 0:
        raise RedisError(OUT_OF_RANGE_POSITIVE, "not_integer")
    return n


# --- reply helpers ----------------------------------------------------------------------------


def _int_reply(result: Any) -> bytes:
    return b":%d\r\n" % int(result)


def _ok(result: Any) -> bytes:
    return OK


def _score_pairs(enc: Encoder, pairs: list[list[Any]], nested: bool) -> bytes:
    """``[[member, score], ...]`` as Redis answers WITHSCORES: flat in RESP2; pairs in RESP3
    (``nested``) — ZPOPMIN without a count is flat in both. ``enc`` is the connection's
    encoder when the command ran: a reply that arrives later is written in that protocol."""
    if nested and enc.protocol == 3:
        return enc.array([enc.array([bulk(m), enc.double(x)]) for m, x in pairs])
    items: list[bytes] = []
    for m, x in pairs:
        items.append(bulk(m))
        items.append(enc.double(x))
    return enc.array(items)


# --- connection ---------------------------------------------------------------------------------


def cmd_ping(s: Session, argv: list[bytes]) -> bytes:
    if len(argv) > 2:
        raise wrong_arity("ping")
    s.server.counters.requests["PING"] += 1
    return PONG if len(argv) == 1 else bulk(argv[1])


def cmd_echo(s: Session, argv: list[bytes]) -> bytes:
    return bulk(argv[1])


def cmd_quit(s: Session, argv: list[bytes]) -> bytes:
    s.closing = True
    return OK


def cmd_reset(s: Session, argv: list[bytes]) -> bytes:
    s.reset()
    return simple("RESET")


def cmd_auth(s: Session, argv: list[bytes]) -> bytes | Pending:
    if len(argv) > 3:
        raise RedisError(SYNTAX)
    if not _has_users(s):
        if len(argv) == 2:
            raise RedisError(
                "ERR AUTH <password> called without any password configured for the default "
                "user. Are you sure your configuration is correct?",
                "auth",
            )
        _check_user(argv[1])
        return OK
    # ``AUTH password`` is Redis's ``AUTH default password``: the user named ``default``.
    user, password = (b"default", argv[1]) if len(argv) == 2 else (argv[1], argv[2])
    return s.authenticate(user, password, lambda: OK)


def _has_users(s: Session) -> bool:
    return s.ident is not None and bool(s.ident.guard.users)


def _check_user(user: bytes) -> None:
    # A node with no users is a Redis whose only user is ``default`` with ``nopass``: any
    # password of ``default`` is accepted and every other user refused.
    if user != b"default":
        raise RedisError(WRONGPASS, "auth")


HELLO_NOAUTH = (
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
    "AUTH <user> <pass> option can be used to authenticate the client and select the RESP "
    "protocol version at the same time"
)


def cmd_hello(s: Session, argv: list[bytes]) -> bytes | Pending:
    protocol = s.protocol
    i = 1
    if len(argv) > 1:
        try:
            protocol = arg_int(argv[1])
        except RedisError:
            raise RedisError(
                "ERR Protocol version is not an integer or out of range", "not_integer"
            ) from None
        if protocol not in (2, 3):
            raise RedisError("NOPROTO unsupported protocol version", "noproto")
        i = 2
    name: bytes | None = None
    auth: tuple[bytes, bytes] | None = None
    while i < len(argv):
        option = argv[i].upper()
        if option == b"AUTH" and i + 2 < len(argv):
            auth = (argv[i + 1], argv[i + 2])
            i += 3
        elif option == b"SETNAME" and i + 1 < len(argv):
            name = _client_name(argv[i + 1])
            i += 2
        else:
            raise RedisError(
                f"ERR Syntax error in HELLO option '{argv[i].decode('utf-8', 'replace')}'"
            )

    def hello() -> bytes:
        s.set_protocol(protocol)
        if name is not None:
            s.name = name or None
        enc = s.enc
        return enc.map(
            [
                (bulk(b"server"), bulk(b"redis")),
                (bulk(b"version"), bulk(REDIS_VERSION.encode())),
                (bulk(b"proto"), integer(protocol)),
                (bulk(b"id"), integer(s.id)),
                (bulk(b"mode"), bulk(b"standalone")),
                (bulk(b"role"), bulk(b"master")),
                (bulk(b"modules"), EMPTY_ARRAY),
            ]
        )

    if not _has_users(s):
        if auth is not None:
            _check_user(auth[0])
        return hello()
    if auth is not None:
        return s.authenticate(auth[0], auth[1], hello)
    assert s.ident is not None
    if s.ident.grant.who is None:
        raise s.noauth(HELLO_NOAUTH)
    return hello()


def _db_namespace(index: int) -> str:
    """Database ``index``'s namespace: 0 is ``default``, n ≥ 1 is ``db<n>``."""
    return "default" if index == 0 else f"db{index}"


def _namespaces(s: Session) -> Mapping[str, Any] | None:
    """The cluster's namespaces (name → policy), or None when the node cannot tell yet."""
    try:
        answer = s.route("NS_LIST", [])
    except (CommandError, RedisError):
        return None
    return answer if isinstance(answer, dict) else None


def cmd_select(s: Session, argv: list[bytes]) -> bytes:
    arg = argv[1]
    if arg.isdigit() or (arg[:1] == b"-" and arg[1:].isdigit()):
        index = arg_int(arg)
        name = _db_namespace(index) if index >= 0 else ""
        known = _namespaces(s)
        if index < 0 or (known is not None and name not in known):
            raise RedisError("ERR DB index is out of range", "no_such_db")
        s.namespace, s.db = name, index
        return OK
    _select_name(s, arg)
    return OK


def _select_name(s: Session, arg: bytes) -> None:
    try:
        name = arg.decode("utf-8")
    except UnicodeDecodeError:
        raise RedisError("ERR namespace names are UTF-8 text", "syntax_error") from None
    known = _namespaces(s)
    if known is not None and name not in known:
        raise RedisError(f"ERR no such namespace '{name[:64]}'", "no_such_namespace")
    s.namespace = name
    digits = name[2:] if name.startswith("db") else ""
    s.db = 0 if name == "default" else (int(digits) if digits.isdigit() else None)


def cmd_namespace(s: Session, argv: list[bytes]) -> bytes:
    if len(argv) > 2:
        raise wrong_arity("namespace")
    if len(argv) == 2:
        _select_name(s, argv[1])
        return OK
    return bulk(s.namespace.encode())


_NAME_OK = frozenset(range(33, 127))


def _client_name(name: bytes) -> bytes:
    if any(c not in _NAME_OK for c in name):
        raise RedisError("ERR Client names cannot contain spaces, newlines or special characters.")
    return name


def cmd_client(s: Session, argv: list[bytes]) -> bytes:
    return _subcommand(s, argv, CLIENT_SUBCOMMANDS, "CLIENT")


def client_setname(s: Session, argv: list[bytes]) -> bytes:
    s.name = _client_name(argv[2]) or None
    return OK


def client_getname(s: Session, argv: list[bytes]) -> bytes:
    return s.enc.bulk_or_null(s.name)


def client_setinfo(s: Session, argv: list[bytes]) -> bytes:
    attr = argv[2].upper()
    value = _client_name(argv[3])
    if attr == b"LIB-NAME":
        s.lib_name = value
    elif attr == b"LIB-VER":
        s.lib_ver = value
    else:
        raise RedisError(f"ERR Unrecognized option '{argv[2].decode('utf-8', 'replace')}'")
    return OK


def client_id(s: Session, argv: list[bytes]) -> bytes:
    return integer(s.id)


def _client_line(s: Session) -> bytes:
    db = s.db if s.db is not None else -1
    return b"id=%d addr=%s laddr=%s name=%s db=%d ns=%s resp=%d lib-name=%s lib-ver=%s\n" % (
        s.id,
        s.addr.encode(),
        s.laddr.encode(),
        s.name or b"",
        db,
        s.namespace.encode(),
        s.protocol,
        s.lib_name or b"",
        s.lib_ver or b"",
    )


def client_info(s: Session, argv: list[bytes]) -> bytes:
    return s.enc.verbatim(_client_line(s))


_CLIENT_TYPES = (b"normal", b"master", b"replica", b"slave", b"pubsub")


def client_list(s: Session, argv: list[bytes]) -> bytes:
    """``CLIENT LIST [TYPE type | ID id ...]``: this port's open connections, by id."""
    sessions = [c for _, c in sorted(s.server.sessions.items())]
    if len(argv) == 4 and argv[2].upper() == b"TYPE":
        kind = argv[3].lower()
        if kind not in _CLIENT_TYPES:
            raise RedisError(f"ERR Unknown client type '{argv[3].decode('utf-8', 'replace')}'")
        if kind != b"normal":  # no replicas or subscribers here
            sessions = []
    elif len(argv) > 3 and argv[2].upper() == b"ID":
        ids = set()
        for arg in argv[3:]:
            try:
                ids.add(arg_int(arg))
            except RedisError:
                raise RedisError("ERR Invalid client ID") from None
        sessions = [c for c in sessions if c.id in ids]
    elif len(argv) != 2:
        raise RedisError(SYNTAX)
    return s.enc.verbatim(b"".join(_client_line(c) for c in sessions))


def client_on_off(s: Session, argv: list[bytes]) -> bytes:
    if argv[2].upper() not in (b"ON", b"OFF"):
        raise RedisError(SYNTAX)
    return OK


def client_help(s: Session, argv: list[bytes]) -> bytes:
    return _help(s, "CLIENT", CLIENT_SUBCOMMANDS)


def _subcommand(s: Session, argv: list[bytes], table: Mapping[str, Command], parent: str) -> bytes:
    sub = table.get(argv[1].decode("utf-8", "replace").lower())
    if sub is None:
        raise RedisError(
            f"ERR unknown subcommand '{argv[1].decode('utf-8', 'replace')[:128]}'. "
            f"Try {parent} HELP.",
            "unknown_command",
        )
    n = len(argv)
    if (n != sub.arity) if sub.arity >= 0 else (n < -sub.arity):
        raise wrong_arity(sub.name)
    result: bytes = sub.run(s, argv)
    return result


def _help(s: Session, parent: str, table: Mapping[str, Command]) -> bytes:
    lines = [f"{parent} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"]
    for name, sub in sorted(table.items()):
        lines.append(f"{name.upper()}")
        lines.append(f"    {sub.summary}")
    return s.enc.array([simple(line) for line in lines])


# --- server -------------------------------------------------------------------------------------


def _info_sections(s: Session) -> dict[str, list[tuple[str, Any]]]:
    try:
        info = s.route("INFO", [])
    except (CommandError, RedisError):
        info = {}
    if not isinstance(info, dict):
        info = {}
    base_commands, base_errors = s.server.stats_base
    namespaces: dict[str, Any] = info.get("namespaces") or {}
    used = sum(int(ns.get("bytes", 0)) for ns in namespaces.values() if isinstance(ns, dict))
    counters = s.server.counters
    keyspace: list[tuple[str, Any]] = []
    for name, figures in sorted(namespaces.items(), key=lambda item: _db_order(item[0])):
        if not isinstance(figures, dict) or not figures.get("items"):
            continue
        field_name = _db_field(name)
        keyspace.append((field_name, f"keys={figures.get('items', 0)},expires=0,avg_ttl=0"))
    return {
        "server": [
            ("redis_version", REDIS_VERSION),
            ("redis_mode", "standalone"),
            ("arch_bits", 64 if sys.maxsize > 2**32 else 32),
            ("meshcache_version", __version__),
            ("node_id", info.get("node_id", s.server.node_id)),
            ("tcp_port", s.server.port),
            ("uptime_in_seconds", int(info.get("uptime_s", 0) or 0)),
        ],
        "clients": [("connected_clients", s.server.connections())],
        "memory": [("used_memory", used), ("maxmemory_policy", "per-namespace")],
        "stats": [
            ("total_commands_processed", sum(counters.requests.values()) - base_commands),
            ("total_error_replies", s.server.error_replies - base_errors),
        ],
        "persistence": [("loading", 0), ("rdb_changes_since_last_save", 0), ("aof_enabled", 0)],
        "replication": [("role", "master"), ("connected_slaves", 0)],
        "cluster": [("cluster_enabled", 0)],
        "keyspace": keyspace,
    }


def _db_field(name: str) -> str:
    """The INFO keyspace field of a namespace: ``db0`` for ``default``, ``dbN`` for ``dbN``,
    the namespace's own name otherwise."""
    if name == "default":
        return "db0"
    return name


def _db_order(name: str) -> tuple[int, int, str]:
    if name == "default":
        return (0, 0, name)
    if name.startswith("db") and name[2:].isdigit():
        return (0, int(name[2:]), name)
    return (1, 0, name)


_DEFAULT_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication",
                     "cluster", "keyspace")  # fmt: skip


def cmd_info(s: Session, argv: list[bytes]) -> bytes:
    sections = _info_sections(s)
    wanted = [a.decode("utf-8", "replace").lower() for a in argv[1:]]
    if not wanted or any(w in ("all", "everything", "default") for w in wanted):
        names = list(_DEFAULT_SECTIONS)
    else:
        names = [w for w in _DEFAULT_SECTIONS if w in wanted]
    out: list[str] = []
    for name in names:
        if out:
            out.append("")
        out.append(f"# {name.capitalize()}")
        out.extend(f"{k}:{v}" for k, v in sections[name])
    text = ("\r\n".join(out) + "\r\n").encode() if out else b""
    return s.enc.verbatim(text)


#: What CONFIG GET answers: the parameters clients and tools read (redis-benchmark reads
#: ``save`` and ``appendonly``). meshcache keeps nothing on disk; memory is bounded per
#: namespace, not by one ``maxmemory``.
CONFIG_VALUES = {
    "save": "",
    "appendonly": "no",
    "maxmemory": "0",
    "maxmemory-policy": "noeviction",
    "databases": "16",
    "cluster-enabled": "no",
}


def cmd_config(s: Session, argv: list[bytes]) -> bytes:
    return _subcommand(s, argv, CONFIG_SUBCOMMANDS, "CONFIG")


def config_get(s: Session, argv: list[bytes]) -> bytes:
    found: dict[str, str] = {}
    for pattern in argv[2:]:
        text = pattern.decode("utf-8", "replace").lower()
        for name, value in CONFIG_VALUES.items():
            if fnmatch.fnmatchcase(name, text):
                found[name] = value
    return s.enc.map([(bulk(k.encode()), bulk(v.encode())) for k, v in found.items()])


def config_set(s: Session, argv: list[bytes]) -> bytes:
    raise RedisError(
        "ERR CONFIG SET is not supported: meshcache is configured by node settings and "
        "namespace policies (meshcache ns set)",
        "unsupported",
    )


def config_resetstat(s: Session, argv: list[bytes]) -> bytes:
    """INFO's ``stats`` count from now on; the node's metrics never go back."""
    server = s.server
    server.stats_base = (sum(server.counters.requests.values()), server.error_replies)
    return OK


def config_help(s: Session, argv: list[bytes]) -> bytes:
    return _help(s, "CONFIG", CONFIG_SUBCOMMANDS)


def cmd_dbsize(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("DBSIZE", [{"mesh": True}], _int_reply)


def _flush_mode(argv: list[bytes]) -> None:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].upper() not in (b"ASYNC", b"SYNC")):
        raise RedisError(SYNTAX)


def cmd_flushdb(s: Session, argv: list[bytes]) -> bytes | Pending:
    _flush_mode(argv)
    return s.call("FLUSH", [], _ok)


async def cmd_flushall(s: Session, argv: list[bytes]) -> bytes:
    _flush_mode(argv)
    for name in list(_namespaces(s) or [s.namespace]):
        await s.op("FLUSH", [], namespace=name)
    return OK


def cmd_time(s: Session, argv: list[bytes]) -> bytes:
    now = s.server.wall_clock()
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    return s.enc.array([bulk(b"%d" % seconds), bulk(b"%d" % micros)])


def cmd_command(s: Session, argv: list[bytes]) -> bytes:
    if len(argv) == 1:
        return s.enc.array([_command_info(s, c) for c in _top_level()])
    return _subcommand(s, argv, COMMAND_SUBCOMMANDS, "COMMAND")


def _top_level() -> list[Command]:
    return [c for name, c in sorted(COMMANDS.items())]


def _command_info(s: Session, c: Command) -> bytes:
    enc = s.enc
    subs = [_command_info(s, sub) for _, sub in sorted(c.subcommands.items())]
    key_specs: list[bytes] = []
    return enc.array(
        [
            bulk(c.name.encode()),
            integer(c.arity),
            enc.set([simple(f) for f in c.flags]),
            integer(c.first_key),
            integer(c.last_key),
            integer(c.step),
            enc.set([simple(f"@{c.group}")]),
            enc.set([]),
            enc.array(key_specs),
            enc.array(subs),
        ]
    )


def command_count(s: Session, argv: list[bytes]) -> bytes:
    return integer(len(COMMANDS))


def command_list(s: Session, argv: list[bytes]) -> bytes:
    return s.enc.array([bulk(c.name.encode()) for c in _top_level()])


def command_info(s: Session, argv: list[bytes]) -> bytes:
    enc = s.enc
    out = []
    for name in argv[2:]:
        c = _lookup(name)
        out.append(enc.null if c is None else _command_info(s, c))
    return enc.array(out)


def _lookup(name: bytes) -> Command | None:
    parent, _, sub = name.lower().partition(b"|")
    c = COMMANDS.get(parent)
    if c is not None and sub:
        return c.subcommands.get(sub.decode("utf-8", "replace"))
    return c


def _docs(s: Session, c: Command) -> bytes:
    enc = s.enc
    pairs = [
        (bulk(b"summary"), bulk(c.summary.encode())),
        (bulk(b"since"), bulk(c.since.encode())),
        (bulk(b"group"), bulk(c.group.encode())),
    ]
    if c.subcommands:
        pairs.append(
            (
                bulk(b"subcommands"),
                enc.map(
                    [
                        (bulk(sub.name.encode()), _docs(s, sub))
                        for _, sub in sorted(c.subcommands.items())
                    ]
                ),
            )
        )
    return enc.map(pairs)


def command_docs(s: Session, argv: list[bytes]) -> bytes:
    enc = s.enc
    if len(argv) == 2:
        chosen = _top_level()
    else:
        chosen = [c for c in (_lookup(name) for name in argv[2:]) if c is not None]
    return enc.map([(bulk(c.name.encode()), _docs(s, c)) for c in chosen])


def command_help(s: Session, argv: list[bytes]) -> bytes:
    return _help(s, "COMMAND", COMMAND_SUBCOMMANDS)


# --- keys ---------------------------------------------------------------------------------------


def cmd_del(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("DELETE", argv[1:], _int_reply)


def cmd_exists(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("EXISTS", argv[1:], _int_reply)


def _expire_options(argv: list[bytes], start: int) -> dict[str, bool]:
    options: dict[str, bool] = {}
    for option in argv[start:]:
        word = option.decode("utf-8", "replace")
        if word.upper() not in ("NX", "XX", "GT", "LT"):
            raise RedisError(f"ERR Unsupported option {word}")
        options[word.lower()] = True
    if options.get("nx") and len(options) > 1:
        raise RedisError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if options.get("gt") and options.get("lt"):
        raise RedisError("ERR GT and LT options at the same time are not compatible")
    return options


def _expire(s: Session, argv: list[bytes], seconds: float) -> bytes | Pending:
    options = _expire_options(argv, 3)
    return s.call("EXPIRE", [argv[1], seconds, options], _int_reply)


def _invalid_expire(command: str) -> RedisError:
    return RedisError(f"ERR invalid expire time in '{command}' command", "invalid_expire")


def _overflows_from_now(s: Session, ms: int) -> bool:
    """Whether ``ms`` milliseconds from now are past what Redis's 64-bit clock holds."""
    return ms > INT64_MAX - int(s.server.wall_clock() * 1000)


def _expire_time(argv: list[bytes], scale: int, command: str) -> int:
    """The time argument; Redis refuses seconds whose milliseconds overflow 64 bits."""
    n = arg_int(argv[2])
    if scale == 1 and not -(INT64_MAX // 1000) <= n <= INT64_MAX // 1000:
        raise _invalid_expire(command)
    return n


def _relative_expire_ms(s: Session, argv: list[bytes], scale: int, command: str) -> int:
    """EXPIRE's or PEXPIRE's time in milliseconds; refused, as Redis refuses it, when added
    to now it overflows 64 bits."""
    ms = _expire_time(argv, scale, command) * (1000 // scale)
    if _overflows_from_now(s, ms):
        raise _invalid_expire(command)
    return ms


def cmd_expire(s: Session, argv: list[bytes]) -> bytes | Pending:
    return _expire(s, argv, float(_relative_expire_ms(s, argv, 1, "expire") // 1000))


def cmd_pexpire(s: Session, argv: list[bytes]) -> bytes | Pending:
    return _expire(s, argv, _relative_expire_ms(s, argv, 1000, "pexpire") / 1000)


def cmd_expireat(s: Session, argv: list[bytes]) -> bytes | Pending:
    at = _expire_time(argv, 1, "expireat")
    return _expire(s, argv, at - s.server.wall_clock())


def cmd_pexpireat(s: Session, argv: list[bytes]) -> bytes | Pending:
    at = _expire_time(argv, 1000, "pexpireat")
    return _expire(s, argv, at / 1000 - s.server.wall_clock())


def cmd_persist(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("PERSIST", [argv[1]], _int_reply)


def _ttl_ms(result: float) -> int:
    """The TTL op's answer (seconds, or -1 / -2) in milliseconds."""
    if result < 0:
        return int(result)
    return round(result * 1000)


def cmd_ttl(s: Session, argv: list[bytes]) -> bytes | Pending:
    def reply(result: Any) -> bytes:
        ms = _ttl_ms(result)
        return integer(ms if ms < 0 else (ms + 500) // 1000)

    return s.call("TTL", [argv[1]], reply)


def cmd_pttl(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("TTL", [argv[1]], lambda result: integer(_ttl_ms(result)))


def cmd_type(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("TYPE", [argv[1]], simple)


#: What one step of KEYS asks each member for (keys; a hint, as SCAN's COUNT).
KEYS_STEP = 1000
UINT64_SPAN = 2**64


def arg_cursor(data: bytes) -> int:
    """A SCAN cursor as Redis reads it (``strtoull``): decimal digits after an optional sign,
    no space; a negative number wraps around 2^64, as C's does."""
    digits = data[1:] if data[:1] in (b"-", b"+") else data
    if digits.isdigit():
        n = int(digits)
        if n < UINT64_SPAN:
            return (UINT64_SPAN - n) % UINT64_SPAN if data[:1] == b"-" else n
    raise RedisError("ERR invalid cursor", "invalid_cursor")


def _scan_options(argv: list[bytes], start: int) -> dict[str, Any]:
    """SCAN's ``MATCH pattern``, ``COUNT n`` and ``TYPE name``, with Redis's refusals."""
    options: dict[str, Any] = {}
    i = start
    while i < len(argv):
        word = argv[i].lower()
        if i + 1 >= len(argv) or word not in (b"match", b"count", b"type"):
            raise RedisError(SYNTAX, "syntax_error")
        value = argv[i + 1]
        if word == b"count":
            count = arg_int(value)
            if count < 1:
                raise RedisError(SYNTAX, "syntax_error")
            options["count"] = count
        elif word == b"match":
            if value == b"*":
                options.pop("match", None)  # every key, as Redis skips the test
            else:
                options["match"] = value
        else:
            options["type"] = value.decode("utf-8", "replace")
        i += 2
    return options


def cmd_scan(s: Session, argv: list[bytes]) -> bytes | Pending:
    cursor = arg_cursor(argv[1])
    enc = s.enc

    def reply(step: list[Any]) -> bytes:
        return enc.array([bulk(b"%d" % step[0]), enc.bulks(step[1])])

    return s.call("SCAN", [cursor, _scan_options(argv, 2)], reply)


async def cmd_keys(s: Session, argv: list[bytes]) -> bytes:
    options: dict[str, Any] = {"count": KEYS_STEP}
    if argv[1] != b"*":
        options["match"] = argv[1]
    found: dict[bytes, None] = {}  # a walk may give a key twice (docs/resp.md)
    bulks = s.enc.bulks  # the protocol when it ran, whenever the walk ends
    cursor = 0
    while True:
        cursor, keys = await s.op("SCAN", [cursor, dict(options)])
        found.update(dict.fromkeys(keys))
        if not cursor:
            return bulks(found)


# --- strings ------------------------------------------------------------------------------------


def cmd_get(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("GET", [argv[1]], s.enc.bulk_or_null)


def cmd_set(s: Session, argv: list[bytes]) -> bytes | Pending:
    if len(argv) == 3:
        return s.call("SET", [argv[1], argv[2]], _ok)
    options: dict[str, Any] = {}
    # The expiry given (unit, time): one unit, which may be repeated (the last one counts), and
    # its time read once every option is known, as Redis reads them.
    expiry: tuple[bytes, bytes] | None = None
    i = 3
    n = len(argv)
    while i < n:
        word = argv[i].upper()
        if word == b"NX" and "xx" not in options:
            options["nx"] = True
        elif word == b"XX" and "nx" not in options:
            options["xx"] = True
        elif word == b"GET":
            options["get"] = True
        elif word == b"KEEPTTL" and expiry is None:
            options["keepttl"] = True
        elif (
            word in (b"EX", b"PX", b"EXAT", b"PXAT")
            and (expiry is None or expiry[0] == word)
            and "keepttl" not in options
            and i + 1 < n
        ):
            i += 1
            expiry = (word, argv[i])
        else:
            raise RedisError(SYNTAX)
        i += 1
    if expiry is not None:
        options["ttl"] = _set_ttl(s, expiry[0], arg_int(expiry[1]), "set")
    return s.call("SET", [argv[1], argv[2], options], _set_reply(s, bool(options.get("get"))))


def _set_ttl(s: Session, unit: bytes, n: int, command: str) -> float:
    """The TTL of SET's expiry (or SETEX's, PSETEX's); refused as Redis refuses a time that is
    not positive, or whose milliseconds overflow 64 bits (added to now for EX and PX)."""
    if n <= 0 or (unit in (b"EX", b"EXAT") and n > INT64_MAX // 1000):
        raise _invalid_expire(command)
    if unit in (b"EX", b"PX") and _overflows_from_now(s, n * 1000 if unit == b"EX" else n):
        raise _invalid_expire(command)
    if unit == b"EX":
        return float(n)
    if unit == b"PX":
        return n / 1000
    at = float(n) if unit == b"EXAT" else n / 1000
    # An absolute time already past: the key is written and expires at once (within 1 ms).
    return max(at - s.server.wall_clock(), 0.001)


def _set_reply(s: Session, get: bool) -> Callable[[Any], bytes]:
    if get:
        return s.enc.bulk_or_null
    null = s.enc.null
    return lambda result: OK if result else null


def cmd_setnx(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("SET", [argv[1], argv[2], {"nx": True}], _int_reply)


def cmd_setex(s: Session, argv: list[bytes]) -> bytes | Pending:
    ttl = _set_ttl(s, b"EX", arg_int(argv[2]), "setex")
    return s.call("SET", [argv[1], argv[3], {"ttl": ttl}], _ok)


def cmd_psetex(s: Session, argv: list[bytes]) -> bytes | Pending:
    ttl = _set_ttl(s, b"PX", arg_int(argv[2]), "psetex")
    return s.call("SET", [argv[1], argv[3], {"ttl": ttl}], _ok)


def cmd_getset(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("SET", [argv[1], argv[2], {"get": True}], s.enc.bulk_or_null)


def cmd_getdel(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("GETDEL", [argv[1]], s.enc.bulk_or_null)


def cmd_mget(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("MGET", argv[1:], s.enc.bulks)


def cmd_mset(s: Session, argv: list[bytes]) -> bytes | Pending:
    if len(argv) % 2 == 0:
        raise wrong_arity("mset")
    return s.call("MSET", argv[1:], _ok)


def cmd_incr(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("INCR", [argv[1]], _int_reply)


def cmd_decr(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("DECR", [argv[1]], _int_reply)


def cmd_incrby(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("INCRBY", [argv[1], arg_int(argv[2])], _int_reply)


def cmd_decrby(s: Session, argv: list[bytes]) -> bytes | Pending:
    by = arg_int(argv[2])
    if by == INT64_MIN:
        raise RedisError("ERR decrement would overflow", "overflow")
    return s.call("DECRBY", [argv[1], by], _int_reply)


def cmd_append(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("APPEND", [argv[1], argv[2]], _int_reply)


async def cmd_incrbyfloat(s: Session, argv: list[bytes]) -> bytes:
    by = arg_float(argv[2])
    if not math.isfinite(by):
        raise RedisError(f"ERR {NAN_OR_INFINITY}", "not_float")
    try:
        new = await s.op("INCRBYFLOAT", [argv[1], by])
    except CommandError as exc:
        if exc.code is not ErrorCode.NOT_FLOAT:
            raise
        # The stored value is not a number, or the sum is not finite: Redis's texts.
        text = NAN_OR_INFINITY if NAN_OR_INFINITY in exc.message else "value is not a valid float"
        raise RedisError(f"ERR {text}", None) from None
    return bulk(new)


def cmd_strlen(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("STRLEN", [argv[1]], _int_reply)


async def cmd_getrange(s: Session, argv: list[bytes]) -> bytes:
    start, end = arg_int(argv[2]), arg_int(argv[3])
    value = await s.op("GET", [argv[1]]) or b""
    n = len(value)
    if start < 0 and end < 0 and start > end:
        return bulk(b"")
    if start < 0:
        start = max(n + start, 0)
    if end < 0:
        end = max(n + end, 0)
    end = min(end, n - 1)
    if start > end or n == 0:
        return bulk(b"")
    return bulk(value[start : end + 1])


# --- hashes -------------------------------------------------------------------------------------


def cmd_hset(s: Session, argv: list[bytes]) -> bytes | Pending:
    if len(argv) % 2:
        raise wrong_arity("hset")
    return s.call("HSET", argv[1:], _int_reply)


def cmd_hmset(s: Session, argv: list[bytes]) -> bytes | Pending:
    if len(argv) % 2:
        raise wrong_arity("hmset")
    return s.call("HSET", argv[1:], _ok)


def cmd_hget(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("HGET", [argv[1], argv[2]], s.enc.bulk_or_null)


async def cmd_hmget(s: Session, argv: list[bytes]) -> bytes:
    bulks = s.enc.bulks  # the protocol when it ran, whenever the read answers
    fields: dict[bytes, bytes] = await s.op("HGETALL", [argv[1]])
    return bulks(fields.get(f) for f in argv[2:])


def cmd_hdel(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("HDEL", argv[1:], _int_reply)


def cmd_hgetall(s: Session, argv: list[bytes]) -> bytes | Pending:
    enc = s.enc
    return s.call(
        "HGETALL",
        [argv[1]],
        lambda fields: enc.map([(bulk(k), bulk(v)) for k, v in fields.items()]),
    )


def cmd_hincrby(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("HINCRBY", [argv[1], argv[2], arg_int(argv[3])], _int_reply)


def cmd_hlen(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("HLEN", [argv[1]], _int_reply)


def cmd_hexists(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("HGET", [argv[1], argv[2]], lambda v: b":0\r\n" if v is None else b":1\r\n")


def cmd_hkeys(s: Session, argv: list[bytes]) -> bytes | Pending:
    bulks = s.enc.bulks
    return s.call("HGETALL", [argv[1]], lambda fields: bulks(fields.keys()))


def cmd_hvals(s: Session, argv: list[bytes]) -> bytes | Pending:
    bulks = s.enc.bulks
    return s.call("HGETALL", [argv[1]], lambda fields: bulks(fields.values()))


# --- lists --------------------------------------------------------------------------------------


def cmd_lpush(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("LPUSH", argv[1:], _int_reply)


def cmd_rpush(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("RPUSH", argv[1:], _int_reply)


def _pop(op: str) -> Handler:
    name = op.lower()

    def handler(s: Session, argv: list[bytes]) -> bytes | Pending:
        if len(argv) > 3:
            raise wrong_arity(name)
        enc = s.enc
        if len(argv) == 2:
            return s.call(op, [argv[1]], enc.bulk_or_null)
        count = _count(argv[2])
        null_array = enc.null_array
        return s.call(
            op,
            [argv[1], {"count": count}],
            lambda got: null_array if got is None else enc.bulks(got),
        )

    return handler


def cmd_lrange(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("LRANGE", [argv[1], arg_int(argv[2]), arg_int(argv[3])], s.enc.bulks)


def cmd_llen(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("LLEN", [argv[1]], _int_reply)


def cmd_lindex(s: Session, argv: list[bytes]) -> bytes | Pending:
    index = arg_int(argv[2])
    enc = s.enc
    return s.call(
        "LRANGE",
        [argv[1], index, index],
        lambda items: enc.bulk_or_null(items[0] if items else None),
    )


# --- sets ---------------------------------------------------------------------------------------


def cmd_sadd(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("SADD", argv[1:], _int_reply)


def cmd_srem(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("SREM", argv[1:], _int_reply)


def cmd_sismember(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("SISMEMBER", [argv[1], argv[2]], _int_reply)


def cmd_smismember(s: Session, argv: list[bytes]) -> bytes | Pending:
    wanted = argv[2:]
    enc = s.enc

    def reply(members: list[bytes]) -> bytes:
        have = set(members)
        return enc.array([b":1\r\n" if m in have else b":0\r\n" for m in wanted])

    return s.call("SMEMBERS", [argv[1]], reply)


def cmd_smembers(s: Session, argv: list[bytes]) -> bytes | Pending:
    enc = s.enc
    return s.call("SMEMBERS", [argv[1]], lambda members: enc.set([bulk(m) for m in members]))


def cmd_scard(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("SCARD", [argv[1]], _int_reply)


def cmd_spop(s: Session, argv: list[bytes]) -> bytes | Pending:
    if len(argv) > 3:
        raise RedisError(SYNTAX)
    enc = s.enc
    if len(argv) == 2:
        return s.call("SPOP", [argv[1]], enc.bulk_or_null)
    count = _count(argv[2])
    return s.call("SPOP", [argv[1], {"count": count}], lambda got: enc.set([bulk(m) for m in got]))


def cmd_srandmember(s: Session, argv: list[bytes]) -> bytes | Pending:
    if len(argv) > 3:
        raise RedisError(SYNTAX)
    enc = s.enc
    rng = s.server.rng
    if len(argv) == 2:
        return s.call(
            "SMEMBERS", [argv[1]], lambda ms: enc.bulk_or_null(rng.choice(ms) if ms else None)
        )
    count = arg_int(argv[2])
    if count < -INT64_MAX:
        raise RedisError(COUNT_OUT_OF_RANGE, "not_integer")
    limits = s.server.limits
    max_bytes = s.server.max_reply_bytes

    def reply(members: list[bytes]) -> bytes:
        if count >= 0:
            chosen = rng.sample(members, min(count, len(members)))
        elif members:
            _check_repeats(-count, members, limits.max_args, max_bytes)
            chosen = rng.choices(members, k=-count)
        else:
            chosen = []
        return enc.bulks(chosen)

    return s.call("SMEMBERS", [argv[1]], reply)


def _check_repeats(n: int, members: list[bytes], max_items: int, max_bytes: int) -> None:
    """Refuse a reply of ``n`` members drawn with repeats that could hold more than
    ``max_items`` members or ``max_bytes`` bytes (each draw counted as the longest member)."""
    longest = max(map(len, members))
    if n > max_items or n * (longest + 16) > max_bytes:
        raise RedisError(
            f"ERR value is out of range: a reply of repeated members holds at most "
            f"{max_items} members and {max_bytes} bytes (meshcache)",
            "out_of_range",
        )


# --- sorted sets --------------------------------------------------------------------------------


_ZADD_OPTIONS = {b"NX": "nx", b"XX": "xx", b"GT": "gt", b"LT": "lt", b"CH": "ch", b"INCR": "incr"}


def cmd_zadd(s: Session, argv: list[bytes]) -> bytes | Pending:
    """ZADD with Redis's options, checked in Redis's order; one ``ZADD`` op."""
    i = 2
    options: dict[str, bool] = {}
    while i < len(argv):
        name = _ZADD_OPTIONS.get(argv[i].upper())
        if name is None:
            break
        options[name] = True
        i += 1
    pairs = argv[i:]
    if not pairs or len(pairs) % 2:
        raise RedisError(SYNTAX)
    if "nx" in options and "xx" in options:
        raise RedisError("ERR XX and NX options at the same time are not compatible")
    if len(options.keys() & {"gt", "lt", "nx"}) > 1:
        raise RedisError("ERR GT, LT, and/or NX options at the same time are not compatible")
    incr = "incr" in options
    if incr and len(pairs) != 2:
        raise RedisError("ERR INCR option supports a single increment-element pair")
    args: list[Any] = [argv[1]]
    for j in range(0, len(pairs), 2):
        args.append(arg_score(pairs[j]))
        args.append(pairs[j + 1])
    args.append(options)
    if incr:
        enc = s.enc
        return s.call("ZADD", args, lambda score: enc.null if score is None else enc.double(score))
    return s.call("ZADD", args, _int_reply)


def cmd_zrem(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("ZREM", argv[1:], _int_reply)


def cmd_zscore(s: Session, argv: list[bytes]) -> bytes | Pending:
    enc = s.enc
    return s.call("ZSCORE", [argv[1], argv[2]], lambda x: enc.null if x is None else enc.double(x))


def cmd_zincrby(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("ZINCRBY", [argv[1], arg_score(argv[2]), argv[3]], s.enc.double)


def _members_reply(s: Session, withscores: bool) -> Callable[[list[Any]], bytes]:
    enc = s.enc
    if withscores:
        return lambda pairs: _score_pairs(enc, pairs, nested=True)
    return enc.bulks


def cmd_zrange(s: Session, argv: list[bytes]) -> bytes | Pending:
    withscores = rev = byscore = False
    limit: tuple[int, int] | None = None
    i = 4
    while i < len(argv):
        word = argv[i].upper()
        if word == b"WITHSCORES":
            withscores = True
        elif word == b"REV":
            rev = True
        elif word == b"BYSCORE":
            byscore = True
        elif word == b"LIMIT" and i + 2 < len(argv):
            limit = (arg_int(argv[i + 1]), arg_int(argv[i + 2]))
            i += 2
        elif word == b"BYLEX":
            raise RedisError("ERR Unsupported option BYLEX (meshcache: see docs/resp.md)",
                             "unsupported")  # fmt: skip
        else:
            raise RedisError(SYNTAX)
        i += 1
    if limit is not None and not byscore:
        raise RedisError(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        )
    if byscore:
        return _zrangebyscore(s, argv[1], argv[2], argv[3], withscores, limit, rev=rev)
    start, stop = arg_int(argv[2]), arg_int(argv[3])
    options = {"withscores": withscores, "rev": rev}
    return s.call("ZRANGE", [argv[1], start, stop, options], _members_reply(s, withscores))


def cmd_zrevrange(s: Session, argv: list[bytes]) -> bytes | Pending:
    withscores = False
    if len(argv) == 5:
        if argv[4].upper() != b"WITHSCORES":
            raise RedisError(SYNTAX)
        withscores = True
    elif len(argv) > 5:
        raise RedisError(SYNTAX)
    start, stop = arg_int(argv[2]), arg_int(argv[3])
    options = {"withscores": withscores, "rev": True}
    return s.call("ZRANGE", [argv[1], start, stop, options], _members_reply(s, withscores))


def _zrangebyscore(
    s: Session,
    key: bytes,
    low: bytes,
    high: bytes,
    withscores: bool,
    limit: tuple[int, int] | None,
    rev: bool = False,
) -> bytes | Pending:
    """Members by score. Reversed (``rev``: ``low`` and ``high`` are then Redis's max and min),
    the whole range is read once and LIMIT applied from the highest score, as Redis does."""
    if rev:
        low, high = high, low
    lo, hi = _bounds(low, high)
    options: dict[str, Any] = {"withscores": withscores}
    reply = _members_reply(s, withscores)
    if not rev:
        if limit is not None:
            options["offset"], options["count"] = limit
        return s.call("ZRANGEBYSCORE", [key, lo, hi, options], reply)

    def reversed_reply(members: list[Any]) -> bytes:
        members.reverse()
        if limit is not None:
            offset, count = limit
            if offset < 0:
                members = []
            else:
                members = members[offset:] if count < 0 else members[offset : offset + count]
        return reply(members)

    return s.call("ZRANGEBYSCORE", [key, lo, hi, options], reversed_reply)


def _score_range_options(argv: list[bytes]) -> tuple[bool, tuple[int, int] | None]:
    withscores = False
    limit: tuple[int, int] | None = None
    i = 4
    while i < len(argv):
        word = argv[i].upper()
        if word == b"WITHSCORES":
            withscores = True
        elif word == b"LIMIT" and i + 2 < len(argv):
            limit = (arg_int(argv[i + 1]), arg_int(argv[i + 2]))
            i += 2
        else:
            raise RedisError(SYNTAX)
        i += 1
    return withscores, limit


def cmd_zrevrangebyscore(s: Session, argv: list[bytes]) -> bytes | Pending:
    withscores, limit = _score_range_options(argv)
    return _zrangebyscore(s, argv[1], argv[2], argv[3], withscores, limit, rev=True)


def cmd_zrangebyscore(s: Session, argv: list[bytes]) -> bytes | Pending:
    withscores, limit = _score_range_options(argv)
    return _zrangebyscore(s, argv[1], argv[2], argv[3], withscores, limit)


def cmd_zrank(s: Session, argv: list[bytes]) -> bytes | Pending:
    if len(argv) > 3:
        raise RedisError(SYNTAX)
    enc = s.enc
    return s.call("ZRANK", [argv[1], argv[2]], lambda r: enc.null if r is None else integer(r))


def cmd_zcard(s: Session, argv: list[bytes]) -> bytes | Pending:
    return s.call("ZCARD", [argv[1]], _int_reply)


def cmd_zcount(s: Session, argv: list[bytes]) -> bytes | Pending:
    lo, hi = _bounds(argv[2], argv[3])
    return s.call("ZRANGEBYSCORE", [argv[1], lo, hi, {}], lambda members: integer(len(members)))


def _zpop(rev: bool) -> Handler:
    name = "zpopmax" if rev else "zpopmin"

    op = name.upper()

    def handler(s: Session, argv: list[bytes]) -> bytes | Pending:
        if len(argv) > 3:
            raise RedisError(SYNTAX)
        count = 1 if len(argv) == 2 else _count(argv[2])
        nested = len(argv) == 3
        enc = s.enc
        return s.call(op, [argv[1], {"count": count}], lambda got: _score_pairs(enc, got, nested))

    return handler


# --- the table ------------------------------------------------------------------------------------


def _c(
    name: str,
    arity: int,
    flags: str,
    keys: tuple[int, int, int],
    group: str,
    summary: str,
    run: Handler,
    ops: str = "",
    *,
    composed: bool = False,
    since: str = "1.0.0",
    subcommands: Mapping[str, Command] | None = None,
) -> Command:
    return Command(
        name=name,
        arity=arity,
        flags=tuple(flags.split()),
        first_key=keys[0],
        last_key=keys[1],
        step=keys[2],
        group=group,
        summary=summary,
        run=run,
        ops=tuple(ops.split()),
        composed=composed,
        since=since,
        subcommands=subcommands or {},
    )


NOKEYS = (0, 0, 0)
KEY1 = (1, 1, 1)
ALLKEYS = (1, -1, 1)
PAIRS = (1, -1, 2)

CLIENT_SUBCOMMANDS: dict[str, Command] = {
    c.name.split("|")[1]: c
    for c in [
        _c("client|setname", 3, "noscript loading stale", NOKEYS, "connection",
           "Sets the connection name.", client_setname, since="2.6.9"),
        _c("client|getname", 2, "noscript loading stale", NOKEYS, "connection",
           "Returns the name of the connection.", client_getname, since="2.6.9"),
        _c("client|setinfo", 4, "noscript loading stale", NOKEYS, "connection",
           "Sets information specific to the client or connection.", client_setinfo,
           since="7.2.0"),
        _c("client|id", 2, "noscript loading stale", NOKEYS, "connection",
           "Returns the unique client ID of the connection.", client_id, since="5.0.0"),
        _c("client|info", 2, "noscript loading stale", NOKEYS, "connection",
           "Returns information about the connection.", client_info, since="6.2.0"),
        _c("client|list", -2, "admin noscript loading stale", NOKEYS, "connection",
           "Lists the open connections of this node's RESP port.", client_list, since="2.4.0"),
        _c("client|no-evict", 3, "admin noscript loading stale", NOKEYS, "connection",
           "Accepted and ignored.", client_on_off, since="7.0.0"),
        _c("client|no-touch", 3, "noscript loading stale", NOKEYS, "connection",
           "Accepted and ignored.", client_on_off, since="7.2.0"),
        _c("client|help", 2, "loading stale", NOKEYS, "connection",
           "Returns helpful text about the different subcommands.", client_help,
           since="5.0.0"),
    ]
}  # fmt: skip

CONFIG_SUBCOMMANDS: dict[str, Command] = {
    c.name.split("|")[1]: c
    for c in [
        _c("config|get", -3, "admin noscript loading stale", NOKEYS, "server",
           "Returns the effective values of configuration parameters.", config_get,
           since="2.0.0"),
        _c("config|set", -4, "admin noscript loading stale", NOKEYS, "server",
           "Refused: meshcache is configured by settings and namespace policies.",
           config_set, since="2.0.0"),
        _c("config|resetstat", 2, "admin noscript loading stale", NOKEYS, "server",
           "Accepted and ignored.", config_resetstat, since="2.0.0"),
        _c("config|help", 2, "loading stale", NOKEYS, "server",
           "Returns helpful text about the different subcommands.", config_help,
           since="5.0.0"),
    ]
}  # fmt: skip

COMMAND_SUBCOMMANDS: dict[str, Command] = {
    c.name.split("|")[1]: c
    for c in [
        _c("command|count", 2, "loading stale", NOKEYS, "server",
           "Returns a count of commands.", command_count, since="2.8.13"),
        _c("command|docs", -2, "loading stale", NOKEYS, "server",
           "Returns documentary information about one, multiple or all commands.",
           command_docs, since="7.0.0"),
        _c("command|info", -2, "loading stale", NOKEYS, "server",
           "Returns information about one, multiple or all commands.", command_info,
           since="2.8.13"),
        _c("command|list", -2, "loading stale", NOKEYS, "server",
           "Returns a list of command names.", command_list, since="7.0.0"),
        _c("command|help", 2, "loading stale", NOKEYS, "server",
           "Returns helpful text about the different subcommands.", command_help,
           since="5.0.0"),
    ]
}  # fmt: skip

_ROWS = [
    # connection
    _c("ping", -1, "fast", NOKEYS, "connection", "Returns the server's liveliness response.",
       cmd_ping, "PING"),
    _c("echo", 2, "fast", NOKEYS, "connection", "Returns the given string.", cmd_echo),
    _c("hello", -1, "noscript loading stale fast no_auth", NOKEYS, "connection",
       "Handshakes with the server: RESP2 or RESP3, and authenticates with AUTH.", cmd_hello,
       since="6.0.0"),
    _c("auth", -2, "noscript loading stale fast no_auth", NOKEYS, "connection",
       "Authenticates the connection as one of the node's users (one word: user default).",
       cmd_auth),
    _c("select", 2, "loading stale fast", NOKEYS, "connection",
       "Changes the selected database: 0 is namespace default, N is namespace dbN; a name "
       "selects that namespace.", cmd_select, "NS_LIST"),
    _c("namespace", -1, "loading stale fast", NOKEYS, "connection",
       "Returns the selected namespace, or selects one by name (meshcache).",
       cmd_namespace, "NS_LIST"),
    _c("quit", -1, "noscript loading stale fast no_auth", NOKEYS, "connection",
       "Closes the connection.", cmd_quit),
    _c("reset", 1, "noscript loading stale fast no_auth", NOKEYS, "connection",
       "Resets the connection.", cmd_reset, since="6.2.0"),
    _c("client", -2, "", NOKEYS, "connection", "A container for client connection commands.",
       cmd_client, subcommands=CLIENT_SUBCOMMANDS, since="2.4.0"),
    # server
    _c("info", -1, "loading stale", NOKEYS, "server",
       "Returns information and statistics about the server.", cmd_info, "INFO"),
    _c("config", -2, "", NOKEYS, "server", "A container for server configuration commands.",
       cmd_config, subcommands=CONFIG_SUBCOMMANDS, since="2.0.0"),
    _c("command", -1, "loading stale", NOKEYS, "server",
       "Returns detailed information about all commands.", cmd_command,
       subcommands=COMMAND_SUBCOMMANDS, since="2.8.13"),
    _c("dbsize", 1, "readonly fast", NOKEYS, "server",
       "Returns the number of keys in the selected namespace, on every member.", cmd_dbsize,
       "DBSIZE"),
    _c("flushdb", -1, "write", NOKEYS, "server", "Removes all keys of the selected namespace.",
       cmd_flushdb, "FLUSH"),
    _c("flushall", -1, "write", NOKEYS, "server", "Removes all keys of every namespace.",
       cmd_flushall, "NS_LIST FLUSH", composed=True),
    _c("time", 1, "loading stale fast", NOKEYS, "server", "Returns the server time.",
       cmd_time, since="2.6.0"),
    # keys
    _c("del", -2, "write", ALLKEYS, "generic", "Deletes one or more keys.", cmd_del, "DELETE"),
    _c("unlink", -2, "write fast", ALLKEYS, "generic", "Deletes one or more keys.", cmd_del,
       "DELETE", since="4.0.0"),
    _c("exists", -2, "readonly fast", ALLKEYS, "generic",
       "Determines whether one or more keys exist.", cmd_exists, "EXISTS"),
    _c("keys", 2, "readonly", NOKEYS, "generic",
       "Returns all key names that match a pattern, from every member.", cmd_keys, "SCAN",
       composed=True),
    _c("scan", -2, "readonly", NOKEYS, "generic",
       "Iterates over the key names in the selected namespace, over every member.", cmd_scan,
       "SCAN", since="2.8.0"),
    _c("expire", -3, "write fast", KEY1, "generic",
       "Sets the expiration time of a key in seconds.", cmd_expire, "EXPIRE"),
    _c("pexpire", -3, "write fast", KEY1, "generic",
       "Sets the expiration time of a key in milliseconds.", cmd_pexpire, "EXPIRE",
       since="2.6.0"),
    _c("expireat", -3, "write fast", KEY1, "generic",
       "Sets the expiration time of a key to a Unix timestamp.", cmd_expireat, "EXPIRE",
       since="1.2.0"),
    _c("pexpireat", -3, "write fast", KEY1, "generic",
       "Sets the expiration time of a key to a Unix milliseconds timestamp.", cmd_pexpireat,
       "EXPIRE", since="2.6.0"),
    _c("persist", 2, "write fast", KEY1, "generic", "Removes the expiration time of a key.",
       cmd_persist, "PERSIST", since="2.2.0"),
    _c("ttl", 2, "readonly fast", KEY1, "generic",
       "Returns the expiration time in seconds of a key.", cmd_ttl, "TTL"),
    _c("pttl", 2, "readonly fast", KEY1, "generic",
       "Returns the expiration time in milliseconds of a key.", cmd_pttl, "TTL",
       since="2.6.0"),
    _c("type", 2, "readonly fast", KEY1, "generic",
       "Determines the type of value stored at a key.", cmd_type, "TYPE"),
    # strings
    _c("get", 2, "readonly fast", KEY1, "string", "Returns the string value of a key.",
       cmd_get, "GET"),
    _c("set", -3, "write denyoom", KEY1, "string",
       "Sets the string value of a key, ignoring its type.", cmd_set, "SET"),
    _c("setnx", 3, "write denyoom fast", KEY1, "string",
       "Set the string value of a key only when the key doesn't exist.", cmd_setnx, "SET"),
    _c("setex", 4, "write denyoom", KEY1, "string",
       "Sets the string value and expiration time of a key.", cmd_setex, "SET",
       since="2.0.0"),
    _c("psetex", 4, "write denyoom", KEY1, "string",
       "Sets the string value and expiration time in milliseconds of a key.", cmd_psetex,
       "SET", since="2.6.0"),
    _c("getset", 3, "write denyoom fast", KEY1, "string",
       "Returns the previous string value of a key after setting it to a new value.",
       cmd_getset, "SET"),
    _c("getdel", 2, "write fast", KEY1, "string",
       "Returns the string value of a key after deleting the key.", cmd_getdel, "GETDEL",
       since="6.2.0"),
    _c("mget", -2, "readonly fast", ALLKEYS, "string",
       "Atomically returns the string values of one or more keys.", cmd_mget, "MGET"),
    _c("mset", -3, "write denyoom", PAIRS, "string",
       "Atomically creates or modifies the string values of one or more keys.", cmd_mset,
       "MSET", since="1.0.1"),
    _c("incr", 2, "write denyoom fast", KEY1, "string",
       "Increments the integer value of a key by one.", cmd_incr, "INCR"),
    _c("decr", 2, "write denyoom fast", KEY1, "string",
       "Decrements the integer value of a key by one.", cmd_decr, "DECR"),
    _c("incrby", 3, "write denyoom fast", KEY1, "string",
       "Increments the integer value of a key by a number.", cmd_incrby, "INCRBY"),
    _c("decrby", 3, "write denyoom fast", KEY1, "string",
       "Decrements a number from the integer value of a key.", cmd_decrby, "DECRBY"),
    _c("incrbyfloat", 3, "write denyoom fast", KEY1, "string",
       "Increment the floating point value of a key by a number.", cmd_incrbyfloat,
       "INCRBYFLOAT", composed=True, since="2.6.0"),
    _c("append", 3, "write denyoom fast", KEY1, "string",
       "Appends a string to the value of a key.", cmd_append, "APPEND", since="2.0.0"),
    _c("strlen", 2, "readonly fast", KEY1, "string", "Returns the length of a string value.",
       cmd_strlen, "STRLEN", since="2.2.0"),
    _c("getrange", 4, "readonly", KEY1, "string",
       "Returns a substring of the string stored at a key.", cmd_getrange, "GET",
       composed=True, since="2.4.0"),
    # hashes
    _c("hset", -4, "write denyoom fast", KEY1, "hash",
       "Creates or modifies the value of a field in a hash.", cmd_hset, "HSET", since="2.0.0"),
    _c("hmset", -4, "write denyoom fast", KEY1, "hash",
       "Sets the values of multiple fields.", cmd_hmset, "HSET", since="2.0.0"),
    _c("hget", 3, "readonly fast", KEY1, "hash", "Returns the value of a field in a hash.",
       cmd_hget, "HGET", since="2.0.0"),
    _c("hmget", -3, "readonly fast", KEY1, "hash",
       "Returns the values of all fields in a hash.", cmd_hmget, "HGETALL", composed=True,
       since="2.0.0"),
    _c("hdel", -3, "write fast", KEY1, "hash", "Deletes one or more fields from a hash.",
       cmd_hdel, "HDEL", since="2.0.0"),
    _c("hgetall", 2, "readonly", KEY1, "hash", "Returns all fields and values in a hash.",
       cmd_hgetall, "HGETALL", since="2.0.0"),
    _c("hincrby", 4, "write denyoom fast", KEY1, "hash",
       "Increments the integer value of a field in a hash by a number.", cmd_hincrby,
       "HINCRBY", since="2.0.0"),
    _c("hlen", 2, "readonly fast", KEY1, "hash", "Returns the number of fields in a hash.",
       cmd_hlen, "HLEN", since="2.0.0"),
    _c("hexists", 3, "readonly fast", KEY1, "hash",
       "Determines whether a field exists in a hash.", cmd_hexists, "HGET", since="2.0.0"),
    _c("hkeys", 2, "readonly", KEY1, "hash", "Returns all fields in a hash.", cmd_hkeys,
       "HGETALL", since="2.0.0"),
    _c("hvals", 2, "readonly", KEY1, "hash", "Returns all values in a hash.", cmd_hvals,
       "HGETALL", since="2.0.0"),
    # lists
    _c("lpush", -3, "write denyoom fast", KEY1, "list",
       "Prepends one or more elements to a list.", cmd_lpush, "LPUSH"),
    _c("rpush", -3, "write denyoom fast", KEY1, "list",
       "Appends one or more elements to a list.", cmd_rpush, "RPUSH"),
    _c("lpop", -2, "write fast", KEY1, "list",
       "Returns the first elements of a list after removing them.", _pop("LPOP"), "LPOP"),
    _c("rpop", -2, "write fast", KEY1, "list",
       "Returns the last elements of a list after removing them.", _pop("RPOP"), "RPOP"),
    _c("lrange", 4, "readonly", KEY1, "list", "Returns a range of elements from a list.",
       cmd_lrange, "LRANGE"),
    _c("llen", 2, "readonly fast", KEY1, "list", "Returns the length of a list.", cmd_llen,
       "LLEN"),
    _c("lindex", 3, "readonly", KEY1, "list", "Returns an element from a list by its index.",
       cmd_lindex, "LRANGE"),
    # sets
    _c("sadd", -3, "write denyoom fast", KEY1, "set", "Adds one or more members to a set.",
       cmd_sadd, "SADD"),
    _c("srem", -3, "write fast", KEY1, "set", "Removes one or more members from a set.",
       cmd_srem, "SREM"),
    _c("sismember", 3, "readonly fast", KEY1, "set",
       "Determines whether a member belongs to a set.", cmd_sismember, "SISMEMBER"),
    _c("smismember", -3, "readonly fast", KEY1, "set",
       "Determines whether multiple members belong to a set.", cmd_smismember, "SMEMBERS",
       since="6.2.0"),
    _c("smembers", 2, "readonly", KEY1, "set", "Returns all members of a set.", cmd_smembers,
       "SMEMBERS"),
    _c("scard", 2, "readonly fast", KEY1, "set", "Returns the number of members in a set.",
       cmd_scard, "SCARD"),
    _c("spop", -2, "write fast", KEY1, "set",
       "Returns one or more random members from a set after removing them.", cmd_spop,
       "SPOP"),
    _c("srandmember", -2, "readonly", KEY1, "set",
       "Get one or multiple random members from a set.", cmd_srandmember, "SMEMBERS"),
    # sorted sets
    _c("zadd", -4, "write denyoom fast", KEY1, "sortedset",
       "Adds one or more members to a sorted set, or updates their scores.", cmd_zadd,
       "ZADD", since="1.2.0"),
    _c("zrem", -3, "write fast", KEY1, "sortedset",
       "Removes one or more members from a sorted set.", cmd_zrem, "ZREM", since="1.2.0"),
    _c("zscore", 3, "readonly fast", KEY1, "sortedset",
       "Returns the score of a member in a sorted set.", cmd_zscore, "ZSCORE", since="1.2.0"),
    _c("zincrby", 4, "write denyoom fast", KEY1, "sortedset",
       "Increments the score of a member in a sorted set.", cmd_zincrby, "ZINCRBY",
       since="1.2.0"),
    _c("zrange", -4, "readonly", KEY1, "sortedset",
       "Returns members in a sorted set within a range of indexes or scores.", cmd_zrange,
       "ZRANGE ZRANGEBYSCORE", since="1.2.0"),
    _c("zrevrange", -4, "readonly", KEY1, "sortedset",
       "Returns members in a sorted set within a range of indexes, highest first.",
       cmd_zrevrange, "ZRANGE", since="1.2.0"),
    _c("zrangebyscore", -4, "readonly", KEY1, "sortedset",
       "Returns members in a sorted set within a range of scores.", cmd_zrangebyscore,
       "ZRANGEBYSCORE", since="1.0.5"),
    _c("zrevrangebyscore", -4, "readonly", KEY1, "sortedset",
       "Returns members in a sorted set within a range of scores, highest first.",
       cmd_zrevrangebyscore, "ZRANGEBYSCORE", since="2.2.0"),
    _c("zrank", -3, "readonly fast", KEY1, "sortedset",
       "Returns the index of a member in a sorted set ordered by ascending scores.",
       cmd_zrank, "ZRANK", since="2.0.0"),
    _c("zcard", 2, "readonly fast", KEY1, "sortedset",
       "Returns the number of members in a sorted set.", cmd_zcard, "ZCARD", since="1.2.0"),
    _c("zcount", 4, "readonly fast", KEY1, "sortedset",
       "Returns the count of members in a sorted set that have scores within a range.",
       cmd_zcount, "ZRANGEBYSCORE", since="2.0.0"),
    _c("zpopmin", -2, "write fast", KEY1, "sortedset",
       "Returns the lowest-scoring members after removing them.", _zpop(False), "ZPOPMIN",
       since="5.0.0"),
    _c("zpopmax", -2, "write fast", KEY1, "sortedset",
       "Returns the highest-scoring members after removing them.", _zpop(True), "ZPOPMAX",
       since="5.0.0"),
]  # fmt: skip

#: Every command meshcache answers, by lower-case name.
COMMANDS: dict[bytes, Command] = {c.name.encode(): c for c in _ROWS}

__all__ = [
    "COMMANDS",
    "CONFIG_VALUES",
    "REDIS_VERSION",
    "Command",
    "arg_float",
    "arg_int",
]
