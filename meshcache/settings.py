"""Node settings: frozen dataclasses, and :func:`load_settings` that fills them.

Precedence, lowest to highest::

    defaults  <  TOML file  <  MESHCACHE_* environment  <  command-line flags (``overrides``)

Each layer only replaces the settings it names. Every bad value raises
:class:`~meshcache.errors.ConfigError` with one line that names the setting and where the value
came from (``--port: 'abc' is not a port number``, ``node.toml [limits] max_frame_bytes: ...``,
``MESHCACHE_ADMIN_PORT: ...``). Unknown TOML tables and keys are errors, so typos never pass
silently. docs/operations.md lists every setting with its default, flag, variable and TOML key.

Value syntax shared by every layer:

* sizes: an integer number of bytes, or a number with a unit — ``512k``/``256m``/``1g`` and
  ``KiB``/``MiB``/``GiB``/``TiB`` are powers of 1024; ``KB``/``MB``/``GB``/``TB`` are powers of
  1000 (case does not matter, ``256 MiB`` and ``1.5GiB`` are fine).
* durations: seconds as a number (``300``, ``0.1``), or with units ``ms``, ``s``, ``m``, ``h``,
  ``d``, possibly combined (``5m``, ``1.5s``, ``1h30m``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from meshcache.errors import ConfigError
from meshcache.wire.address import parse_address as wire_parse_address
from meshcache.wire.names import NAMESPACE_NAME_RE, NAMESPACE_NAME_RULE, is_namespace_name

if TYPE_CHECKING:
    from meshcache.security.users import User
    from meshcache.store.policy import NamespacePolicy

ENV_PREFIX = "MESHCACHE_"
#: The environment variable naming a TOML file when no ``config_file`` is passed.
CONFIG_ENV = "MESHCACHE_CONFIG"

LogFormat = Literal["console", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
Profile = Literal["lan", "local"]

LOG_FORMATS: tuple[LogFormat, ...] = ("console", "json")
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")
PROFILES: tuple[Profile, ...] = ("lan", "local")


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """What one client may cost the node. Sizes in bytes, times in seconds."""

    max_frame_bytes: int = 16 * 1024 * 1024
    max_key_bytes: int = 16 * 1024
    max_value_bytes: int = 8 * 1024 * 1024
    max_connections: int = 10_000
    max_buffered_bytes: int = 64 * 1024 * 1024  # unsent answers per connection before it is closed
    idle_timeout: float = 300.0


#: A source name: lower-case, so ``MESHCACHE_SOURCE_<NAME>_DSN`` names exactly one source.
SOURCE_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
_SOURCE_ENV_RE = re.compile(r"MESHCACHE_SOURCE_([A-Z][A-Z0-9_]{0,62})_DSN")


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """One database a node's read-through namespaces may load from (``[sources.NAME]``).

    Sources are node-local: the DSN (and the password in it) never leaves the node's settings.
    ``dsn`` (or ``MESHCACHE_SOURCE_<NAME>_DSN``) wins over ``dsn_file``, which is read when the
    node starts. Times in seconds.
    """

    dsn: str | None = field(default=None, repr=False)
    dsn_file: Path | None = None
    pool_size: int = 4
    statement_timeout: float = 5.0
    connect_timeout: float = 5.0

    def resolve_dsn(self, name: str) -> str:
        """The DSN: ``dsn``, else the first line of ``dsn_file``.

        Raises:
            ConfigError: neither is set, or the file cannot be read or is empty.
        """
        if self.dsn:
            return self.dsn
        if self.dsn_file is None:
            raise ConfigError(f"source {name!r}: set dsn, dsn_file or MESHCACHE_SOURCE_..._DSN")
        try:
            text = self.dsn_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"source {name!r}: dsn_file {str(self.dsn_file)!r}: {exc}") from None
        if not text:
            raise ConfigError(f"source {name!r}: dsn_file {str(self.dsn_file)!r} is empty")
        return text.splitlines()[0].strip()


def _default_namespaces() -> Mapping[str, NamespacePolicy]:
    # Imported here, as everywhere in this module: the store package costs every one-shot
    # `meshcache get` tens of milliseconds, and only a node needs policies.
    from meshcache.store.policy import NamespacePolicy

    return MappingProxyType({"default": NamespacePolicy()})


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """Everything a node needs to start. Build it with :func:`load_settings`.

    ``namespaces`` always holds ``"default"``. The gossip fields (``gossip_port`` to
    ``cluster_key_file``) are parsed and validated now and used once the node joins a mesh.
    """

    host: str = "127.0.0.1"
    port: int = 7400  # 0 = any free port (tests)
    admin_host: str = "127.0.0.1"
    admin_port: int = 9400  # 0 = any free port
    resp_port: int | None = None  # None = no RESP port; 0 = any free port
    data_dir: Path = Path("meshcache-data")
    node_id: str = ""  # "" = derived: f"{host}:{port}" once bound
    log_format: LogFormat = "console"
    log_level: LogLevel = "info"
    limits: LimitSettings = LimitSettings()
    # Excluded from hashing: a mapping is not hashable, equality still compares it.
    namespaces: Mapping[str, NamespacePolicy] = field(
        default_factory=_default_namespaces, hash=False
    )
    expire_interval: float = 0.1  # seconds between active-expiry cycles
    gossip_port: int | None = None  # None = same number as the data port
    join: tuple[str, ...] = ()  # seeds' data addresses host:port
    zone: str = "default"
    profile: Profile = "lan"
    cluster_key_file: Path | None = None
    bootstrap: bool = False  # be the single voter of a new config group
    raft_port: int | None = None  # None = data port + 1
    raft_peers: tuple[str, ...] = ()  # every voter's Raft address host:port
    raft_password_file: Path | None = None
    auto_remove_after: float = 300.0  # a ring member dead this long is removed (voters act)
    tombstone_grace: float = 3 * 3600.0  # how long a delete is remembered for replicas
    handoff_rate: int = 64 * 1024 * 1024  # bytes/s a node streams when ranges change hands
    anti_entropy_interval: float = 60.0  # seconds between anti-entropy rounds
    hint_max_bytes: int = 64 * 1024 * 1024  # writes held for unreachable owners, all targets
    hint_max_age: float = 3600.0  # a hint older than this is dropped (anti-entropy repairs)
    read_repair_chance: float = 0.05  # fraction of reads checked against the other owners
    # Who may connect ([users.NAME], docs/security.md); none: protected mode applies.
    users: Mapping[str, User] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    insecure: bool = False  # serve a non-loopback host with no users (no authentication)
    # TLS (docs/security.md): with a certificate and key the data and RESP ports speak only
    # TLS; with a CA peers use mutual TLS and client certificates are checked.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_client_auth: bool = False  # clients must present a certificate the CA signed
    tls_admin: bool = False  # the admin HTTP port speaks TLS too
    # Databases read-through namespaces load from; node-local (credentials never leave).
    sources: Mapping[str, SourceSettings] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    @property
    def is_voter_candidate(self) -> bool:
        """True when this node may be a Raft voter (``--bootstrap`` or ``--raft-peers``)."""
        return self.bootstrap or bool(self.raft_peers)


# --- value parsers -----------------------------------------------------------------------------
# Each takes the raw value (str from a flag or the environment, a TOML value, or a Python value
# passed in ``overrides``) and ``where`` (the label errors start with); returns the typed value.

Parser = Callable[[object, str], Any]

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}
_SIZE_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")
_NUMBER_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def _fail(where: str, problem: str) -> ConfigError:
    return ConfigError(f"{where}: {problem}")


def _int_text(value: object) -> int | None:
    """``value`` as an int when it is one or is base-10 integer text; None otherwise."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if text.isascii() and text.isdigit():
            return int(text)
    return None


