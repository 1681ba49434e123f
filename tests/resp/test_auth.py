"""AUTH on the RESP port: a node with users, driven by raw RESP, redis-py (RESP2 and RESP3),
redis-cli and a redis-server with the same users; refusals counted in /metrics exactly as the
data port counts them, by the same guard."""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from meshcache.client.trio_client import TrioClient
from meshcache.errors import WrongPassError
from meshcache.node import Node
from meshcache.resp.commands import COMMANDS
from meshcache.resp.session import NO_AUTH_COMMANDS
from meshcache.security.hashing import hash_password
from meshcache.security.throttle import AuthThrottle
from meshcache.security.users import parse_users
from tests.resp.conftest import RespNode
from tests.resp.helpers import HOST, RawConn, command, free_port
from tests.security import secured as secured_users
from tests.security.secured import CHEAP

pytestmark = pytest.mark.trio

NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
# Redis's ``AUTH password`` (redis-py's ``password=`` alone) authenticates as ``default``.
USERS = {
    **secured_users.USERS,
    "default": {"password": hash_password("def-pw", n=CHEAP), "permissions": ["read", "write"]},
}


def secured(tmp_path: Path, users: dict[str, Any] = USERS) -> Any:
    return secured_users.secured(tmp_path, users, resp_port=0)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RespNode]:
    async with trio.open_nursery() as nursery:
        n = Node(secured(tmp_path))
        await nursery.start(n.serve)
        yield RespNode(n)
        nursery.cancel_scope.cancel()


def calls(port: int, lines: list[str]) -> list[bytes]:
    conn = RawConn(port)
    try:
        return [conn.call(*shlex.split(line)) for line in lines]
    finally:
        conn.close()


async def run(fn: Any, *args: Any) -> Any:
    return await trio.to_thread.run_sync(fn, *args)


def auth_outcome(n: RespNode, outcome: str) -> float:
    return n.metric("meshcache_auth_total", outcome=outcome)


async def test_the_commands_allowed_before_auth_are_those_flagged_no_auth() -> None:
    flagged = {c.name for c in COMMANDS.values() if "no_auth" in c.flags}
    assert flagged == NO_AUTH_COMMANDS == {"auth", "hello", "quit", "reset"}


async def test_unauthenticated_commands_get_noauth_counted(node: RespNode) -> None:
    got = await run(
        calls,
        node.resp_port,
        ["GET k", "PING", "SET k v", "NOSUCH a", "GET", "HELLO 3", "HELLO 4", "QUIT"],
    )
    assert got[:3] == [NOAUTH] * 3
    # As Redis: an unknown command and a wrong arity are answered before authentication.
    assert got[3].startswith(b"-ERR unknown command 'NOSUCH'")
    assert got[4] == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert got[5].startswith(b"-NOAUTH HELLO must be called with the client already authenticated")
    assert got[6] == b"-NOPROTO unsupported protocol version\r\n"
    assert got[7] == b"+OK\r\n"
    assert auth_outcome(node, "noauth") == 4
    assert node.metric("meshcache_errors_total", code="NOAUTH") == 4
    assert node.metric("meshcache_bad_input_total", kind="noauth") == 4
    assert node.metric("meshcache_resp_errors_total", kind="noauth") == 4
    assert await run(calls, node.resp_port, ["AUTH app app-pw", "GET k"]) == [
        b"+OK\r\n", b"$-1\r\n"
    ]  # fmt: skip  # the refused SET did not run


async def test_auth_user_password_and_the_default_user(node: RespNode) -> None:
    got = await run(
        calls,
        node.resp_port,
        ["AUTH app nope", "GET k", "AUTH app app-pw", "SET k v", "GET k", "AUTH app nope",
         "GET k", "AUTH nobody app-pw", "AUTH def-pw", "SET k w", "AUTH a b c", "RESET", "GET k"],
    )  # fmt: skip
    assert got == [
        WRONGPASS, NOAUTH, b"+OK\r\n", b"+OK\r\n", b"$1\r\nv\r\n",
        WRONGPASS, b"$1\r\nv\r\n",  # a failed AUTH leaves the connection as it was
        WRONGPASS, b"+OK\r\n", b"+OK\r\n", b"-ERR syntax error\r\n",
        b"+RESET\r\n", NOAUTH,  # RESET forgets who the connection was, as Redis's
    ]  # fmt: skip
    assert auth_outcome(node, "ok") == 2
    assert auth_outcome(node, "failed") == 3
    assert node.metric("meshcache_errors_total", code="WRONGPASS") == 3
    assert node.metric("meshcache_bad_input_total", kind="wrongpass") == 3
    assert node.metric("meshcache_resp_errors_total", kind="wrongpass") == 3


