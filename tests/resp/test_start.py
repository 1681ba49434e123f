"""The RESP port as a node setting: ``meshcache start --resp-port`` serves redis-cli and redis-py,
shows the port in INFO and ``node.json``, and a RESP port that is taken is named in one line."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import redis
import trio

from meshcache.client import Client
from meshcache.errors import ConfigError
from meshcache.node.node import READY_FILE, Node
from meshcache.settings import load_settings, node_ports
from tools.resp_bench import resp_node


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MESHCACHE_")}


def test_a_started_node_answers_redis_cli_and_redis_py() -> None:
    if shutil.which("redis-cli") is None and os.environ.get("CI") != "true":
        pytest.skip("redis-cli is not installed")
    with resp_node() as node:
        port = str(node.resp_port)
        cli = ["redis-cli", "-p", port]
        assert subprocess.run([*cli, "set", "greeting", "hello"], capture_output=True,
                              text=True, timeout=20, check=True).stdout == "OK\n"  # fmt: skip
        r = redis.Redis(port=node.resp_port, protocol=3)
        try:
            assert r.get("greeting") == b"hello"
            assert r.incr("visits") == 1
        finally:
            r.close()
        got = subprocess.run([*cli, "get", "visits"], capture_output=True, text=True,
                             timeout=20, check=True)  # fmt: skip
        assert got.stdout == "1\n"
        # The same data through the msgpack port, and the RESP port in node.json and INFO.
        ready = json.loads((node.data_dir / READY_FILE).read_text())
        assert ready["resp"] == f"127.0.0.1:{node.resp_port}"
        with Client(node.data, timeout=10) as mc:
            assert mc.get("greeting") == b"hello"
            info = mc.info()
        assert info["resp"]["address"] == ready["resp"]
        assert info["resp"]["connections_opened"] >= 3
        with urllib.request.urlopen(f"http://{ready['admin']}/metrics", timeout=10) as page:
            metrics = page.read().decode()
        assert 'meshcache_resp_commands_total{command="set"} 1.0' in metrics
        assert 'meshcache_resp_commands_total{command="incrby"} 1.0' in metrics  # redis-py's incr
        assert "meshcache_resp_connections " in metrics


def test_a_taken_resp_port_is_named_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "meshcache", "start", "--port", "0", "--admin-port", "0",
             "--resp-port", str(port), "--data-dir", str(tmp_path)],
            capture_output=True, text=True, env=_env(), timeout=30, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    line = result.stderr.rstrip("\n")
    assert "node_failed" in line
    assert f"cannot bind the RESP port 127.0.0.1:{port} (TCP, setting resp_port)" in line
    assert line.endswith("Address already in use (see --resp-port)'")


@pytest.mark.trio
async def test_the_node_names_its_taken_resp_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        settings = load_settings(
            environ={},
            overrides={"port": 0, "admin_port": 0, "resp_port": port, "data_dir": tmp_path},
        )
        failed: list[str] = []
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(Node(settings).serve)
        except* OSError as group:
            failed.extend(str(exc) for exc in group.exceptions)
    assert failed == [
        f"[Errno 98] cannot bind the RESP port 127.0.0.1:{port} (TCP, setting resp_port):"
        " Address already in use (see --resp-port)"
    ]
    assert not (tmp_path / READY_FILE).exists()


def test_the_resp_port_is_a_setting_like_the_others(tmp_path: Path) -> None:
    assert load_settings(environ={}).resp_port is None  # off unless set
    assert "resp_port" not in [p.setting for p in node_ports(load_settings(environ={}))]
    from_env = load_settings(environ={"MESHCACHE_RESP_PORT": "6390"})
    assert from_env.resp_port == 6390
    toml = tmp_path / "node.toml"
    toml.write_text("[node]\nresp_port = 6391\n")
    assert load_settings(config_file=toml, environ={}).resp_port == 6391
    [resp] = [p for p in node_ports(from_env) if p.setting == "resp_port"]
    assert resp.describe() == "RESP port 127.0.0.1:6390 (TCP, setting resp_port)"
    with pytest.raises(ConfigError, match="resp_port"):
        load_settings(environ={}, overrides={"resp_port": "7400"})  # the data port's number
    with pytest.raises(ConfigError, match="not a port number"):
        load_settings(environ={"MESHCACHE_RESP_PORT": "redis"})