def parse_port(value: object, where: str) -> int:
    """A TCP/UDP port number, 0 to 65535 (0 asks the OS for any free port)."""
    port = _int_text(value)
    if port is None or not 0 <= port <= 65535:
        raise _fail(where, f"{value!r} is not a port number (0-65535)")
    return port


def _parse_optional_port(value: object, where: str) -> int | None:
    if value is None:
        return None
    return parse_port(value, where)


def parse_size(value: object, where: str) -> int:
    """A positive byte count: an integer or a number with a unit (``512k``, ``256MiB``, ``1GB``)."""
    problem = f"{value!r} is not a size (examples: 1048576, 512k, 256MiB, 1GB)"
    if type(value) is int:
        size = value
    elif isinstance(value, str):
        match = _SIZE_RE.fullmatch(value.strip().replace("_", "").lower())
        if match is None or match.group(2) not in _SIZE_UNITS:
            raise _fail(where, problem)
        number, unit = match.groups()
        if not unit and not number.isdigit():
            raise _fail(where, f"{value!r} is not a whole number of bytes")
        # With a unit, a fraction is fine ("1.5GiB"); what is left of a byte is dropped.
        size = int(float(number) * _SIZE_UNITS[unit])
    else:
        raise _fail(where, problem)
    if size < 1:
        raise _fail(where, f"{value!r} must be at least 1 byte")
    return size