async def test_forbidden_commands_get_noperm_naming_the_permission(node: RespNode) -> None:
    viewer = await run(
        calls,
        node.resp_port,
        ["AUTH viewer view-pw", "GET k", "SET k v", "FLUSHDB", "INCR n", "INFO server", "ECHO hi"],
    )
    assert viewer[:2] == [b"+OK\r\n", b"$-1\r\n"]
    assert viewer[2] == (
        b"-NOPERM User viewer has no permissions to run the 'set' command: it needs the 'write'"
        b" permission\r\n"
    )
    assert b"'flushdb' command: it needs the 'admin' permission" in viewer[3]
    assert b"'incr' command" in viewer[4]
    assert viewer[5].startswith(b"$") and b"redis_version" in viewer[5]
    assert viewer[6] == b"$2\r\nhi\r\n"
    tenant = await run(
        calls,
        node.resp_port,
        ["AUTH tenant tenant-pw", "SET k v", "SELECT tenant-a", "SET k v", "GET k", "FLUSHALL"],
    )
    assert tenant[1] == (
        b"-NOPERM User tenant has no permissions to run the 'set' command in namespace "
        b"'default'\r\n"
    )
    assert tenant[2:5] == [b"+OK\r\n", b"+OK\r\n", b"$1\r\nv\r\n"]
    assert tenant[5].startswith(b"-NOPERM User tenant has no permissions to run the 'flushall'")
    assert auth_outcome(node, "noperm") == 5
    assert node.metric("meshcache_errors_total", code="NOPERM") == 5
    assert node.metric("meshcache_bad_input_total", kind="noperm") == 5
    ops = await run(calls, node.resp_port, ["AUTH ops ops-pw", "FLUSHDB", "DBSIZE"])
    assert ops == [b"+OK\r\n", b"+OK\r\n", b":0\r\n"]


async def test_hello_authenticates_and_switches_protocol(node: RespNode) -> None:
    def session() -> list[bytes]:
        conn = RawConn(node.resp_port)
        try:
            out = [conn.call("HELLO", "3", "AUTH", "app", "nope", "SETNAME", "n1")]
            out.append(conn.call("GET", "missing"))  # still RESP2, still unauthenticated
            out.append(conn.call("HELLO", "3", "AUTH", "app", "app-pw", "SETNAME", "n1"))
            out += [conn.call("GET", "missing"), conn.call("CLIENT", "GETNAME")]
            out.append(conn.call("HELLO", "2"))  # authenticated: HELLO needs no AUTH
            out.append(conn.call("HELLO", "3", "AUTH", "app"))
            return out
        finally:
            conn.close()

    got = await run(session)
    assert got[0] == WRONGPASS
    assert got[1] == NOAUTH
    assert got[2].startswith(b"%7\r\n") and b"proto\r\n:3\r\n" in got[2]
    assert got[3:5] == [b"_\r\n", b"$2\r\nn1\r\n"]
    assert got[5].startswith(b"*14\r\n")
    assert got[6] == b"-ERR Syntax error in HELLO option 'AUTH'\r\n"


async def test_commands_pipelined_behind_auth_run_as_its_user(node: RespNode) -> None:
    def pipelined() -> list[bytes]:
        conn = RawConn(node.resp_port)
        try:
            conn.send(
                command("AUTH", "app", "nope") + command("SET", "p", "1")
                + command("AUTH", "app", "app-pw") + command("SET", "p", "2")
                + command("GET", "p")
            )  # fmt: skip
            return [conn.reply() for _ in range(5)]
        finally:
            conn.close()

    got = await run(pipelined)
    assert got == [WRONGPASS, NOAUTH, b"+OK\r\n", b"+OK\r\n", b"$1\r\n2\r\n"]


