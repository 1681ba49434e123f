"""Node settings: value syntax, the four layers and their precedence, and the error messages."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.errors import ConfigError
from meshcache.settings import (
    NAMESPACE_NAME_RE,
    SETTINGS,
    LimitSettings,
    NodePort,
    NodeSettings,
    check_namespace_name,
    load_settings,
    node_ports,
    parse_address,
    parse_duration,
    parse_size,
    settings_as_toml,
    unknown_env_vars,
)
from meshcache.store.policy import NamespacePolicy


def write(tmp_path: Path, text: str, name: str = "node.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(**kwargs: Any) -> NodeSettings:
    kwargs.setdefault("environ", {})
    return load_settings(**kwargs)


def error_of(**kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- value syntax ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (1, 1),
        (1048576, 1048576),
        ("1048576", 1048576),
        ("16_777_216", 16777216),
        ("512k", 512 * 1024),
        ("512K", 512 * 1024),
        ("256m", 256 * 1024**2),
        ("1g", 1024**3),
        ("256MiB", 256 * 1024**2),
        ("256 MiB", 256 * 1024**2),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("4KiB", 4096),
        ("1TiB", 1024**4),
        ("1GB", 10**9),
        ("1kb", 1000),
        ("2MB", 2 * 10**6),
        ("100b", 100),
    ],
)
def test_sizes(text: object, expected: int) -> None:
    assert parse_size(text, "x") == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "1XB", "-1", "0", "0k", "1.5", "MiB", "1 2", True, 1.5, None, [1]]
)
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ConfigError, match=r"^where: "):
        parse_size(text, "where")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (300, 300.0),
        (0.1, 0.1),
        ("300", 300.0),
        ("0.25", 0.25),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1m 30s", 90.0),
        ("5M", 300.0),
    ],
)
def test_durations(text: object, expected: float) -> None:
    assert math.isclose(parse_duration(text, "x"), expected)


@pytest.mark.parametrize(
    "text", ["", "abc", "5 minutes", "-1", "0", "0s", "1.5x", "s", "inf", True, float("inf"), None]
)
def test_bad_durations(text: object) -> None:
    with pytest.raises(ConfigError, match=r"^where: "):
        parse_duration(text, "where")


# --- defaults and layers -----------------------------------------------------------------------


def test_defaults() -> None:
    s = load()
    assert s == NodeSettings()
    assert s.port == 7400 and s.admin_port == 9400 and s.host == "127.0.0.1"
    assert s.limits == LimitSettings()
    assert dict(s.namespaces) == {"default": NamespacePolicy()}
    assert s.gossip_port is None and s.join == () and s.cluster_key_file is None
    hash(s)  # usable as a dict key although it holds a mapping


def test_full_toml_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [node]
        host = "0.0.0.0"
        port = 7500
        admin_host = "127.0.0.2"
        admin_port = 9500
        data_dir = "/var/lib/meshcache"
        node_id = "n1"
        log_format = "json"
        log_level = "debug"
        expire_interval = "250ms"
        gossip_port = 7946
        join = ["10.0.0.1:7400", "[::1]:7401"]
        zone = "eu-1a"
        profile = "local"
        cluster_key_file = "/etc/meshcache/key"
        insecure = true

        [limits]
        max_frame_bytes = "32MiB"
        max_key_bytes = 1024
        max_value_bytes = "1MB"
        max_connections = 50
        max_buffered_bytes = "128m"
        idle_timeout = "5m"

        [namespaces.sessions]
        eviction = "ttl"
        max_bytes = "256MiB"
        default_ttl = "30m"
        replicas = 3

        [namespaces.default]
        eviction = "lfu"
        """,
    )
    s = load(config_file=path)
    assert s == NodeSettings(
        host="0.0.0.0",
        port=7500,
        admin_host="127.0.0.2",
        admin_port=9500,
        data_dir=Path("/var/lib/meshcache"),
        node_id="n1",
        log_format="json",
        log_level="debug",
        expire_interval=0.25,
        gossip_port=7946,
        join=("10.0.0.1:7400", "[::1]:7401"),
        zone="eu-1a",
        profile="local",
        cluster_key_file=Path("/etc/meshcache/key"),
        insecure=True,
        limits=LimitSettings(
            max_frame_bytes=32 * 1024**2,
            max_key_bytes=1024,
            max_value_bytes=10**6,
            max_connections=50,
            max_buffered_bytes=128 * 1024**2,
            idle_timeout=300.0,
        ),
        namespaces={
            "default": NamespacePolicy(eviction="lfu"),
            "sessions": NamespacePolicy(
                eviction="ttl", max_bytes=256 * 1024**2, default_ttl=1800.0, replicas=3
            ),
        },
    )