def parse_duration(value: object, where: str) -> float:
    """A positive number of seconds: ``300``, ``0.1``, ``1.5s``, ``250ms``, ``5m``, ``1h30m``."""
    problem = f"{value!r} is not a duration (examples: 300, 1.5s, 250ms, 5m, 1h30m)"
    if type(value) is int or type(value) is float:
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "").lower()
        if _NUMBER_RE.fullmatch(text):
            seconds = float(text)
        else:
            parts = _DURATION_PART_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise _fail(where, problem)
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    else:
        raise _fail(where, problem)
    if not math.isfinite(seconds) or seconds <= 0:
        raise _fail(where, f"{value!r} must be a positive, finite number of seconds")
    return seconds


def _parse_fraction(value: object, where: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _fail(where, f"expected a number from 0 to 1, got {value!r}") from None
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:
        raise _fail(where, f"expected a number from 0 to 1, got {value!r}")
    return number


def _parse_count(value: object, where: str) -> int:
    count = _int_text(value)
    if count is None or count < 1:
        raise _fail(where, f"{value!r} is not a positive integer")
    return count


def _parse_text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"{value!r} must be a non-empty string")
    return value.strip()


def _parse_node_id(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"{value!r} must be a string")
    return value.strip()


def _choice(options: tuple[str, ...]) -> Parser:
    def parse(value: object, where: str) -> str:
        text = value.strip().lower() if isinstance(value, str) else None
        if text not in options:
            raise _fail(where, f"{value!r} is not one of {', '.join(options)}")
        return text

    return parse


def _parse_path(value: object, where: str) -> Path:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"{value!r} must be a non-empty path")
    return Path(value.strip()).expanduser()


def _parse_optional_path(value: object, where: str) -> Path | None:
    return None if value is None else _parse_path(value, where)


def parse_address(value: object, where: str) -> str:
    """A ``host:port`` setting (``[v6]:port`` for IPv6), checked by the one address parser.

    Returns the address in its canonical text form (``str`` of
    :class:`~meshcache.wire.address.Address`); settings keep addresses as text.

    Raises:
        ConfigError: naming ``where``, when ``value`` is not text, has no port, or its port is
            not 1 to 65535.
    """
    if isinstance(value, str):
        try:
            return str(wire_parse_address(value, default_port=None))
        except ConfigError:
            pass
    raise _fail(where, f"{value!r} is not a host:port address")