async def test_a_replayed_auth(node: RespNode) -> None:
    """The bytes of an AUTH captured on the wire: replayed on its own connection they change
    nothing; replayed once the user's password changed, they are refused and counted."""
    auth = command("AUTH", "app", "app-pw")

    def replay(times: int) -> list[bytes]:
        conn = RawConn(node.resp_port)
        try:
            conn.send(auth * times + command("SET", "r", "1"))
            return [conn.reply() for _ in range(times + 1)]
        finally:
            conn.close()

    assert await run(replay, 3) == [b"+OK\r\n"] * 4
    assert auth_outcome(node, "failed") == 0
    changed = dict(USERS, app={**USERS["app"], "password": hash_password("new-pw", n=CHEAP)})
    node.node.parts.dispatcher.guard.set_users(parse_users(changed, "test"))
    assert await run(replay, 1) == [WRONGPASS, NOAUTH]
    assert auth_outcome(node, "failed") == 1


async def test_one_record_of_failures_for_both_ports(node: RespNode) -> None:
    """A wrong password on the RESP port and on the data port count in the same figures, and
    the slow-down after repeated failures from one address covers both: one record for the
    address, shown under each port its failures came through."""
    info = node.node.info
    async with TrioClient(
        f"127.0.0.1:{info.data_address[1]}", smart=False, username="app", password="bad"
    ) as wrong:
        with pytest.raises(WrongPassError):
            await wrong.get("k")
    assert node.metric("meshcache_auth_failing_addresses", port="data") == 1
    assert node.metric("meshcache_auth_failing_addresses", port="resp") == 0
    got = await run(calls, node.resp_port, ["AUTH app bad", "AUTH app bad", "AUTH app bad"])
    assert got == [WRONGPASS] * 3
    assert auth_outcome(node, "failed") == 4
    assert node.metric("meshcache_bad_input_total", kind="wrongpass") == 4
    assert node.metric("meshcache_auth_failing_addresses", port="data") == 1
    assert node.metric("meshcache_auth_failing_addresses", port="resp") == 1
    assert len(node.node.parts.dispatcher.guard.throttle) == 1  # one record for both ports
    assert auth_outcome(node, "throttled") == 0
    # Past 4 failures from this address, its next AUTH waits for its slow-down first.
    assert await run(calls, node.resp_port, ["AUTH app bad", "AUTH app app-pw"]) == [
        WRONGPASS, b"+OK\r\n"
    ]  # fmt: skip
    assert auth_outcome(node, "throttled") == 1


