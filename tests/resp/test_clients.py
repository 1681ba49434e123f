"""Clients nobody here wrote, against the RESP port: redis-py (sync and asyncio, RESP2 and
RESP3), redis-cli (one-shot, RESP3 and interactive in a terminal) and redis-benchmark."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import shutil
import subprocess
import time
from typing import Any

import pytest
import redis
import redis.asyncio
import trio

from tests.resp.conftest import RespNode

pytestmark = pytest.mark.trio


def exercise(r: Any) -> dict[str, Any]:
    """The commands an application's cache layer uses, through redis-py's own methods."""
    out: dict[str, Any] = {}
    out["ping"] = r.ping()
    out["set"] = r.set("user:1", "ada", ex=100)
    out["get"] = r.get("user:1")
    out["ttl"] = r.ttl("user:1")
    out["nx"] = r.set("user:1", "other", nx=True)
    out["incr"] = [r.incr("hits"), r.incrby("hits", 10), r.decr("hits")]
    out["incrbyfloat"] = r.incrbyfloat("ratio", 0.25)
    out["mset"] = r.mset({"a": "1", "b": "2"})
    out["mget"] = r.mget(["a", "b", "nope"])
    out["hset"] = r.hset("h", mapping={"f1": "v1", "f2": "v2"})
    out["hgetall"] = r.hgetall("h")
    out["hget"] = r.hget("h", "f1")
    out["lpush"] = r.rpush("l", "x", "y", "z")
    out["lrange"] = r.lrange("l", 0, -1)
    out["lpop"] = r.lpop("l")
    out["sadd"] = r.sadd("s", "m1", "m2")
    out["smembers"] = r.smembers("s")
    out["sismember"] = r.sismember("s", "m1")
    out["zadd"] = r.zadd("z", {"a": 1.5, "b": 2})
    out["zrange"] = r.zrange("z", 0, -1, withscores=True)
    out["zscore"] = r.zscore("z", "a")
    out["zpopmin"] = r.zpopmin("z")
    out["type"] = [r.type(k) for k in ("user:1", "h", "l", "s", "z", "nope")]
    out["exists"] = r.exists("a", "b", "nope")
    out["delete"] = r.delete("a", "b")
    out["expire"] = r.expire("h", 50)
    out["persist"] = r.persist("h")
    out["append"] = r.append("user:1", "!")
    out["strlen"] = r.strlen("user:1")
    out["getdel"] = r.getdel("user:1")
    out["dbsize"] = r.dbsize()
    info = r.info()
    out["info"] = [info["redis_version"], info["cluster_enabled"], info["db0"]["keys"]]
    out["config"] = r.config_get("save")
    out["client"] = [r.client_setname("app"), r.client_getname(), r.client_id() > 0]
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"p{i}", i)
        pipe.get(f"p{i}")
    results = pipe.execute()
    out["pipeline"] = results[-2:]
    return out


EXPECTED: dict[str, Any] = {
    "ping": True,
    "set": True,
    "get": b"ada",
    "ttl": 100,
    "nx": None,
    "incr": [1, 11, 10],
    "incrbyfloat": 0.25,
    "mset": True,
    "mget": [b"1", b"2", None],
    "hset": 2,
    "hgetall": {b"f1": b"v1", b"f2": b"v2"},
    "hget": b"v1",
    "lpush": 3,
    "lrange": [b"x", b"y", b"z"],
    "lpop": b"x",
    "sadd": 2,
    "smembers": {b"m1", b"m2"},
    "zadd": 2,
    "zrange": [(b"a", 1.5), (b"b", 2.0)],
    "zscore": 1.5,
    "zpopmin": [(b"a", 1.5)],
    "type": [b"string", b"hash", b"list", b"set", b"zset", b"none"],
    "exists": 2,
    "delete": 2,
    "expire": True,
    "persist": True,
    "append": 4,
    "strlen": 4,
    "getdel": b"ada!",
    "dbsize": 6,
    "info": ["7.2.0", 0, 6],
    "config": {"save": ""},
    "client": [True, "app", True],
    "pipeline": [True, b"99"],
}  # fmt: skip


def check(out: dict[str, Any], protocol: int) -> None:
    expected = dict(EXPECTED)
    # redis-py's RESP3 replies keep some types that RESP2 replies turn into others.
    expected["sismember"] = 1
    if protocol == 3:
        expected["zrange"] = [[b"a", 1.5], [b"b", 2.0]]
        expected["zpopmin"] = [b"a", 1.5]
        expected["client"] = [True, b"app", True]
    assert out == expected


@pytest.mark.parametrize("protocol", [2, 3])
async def test_redis_py_sync(resp_node: RespNode, protocol: int) -> None:
    def run() -> tuple[dict[str, Any], Any]:
        r = redis.Redis(port=resp_node.resp_port, protocol=protocol)
        try:
            out = exercise(r)
            hello = r.connection_pool.get_connection().handshake_metadata
            return out, hello
        finally:
            r.close()

    out, hello = await trio.to_thread.run_sync(run)
    check(out, protocol)
    if protocol == 3:
        assert hello[b"proto"] == 3 and hello[b"server"] == b"redis"


@pytest.mark.parametrize("protocol", [2, 3])
async def test_redis_py_asyncio(resp_node: RespNode, protocol: int) -> None:
    async def run() -> dict[str, Any]:
        r = redis.asyncio.Redis(port=resp_node.resp_port, protocol=protocol)
        try:
            out: dict[str, Any] = {}
            out["set"] = await r.set("k", "v")
            out["get"] = await r.get("k")
            out["hset"] = await r.hset("h", "f", "v")
            out["hgetall"] = await r.hgetall("h")
            out["gather"] = await asyncio.gather(*(r.incr("n") for _ in range(50)))
            async with r.pipeline(transaction=False) as pipe:
                for i in range(50):
                    pipe.set(f"a{i}", i)
                out["pipeline"] = await pipe.execute()
            out["mget"] = await r.mget(["a0", "a49", "nope"])
            out["scan"] = sorted([key async for key in r.scan_iter(match="a1*", count=5)])
            out["keys"] = sorted(await r.keys("a4?"))
            out["dbsize"] = await r.dbsize()
            return out
        finally:
            await r.aclose()

    out = await trio.to_thread.run_sync(asyncio.run, run())
    assert out["set"] is True and out["get"] == b"v"
    assert out["hset"] == 1 and out["hgetall"] == {b"f": b"v"}
    assert sorted(out["gather"]) == list(range(1, 51))
    assert out["pipeline"] == [True] * 50
    assert out["mget"] == [b"0", b"49", None]
    assert out["scan"] == sorted([b"a1"] + [b"a1%d" % i for i in range(10)])
    assert out["keys"] == [b"a4%d" % i for i in range(10)]
    assert out["dbsize"] == 50 + 3  # the a* keys, k, h and n


async def test_redis_py_db_selects_a_namespace_and_errors_map(resp_node: RespNode) -> None:
    def run() -> list[Any]:
        r0 = redis.Redis(port=resp_node.resp_port)
        r1 = redis.Redis(port=resp_node.resp_port, db=1)
        try:
            r0.set("k", "zero")
            r1.set("k", "one")
            out: list[Any] = [r0.get("k"), r1.get("k")]
            r0.hset("hash", "f", "v")
            for call in (lambda: r0.get("hash"), lambda: r0.execute_command("NOSUCH"),
                         lambda: r0.pipeline().set("x", 1).execute()):  # fmt: skip
                try:
                    call()
                except redis.ResponseError as exc:
                    out.append(type(exc).__name__ + ": " + str(exc))
            return out
        finally:
            r0.close()
            r1.close()

    out = await trio.to_thread.run_sync(run)
    assert out[:2] == [b"zero", b"one"]
    assert (
        out[2] == "ResponseError: WRONGTYPE Operation against a key holding the wrong kind of value"
    )
    assert out[3].startswith("ResponseError: unknown command 'NOSUCH'")
    # Transactions are not supported (docs/resp.md): MULTI and EXEC are unknown commands.
    assert "unknown command 'EXEC'" in out[4]


def redis_cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=30,
        check=True,
    ).stdout  # fmt: skip


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
async def test_redis_cli_one_shot(resp_node: RespNode) -> None:
    port = resp_node.resp_port

    def run() -> list[str]:
        return [
            redis_cli(port, "SET", "greeting", "hello world"),
            redis_cli(port, "GET", "greeting"),
            redis_cli(port, "--no-raw", "GET", "greeting"),
            redis_cli(port, "-3", "HSET", "h", "a", "1"),
            redis_cli(port, "-3", "HGETALL", "h"),
            redis_cli(port, "INFO", "keyspace"),
            redis_cli(port, "NOSUCH"),
            redis_cli(port, "-r", "3", "INCR", "n"),
        ]

    out = await trio.to_thread.run_sync(run)
    assert out[0] == "OK\n"
    assert out[1] == "hello world\n"
    assert out[2] == '"hello world"\n'
    assert out[3] == "1\n"
    assert out[4] == "a 1\n"  # what redis-cli prints for redis-server's RESP3 map too
    assert "db0:keys=2" in out[5]
    assert out[6].startswith("ERR unknown command 'NOSUCH'")
    assert out[7] == "1\n2\n3\n"


def interactive_cli(port: int, lines: list[str], expect: list[str]) -> None:
    """Type ``lines`` into redis-cli on a terminal, each once its prompt shows, and wait for
    each text of ``expect`` to appear after it; fail at the deadline."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: redis-cli on the terminal
        os.execvp("redis-cli", ["redis-cli", "-p", str(port)])
    prompt = f"127.0.0.1:{port}> ".encode()
    screen = b""
    deadline = time.monotonic() + 20

    def wait_for(text: bytes) -> None:
        nonlocal screen
        while text not in screen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not on the screen: {screen!r}")
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                screen += os.read(fd, 65536)
            if b"\x1b[6n" in screen:  # linenoise asks where the cursor is: a terminal answers
                screen = screen.replace(b"\x1b[6n", b"")
                os.write(fd, b"\x1b[1;1R")
        screen = screen[screen.index(text) + len(text) :]

    try:
        for line, wanted in zip(lines, expect, strict=True):
            wait_for(prompt)
            os.write(fd, line.encode() + b"\r")
            wait_for(wanted.encode())
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
async def test_redis_cli_interactive(resp_node: RespNode) -> None:
    port = resp_node.resp_port
    lines = ["SET k 42", "GET k", "INCR k", "HSET h f v", "HGETALL h", "TYPE h"]
    expect = ["OK", '"42"', "(integer) 43", "(integer) 1", '2) "v"', "hash"]
    await trio.to_thread.run_sync(interactive_cli, port, lines, expect)
    # Its start-up asks the server for command docs (hints); it must have been answered.
    assert resp_node.port.server.refused["unknown_command"] == 0


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="no redis-benchmark")
async def test_redis_benchmark_default_suite_has_no_errors(resp_node: RespNode) -> None:
    tests = "ping,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,mset"

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["redis-benchmark", "-p", str(resp_node.resp_port), "-t", tests, "-n", "2000",
             "-c", "10", "-P", "4", "--csv"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    done = await trio.to_thread.run_sync(run)
    assert done.returncode == 0, done.stderr
    assert "error" not in (done.stdout + done.stderr).lower()
    rows = [line.split(",")[0].strip('"') for line in done.stdout.splitlines()[1:] if line]
    assert len(rows) == 17  # PING twice (inline, multibulk), LPUSH twice (for LRANGE)
    assert {"PING_INLINE", "SET", "GET", "SPOP", "ZPOPMIN", "LRANGE_100 (first 100 elements)",
            "MSET (10 keys)"} <= set(rows)  # fmt: skip
    assert sum(resp_node.port.server.refused.values()) == 0