def _parse_bool(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise _fail(where, f"{value!r} is not true or false")


def _parse_join(value: object, where: str) -> tuple[str, ...]:
    items: list[object]
    if isinstance(value, str):
        # From a flag or the environment: a comma-separated list.
        items = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise _fail(where, f"{value!r} must be a list of host:port addresses")
    return tuple(parse_address(item, where) for item in items)


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One scalar setting: its TOML table and key, and the flag and variable that set it."""

    table: Literal["node", "limits"]
    key: str
    parse: Parser
    help: str
    metavar: str = "VALUE"

    @property
    def name(self) -> str:
        """The name ``overrides`` uses: ``"port"``, ``"limits.max_frame_bytes"``."""
        return self.key if self.table == "node" else f"{self.table}.{self.key}"

    @property
    def env(self) -> str:
        """``MESHCACHE_`` + the key upper-cased; keys of ``[limits]`` add ``LIMITS_``."""
        middle = "" if self.table == "node" else f"{self.table.upper()}_"
        return f"{ENV_PREFIX}{middle}{self.key.upper()}"

    @property
    def flag(self) -> str:
        """``--`` + the key with dashes (``--admin-port``, ``--max-value-bytes``)."""
        return "--" + self.key.replace("_", "-")


def _node(key: str, parse: Parser, help: str, metavar: str = "VALUE") -> SettingSpec:
    return SettingSpec("node", key, parse, help, metavar)


def _limit(key: str, parse: Parser, help: str, metavar: str = "SIZE") -> SettingSpec:
    return SettingSpec("limits", key, parse, help, metavar)


#: Every scalar setting, in the order the docs and ``--help`` list them.
SETTINGS: tuple[SettingSpec, ...] = (
    _node("host", _parse_text, "address the data port binds", "HOST"),
    _node("port", parse_port, "data port (0 = any free port)", "PORT"),
    _node("admin_host", _parse_text, "address the admin port binds", "HOST"),
    _node("admin_port", parse_port, "admin HTTP port (0 = any free port)", "PORT"),
    _node(
        "resp_port",
        _parse_optional_port,
        "Redis protocol (RESP) port on the data port's host (unset = off, 0 = any free port)",
        "PORT",
    ),
    _node("data_dir", _parse_path, "directory for the node's files", "DIR"),
    _node("node_id", _parse_node_id, "node id (default: host:port once bound)", "ID"),
    _node("log_format", _choice(LOG_FORMATS), "console or json", "FORMAT"),
    _node("log_level", _choice(LOG_LEVELS), "debug, info, warning or error", "LEVEL"),
    _node("expire_interval", parse_duration, "time between active-expiry cycles", "DURATION"),
    _node("gossip_port", _parse_optional_port, "gossip UDP port (default: data port)", "PORT"),
    _node("join", _parse_join, "seed addresses host:port, comma-separated", "ADDRS"),
    _node("zone", _parse_text, "failure zone of this node", "ZONE"),
    _node("profile", _choice(PROFILES), "gossip timing profile: lan or local", "PROFILE"),
    _node("cluster_key_file", _parse_optional_path, "file holding the cluster key", "FILE"),
    _node("bootstrap", _parse_bool, "be the single voter of a new config group", "BOOL"),
    _node("raft_port", _parse_optional_port, "Raft port of a voter (default: port + 1)", "PORT"),
    _node(
        "auto_remove_after",
        parse_duration,
        "a ring member dead this long is removed from the ring",
        "DURATION",
    ),
    _node("tombstone_grace", parse_duration, "how long deletes are remembered", "DURATION"),
    _node("handoff_rate", parse_size, "bytes per second streamed on ring changes", "SIZE"),
    _node("anti_entropy_interval", parse_duration, "time between anti-entropy rounds", "DURATION"),
    _node("hint_max_bytes", parse_size, "bytes of hints held for unreachable owners", "SIZE"),
    _node("hint_max_age", parse_duration, "age at which a hint is dropped", "DURATION"),
    _node(
        "read_repair_chance",
        _parse_fraction,
        "fraction of reads checked against the key's other owners (0 = off)",
        "FRACTION",
    ),
    _node("raft_peers", _parse_join, "every voter's Raft address, comma-separated", "ADDRS"),
    _node("raft_password_file", _parse_optional_path, "file holding the Raft password", "FILE"),
    _node(
        "insecure",
        _parse_bool,
        "serve a non-loopback host although no users are configured (no authentication)",
        "BOOL",
    ),
    _node(
        "tls_cert_file",
        _parse_optional_path,
        "PEM certificate of this node: the data and RESP ports then speak TLS",
        "FILE",
    ),
    _node("tls_key_file", _parse_optional_path, "PEM private key of tls_cert_file", "FILE"),
    _node(
        "tls_ca_file",
        _parse_optional_path,
        "PEM CA of the cluster: peers use mutual TLS, client certificates are checked",
        "FILE",
    ),
    _node(
        "tls_client_auth",
        _parse_bool,
        "clients must present a certificate signed by tls_ca_file",
        "BOOL",
    ),
    _node("tls_admin", _parse_bool, "the admin HTTP port speaks TLS too", "BOOL"),
    _limit("max_frame_bytes", parse_size, "largest request frame"),
    _limit("max_key_bytes", parse_size, "largest key"),
    _limit("max_value_bytes", parse_size, "largest value"),
    _limit("max_connections", _parse_count, "most client connections", "N"),
    _limit("max_buffered_bytes", parse_size, "unsent answers per connection before closing"),
    _limit("idle_timeout", parse_duration, "close connections idle this long", "DURATION"),
)
SETTINGS_BY_NAME: Mapping[str, SettingSpec] = MappingProxyType({s.name: s for s in SETTINGS})
_BY_TABLE: dict[str, dict[str, SettingSpec]] = {
    table: {s.key: s for s in SETTINGS if s.table == table} for table in ("node", "limits")
}
_PATH_KEYS = frozenset(
    {
        "data_dir",
        "cluster_key_file",
        "raft_password_file",
        "tls_cert_file",
        "tls_key_file",
        "tls_ca_file",
    }
)
_TABLES = ("node", "limits", "namespaces", "sources", "users")


def _unknown(what: str, name: str, known: Any) -> str:
    import difflib  # only on the error path: every one-shot CLI command imports this module

    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {name!r}{hint}"


# --- loading -----------------------------------------------------------------------------------


class _Layers:
    """The winning value of each setting and a label saying where it came from."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[Any, str]] = {}
        self.namespaces: dict[str, tuple[NamespacePolicy, str]] = {}
        self.sources: dict[str, SourceSettings] = {}
        self.users: dict[str, User] = {}

    def put(self, spec: SettingSpec, raw: object, where: str) -> None:
        self.values[spec.name] = (spec.parse(raw, where), where)

    def get(self, name: str, default: Any) -> Any:
        return self.values[name][0] if name in self.values else default

    def origin(self, name: str) -> str:
        return self.values[name][1] if name in self.values else "default"


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # only nodes read a file; the CLI's client commands never do

    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {str(path)!r}: is a directory") from None
    except PermissionError:
        raise ConfigError(f"config file {str(path)!r}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text") from None


def _parse_size_or_zero(value: object, where: str) -> int:
    return 0 if isinstance(value, str) and value.strip() == "0" else parse_size(value, where)


_POLICY_UNITS: dict[str, Parser] = {
    "max_bytes": _parse_size_or_zero,
    "default_ttl": parse_duration,
}


def _policy(table: object, where: str) -> NamespacePolicy:
    from meshcache.store.policy import NamespacePolicy

    if isinstance(table, NamespacePolicy):
        policy = table
    elif isinstance(table, Mapping):
        values = dict(table)
        # Sizes and durations take units here as everywhere else in the file.
        for key, parse in _POLICY_UNITS.items():
            if isinstance(values.get(key), str):
                values[key] = parse(values[key], f"{where} {key}")
        loader = values.get("loader")
        if isinstance(loader, Mapping):
            values["loader"] = loader = dict(loader)
            for key in ("ttl", "negative_ttl", "load_timeout", "stale_if_error"):
                if isinstance(loader.get(key), str):
                    loader[key] = parse_duration(loader[key], f"{where} loader.{key}")
        try:
            policy = NamespacePolicy.from_mapping(values)
        except ConfigError as exc:
            raise _fail(where, str(exc)) from None
        except (TypeError, ValueError) as exc:
            raise _fail(where, str(exc) or type(exc).__name__) from None
    else:
        raise _fail(where, f"{table!r} must be a table of policy settings")
    try:
        policy.validate()
    except ConfigError as exc:
        raise _fail(where, str(exc)) from None
    return policy


def _outside_tables(key: str) -> str:
    """The problem with a ``key = value`` line above every table header."""
    for table in ("node", "limits"):
        if key in _BY_TABLE[table]:
            return f"setting {key!r} belongs in [{table}]: put it below a [{table}] line"
    known = {k: table for table in ("node", "limits") for k in _BY_TABLE[table]}
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}, in [{known[close[0]]}]?)" if close else ""
    return f"{key!r} is outside every table: settings go in [node] or [limits]{hint}"