@pytest.mark.parametrize("protocol", [2, 3])
async def test_redis_py_with_username_and_password(node: RespNode, protocol: int) -> None:
    port = node.resp_port

    def use() -> None:
        with redis.Redis(HOST, port, username="app", password="app-pw", protocol=protocol) as r:
            assert r.set("py", "1") and r.get("py") == b"1"
            assert r.zadd("pz", {"a": 1}, nx=True) == 1
        with redis.Redis(HOST, port, password="def-pw", protocol=protocol) as r:
            assert r.incr("py") == 2
        with redis.Redis(HOST, port, username="viewer", password="view-pw", protocol=protocol) as r:
            assert r.get("py") == b"2"
            with pytest.raises(redis.exceptions.NoPermissionError, match="'write' permission"):
                r.set("py", "3")
        once = Retry(NoBackoff(), 0)  # redis-py retries a refused connection by default
        with (
            redis.Redis(
                HOST, port, username="app", password="nope", protocol=protocol, retry=once
            ) as r,
            pytest.raises(redis.exceptions.AuthenticationError, match="invalid username"),
        ):
            r.ping()
        with (
            redis.Redis(HOST, port, protocol=protocol, retry=once) as r,
            pytest.raises(redis.exceptions.AuthenticationError, match=r"required|authenticated"),
        ):
            r.get("py")

    await run(use)
    assert auth_outcome(node, "failed") == 1


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
async def test_redis_cli_user_and_pass(node: RespNode) -> None:
    port = str(node.resp_port)

    def cli(*args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", port, "--no-auth-warning", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout + done.stderr

    assert await run(cli, "--user", "app", "--pass", "app-pw", "SET", "c", "1") == "OK\n"
    assert await run(cli, "--user", "app", "--pass", "app-pw", "-3", "GET", "c") == "1\n"
    assert await run(cli, "-a", "def-pw", "GET", "c") == "1\n"
    assert "NOAUTH" in await run(cli, "GET", "c")
    refused = await run(cli, "--user", "app", "--pass", "nope", "GET", "c")
    assert "AUTH failed: WRONGPASS invalid username-password pair" in refused
    assert "NOAUTH" in refused  # the command after a failed AUTH
    assert "NOPERM" in await run(cli, "--user", "viewer", "--pass", "view-pw", "SET", "c", "2")


_WORDS = st.one_of(
    st.sampled_from([b"AUTH", b"auth", b"SETNAME", b"app", b"app-pw", b"default", b"def-pw",
                     b"2", b"3", b"4", b"-1", b"", b"@cluster", b"x" * 5000]),
    st.binary(max_size=40),
)  # fmt: skip


async def test_fuzzed_auth_and_hello(tmp_path: Path) -> None:
    """Random AUTH and HELLO arguments (non-UTF-8, huge, missing, repeated): every answer is
    OK, a HELLO map or an error line, the node stays well, and the connection's state is what
    its last answered AUTH made it."""
    async with trio.open_nursery() as nursery:
        n = Node(secured(tmp_path))
        await nursery.start(n.serve)
        guard = n.parts.dispatcher.guard
        guard.throttle = AuthThrottle(free=1_000_000)  # fuzzing is not guessing
        port = RespNode(n).resp_port
        conn = RawConn(port)
        seen: list[bytes] = []

        @settings(
            max_examples=120,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(st.sampled_from([b"AUTH", b"HELLO"]), st.lists(_WORDS, max_size=6))
        def check(name: bytes, args: list[bytes]) -> None:
            reply = conn.call(name, *args)
            seen.append(reply)
            assert reply[:1] in (b"+", b"-", b"%", b"*"), reply
            assert b"internal error" not in reply
            after = conn.call("GET", "fz")
            if reply[:1] == b"-":
                return
            assert after in (b"$-1\r\n", b"_\r\n")  # authenticated now

        try:
            await trio.to_thread.run_sync(check)
            assert len(seen) >= 100
            assert await trio.to_thread.run_sync(conn.call, "PING") != b""
        finally:
            conn.close()
            nursery.cancel_scope.cancel()
    assert n.counters.errors.get("INTERNAL", 0) == 0


# --- the same answers as a redis-server with the same users --------------------------------


def _wait_until_up(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(100).startswith((b"-NOAUTH", b"+PONG")):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis-server on {port} did not start")
        time.sleep(0.02)  # poll interval between connection attempts, not a wait for a state


@pytest.fixture(scope="module")
def redis_with_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path_factory.mktemp("redis-acl")),
         "--user", "default", "off",
         "--user", "app", "on", ">app-pw", "~*", "&*", "+@all"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_until_up(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_same_auth_answers_as_redis(tmp_path: Path, redis_with_users: int) -> None:
    lines = [
        "GET k", "PING", "NOSUCH a", "GET", "ECHO hi", "SELECT 0", "CLIENT SETNAME x",
        "HELLO 3", "HELLO 4", "HELLO 3 SETNAME x AUTH", "HELLO abc",
        "AUTH app wrong", "AUTH nobody pw", "AUTH pw", "AUTH a b c", "AUTH",
        "HELLO 2 AUTH app wrong", "GET k",
        "AUTH app app-pw", "SET k v", "GET k", "AUTH app wrong", "GET k", "HELLO 2",
        "RESET", "GET k", "HELLO 2 AUTH app app-pw", "GET k",
    ]  # fmt: skip
    users = {"app": USERS["app"]}  # as the redis-server: no ``default`` user
    async with trio.open_nursery() as nursery:
        n = Node(secured(tmp_path, users))
        await nursery.start(n.serve)
        try:
            want = await run(calls, redis_with_users, lines)
            got = await run(calls, RespNode(n).resp_port, lines)
        finally:
            nursery.cancel_scope.cancel()
    diff = [
        f"{line!r}: redis {w!r} meshcache {g!r}"
        for line, w, g in zip(lines, want, got, strict=True)
        if w != g and not line.startswith("HELLO 2")  # the map names server and version
    ]
    assert not diff, "\n".join(diff)