def test_the_default_namespace_always_exists(tmp_path: Path) -> None:
    s = load(config_file=write(tmp_path, "[namespaces.a]\nmax_items = 10\n"))
    assert set(s.namespaces) == {"default", "a"}
    assert s.namespaces["default"] == NamespacePolicy()
    assert s.namespaces["a"].max_items == 10


def test_relative_paths_in_a_file_are_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\ndata_dir = "data"\ncluster_key_file = "keys/k"\n')
    s = load(config_file=path)
    assert s.data_dir == tmp_path / "data"
    assert s.cluster_key_file == tmp_path / "keys/k"
    # ... while flags and variables are relative to the working directory.
    assert load(environ={"MESHCACHE_DATA_DIR": "d"}).data_dir == Path("d")
    assert load(overrides={"data_dir": "d"}).data_dir == Path("d")


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [node]
        port = 7001
        admin_port = 9001
        zone = "file"
        [limits]
        max_value_bytes = "1MiB"
        idle_timeout = 10
        """,
    )
    environ = {
        "MESHCACHE_ADMIN_PORT": "9002",
        "MESHCACHE_ZONE": "env",
        "MESHCACHE_LIMITS_IDLE_TIMEOUT": "20s",
        "MESHCACHE_LOG_FORMAT": "json",
    }
    overrides = {"zone": "flag", "limits.idle_timeout": "30"}
    s = load(config_file=path, environ=environ, overrides=overrides)
    assert s.port == 7001  # file only
    assert s.admin_port == 9002  # env beats file
    assert s.zone == "flag"  # flag beats env and file
    assert s.limits.max_value_bytes == 1024**2  # file only
    assert s.limits.idle_timeout == 30.0  # flag beats env beats file
    assert s.log_format == "json"  # env only
    assert s.host == "127.0.0.1"  # nobody: default


def test_empty_variables_count_as_unset() -> None:
    assert load(environ={"MESHCACHE_PORT": "", "MESHCACHE_ZONE": "  "}) == NodeSettings()


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[node]\nport = 7123\n")
    assert load(environ={"MESHCACHE_CONFIG": str(path)}).port == 7123
    other = write(tmp_path, "[node]\nport = 7124\n", "other.toml")
    # An explicit file wins over the variable.
    assert load(config_file=other, environ={"MESHCACHE_CONFIG": str(path)}).port == 7124


def test_overrides_may_be_typed() -> None:
    s = load(
        overrides={
            "port": 0,
            "admin_port": 0,
            "data_dir": Path("/tmp/x"),
            "join": ("a:1", "b:2"),
            "limits.max_connections": 5,
            "namespaces": {"n": NamespacePolicy(eviction="none"), "m": {"max_items": 3}},
        }
    )
    assert (s.port, s.admin_port, s.data_dir, s.join) == (0, 0, Path("/tmp/x"), ("a:1", "b:2"))
    assert s.limits.max_connections == 5
    assert s.namespaces["n"].eviction == "none" and s.namespaces["m"].max_items == 3


def test_join_from_the_environment_is_comma_separated() -> None:
    s = load(environ={"MESHCACHE_JOIN": "a:1, b:2,,[fe80::1]:3"})
    assert s.join == ("a:1", "b:2", "[fe80::1]:3")


@pytest.mark.parametrize(
    ("value", "stored"),
    [(" 10.0.0.1:7400 ", "10.0.0.1:7400"), ("[::1]:9", "[::1]:9"), ("cache-1:1", "cache-1:1")],
)
def test_an_address_setting_is_stored_as_canonical_text(value: str, stored: str) -> None:
    assert parse_address(value, "--join") == stored


@pytest.mark.parametrize("value", ["::1:9", "host", "host:0", "[::1]", "host:", 7400, None])
def test_a_bad_address_setting_names_the_setting(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^--join: .* is not a host:port address$"):
        parse_address(value, "--join")


def test_every_setting_has_a_variable_and_a_flag() -> None:
    envs = {spec.env for spec in SETTINGS}
    assert {"MESHCACHE_PORT", "MESHCACHE_ADMIN_PORT", "MESHCACHE_DATA_DIR"} <= envs
    assert {"MESHCACHE_LOG_FORMAT", "MESHCACHE_LIMITS_MAX_VALUE_BYTES"} <= envs
    assert len(envs) == len(SETTINGS) == len({spec.flag for spec in SETTINGS})
    tables = {"limits", "namespaces", "sources", "users"}
    node_fields = set(NodeSettings.__dataclass_fields__) - tables
    assert {s.key for s in SETTINGS if s.table == "node"} == node_fields
    assert {s.key for s in SETTINGS if s.table == "limits"} == set(
        LimitSettings.__dataclass_fields__
    )


def test_unknown_env_vars() -> None:
    environ = {"MESHCACHE_PROT": "1", "MESHCACHE_PORT": "1", "MESHCACHE_CONFIG": "x", "HOME": "/"}
    assert unknown_env_vars(environ) == ["MESHCACHE_PROT"]


# --- errors ------------------------------------------------------------------------------------


def test_errors_name_the_flag() -> None:
    assert error_of(overrides={"port": "abc"}) == "--port: 'abc' is not a port number (0-65535)"
    assert error_of(overrides={"limits.max_value_bytes": "lots"}).startswith(
        "--max-value-bytes: 'lots' is not a size"
    )


def test_errors_name_the_variable() -> None:
    message = error_of(environ={"MESHCACHE_ADMIN_PORT": "70000"})
    assert message.startswith("MESHCACHE_ADMIN_PORT: '70000' is not a port number")
    message = error_of(environ={"MESHCACHE_LOG_FORMAT": "xml"})
    assert message == "MESHCACHE_LOG_FORMAT: 'xml' is not one of console, json"


def test_errors_name_the_file_table_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[limits]\nmax_frame_bytes = "12XB"\n')
    assert error_of(config_file=path).startswith(
        f"{path} [limits] max_frame_bytes: '12XB' is not a size"
    )
    path = write(tmp_path, "[node]\nport = true\n")
    assert error_of(config_file=path) == f"{path} [node] port: True is not a port number (0-65535)"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[node]\nprot = 1\n", "[node]: unknown setting 'prot' (did you mean 'port'?)"),
        ("[limits]\nmax_frame = 1\n", "[limits]: unknown setting 'max_frame' (did you mean"),
        ("[nod]\nport = 1\n", "unknown table '[nod]' (did you mean '[node]'?)"),
        ("port = 1\n", ": setting 'port' belongs in [node]: put it below a [node] line"),
        ("idle_timeout = 1\n", "setting 'idle_timeout' belongs in [limits]: put it below"),
        ("prot = 1\n", "'prot' is outside every table: settings go in [node] or [limits] (did"),
        ("node = 1\n", "'node' must be a table"),
        ("[namespaces]\nx = 1\n", "[namespaces.x]: 1 must be a table"),
        ("[namespaces.s]\nevict = 'lru'\n", "[namespaces.s]: unknown namespace policy field"),
        ("[namespaces.s]\neviction = 'mru'\n", "[namespaces.s]: unknown eviction policy 'mru'"),
        ("[namespaces.s]\nmax_bytes = '1XB'\n", "[namespaces.s] max_bytes: '1XB' is not a size"),
        ("[namespaces.s]\nreplicas = 0\n", "[namespaces.s]: replicas must be an integer >= 1"),
        ("[node]\njoin = 'a:1'\n", None),  # a string is accepted as a comma list
        ("[node]\njoin = ['a']\n", "[node] join: 'a' is not a host:port address"),
        ("[node]\njoin = 5\n", "[node] join: 5 must be a list"),
        ("[node]\nhost = ''\n", "[node] host: '' must be a non-empty string"),
        ("[node]\nprofile = 'wan'\n", "[node] profile: 'wan' is not one of lan, local"),
        ("[node]\nexpire_interval = 0\n", "[node] expire_interval: 0 must be a positive"),
        ("[limits]\nmax_connections = 0\n", "[limits] max_connections: 0 is not a positive"),
        ("[node\n", "not valid TOML"),
    ],
)
def test_toml_errors(tmp_path: Path, toml: str, expected: str | None) -> None:
    path = write(tmp_path, toml)
    if expected is None:
        load(config_file=path)
        return
    message = error_of(config_file=path)
    assert str(path) in message
    assert expected in message


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert error_of(config_file=path) == f"config file {str(path)!r}: no such file"
    assert "no such file" in error_of(environ={"MESHCACHE_CONFIG": str(path)})
    assert "is a directory" in error_of(config_file=tmp_path)


def test_unknown_override() -> None:
    assert error_of(overrides={"prot": 1}) == "unknown setting 'prot' (did you mean 'port'?)"


def test_limits_must_fit_in_a_frame() -> None:
    message = error_of(environ={"MESHCACHE_LIMITS_MAX_FRAME_BYTES": "1MiB"})
    assert message == (
        "max_value_bytes (8388608, from default) must be smaller than "
        "max_frame_bytes (1048576, from MESHCACHE_LIMITS_MAX_FRAME_BYTES)"
    )


def test_ports_must_differ() -> None:
    message = error_of(environ={"MESHCACHE_PORT": "9400"})
    assert message == (
        "port (9400, from MESHCACHE_PORT) and admin_port (9400, from default) must differ:"
        " the node binds its data and admin ports separately"
    )
    load(overrides={"port": 0, "admin_port": 0})  # two "any free port" are fine


def test_a_voters_default_raft_port_must_not_be_another_port() -> None:
    # The Raft port defaults to the data port + 1: here it is the admin port.
    message = error_of(overrides={"port": "38000", "admin_port": "38001", "bootstrap": True})
    assert message == (
        "admin_port (38001, from --admin-port) and raft_port (38001, from default: port + 1)"
        " must differ: the node binds its admin and Raft ports separately"
    )
    # Not a voter: nothing binds the Raft port.
    assert load(overrides={"port": "38000", "admin_port": "38001"}).admin_port == 38001
    message = error_of(overrides={"port": "38000", "raft_port": "38000", "bootstrap": "1"})
    assert message.startswith("port (38000, from --port) and raft_port (38000, from --raft-port)")
    # Different interfaces may use one port number; a wildcard bind covers every interface.
    load(overrides={"port": "9400", "host": "10.0.0.1", "admin_host": "10.0.0.2", "insecure": "1"})
    assert "must differ" in error_of(overrides={"port": "9400", "admin_host": "0.0.0.0"})


def test_node_ports_name_each_socket_and_its_setting(tmp_path: Path) -> None:
    s = load(overrides={"port": "7500", "admin_port": "9500", "bootstrap": True})
    assert node_ports(s) == (
        NodePort("port", "data", "tcp", "127.0.0.1", 7500),
        NodePort("admin_port", "admin", "tcp", "127.0.0.1", 9500),
        NodePort("gossip_port", "gossip", "udp", "127.0.0.1", 7500),
        NodePort("raft_port", "Raft", "tcp", "127.0.0.1", 7501),
    )
    assert node_ports(s)[3].describe() == "Raft port 127.0.0.1:7501 (TCP, setting raft_port)"
    plain = load(overrides={"port": "7500", "gossip_port": "7600"})
    assert [p.setting for p in node_ports(plain)] == ["port", "admin_port", "gossip_port"]
    assert node_ports(plain)[2].port == 7600
    password = write(tmp_path, "secret\n", "password")
    listed = load(
        overrides={
            "port": "7500",
            "raft_peers": "127.0.0.1:7501,127.0.0.1:7511",
            "raft_password_file": str(password),
        }
    )
    assert node_ports(listed)[-1] == NodePort("raft_port", "Raft", "tcp", "127.0.0.1", 7501)


@pytest.mark.parametrize("name", ["sessions", "a", "user.v2", "tenant:42", "x-y_z", "n" * 64])
def test_namespace_names_that_can_be_typed(name: str) -> None:
    assert check_namespace_name(name, "NAME") == name


@pytest.mark.parametrize("name", ["", "bad name!", "n" * 65, "caf\u00e9", "a/b", "x\n", 5])
def test_namespace_names_that_cannot_be_typed_are_refused(tmp_path: Path, name: object) -> None:
    with pytest.raises(ConfigError, match=r"^NAME: namespace name .* is not 1 to 64 characters"):
        check_namespace_name(name, "NAME")
    if isinstance(name, str) and name and "\n" not in name:
        path = write(tmp_path, f'[namespaces."{name}"]\neviction = "lru"\n')
        assert "is not 1 to 64 characters among letters" in error_of(config_file=path)


# --- round trip --------------------------------------------------------------------------------

ports = st.integers(0, 65535)
sizes = st.integers(1, 2**40)
durations = st.floats(0.001, 1e6, allow_nan=False)
# Text settings are stripped on load, so generated ones carry no edge whitespace.
words = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12
).filter(lambda w: w == w.strip())


@st.composite
def node_settings(draw: st.DrawFn) -> NodeSettings:
    frame = draw(st.integers(3, 2**40))
    port = draw(ports)
    return NodeSettings(
        host=draw(words),
        insecure=True,  # hosts drawn here are rarely loopback addresses
        port=port,
        admin_port=draw(ports.filter(lambda p: p == 0 or p != port)),
        data_dir=Path("/") / draw(words.filter(lambda w: "/" not in w and w not in (".", ".."))),
        node_id=draw(st.text(max_size=8).map(str.strip)),
        log_format=draw(st.sampled_from(["console", "json"])),
        log_level=draw(st.sampled_from(["debug", "info", "warning", "error"])),
        expire_interval=draw(durations),
        gossip_port=draw(st.none() | ports),
        join=tuple(draw(st.lists(st.sampled_from(["a:1", "10.0.0.1:7400", "[::1]:9"])))),
        zone=draw(words),
        profile=draw(st.sampled_from(["lan", "local"])),
        limits=LimitSettings(
            max_frame_bytes=frame,
            max_key_bytes=draw(st.integers(1, frame - 1)),
            max_value_bytes=draw(st.integers(1, frame - 1)),
            max_connections=draw(st.integers(1, 10**6)),
            max_buffered_bytes=draw(sizes),
            idle_timeout=draw(durations),
        ),
        namespaces={
            "default": NamespacePolicy(),
            **{
                name: NamespacePolicy(
                    eviction=draw(st.sampled_from(["lru", "lfu", "ttl", "none"])),
                    max_bytes=draw(st.none() | st.integers(1, 2**40)),
                    default_ttl=draw(st.none() | durations),
                )
                for name in draw(
                    st.lists(st.from_regex(NAMESPACE_NAME_RE, fullmatch=True), max_size=3)
                )
            },
        },
    )


@settings(max_examples=60, deadline=None)
@given(node_settings())
def test_print_config_round_trips(
    tmp_path_factory: pytest.TempPathFactory, s: NodeSettings
) -> None:
    path = tmp_path_factory.mktemp("rt") / "node.toml"
    path.write_text(settings_as_toml(s), encoding="utf-8")
    assert load(config_file=path) == s


# Every path setting, relative in the file; the file reads them relative to its directory.
PATHS_IN_A_FILE = {
    "data_dir": "data",
    "cluster_key_file": "key",
    "raft_password_file": "secrets/raft.pw",
    "tls_cert_file": "tls/node.pem",
    "tls_key_file": "tls/node.key",
    "tls_ca_file": "../ca.pem",
}


def test_path_settings_to_check_are_every_path_setting() -> None:
    paths = {f.name for f in NodeSettings.__dataclass_fields__.values() if "Path" in str(f.type)}
    assert paths == set(PATHS_IN_A_FILE)


@pytest.mark.parametrize("written_in", ["cfg", "elsewhere/deeper"])
def test_print_config_reads_back_unchanged_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written_in: str
) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / written_in).mkdir(parents=True, exist_ok=True)
    lines = [f"{key} = {value!r}" for key, value in PATHS_IN_A_FILE.items()]
    (tmp_path / "cfg" / "node.toml").write_text(
        "[node]\n" + "\n".join(lines) + '\n[sources.db]\ndsn_file = "db.dsn"\n'
    )
    monkeypatch.chdir(tmp_path)
    printed = settings_as_toml(load(config_file=Path("cfg/node.toml")))
    out = Path(written_in) / "round1.toml"
    out.write_text(printed)

    monkeypatch.chdir(tmp_path / "other")
    again = load(config_file=Path("..") / out)
    for key, value in PATHS_IN_A_FILE.items():
        assert getattr(again, key) == tmp_path / "cfg" / value, key
    assert again.sources["db"].dsn_file == tmp_path / "cfg" / "db.dsn"
    assert settings_as_toml(again) == printed


def test_print_config_writes_flag_and_variable_paths_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = load(environ={"MESHCACHE_DATA_DIR": "d"}, overrides={"cluster_key_file": "k"})
    (tmp_path / "cfg").mkdir()
    path = write(tmp_path / "cfg", settings_as_toml(s))
    again = load(config_file=path)
    assert (again.data_dir, again.cluster_key_file) == (tmp_path / "d", tmp_path / "k")


def test_operations_doc_lists_every_setting() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text()
    for spec in SETTINGS:
        assert f"`{spec.key}`" in doc, spec.key
        assert f"`{spec.flag}`" in doc, spec.flag
        assert f"`{spec.env}`" in doc, spec.env
    for field in NamespacePolicy.__dataclass_fields__:
        assert f"`{field}`" in doc, field