def _apply_toml(layers: _Layers, path: Path) -> None:
    data = _read_toml(path)
    for table, content in data.items():
        if table in _TABLES:
            continue
        if isinstance(content, dict):
            raise _fail(str(path), _unknown("table", f"[{table}]", [f"[{t}]" for t in _TABLES]))
        raise _fail(str(path), _outside_tables(table))
    for table in ("node", "limits"):
        content = data.get(table, {})
        if not isinstance(content, dict):
            raise _fail(str(path), f"{table!r} must be a table: write [{table}]")
        for key, raw in content.items():
            where = f"{path} [{table}] {key}"
            spec = _BY_TABLE[table].get(key)
            if spec is None:
                raise _fail(f"{path} [{table}]", _unknown("setting", key, _BY_TABLE[table]))
            layers.put(spec, raw, where)
            value = layers.values[spec.name][0]
            if key in _PATH_KEYS and isinstance(value, Path) and not value.is_absolute():
                # Relative paths in a file are relative to that file, not to where the
                # node happens to be started from.
                layers.values[spec.name] = (path.parent / value, where)
    namespaces = data.get("namespaces", {})
    if not isinstance(namespaces, dict):
        raise _fail(str(path), "'namespaces' must hold tables: write [namespaces.NAME]")
    for name, table in namespaces.items():
        where = f"{path} [namespaces.{name}]"
        layers.namespaces[name] = (_policy(table, where), where)
    if "users" in data:
        from meshcache.security.users import parse_users

        layers.users.update(parse_users(data["users"], str(path)))
    sources = data.get("sources", {})
    if not isinstance(sources, dict):
        raise _fail(str(path), "'sources' must hold tables: write [sources.NAME]")
    for name, table in sources.items():
        layers.sources[name] = _source(name, table, f"{path} [sources.{name}]", path.parent)


_SOURCE_FIELDS: dict[str, Parser] = {
    "dsn": _parse_text,
    "dsn_file": _parse_path,
    "pool_size": _parse_count,
    "statement_timeout": parse_duration,
    "connect_timeout": parse_duration,
}


