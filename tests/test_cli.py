"""The ``meshcache`` command: usage errors, settings precedence, logging, and every client
command against a real node started with ``python -m meshcache start`` in a subprocess."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

import meshcache
import meshcache.cli as cli_module
from meshcache import Client, __version__
from meshcache.cli import EMPTY_RULE, build_parser, main
from meshcache.client.commands import Commands
from meshcache.errors import MeshcacheConnectionError
from meshcache.logs import configure_logging
from meshcache.node.node import READY_FILE
from meshcache.testing.mesh import Mesh
from meshcache.testing.nodes import NodeProcess as MeshNode
from meshcache.testing.nodes import NodeStartError, wait_for_ready_file
from meshcache.testing.ports import free_port
from meshcache.wire.address import parse_address

REPO = Path(meshcache.__file__).resolve().parent.parent
START_DEADLINE = 20.0


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHCACHE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(autouse=True)
def no_meshcache_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's MESHCACHE_PORT must not change what these tests see."""
    for name in [k for k in os.environ if k.startswith("MESHCACHE_")]:
        monkeypatch.delenv(name)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.rstrip("\n")


# --- usage and configuration errors: one line, exit 2 ------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"], capsys) == (0, f"meshcache {__version__}\n", "")


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "start" in out and "Exit codes" in out
    code, out, _ = run(["start", "--help"], capsys)
    assert code == 0 and "--max-value-bytes" in out and "MESHCACHE_PORT" in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "meshcache: error: the following arguments are required: COMMAND"),
        (["frobnicate"], "meshcache: error: argument COMMAND: invalid choice: 'frobnicate'"),
        (["start", "--bogus"], "meshcache start: error: unrecognized arguments: --bogus"),
        (["start", "--port"], "meshcache start: error: argument --port: expected one argument"),
        (["start", "--port", "abc"], "meshcache: error: --port: 'abc' is not a port number"),
        (["start", "--admin-port", "-1"], "meshcache: error: --admin-port: '-1' is not a port"),
        (["start", "--max-value-bytes", "1XB"], "meshcache: error: --max-value-bytes: '1XB'"),
        (["start", "--idle-timeout", "soon"], "meshcache: error: --idle-timeout: 'soon'"),
        (["start", "--log-format", "xml"], "meshcache: error: --log-format: 'xml' is not one"),
        (["start", "--join", "nohost"], "meshcache: error: --join: 'nohost' is not a host:port"),
        (["start", "--port", "9400"], "meshcache: error: port (9400, from --port) and admin_port"),
        (["get"], "meshcache get: error: the following arguments are required: KEY"),
        (["get", "k", "--port", "x"], "meshcache: error: --port: 'x' is not a port number"),
        (["get", "k", "--port", "0"], "meshcache: error: --port: 0 is not a port a node"),
        (["get", "k", "--host", " "], "meshcache: error: --host: must not be empty"),
        (["get", "k", "--timeout", "0"], "meshcache: error: --timeout: '0' must be a positive"),
        (["set", "k", "v", "--nx", "--xx"], "meshcache set: error: argument --xx: not allowed"),
        (["set", "k", "v", "--ttl", "x"], "meshcache: error: --ttl: 'x' is not a duration"),
        (["mset", "k"], "meshcache: error: keys and values must come in pairs"),
        (["lrange", "k", "a", "1"], "meshcache lrange: error: argument START: invalid int"),
        (["zadd", "z", "high", "m"], "meshcache: error: score 'high' is not a number"),
        (["flush"], "meshcache flush: error: this deletes every key of namespace 'default'"),
    ],
)
def test_usage_errors(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert (code, out) == (2, "")
    assert one_line(err).startswith(expected)


def test_config_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[limits]\nmax_frame_bytes = '12XB'\n")
    code, _, err = run(["start", "--config", str(path)], capsys)
    assert code == 2
    assert one_line(err).startswith(f"meshcache: error: {path} [limits] max_frame_bytes: '12XB'")
    path.write_text("[node]\nadmin_prot = 1\n")
    code, _, err = run(["start", "--config", str(path)], capsys)
    assert code == 2
    assert one_line(err).endswith("unknown setting 'admin_prot' (did you mean 'admin_port'?)")
    code, _, err = run(["start", "--config", str(tmp_path / "missing.toml")], capsys)
    assert code == 2 and "no such file" in one_line(err)


def test_env_errors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MESHCACHE_LIMITS_MAX_CONNECTIONS", "many")
    code, _, err = run(["start"], capsys)
    assert code == 2
    assert one_line(err) == (
        "meshcache: error: MESHCACHE_LIMITS_MAX_CONNECTIONS: 'many' is not a positive integer"
    )


def test_precedence_through_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        "[node]\nport = 7001\nadmin_port = 9001\nzone = 'file'\n"
        "[limits]\nmax_value_bytes = '1MiB'\nidle_timeout = '10s'\n"
    )
    monkeypatch.setenv("MESHCACHE_ADMIN_PORT", "9002")
    monkeypatch.setenv("MESHCACHE_ZONE", "env")
    monkeypatch.setenv("MESHCACHE_LIMITS_IDLE_TIMEOUT", "20")
    code, out, err = run(
        [
            "start",
            "--config",
            str(path),
            "--print-config",
            "--zone",
            "flag",
            "--idle-timeout",
            "30",
        ],
        capsys,
    )
    assert (code, err) == (0, "")
    assert "port = 7001\n" in out  # file
    assert "admin_port = 9002\n" in out  # environment beats file
    assert 'zone = "flag"\n' in out  # flag beats both
    assert "max_value_bytes = 1048576\n" in out
    assert "idle_timeout = 30.0\n" in out
    assert 'host = "127.0.0.1"\n' in out  # default


def test_config_file_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[node]\nport = 7123\n[namespaces.sessions]\ndefault_ttl = '30m'\n")
    monkeypatch.setenv("MESHCACHE_CONFIG", str(path))
    code, out, _ = run(["start", "--print-config", "--join", "a:1", "--join", "b:2,c:3"], capsys)
    assert code == 0
    assert "port = 7123\n" in out
    assert 'join = ["a:1", "b:2", "c:3"]\n' in out
    assert "[namespaces.sessions]\n" in out and "default_ttl = 1800.0\n" in out