def _source(name: str, table: object, where: str, base: Path | None) -> SourceSettings:
    if not SOURCE_NAME_RE.fullmatch(name):
        raise _fail(where, f"source name {name!r} must be a lower-case identifier")
    if isinstance(table, SourceSettings):
        return table
    if not isinstance(table, Mapping):
        raise _fail(where, f"{table!r} must be a table of source settings")
    values: dict[str, Any] = {}
    for key, raw in table.items():
        parse = _SOURCE_FIELDS.get(key)
        if parse is None:
            raise _fail(where, _unknown("source setting", key, _SOURCE_FIELDS))
        values[key] = parse(raw, f"{where} {key}")
    dsn_file = values.get("dsn_file")
    if base is not None and dsn_file is not None and not dsn_file.is_absolute():
        values["dsn_file"] = base / dsn_file
    return SourceSettings(**values)


def _apply_env(layers: _Layers, environ: Mapping[str, str]) -> None:
    for spec in SETTINGS:
        raw = environ.get(spec.env)
        # An empty variable counts as unset: `MESHCACHE_PORT= meshcache start` is common.
        if raw is not None and raw.strip():
            layers.put(spec, raw, spec.env)
    for variable, raw in environ.items():
        match = _SOURCE_ENV_RE.fullmatch(variable)
        if match and raw.strip():
            name = match.group(1).lower()
            known = layers.sources.get(name, SourceSettings())
            layers.sources[name] = replace(known, dsn=raw.strip())


def _apply_overrides(layers: _Layers, overrides: Mapping[str, Any]) -> None:
    for name, raw in overrides.items():
        if name == "namespaces":
            if not isinstance(raw, Mapping):
                raise _fail("namespaces", f"{raw!r} must map names to policies")
            for ns, policy in raw.items():
                where = f"namespace {ns!r}"
                layers.namespaces[ns] = (_policy(policy, where), where)
            continue
        if name == "users":
            from meshcache.security.users import parse_users

            layers.users.update(parse_users(raw, "users"))
            continue
        if name == "sources":
            if not isinstance(raw, Mapping):
                raise _fail("sources", f"{raw!r} must map names to source settings")
            for source, table in raw.items():
                layers.sources[source] = _source(source, table, f"source {source!r}", None)
            continue
        spec = SETTINGS_BY_NAME.get(name)
        if spec is None:
            raise ConfigError(_unknown("setting", name, SETTINGS_BY_NAME))
        layers.put(spec, raw, spec.flag)


def unknown_env_vars(environ: Mapping[str, str]) -> list[str]:
    """``MESHCACHE_*`` variables in ``environ`` that name no setting (likely typos).

    They are ignored by :func:`load_settings` because other tools share the prefix
    (``MESHCACHE_SIM_SEED`` in the tests); ``meshcache start`` logs a warning for each.
    """
    # The client commands' credentials (meshcache/cli.py) share the prefix.
    known = {spec.env for spec in SETTINGS} | {CONFIG_ENV, "MESHCACHE_USER", "MESHCACHE_PASSWORD"}
    return sorted(
        k
        for k in environ
        if k.startswith(ENV_PREFIX) and k not in known and not _SOURCE_ENV_RE.fullmatch(k)
    )


def check_namespace_name(name: object, where: str) -> str:
    """``name`` when it follows :data:`~meshcache.wire.names.NAMESPACE_NAME_RE`; else a
    one-line ConfigError."""
    if not is_namespace_name(name):
        raise _fail(where, f"namespace name {name!r} is not {NAMESPACE_NAME_RULE}")
    return name


def _cross_check(layers: _Layers, settings: NodeSettings) -> None:
    limits = settings.limits

    def described(name: str, value: object) -> str:
        return f"{name.rpartition('.')[2]} ({value}, from {layers.origin(name)})"

    for small in ("max_key_bytes", "max_value_bytes"):
        small_value = getattr(limits, small)
        if small_value >= limits.max_frame_bytes:
            raise ConfigError(
                f"{described('limits.' + small, small_value)} must be smaller than "
                f"{described('limits.max_frame_bytes', limits.max_frame_bytes)}"
            )
    if settings.bootstrap and settings.raft_peers:
        raise ConfigError(
            f"{described('bootstrap', True)} and {described('raft_peers', 'a list')} exclude "
            "each other: --bootstrap starts a group of one, --raft-peers joins a group"
        )
    if settings.users and settings.cluster_key_file is None:
        raise ConfigError(
            f"{len(settings.users)} user(s) are configured but no cluster_key_file: nodes "
            "authenticate to each other with the cluster key, and without one node-to-node "
            "ops would be open to anyone"
        )
    from meshcache.security.protected import check_protected_mode

    check_protected_mode(
        settings.host,
        has_users=bool(settings.users),
        insecure=settings.insecure,
        where=f"host {settings.host!r} (from {layers.origin('host')})",
    )
    if settings.raft_peers and settings.raft_password_file is None:
        raise ConfigError(
            f"{described('raft_peers', ','.join(settings.raft_peers))} needs "
            "raft_password_file: every voter of a group shares one password"
        )
    _check_tls(settings)
    _check_own_ports(layers, settings)


def _check_tls(settings: NodeSettings) -> None:
    """TLS rows that only make sense together; the files themselves are read at start."""
    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        raise ConfigError(
            "tls_cert_file and tls_key_file go together: set both to serve TLS, or neither"
        )
    if settings.tls_cert_file is None:
        for name in ("tls_ca_file", "tls_client_auth", "tls_admin"):
            if getattr(settings, name):
                raise ConfigError(f"{name} needs tls_cert_file and tls_key_file")
    if settings.tls_client_auth and settings.tls_ca_file is None:
        raise ConfigError(
            "tls_client_auth needs tls_ca_file: the CA client certificates are checked against"
        )


_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})


def _check_own_ports(layers: _Layers, settings: NodeSettings) -> None:
    """The node's TCP ports (data, admin, RESP, Raft) must not be one port: it binds each once.

    Gossip is UDP, so sharing the data port's number is its default, not a clash.
    """

    def described(use: NodePort) -> str:
        origin = layers.origin(use.setting)
        if use.setting == "raft_port" and settings.raft_port is None:
            origin = "default: port + 1"
        return f"{use.setting} ({use.port}, from {origin})"

    tcp = [use for use in node_ports(settings) if use.transport == "tcp" and use.port]
    for i, first in enumerate(tcp):
        for second in tcp[i + 1 :]:
            same_host = (
                first.host == second.host
                or first.host in _WILDCARD_HOSTS
                or second.host in _WILDCARD_HOSTS
            )
            if first.port == second.port and same_host:
                raise ConfigError(
                    f"{described(first)} and {described(second)} must differ: the node binds"
                    f" its {first.role} and {second.role} ports separately"
                )


class NodePort(NamedTuple):
    """One socket a node binds, and the setting its number comes from."""

    setting: str  # "port", "admin_port", "gossip_port", "resp_port", "raft_port"
    role: str  # what it carries: "data", "admin", "gossip", "RESP", "Raft"
    transport: Literal["tcp", "udp"]
    host: str
    port: int  # 0: the kernel picks one

    def describe(self) -> str:
        """``data port 127.0.0.1:7400 (TCP, setting port)``."""
        where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return f"{self.role} port {where} ({self.transport.upper()}, setting {self.setting})"


def node_ports(settings: NodeSettings) -> tuple[NodePort, ...]:
    """Every socket a node with ``settings`` binds: data, admin, gossip, RESP when it is set,
    and Raft for a voter.

    A node is a voter with ``bootstrap``, or when its own Raft address (``host:raft_port``) is
    in ``raft_peers``. The Raft port defaults to the data port + 1 (kernel-picked for a
    bootstrap node whose data port is 0).
    """
    ports = [
        NodePort("port", "data", "tcp", settings.host, settings.port),
        NodePort("admin_port", "admin", "tcp", settings.admin_host, settings.admin_port),
        NodePort(
            "gossip_port",
            "gossip",
            "udp",
            settings.host,
            settings.port if settings.gossip_port is None else settings.gossip_port,
        ),
    ]
    if settings.resp_port is not None:
        ports.append(NodePort("resp_port", "RESP", "tcp", settings.host, settings.resp_port))
    raft = settings.raft_port
    if raft is None:
        raft = settings.port + 1 if settings.port else 0
    host = settings.host
    own = f"[{host}]:{raft}" if ":" in host else f"{host}:{raft}"
    if settings.bootstrap or (raft and own in settings.raft_peers):
        ports.append(NodePort("raft_port", "Raft", "tcp", host, raft))
    return tuple(ports)


def bind_error(settings: NodeSettings, setting: str, exc: OSError) -> OSError:
    """``exc`` (a failed bind) restated with the port, what it carries and its setting."""
    use = next((p for p in node_ports(settings) if p.setting == setting), None)
    where = use.describe() if use is not None else setting
    return OSError(
        exc.errno,
        f"cannot bind the {where}: {exc.strerror or exc} (see --{setting.replace('_', '-')})",
    )