# --- logging -----------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_logging")
def test_json_logs() -> None:
    buf = io.StringIO()
    configure_logging("json", "info", stream=buf)
    log = structlog.get_logger("meshcache.test")
    log.debug("hidden")
    log.info("node_ready", port=7400, path=Path("/x"))
    logging.getLogger("pysyncobj").warning("leader is %s", "n2")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["node_ready", "leader is n2", "failed"]
    first = lines[0]
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["level"] == "info" and first["logger"] == "meshcache.test"
    assert first["port"] == 7400 and first["path"] == "/x"
    assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]
    assert lines[1]["level"] == "warning" and lines[1]["logger"] == "pysyncobj"
    assert "ValueError: boom" in lines[2]["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_console_logs_and_reconfiguration() -> None:
    first = io.StringIO()
    configure_logging("console", "warning", stream=first)
    structlog.get_logger("t").info("quiet")
    structlog.get_logger("t").warning("loud", n=1)
    text = first.getvalue()
    assert "quiet" not in text and "loud" in text and "n=1" in text and "warning" in text
    assert "\x1b[" not in text  # no colours when the stream is not a terminal
    second = io.StringIO()
    configure_logging("console", "debug", stream=second)
    structlog.get_logger("t").debug("again")
    assert "again" in second.getvalue() and "again" not in first.getvalue()
    assert sum(h.get_name() == "meshcache" for h in logging.getLogger().handlers) == 1


def test_bad_logging_arguments() -> None:
    with pytest.raises(ValueError):
        configure_logging("xml", "info")
    with pytest.raises(ValueError):
        configure_logging("json", "loud")


# --- a real node -------------------------------------------------------------------------------


@dataclass
class NodeProcess:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    stderr: Path
    port: int
    admin_port: int

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(timeout=15)


def start_node(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> NodeProcess:
    data_dir = tmp / "data"
    stderr = tmp / "stderr.log"
    argv = ["start", "--port", "0", "--admin-port", "0", "--data-dir", str(data_dir), *extra]
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshcache", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**clean_env(), **(env or {})},
            cwd=tmp,
        )
    try:
        info = wait_for_ready_file(data_dir, proc, START_DEADLINE, log=stderr.read_text)
    except NodeStartError:
        proc.kill()
        proc.wait()
        raise
    return NodeProcess(
        proc,
        data_dir,
        stderr,
        parse_address(info["data"], default_port=None).port,
        parse_address(info["admin"], default_port=None).port,
    )


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    tmp = tmp_path_factory.mktemp("node")
    config = tmp / "node.toml"
    config.write_text("[namespaces.scratch]\neviction = 'lru'\n")
    node = start_node(tmp, "--config", str(config), "--log-format", "json")
    try:
        yield node
    finally:
        node.stop()


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(node: NodeProcess, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Runs ``meshcache CMD --port <node> ARGS`` in this process: (exit code, stdout, stderr)."""

    def call(*argv: str) -> tuple[int, str, str]:
        command, *rest = argv
        return run([command, "--port", str(node.port), *rest], capsys)

    return call


def test_ping_and_plain_values(cli: Cli) -> None:
    assert cli("ping") == (0, "PONG\n", "")
    code, out, _ = cli("ping", "--json")
    assert code == 0 and json.loads(out)["reply"] == "PONG"
    assert cli("set", "pv:k", "hello") == (0, "OK\n", "")
    assert cli("get", "pv:k") == (0, "hello\n", "")
    assert cli("get", "pv:k", "--json") == (0, '"hello"\n', "")
    assert cli("get", "pv:absent") == (1, "", "")
    assert cli("set", "pv:empty", "") == (0, "OK\n", "")
    assert cli("get", "pv:empty") == (0, "\n", "")
    assert cli("get", "pv:absent", "--json") == (1, "null\n", "")
    assert cli("set", "pv:k", "other", "--nx") == (1, "(no)\n", "")
    assert cli("set", "pv:absent", "x", "--xx") == (1, "(no)\n", "")
    assert cli("exists", "pv:k", "pv:k", "pv:absent") == (0, "2\n", "")
    assert cli("exists", "pv:absent") == (1, "0\n", "")
    assert cli("mset", "pv:a", "1", "pv:b", "2") == (0, "OK\n", "")
    assert cli("mget", "pv:a", "pv:absent", "pv:b") == (0, "1\n(nil)\n2\n", "")
    assert cli("mget", "pv:a", "pv:absent", "--json") == (0, '["1", null]\n', "")
    assert cli("del", "pv:a", "pv:b", "pv:absent") == (0, "2\n", "")
    assert cli("del", "pv:a") == (1, "0\n", "")


def test_counters(cli: Cli) -> None:
    assert cli("incr", "ct:n") == (0, "1\n", "")
    assert cli("incr", "ct:n", "--by", "41") == (0, "42\n", "")
    assert cli("decr", "ct:n", "--by", "2", "--json") == (0, "40\n", "")
    assert cli("get", "ct:n") == (0, "40\n", "")
    cli("set", "ct:s", "abc")
    code, out, err = cli("incr", "ct:s")
    assert (code, out) == (4, "")
    assert one_line(err).startswith("meshcache: refused: NOT_INTEGER: ")


def test_expiry(cli: Cli) -> None:
    assert cli("set", "ex:k", "v", "--ttl", "5m") == (0, "OK\n", "")
    code, out, _ = cli("ttl", "ex:k")
    assert code == 0 and 290 < float(out) <= 300
    assert cli("persist", "ex:k") == (0, "OK\n", "")
    assert cli("persist", "ex:k") == (1, "(no)\n", "")
    assert cli("ttl", "ex:k") == (0, "no expiry\n", "")
    assert cli("ttl", "ex:k", "--json") == (0, "-1.0\n", "")
    assert cli("ttl", "ex:absent") == (1, "", "")
    assert cli("ttl", "ex:absent", "--json") == (1, "null\n", "")
    assert cli("expire", "ex:k", "1h") == (0, "OK\n", "")
    code, out, _ = cli("ttl", "ex:k", "--json")
    assert code == 0 and 3590 < json.loads(out) <= 3600
    assert cli("expire", "ex:absent", "10") == (1, "(no)\n", "")
    assert cli("expire", "ex:k", "0") == (0, "OK\n", "")  # 0 deletes, as in Redis
    assert cli("get", "ex:k") == (1, "", "")


def test_binary_values_round_trip(
    node: NodeProcess, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    port = str(node.port)
    value = os.fsdecode(b"\xff\x00bin\n")
    assert main(["set", "bin:k", value, "--port", port]) == 0
    capsysbinary.readouterr()
    assert main(["get", "bin:k", "--port", port]) == 0
    assert capsysbinary.readouterr().out == b"\xff\x00bin\n\n"
    assert main(["get", "bin:k", "--port", port, "--json"]) == 0
    assert json.loads(capsysbinary.readouterr().out) == {"base64": "/wBiaW4K"}


def test_typed_values(cli: Cli) -> None:
    assert cli("hset", "ty:h", "f1", "v1", "f2", "v2") == (0, "2\n", "")
    assert cli("hget", "ty:h", "f1") == (0, "v1\n", "")
    assert cli("hget", "ty:h", "nope") == (1, "", "")
    assert cli("hgetall", "ty:h") == (0, "f1\tv1\nf2\tv2\n", "")
    assert cli("hgetall", "ty:h", "--json") == (0, '{"f1": "v1", "f2": "v2"}\n', "")
    assert cli("hgetall", "ty:absent") == (1, "", "")
    assert cli("lrange", "ty:absent", "0", "-1") == (1, "", "")
    assert cli("lpush", "ty:l", "a", "b") == (0, "2\n", "")
    assert cli("rpush", "ty:l", "z") == (0, "3\n", "")
    assert cli("lrange", "ty:l", "0", "-1") == (0, "b\na\nz\n", "")
    assert cli("lrange", "ty:l", "-2", "-1", "--json") == (0, '["a", "z"]\n', "")
    assert cli("sadd", "ty:s", "y", "x", "y") == (0, "2\n", "")
    assert cli("smembers", "ty:s") == (0, "x\ny\n", "")
    assert cli("smembers", "ty:s", "--json") == (0, '["x", "y"]\n', "")
    assert cli("keys", "ty:[sl]") == (0, "ty:l\nty:s\n", "")
    assert cli("keys", "ty:*", "--type", "set", "--json") == (0, '["ty:s"]\n', "")
    assert cli("keys", "nothing-like-this*") == (1, "", "")
    assert cli("zadd", "ty:z", "2.5", "b", "1", "a", "-3", "c") == (0, "3\n", "")
    assert cli("zrange", "ty:z", "0", "-1") == (0, "c\na\nb\n", "")
    assert cli("zadd", "ty:zo", "1", "a", "2", "b") == (0, "2\n", "")
    assert cli("zadd", "ty:zo", "--nx", "9", "b", "0", "d") == (0, "1\n", "")
    assert cli("zadd", "ty:zo", "--xx", "--ch", "5", "d", "5", "e") == (0, "1\n", "")
    assert cli("zadd", "ty:zo", "--gt", "--ch", "1", "b", "3", "a") == (0, "1\n", "")
    assert cli("zrange", "ty:zo", "0", "-1", "--withscores") == (0, "b\t2\na\t3\nd\t5\n", "")
    assert cli("zadd", "ty:zo", "--nx", "--gt", "1", "a")[0] != 0
    assert cli("zincrby", "ty:zo", "a", "--by", "2", "--gt") == (0, "5\n", "")
    assert cli("zincrby", "ty:zo", "a", "--by", "-1", "--gt")[:2] == (1, "")
    assert cli("zincrby", "ty:zo", "new", "--xx")[:2] == (1, "")
    assert cli("zincrby", "ty:zo", "new", "--nx", "--by", "0.5") == (0, "0.5\n", "")
    assert cli("zrange", "ty:z", "0", "0", "--rev", "--withscores") == (0, "b\t2.5\n", "")
    assert cli("zrange", "ty:z", "0", "1", "--desc") == (0, "b\na\n", "")
    assert cli("zrange", "ty:z", "0", "1", "--withscores", "--json") == (
        0,
        '[["c", -3.0], ["a", 1.0]]\n',
        "",
    )
    # "-inf" looks like an option to argparse; after "--" it is a score.
    assert cli("zadd", "ty:inf", "--", "-inf", "low", "inf", "high") == (0, "2\n", "")
    assert cli("zrange", "ty:inf", "0", "-1", "--withscores") == (0, "low\t-inf\nhigh\tinf\n", "")
    assert cli("zrange", "ty:inf", "0", "-1", "--withscores", "--json") == (
        0,
        '[["low", "-inf"], ["high", "inf"]]\n',
        "",
    )
    code, out, err = cli("lpush", "ty:h", "x")
    assert (code, out) == (4, "")
    assert one_line(err).startswith("meshcache: refused: WRONGTYPE: ")


#: Client methods that are not CLI commands: raw config access (ring and ns show the config).
NOT_COMMANDS = {"config", "config_propose"}
#: Client method -> CLI command, where the names differ.
COMMAND_OF = {
    "delete": "del",
    "ns_list": "ns",
    "ns_set": "ns",
    "ns_drop": "ns",
    "raft_status": "raft",
    "raft_add": "raft",
    "raft_remove": "raft",
    "zadd_incr": "zincrby",
    "scan": "keys",
}


def test_every_client_method_is_a_command() -> None:
    methods = {name for name in vars(Commands) if not name.startswith("_")} - NOT_COMMANDS
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = {m for m in methods if COMMAND_OF.get(m, m) not in sub.choices}
    assert missing == set()


def test_more_commands(cli: Cli) -> None:
    assert cli("hset", "mc:h", "a", "1", "b", "x") == (0, "2\n", "")
    assert cli("hincrby", "mc:h", "a", "--by", "41") == (0, "42\n", "")
    assert cli("hincrby", "mc:h", "a") == (0, "43\n", "")
    assert cli("hlen", "mc:h") == (0, "2\n", "")
    assert cli("hdel", "mc:h", "b", "zz") == (0, "1\n", "")
    assert cli("hdel", "mc:h", "zz") == (1, "0\n", "")
    assert cli("rpush", "mc:l", "a", "b", "c") == (0, "3\n", "")
    assert cli("lpop", "mc:l") == (0, "a\n", "")
    assert cli("rpop", "mc:l", "--json") == (0, '"c"\n', "")
    assert cli("llen", "mc:l") == (0, "1\n", "")
    assert cli("sadd", "mc:s", "x", "y") == (0, "2\n", "")
    assert cli("sismember", "mc:s", "x") == (0, "yes\n", "")
    assert cli("sismember", "mc:s", "q") == (1, "no\n", "")
    assert cli("sismember", "mc:s", "q", "--json") == (1, "false\n", "")
    assert cli("srem", "mc:s", "x", "q") == (0, "1\n", "")
    assert cli("scard", "mc:s") == (0, "1\n", "")
    assert cli("zadd", "mc:z", "1", "a", "2", "b", "3", "c") == (0, "3\n", "")
    assert cli("zscore", "mc:z", "b") == (0, "2\n", "")
    assert cli("zincrby", "mc:z", "b", "--by", "0.5") == (0, "2.5\n", "")
    assert cli("zincrby", "mc:z", "a") == (0, "2\n", "")
    assert cli("zrank", "mc:z", "c") == (0, "2\n", "")
    assert cli("zcard", "mc:z") == (0, "3\n", "")
    assert cli("zrangebyscore", "mc:z", "2", "inf") == (0, "a\nb\nc\n", "")
    assert cli("zrangebyscore", "mc:z", "--withscores", "--", "-inf", "2.5") == (
        0,
        "a\t2\nb\t2.5\n",
        "",
    )
    assert cli("zrangebyscore", "mc:z", "0", "9", "--offset", "1", "--count", "1") == (
        0,
        "b\n",
        "",
    )
    assert cli("zrem", "mc:z", "a", "q") == (0, "1\n", "")
    code, out, err = cli("zrangebyscore", "mc:z", "0", "9", "--count", "1")
    assert (code, out) == (2, "") and "--offset and --count go together" in one_line(err)
    # gets then cas: the version is what cas compares
    assert cli("set", "mc:v", "one") == (0, "OK\n", "")
    code, out, _ = cli("gets", "mc:v")
    version, _, value = out.rstrip("\n").partition("\t")
    assert code == 0 and value == "one" and int(version) > 0
    code, out, _ = cli("gets", "mc:v", "--json")
    assert json.loads(out) == {"version": int(version), "value": "one"}
    assert cli("cas", "mc:v", version, "two") == (0, "OK\n", "")
    assert cli("cas", "mc:v", version, "three") == (1, "(no)\n", "")  # written since
    assert cli("get", "mc:v") == (0, "two\n", "")


def test_string_type_and_pop_commands(cli: Cli) -> None:
    assert cli("append", "sp:s", "ab") == (0, "2\n", "")
    assert cli("append", "sp:s", "cd") == (0, "4\n", "")
    assert cli("strlen", "sp:s") == (0, "4\n", "")
    assert cli("strlen", "sp:absent") == (1, "0\n", "")
    assert cli("type", "sp:s") == (0, "string\n", "")
    assert cli("getdel", "sp:s") == (0, "abcd\n", "")
    assert cli("get", "sp:s") == (1, "", "")
    assert cli("incrbyfloat", "sp:f", "1.5") == (0, "1.5\n", "")
    assert cli("incrbyfloat", "sp:f", "-0.25", "--json") == (0, "1.25\n", "")
    code, _, err = cli("incrbyfloat", "sp:f", "x")
    assert code == 2 and "AMOUNT 'x' is not a number" in err
    assert cli("sadd", "sp:set", "a", "b", "c") == (0, "3\n", "")
    assert cli("type", "sp:set") == (0, "set\n", "")
    code, out, _ = cli("spop", "sp:set")
    assert code == 0 and out in ("a\n", "b\n", "c\n")
    code, out, _ = cli("spop", "sp:set", "--count", "5")
    assert code == 0 and len(out.split()) == 2
    assert cli("zadd", "sp:z", "1", "a", "2", "b", "3", "c") == (0, "3\n", "")
    assert cli("zpopmin", "sp:z") == (0, "a\t1\n", "")
    assert cli("zpopmax", "sp:z", "--count", "2", "--json") == (
        0,
        '[["c", 3.0], ["b", 2.0]]\n',
        "",
    )


# Every read of a missing key: exit 1, nothing printed; null with --json.
MISSING_READS = [
    ["get", "mr:k"],
    ["gets", "mr:k"],
    ["ttl", "mr:k"],
    ["hget", "mr:k", "f"],
    ["hgetall", "mr:k"],
    ["lrange", "mr:k", "0", "-1"],
    ["lpop", "mr:k"],
    ["rpop", "mr:k"],
    ["smembers", "mr:k"],
    ["zrange", "mr:k", "0", "-1"],
    ["zrangebyscore", "mr:k", "0", "1"],
    ["zscore", "mr:k", "m"],
    ["zrank", "mr:k", "m"],
    ["getdel", "mr:k"],
    ["type", "mr:k"],
    ["spop", "mr:k"],
    ["spop", "mr:k", "--count", "2"],
    ["zpopmin", "mr:k"],
    ["zpopmax", "mr:k", "--count", "2"],
]


@pytest.mark.parametrize("argv", MISSING_READS, ids=lambda argv: argv[0])
def test_a_read_of_a_missing_key_exits_1_and_prints_nothing(cli: Cli, argv: list[str]) -> None:
    assert cli(*argv) == (1, "", "")
    assert cli(*argv, "--json") == (1, "null\n", "")


def test_counts_and_mget_of_missing_keys(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("hlen", "llen", "scard", "zcard", "exists"):
        assert cli(command, "mr:k") == (1, "0\n", ""), command
    assert cli("mget", "mr:a", "mr:b") == (1, "(nil)\n(nil)\n", "")
    assert cli("mget", "mr:a", "mr:b", "--json") == (1, "[null, null]\n", "")
    code, out, _ = run(["get", "--help"], capsys)
    assert code == 0 and "Reads that find nothing" in out
    assert EMPTY_RULE.split(":")[0] in run(["--help"], capsys)[1]


def test_a_value_from_stdin_or_a_file(node: NodeProcess, tmp_path: Path, cli: Cli) -> None:
    port = str(node.port)
    big = os.urandom(512 * 1024)  # over Linux's 128 KiB limit for one argument
    stdin = subprocess.run(
        [sys.executable, "-m", "meshcache", "set", "in:big", "-", "--port", port],
        input=big,
        capture_output=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert (stdin.returncode, stdin.stdout, stdin.stderr) == (0, b"OK\n", b"")
    got = subprocess.run(
        [sys.executable, "-m", "meshcache", "get", "in:big", "--port", port],
        capture_output=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert got.returncode == 0 and got.stdout == big + b"\n"
    exact = subprocess.run(
        [sys.executable, "-m", "meshcache", "get", "in:big", "--file", "-", "--port", port],
        capture_output=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert (exact.returncode, exact.stdout, exact.stderr) == (0, big, b"")
    copy = tmp_path / "copy"
    assert cli("get", "in:big", "--file", str(copy)) == (0, "", "")
    assert copy.read_bytes() == big
    assert cli("get", "in:none", "--file", str(tmp_path / "absent")) == (1, "", "")
    assert not (tmp_path / "absent").exists()
    code, out, err = cli("get", "in:big", "--file", str(tmp_path / "no" / "dir"))
    assert (code, out) == (2, "") and one_line(err).startswith("meshcache: error: --file: cannot")
    path = tmp_path / "value"
    path.write_bytes(b"from a file\n")
    assert cli("set", "in:file", "--file", str(path), "--ttl", "1m") == (0, "OK\n", "")
    assert cli("get", "in:file") == (0, "from a file\n\n", "")
    # 9 MB reaches the node, which refuses it as over its value limit: no E2BIG.
    path.write_bytes(b"x" * 9_000_000)
    code, out, err = cli("set", "in:huge", "--file", str(path))
    assert (code, out) == (4, "") and one_line(err).startswith("meshcache: refused: TOO_LARGE")
    code, out, err = cli("set", "in:x", "v", "--file", str(path))
    assert (code, out) == (2, "") and "give VALUE or --file, not both" in one_line(err)
    code, out, err = cli("set", "in:x")
    assert (code, out) == (2, "") and "VALUE is required" in one_line(err)
    code, out, err = cli("set", "in:x", "--file", str(tmp_path / "nope"))
    assert (code, out) == (2, "") and one_line(err).startswith("meshcache: error: --file: cannot")


def test_text_output_has_no_python_reprs(cli: Cli) -> None:
    cli("hset", "py:h", "f", "v")
    code, out, err = cli("lpush", "py:h", "x")
    assert code == 4
    assert "key 'py:h' holds a hash" in one_line(err) and "b'" not in err
    code, out, _ = cli("info")
    assert code == 0 and "{" not in out and "True" not in out and "None" not in out
    sections = out.split("\n\n")
    assert sections[0].startswith("node\n  node_id ")
    for section in sections:
        title, *lines = section.splitlines()
        assert not title.startswith(" ") and lines
        # every value starts in the same column, at least two spaces after the longest key
        columns = {len(line) - len(line[2:].split("  ", 1)[1].lstrip()) for line in lines}
        assert len(columns) == 1, section
        assert all(line.startswith("  ") and not line.startswith("   ") for line in lines)
    assert "namespace scratch" in out


def test_namespaces_and_node_commands(cli: Cli) -> None:
    assert cli("set", "k1", "v", "-n", "scratch") == (0, "OK\n", "")
    assert cli("set", "k2", "v", "--namespace", "scratch") == (0, "OK\n", "")
    assert cli("get", "k1") == (1, "", "")  # other namespace
    assert cli("dbsize", "-n", "scratch") == (0, "2\n", "")
    assert cli("flush", "-n", "scratch", "--yes") == (0, "OK\n", "")
    assert cli("dbsize", "-n", "scratch", "--json") == (1, "0\n", "")  # a count of 0
    code, out, err = cli("get", "k", "-n", "nope")
    assert (code, out) == (4, "")
    assert one_line(err).startswith("meshcache: refused: NO_SUCH_NAMESPACE: ")
    code, out, _ = cli("info")
    assert code == 0 and "node_id" in out and "namespace scratch" in out
    code, out, _ = cli("info", "--json")
    info = json.loads(out)
    assert code == 0 and info["version"] == __version__
    assert {"default", "scratch"} <= set(info["namespaces"])


def test_limits_are_the_nodes(cli: Cli) -> None:
    code, out, err = cli("set", "x" * (16 * 1024 + 1), "v")
    assert (code, out) == (4, "")
    assert one_line(err).startswith("meshcache: refused: TOO_LARGE: ")


def test_json_log_lines(node: NodeProcess) -> None:
    lines = [json.loads(line) for line in node.stderr.read_text().splitlines()]
    ready = [line for line in lines if line["event"] == "node_ready"]
    assert len(ready) == 1
    assert ready[0]["data"].endswith(f":{node.port}") and ready[0]["level"] == "info"
    assert ready[0]["timestamp"].endswith("Z")


# --- exit codes across a real process boundary -------------------------------------------------


def meshcache_cmd(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshcache", *argv],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )


# Modules a one-shot command against a node never needs: the event loops, the node's parts,
# logging and metrics libraries, the console.
HEAVY_MODULES = (
    "trio",
    "asyncio",
    "structlog",
    "prometheus_client",
    "textual",
    "sortedcontainers",
    "pysyncobj",
    "asyncpg",
    "concurrent",
    "logging",
    "meshcache.node",
    "meshcache.store",
    "meshcache.ring",
    "meshcache.gossip",
    "meshcache.control",
    "meshcache.tui",
)
HEAVY_PREFIXES = tuple(f"{name}." for name in HEAVY_MODULES)


def test_a_plain_get_imports_no_heavy_module(node: NodeProcess) -> None:
    port = str(node.port)
    assert meshcache_cmd("set", "startup:k", "v", "--port", port).returncode == 0
    probe = (
        "import sys\n"
        "from meshcache.cli import main\n"
        f"code = main(['get', 'startup:k', '--port', '{port}'])\n"
        "print(code, *sorted(sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
        check=True,
    ).stdout.splitlines()
    assert out[0] == "v"  # the command really ran, against the node
    code, *loaded = out[1].split()
    assert code == "0" and "meshcache.client.sync" in loaded
    assert [m for m in loaded if m in HEAVY_MODULES or m.startswith(HEAVY_PREFIXES)] == []


def test_subprocess_exit_codes(node: NodeProcess) -> None:
    port = str(node.port)
    assert meshcache_cmd("set", "sp:k", "v", "--port", port).returncode == 0
    got = meshcache_cmd("get", "sp:k", "--port", port)
    assert (got.returncode, got.stdout, got.stderr) == (0, "v\n", "")
    assert meshcache_cmd("get", "sp:absent", "--port", port).returncode == 1
    bad = meshcache_cmd("start", "--port", "abc")
    assert bad.returncode == 2 and bad.stdout == ""
    assert one_line(bad.stderr) == "meshcache: error: --port: 'abc' is not a port number (0-65535)"
    version = meshcache_cmd("--version")
    assert (version.returncode, version.stdout) == (0, f"meshcache {__version__}\n")


def test_unreachable_node_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["get", "k", "--port", str(free_port()), "--timeout", "2"], capsys)
    assert (code, out) == (3, "")
    line = one_line(err)
    assert line.startswith("meshcache: ") and "refused" in line.lower()


def test_silent_node_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    # A listener that never accepts: the connection completes in the backlog, no answer comes.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        code, out, err = run(["ping", "--port", str(port), "--timeout", "0.2"], capsys)
    assert (code, out) == (3, "")
    assert one_line(err) == (
        f"meshcache: no answer from 127.0.0.1:{port} within 0.2 s: it accepted the connection"
        " but sent nothing back (if it is not a node's data port, e.g. its Raft port, use the"
        " data port)"
    )


def test_not_a_meshcache_node_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]

        # Answers garbage behind a valid-looking length prefix, then closes.
        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"\x00\x00\x00\x05HTTP/")

        thread = threading.Thread(target=serve)
        thread.start()
        code, out, err = run(["ping", "--port", str(port), "--timeout", "5"], capsys)
        thread.join(timeout=10)
    assert (code, out) == (3, "")
    assert one_line(err).startswith(f"meshcache: 127.0.0.1:{port} does not speak the meshcache")


# --- start and stop ----------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_start_stops_cleanly_on_signals(tmp_path: Path, signum: int) -> None:
    node = start_node(tmp_path, "--log-level", "debug", env={"MESHCACHE_PROT": "7400"})
    assert node.stop(signum) == 0
    text = node.stderr.read_text()
    assert "unknown_env_var" in text and "MESHCACHE_PROT" in text
    assert "node_ready" in text and "node_stopping" in text and "node_stopped" in text
    assert "Traceback" not in text
    assert not (node.data_dir / READY_FILE).exists()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (
            ["--port", "{data}", "--admin-port", "0"],
            "data port 127.0.0.1:{data} (TCP, setting port)",
        ),
        (["--port", "0", "--admin-port", "{admin}"], "admin port 127.0.0.1:{admin} (TCP, setting"),
        (["--port", "0", "--admin-port", "0", "--gossip-port", "{data}"], "gossip port 127.0"),
    ],
)
def test_a_port_in_use_is_named_with_its_setting(
    node: NodeProcess, tmp_path: Path, flags: list[str], named: str
) -> None:
    ports = {"data": node.port, "admin": node.admin_port}
    argv = [flag.format(**ports) for flag in flags]
    result = meshcache_cmd("start", *argv, "--data-dir", str(tmp_path))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "node_failed" in line and named.format(**ports) in line
    assert "Address already in use" in line


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("gossip_flag", [True, False])
def test_the_node_names_its_taken_gossip_port(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    gossip_flag: bool,
) -> None:
    # The node's own bind fails, as when another process takes the port after start's check.
    monkeypatch.setattr(cli_module, "_unbindable", lambda settings: None)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = str(taken.getsockname()[1])
        # Without --gossip-port, gossip takes the data port's number (over UDP).
        ports = ["--port", "0", "--gossip-port", port] if gossip_flag else ["--port", port]
        code, out, err = run(
            ["start", *ports, "--admin-port", "0", "--data-dir", str(tmp_path)], capsys
        )
    assert (code, out) == (1, "")
    line = one_line(err)
    assert "node_failed" in line
    assert f"cannot bind the gossip port 127.0.0.1:{port} (UDP, setting gossip_port)" in line
    assert line.endswith("Address already in use (see --gossip-port)'")
    assert not (tmp_path / READY_FILE).exists()


def test_a_voters_raft_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        raft = taken.getsockname()[1]
        result = meshcache_cmd(
            "start",
            "--bootstrap",
            *("--port", str(free_port()), "--raft-port", str(raft), "--admin-port", "0"),
            *("--data-dir", str(tmp_path)),
        )
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert f"cannot bind the Raft port 127.0.0.1:{raft} (TCP, setting raft_port)" in line
    assert line.endswith("Address already in use (see --raft-port)'")


def test_a_nodes_own_ports_that_collide_are_one_line_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The Raft port of a voter defaults to the data port + 1: here, the admin port.
    code, out, err = run(
        ["start", "--port", "38000", "--admin-port", "38001", "--bootstrap"], capsys
    )
    assert (code, out) == (2, "")
    assert one_line(err) == (
        "meshcache: error: admin_port (38001, from --admin-port) and raft_port (38001, from"
        " default: port + 1) must differ: the node binds its admin and Raft ports separately"
    )


def test_a_setting_above_every_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.toml"
    path.write_text("port = 7450\n")
    code, _, err = run(["start", "--config", str(path), "--print-config"], capsys)
    assert code == 2
    assert one_line(err) == (
        f"meshcache: error: {path}: setting 'port' belongs in [node]: put it below a [node] line"
    )


# --- ns --consistency, leave, demo -------------------------------------------------------------


def test_ns_consistency(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = start_node(tmp_path, "--bootstrap")  # the single voter: NS_SET commits
    try:
        port = str(node.port)
        code, out, _ = run(["ns", "set", "cs", "--consistency", "quorum", "--port", port], capsys)
        assert code == 0 and "consistency=quorum" in out
        code, out, _ = run(["ns", "show", "cs", "--port", port], capsys)
        assert code == 0 and out.startswith("cs ") and "consistency=quorum" in out
        code, out, _ = run(["ns", "set", "cs", "--eviction", "lfu", "--port", port], capsys)
        assert code == 0 and "consistency=quorum" in out and "eviction=lfu" in out  # kept
        code, out, _ = run(["ns", "list", "--json", "--port", port], capsys)
        policies = json.loads(out)
        assert policies["cs"]["consistency"] == "quorum"
        assert policies["default"]["consistency"] == "one"
        code, out, err = run(["ns", "set", "cs", "--consistency", "most", "--port", port], capsys)
        assert (code, out) == (2, "")
        assert "argument --consistency: invalid choice: 'most'" in one_line(err)
    finally:
        node.stop()


def test_a_bootstrap_node_in_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The cluster commands on a one-node ring: members beside the ring, raft status without
    Python reprs, dbsize, namespace names and replicas beyond the ring."""
    node = start_node(tmp_path, "--bootstrap")
    try:
        port = ["--port", str(node.port)]

        def ring_listed() -> bool:
            code, out, _ = run(["members", *port], capsys)
            return code == 0 and "active" in out

        deadline = time.monotonic() + START_DEADLINE
        while not ring_listed():
            assert time.monotonic() < deadline, "the node never listed itself active"
            time.sleep(0.05)
        code, out, _ = run(["members", *port], capsys)
        header, row = out.splitlines()
        assert header.split() == [
            "NAME",
            "ADDRESS",
            "GOSSIP",
            "RING",
            "INCARNATION",
            "ZONE",
            "CONFIG_VERSION",
        ]
        assert row.split()[2:4] == ["alive", "active"]
        code, out, _ = run(["members", "--json", *port], capsys)
        assert [m["ring_state"] for m in json.loads(out)] == ["active"]

        code, out, _ = run(["raft", "status", *port], capsys)
        assert code == 0 and "[" not in out and "True" not in out and "'" not in out
        assert re.search(r"^is_ready +yes$", out, re.M) and re.search(
            r"^voters +\S+:\d+$", out, re.M
        )

        # One member: the node's count is the namespace's count.
        run(["set", "db:k", "v", *port], capsys)
        assert run(["dbsize", *port], capsys) == (0, "1\n", "")
        assert run(["dbsize", "--node", *port], capsys) == (0, "1\n", "")

        code, out, err = run(["ns", "set", "bad name!", *port], capsys)
        assert (code, out) == (2, "")
        assert one_line(err) == (
            "meshcache: error: NAME: namespace name 'bad name!' is not 1 to 64 characters"
            " among letters, digits and _ . : -"
        )
        code, out, err = run(["ns", "set", "five", "--replicas", "5", *port], capsys)
        assert code == 0 and "replicas=5" in out
        assert one_line(err) == (
            "meshcache: warning: namespace 'five' asks for 5 replicas but the ring has 1 member:"
            " each key is kept once on every member until more nodes join (quorum and all count"
            " the owners that exist)"
        )
        code, out, err = run(
            ["ns", "set", "two", "--replicas", "1", "--max-bytes", "0", *port], capsys
        )
        assert (code, err) == (0, "") and "replicas=1" in out
        assert run(["ns", "show", "absent", *port], capsys) == (1, "", "")
    finally:
        node.stop()


def test_leave_refused_or_unreachable_is_one_line(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    # The module's node is alone and not on any ring: the node refuses (exit 4), with its code.
    code, out, err = cli("leave", "--timeout", "1")
    assert (code, out) == (4, "")
    assert one_line(err).startswith("meshcache: refused: ")
    code, out, err = run(["leave", "--port", str(free_port()), "--timeout", "1"], capsys)
    assert (code, out) == (3, "")
    assert "refused" in one_line(err).lower()
    code, out, err = cli("leave", "--timeout", "soon")
    assert (code, out) == (2, "")
    assert one_line(err).startswith("meshcache: error: --timeout: 'soon'")
    code, out, _ = run(["leave", "--help"], capsys)
    assert code == 0 and "--timeout DURATION" in out and "--namespace" not in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--nodes", "0"], "meshcache: error: --nodes: must be between 1 and 100, got 0"),
        (["--nodes", "many"], "meshcache: error: --nodes: 'many' is not a whole number"),
        (["--nodes", "-2"], "meshcache: error: --nodes: must not be negative"),
        (["--base-port", "70000"], "meshcache: error: --base-port: '70000' is not a port"),
        (["--base-port", "64000"], "meshcache: error: --base-port: 64000 leaves no room for 3"),
        (["--timeout", "0"], "meshcache: error: --timeout: '0' must be a positive"),
        (["--timeout", "later"], "meshcache: error: --timeout: 'later'"),
        (["--bogus"], "meshcache demo: error: unrecognized arguments: --bogus"),
    ],
)
def test_demo_usage_errors(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["demo", *argv], capsys)
    assert (code, out) == (2, "")
    assert one_line(err).startswith(expected)


def test_demo_data_dir_that_cannot_be_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    code, out, err = run(["demo", "--data-dir", str(tmp_path / "file" / "sub")], capsys)
    assert (code, out) == (2, "")
    assert one_line(err).startswith("meshcache: error: --data-dir: cannot create ")


def test_join_refused_or_unreachable_is_one_line(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    # The module's node belongs to no mesh: it has no voter to register with.
    code, out, err = cli("join", "--timeout", "2")
    assert (code, out) == (4, "")
    assert one_line(err).startswith("meshcache: refused: ")
    code, out, err = run(["join", "--port", str(free_port()), "--timeout", "1"], capsys)
    assert (code, out) == (3, "")
    code, out, _ = run(["join", "--help"], capsys)
    assert code == 0 and "--timeout DURATION" in out and "--namespace" not in out
    assert "pull the keys it will own" in out


# --- a mesh of three node processes ------------------------------------------------------------

MESH_KEYS = 300


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """Three nodes, replicas 2 (the default), with MESH_KEYS keys in ``default``."""
    with ExitStack() as stack:
        mesh = Mesh(stack, tmp_path_factory.mktemp("mesh"), 3)
        with Client(mesh.addresses, timeout=10) as client:
            client.mset({b"mesh:%d" % i: b"v" for i in range(MESH_KEYS)})
        yield mesh


def port_of(node: MeshNode) -> str:
    return str(node.data_address.port)


@pytest.mark.slow
def test_dbsize_on_a_mesh_counts_each_key_once(
    mesh: Mesh, capsys: pytest.CaptureFixture[str]
) -> None:
    for node in mesh.nodes:
        assert run(["dbsize", "--port", port_of(node)], capsys) == (0, f"{MESH_KEYS}\n", "")
    code, out, _ = run(["dbsize", "--json", "--port", port_of(mesh.nodes[1])], capsys)
    assert (code, json.loads(out)) == (0, MESH_KEYS)
    # What it adds up: each member's owned count, all by the same ring version.
    owned = [mesh.call(node, "DBSIZE", [{"owned": True}]) for node in mesh.nodes]
    assert sum(o["count"] for o in owned) == MESH_KEYS
    assert len({o["ring_version"] for o in owned}) == 1
    # --node: what one node holds, copies of other members' keys included.
    held = [run(["dbsize", "--node", "--port", port_of(n)], capsys) for n in mesh.nodes]
    assert all(code == 0 for code, _, _ in held)
    assert sum(int(out) for _, out, _ in held) > MESH_KEYS
    # A namespace the nodes do not have is a refusal, as for every command.
    code, out, err = run(["dbsize", "-n", "nope", "--port", port_of(mesh.nodes[0])], capsys)
    assert (code, out) == (4, "") and "NO_SUCH_NAMESPACE" in one_line(err)


@pytest.mark.slow
def test_dbsize_says_whose_keys_it_could_not_count(
    mesh: Mesh, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked, unreachable = mesh.nodes[0], mesh.nodes[2]
    real_connect = cli_module._connect

    def connect(where: str, **kwargs: float) -> Client:
        if where == unreachable.data:
            raise MeshcacheConnectionError(f"cannot connect to {where}: connection refused")
        return real_connect(where, **kwargs)

    monkeypatch.setattr(cli_module, "_connect", connect)
    missing = mesh.call(unreachable, "DBSIZE", [{"owned": True}])["count"]
    code, out, err = run(["dbsize", "--port", port_of(asked)], capsys)
    assert (code, out) == (3, f"{MESH_KEYS - missing}\n")
    assert one_line(err) == (
        f"meshcache: warning: ring member {unreachable.node_id} ({unreachable.data}) could not be"
        f" asked (cannot connect to {unreachable.data}: connection refused): its keys are not"
        " counted"
    )


@pytest.mark.slow
def test_leave_then_join_puts_the_node_back_on_the_ring(
    mesh: Mesh, capsys: pytest.CaptureFixture[str]
) -> None:
    node, other = mesh.nodes[2], mesh.nodes[0]
    port = ["--port", port_of(node), "--timeout", "60"]
    code, out, _ = run(["leave", *port], capsys)
    assert code == 0 and out.startswith(f"{node.node_id} left the ring: ")
    mesh.wait_ring(2, among=[other, mesh.nodes[1]])
    assert run(["dbsize", "--port", port_of(other)], capsys) == (0, f"{MESH_KEYS}\n", "")

    code, out, err = run(["join", *port], capsys)
    assert (code, err) == (0, "")
    assert re.fullmatch(
        rf"{re.escape(node.node_id)} is back on the ring \(active\): \d+ keys? pulled, ring"
        r" version \d+\n",
        out,
    )
    mesh.wait_ring(3)
    assert run(["dbsize", "--port", port_of(other)], capsys) == (0, f"{MESH_KEYS}\n", "")
    owned = mesh.call(node, "DBSIZE", [{"owned": True}])["count"]
    assert owned > 0  # it serves its ranges again

    code, out, err = run(["join", "--json", *port], capsys)
    assert (code, out) == (4, "")
    assert one_line(err).startswith("meshcache: refused: INVALID_TRANSITION: ")


@pytest.mark.slow
def test_dbsize_refuses_to_add_counts_of_different_rings(
    mesh: Mesh, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds = []

    def counts(*args: object) -> dict[str, tuple[int, int]]:
        rounds.append(args)
        return {"a": (1, 10**6), "b": (2, 10**6 + 1)}  # the ring moved between two answers

    monkeypatch.setattr(cli_module, "_owned_counts", counts)
    code, out, err = run(["dbsize", "--port", port_of(mesh.nodes[0])], capsys)
    assert (code, out, len(rounds)) == (3, "", cli_module.DBSIZE_ROUNDS)
    assert one_line(err).startswith("meshcache: the ring changed while counting (members")
    assert one_line(err).endswith("run dbsize again")


# --- options anywhere, stdout's one document, timeouts -----------------------------------------


def test_options_may_come_between_key_and_value(cli: Cli) -> None:
    assert cli("set", "mix:k", "--ttl", "60", "v") == (0, "OK\n", "")
    assert cli("get", "mix:k") == (0, "v\n", "")
    code, out, _ = cli("ttl", "mix:k")
    assert code == 0 and 0 < float(out) <= 60
    assert cli("set", "mix:k", "--nx", "other") == (1, "(no)\n", "")
    assert cli("set", "mix:new", "--nx", "first") == (0, "OK\n", "")
    assert cli("append", "mix:new", "--json", "!") == (0, "6\n", "")
    code, out, _ = cli("gets", "mix:new")
    version = out.split("\t")[0]
    assert cli("cas", "mix:new", version, "--ttl", "1m", "second") == (0, "OK\n", "")
    assert cli("get", "mix:new") == (0, "second\n", "")
    # A value that looks like an option still goes after --, wherever the options are.
    assert cli("set", "mix:dash", "--ttl", "60", "--", "-5") == (0, "OK\n", "")
    assert cli("get", "mix:dash") == (0, "-5\n", "")
    code, out, err = cli("set", "mix:k", "--ttl", "60", "v", "extra")
    assert (code, out) == (2, "") and "unrecognized arguments: extra" in one_line(err)


def test_a_value_from_stdin_after_an_option(node: NodeProcess) -> None:
    argv = ["set", "mix:in", "--ttl", "60", "-", "--port", str(node.port)]
    done = subprocess.run(
        [sys.executable, "-m", "meshcache", *argv],
        input=b"from stdin",
        capture_output=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"OK\n", b"")
    got = meshcache_cmd("get", "mix:in", "--port", str(node.port))
    assert (got.returncode, got.stdout) == (0, "from stdin\n")


def test_get_to_stdout_prints_no_json(cli: Cli, tmp_path: Path) -> None:
    assert cli("set", "gf:k", "hello") == (0, "OK\n", "")
    code, out, err = cli("get", "gf:k", "--file", "-", "--json")
    assert (code, out) == (2, "")
    assert one_line(err).startswith("meshcache get: error: --file - writes the value itself")
    # To a file, stdout is free for the one JSON document: the length written.
    assert cli("get", "gf:k", "--file", str(tmp_path / "v"), "--json") == (0, "5\n", "")
    assert (tmp_path / "v").read_bytes() == b"hello"


@pytest.mark.parametrize("timeout", ["9999999999", "400d", "31536001"])
def test_a_timeout_longer_than_a_client_takes(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["get", "c1"], ["leave"]):
        code, out, err = run([*command, "--port", str(free_port()), "--timeout", timeout], capsys)
        assert (code, out) == (2, "")
        assert one_line(err) == (
            f"meshcache: error: --timeout: {timeout!r} is longer than the longest a client"
            " waits, 31536000 s (one year)"
        )


def test_the_longest_timeout_works(cli: Cli) -> None:
    assert cli("set", "long:k", "v", "--timeout", "31536000") == (0, "OK\n", "")
    assert cli("get", "long:k", "--timeout", "365d") == (0, "v\n", "")


@pytest.mark.parametrize(
    ("argv", "early"),
    [
        (["--json", "get", "k"], "--json"),
        (["--json", "--tls", "set", "k", "v"], "--json --tls"),
        (["--config", "x.toml", "start"], None),  # "x.toml" is taken for the command
    ],
)
def test_options_before_the_subcommand(
    argv: list[str], early: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert (code, out) == (2, "")
    line = one_line(err)
    if early is None:
        assert line.startswith("meshcache: error: argument COMMAND: invalid choice: 'x.toml'")
        return
    command = argv[len(early.split())]
    assert line == (
        f"meshcache: error: {early}: options go after the subcommand"
        f" (meshcache {command} ... {early}; see 'meshcache {command} --help')"
    )


# --- a password, and a value, on stdin ---------------------------------------------------------


@pytest.fixture(scope="module")
def users_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node with a user ``app`` whose password is ``s3cret``."""
    from meshcache.security.hashing import hash_password

    tmp = tmp_path_factory.mktemp("users")
    key = tmp / "cluster.key"
    key.write_text("cXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXE=\n")  # 32 bytes, base64
    config = tmp / "node.toml"
    config.write_text(
        f'[node]\ncluster_key_file = "{key}"\n\n[users.app]\n'
        f'password = "{hash_password("s3cret", n=1024)}"\npermissions = ["read", "write"]\n'
    )
    node = start_node(tmp, "--config", str(config))
    try:
        yield node
    finally:
        node.stop()


def as_app(
    node: NodeProcess, *argv: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``meshcache ARGV --port <node>`` with ``stdin`` piped in, in a session of its own: no
    controlling terminal to ask a password at."""
    return subprocess.run(
        [sys.executable, "-m", "meshcache", *argv, "--port", str(node.port)],
        input=stdin,
        capture_output=True,
        env={**clean_env(), **(env or {})},
        timeout=30,
        check=False,
        start_new_session=True,
    )


def stored(node: NodeProcess, key: str) -> bytes:
    got = as_app(node, "get", key, "--file", "-", "--user", "app", stdin=b"s3cret\n")
    assert got.returncode in (0, 1), got.stderr
    return got.stdout if got.returncode == 0 else b"<missing>"


def test_a_password_is_never_taken_from_a_value_on_stdin(
    users_node: NodeProcess, tmp_path: Path
) -> None:
    refused = "the value (VALUE -) is read from stdin, so the password cannot be: set"
    for argv, env in [
        (["set", "pw:k2", "-", "--user", "app"], None),
        (["set", "pw:k3", "-"], {"MESHCACHE_USER": "app"}),
        (["append", "pw:k2", "-", "--user", "app"], None),
        (["cas", "pw:k2", "1", "--user", "app", "-"], None),
    ]:
        done = as_app(users_node, *argv, stdin=b"s3cret\nline2\n", env=env)
        assert (done.returncode, done.stdout) == (2, b""), done.stderr
        line = one_line(done.stderr.decode())
        assert line.startswith(f"meshcache: error: {refused} $MESHCACHE_PASSWORD, or run")
    assert stored(users_node, "pw:k2") == stored(users_node, "pw:k3") == b"<missing>"
    done = as_app(
        users_node, "set", "pw:k5", "--file", "/dev/stdin", "--user", "app", stdin=b"s3cret\nv\n"
    )
    assert done.returncode == 2
    assert "the value (--file /dev/stdin) is read from stdin" in one_line(done.stderr.decode())


def test_a_value_on_stdin_with_the_password_from_the_environment(
    users_node: NodeProcess,
) -> None:
    big = b"s3cret\n" + os.urandom(134670)
    done = as_app(
        users_node,
        *["set", "pw:k4", "-", "--user", "app"],
        stdin=big,
        env={"MESHCACHE_PASSWORD": "s3cret"},
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"OK\n", b"")
    assert stored(users_node, "pw:k4") == big


def test_a_password_on_stdin_for_a_command_that_reads_nothing_else(
    users_node: NodeProcess,
) -> None:
    done = as_app(users_node, "set", "pw:arg", "v", "--user", "app", stdin=b"s3cret\nrest\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"OK\n", b"")
    assert stored(users_node, "pw:arg") == b"v"
    wrong = as_app(users_node, "get", "pw:arg", "--user", "app", stdin=b"guess\n")
    assert wrong.returncode == 4 and b"WRONGPASS" in wrong.stderr


def test_a_password_read_from_stdin_leaves_the_rest_of_stdin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rest = os.urandom(134670)
    stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(b"s3cret\r\n" + rest)), "utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert cli_module._read_password("password: ") == "s3cret"
    assert sys.stdin.buffer.read() == rest