def load_settings(
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> NodeSettings:
    """Build the node's settings from defaults, a TOML file, the environment and overrides.

    Args:
        config_file: a TOML file with ``[node]``, ``[limits]`` and ``[namespaces.NAME]`` tables.
            When None, the file named by ``MESHCACHE_CONFIG`` in ``environ`` is read, if any.
        environ: where ``MESHCACHE_*`` variables are looked up; ``os.environ`` when None.
            Empty variables count as unset; unknown ``MESHCACHE_*`` names are ignored.
        overrides: the command line's values, keyed by :attr:`SettingSpec.name` (``"port"``,
            ``"limits.max_value_bytes"``) plus ``"namespaces"`` (name → policy or mapping).
            Values may be text (parsed as a flag's would be) or already typed.

    Raises:
        ConfigError: a value is malformed or out of range, a TOML key is unknown, or the file
            cannot be read; the message names the setting and where its value came from.
    """
    env = os.environ if environ is None else environ
    layers = _Layers()
    if config_file is None and env.get(CONFIG_ENV, "").strip():
        config_file = Path(env[CONFIG_ENV].strip()).expanduser()
    if config_file is not None:
        _apply_toml(layers, Path(config_file))
    _apply_env(layers, env)
    if overrides:
        _apply_overrides(layers, overrides)

    limit_defaults = LimitSettings()
    limits = LimitSettings(
        **{
            f.name: layers.get(f"limits.{f.name}", getattr(limit_defaults, f.name))
            for f in fields(LimitSettings)
        }
    )
    namespaces = dict(_default_namespaces())
    for name, (policy, where) in layers.namespaces.items():
        check_namespace_name(name, where)
        namespaces[name] = policy
    node_defaults = NodeSettings()
    node_values = {
        spec.key: layers.get(spec.name, getattr(node_defaults, spec.key))
        for spec in SETTINGS
        if spec.table == "node"
    }
    for name, source in layers.sources.items():
        if not source.dsn and source.dsn_file is None:
            raise ConfigError(
                f"source {name!r}: set dsn, dsn_file or MESHCACHE_SOURCE_{name.upper()}_DSN"
            )
    settings = NodeSettings(
        **node_values,
        limits=limits,
        namespaces=MappingProxyType(namespaces),
        sources=MappingProxyType(dict(layers.sources)),
        users=MappingProxyType(dict(layers.users)),
    )
    _cross_check(layers, settings)
    return settings


def settings_as_toml(settings: NodeSettings) -> str:
    """The settings written as a TOML file that :func:`load_settings` reads back to equal values.

    Paths are written absolute, against the working directory (where a relative path in
    ``settings`` points), so the file means the same wherever it is saved: a relative path in a
    file would be read relative to that file. Unset optional values (``gossip_port``,
    ``cluster_key_file``, policy fields that are None) are left out, since TOML has no null.
    """
    lines = ["[node]"]
    for spec in SETTINGS:
        table = settings if spec.table == "node" else settings.limits
        if spec.table == "limits" and lines[-1] != "" and "[limits]" not in lines:
            lines += ["", "[limits]"]
        value = getattr(table, spec.key)
        if value is not None:
            lines.append(f"{spec.key} = {_toml_value(value)}")
    for name, policy in settings.namespaces.items():
        lines += ["", f"[namespaces.{_toml_key(name)}]"]
        for key, value in policy.to_mapping().items():
            lines.append(f"{key} = {_toml_value(value)}")
    for name, user in settings.users.items():
        lines += ["", f"[users.{_toml_key(name)}]"]
        lines.append(f"password = {_toml_string(user.password.encode())}")
        lines.append(f"permissions = {_toml_value(sorted(p.value for p in user.permissions))}")
        if user.namespaces:
            lines.append(f"namespaces = {_toml_value(list(user.namespaces))}")
    for name, source in settings.sources.items():
        lines += ["", f"[sources.{name}]"]
        for item in fields(source):
            value = getattr(source, item.name)
            if value is not None:
                lines.append(f"{item.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _toml_string(name)


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else _toml_escape(c) for c in escaped)
    return f'"{escaped}"'


def _toml_escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path):
        # absolute() keeps symlinks and ".." as given: the same file, not a resolved twin.
        return _toml_string(str(value.absolute()))
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # a nested policy value (an inline table)
        inner = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    return _toml_string(str(value))


__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "NAMESPACE_NAME_RE",
    "NAMESPACE_NAME_RULE",
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "LimitSettings",
    "NodePort",
    "NodeSettings",
    "SettingSpec",
    "SourceSettings",
    "check_namespace_name",
    "load_settings",
    "node_ports",
    "parse_address",
    "parse_duration",
    "parse_port",
    "parse_size",
    "settings_as_toml",
    "unknown_env_vars",
]
