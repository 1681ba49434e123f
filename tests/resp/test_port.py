"""The RESP port on real sockets: pipelining, order, bad input, limits, QUIT, counters."""

from __future__ import annotations

import contextlib
import random
import socket
import time
from pathlib import Path

import pytest
import trio

from tests.resp.conftest import RespNode, node_settings, start_resp_node
from tests.resp.helpers import RawConn, command

pytestmark = pytest.mark.trio


async def in_thread(fn, *args):  # type: ignore[no-untyped-def]
    """Blocking client code runs in a thread while the node runs on trio."""
    return await trio.to_thread.run_sync(fn, *args)


async def test_a_pipeline_is_answered_in_order(resp_node: RespNode) -> None:
    def client() -> list[bytes]:
        conn = RawConn(resp_node.resp_port)
        try:
            stream = b"".join(
                command("SET", f"k{i}", f"v{i}") + command("GET", f"k{i}") + b"PING\r\n"
                for i in range(500)
            )
            conn.send(stream + command("INCR", "n") + command("GET", "missing"))
            return [conn.reply() for _ in range(1502)]
        finally:
            conn.close()

    replies = await in_thread(client)
    for i in range(500):
        assert replies[3 * i : 3 * i + 3] == [b"+OK\r\n", b"$%d\r\nv%d\r\n" % (len(f"v{i}"), i),
                                              b"+PONG\r\n"]  # fmt: skip
    assert replies[-2:] == [b":1\r\n", b"$-1\r\n"]
    assert resp_node.counters.requests["SET"] == 500
    assert resp_node.counters.requests["GET"] == 501


@pytest.mark.parametrize(
    ("data", "reply", "kind"),
    [
        (b"*1\r\n*1\r\n", b"-ERR Protocol error: expected '$', got '*'\r\n", "expected_bulk"),
        (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n",
         "invalid_multibulk_length"),
        (b"*1\r\n$99999999999\r\n", b"-ERR Protocol error: invalid bulk length\r\n",
         "invalid_bulk_length"),
        (b'ECHO "abc\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n",
         "unbalanced_quotes"),
        (b"\x00\xff garbage " * 7000 + b"\r\n", b"-ERR Protocol error: too big inline request\r\n",
         "inline_too_long"),
        (b"*1\r\n$2147483648\r\n", b"-ERR Protocol error: invalid bulk length\r\n",
         "invalid_bulk_length"),
        (b"*2\r\n$3\r\nGET\r\n" + b"*1\r\n" * 100,
         b"-ERR Protocol error: expected '$', got '*'\r\n", "expected_bulk"),
    ],
)  # fmt: skip
async def test_lost_framing_is_answered_counted_and_closed(
    resp_node: RespNode, data: bytes, reply: bytes, kind: str
) -> None:
    def client() -> tuple[list[bytes], bool]:
        conn = RawConn(resp_node.resp_port)
        try:
            conn.send(command("SET", "a", "1") + data + command("GET", "a"))
            replies = [conn.reply(), conn.reply()]
            return replies, conn.closed_by_server()
        finally:
            conn.close()

    replies, closed = await in_thread(client)
    assert replies == [b"+OK\r\n", reply]
    assert closed
    assert resp_node.metric("meshcache_resp_errors_total", kind=f"protocol_{kind}") == 1
    assert resp_node.metric("meshcache_resp_connections_closed_total", reason="protocol_error") == 1
    assert resp_node.metric("meshcache_resp_commands_total", command="set") == 1
    assert resp_node.metric("meshcache_resp_commands_total", command="get") == 0


async def test_refusals_keep_the_connection_and_are_counted(resp_node: RespNode) -> None:
    def client() -> list[bytes]:
        conn = RawConn(resp_node.resp_port)
        try:
            out = [
                conn.call("NOSUCH", "x"),
                conn.call("GET"),
                conn.call("INCRBY", "n", "abc"),
                conn.call("SET", "h", "v"),
                conn.call("HSET", "h", "f", "v"),
                conn.call("GET", "k" * 20_000),
                conn.call("PING"),
            ]
            return out
        finally:
            conn.close()

    replies = await in_thread(client)
    assert replies[0] == b"-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n"
    assert replies[1] == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert replies[2] == b"-ERR value is not an integer or out of range\r\n"
    assert replies[4] == b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    assert replies[5].startswith(b"-ERR GET: key is 20000 bytes, the limit is 16384")
    assert replies[6] == b"+PONG\r\n"

    def errors(kind: str) -> float:
        return resp_node.metric("meshcache_resp_errors_total", kind=kind)

    assert errors("unknown_command") == 1
    assert errors("wrong_arity") == 1
    assert errors("not_integer") == 1
    assert errors("too_large") == 1
    assert errors("wrongtype") == 0  # the data refused it, not bad input: an op error
    assert resp_node.metric("meshcache_errors_total", code="WRONGTYPE") == 1
    # Commands that ran, by name: the unknown one and the wrong arity did not run.
    assert resp_node.metric("meshcache_resp_commands_total", command="get") == 1
    assert resp_node.metric("meshcache_resp_commands_total", command="ping") == 1
    assert resp_node.metric("meshcache_resp_commands_total", command="nosuch") == 0
    assert resp_node.metric("meshcache_resp_connections_opened_total") == 1


async def test_config_resetstat_restarts_info_stats_not_metrics(resp_node: RespNode) -> None:
    def stats(conn: RawConn) -> dict[str, int]:
        text = conn.call("INFO", "stats").split(b"\r\n", 1)[1].decode()
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {k: int(v) for k, v in pairs}

    def client() -> tuple[dict[str, int], dict[str, int]]:
        conn = RawConn(resp_node.resp_port)
        try:
            for _ in range(5):
                conn.call("SET", "k", "v")
            conn.call("NOSUCH")
            before = stats(conn)
            assert conn.call("CONFIG", "RESETSTAT") == b"+OK\r\n"
            conn.call("GET", "k")
            return before, stats(conn)
        finally:
            conn.close()

    before, after = await in_thread(client)
    assert before["total_commands_processed"] >= 5 and before["total_error_replies"] == 1
    assert after == {"total_commands_processed": 1, "total_error_replies": 0}
    assert resp_node.metric("meshcache_requests_total", op="SET") == 5  # metrics go on


async def test_quit_answers_then_closes(resp_node: RespNode) -> None:
    def client() -> tuple[list[bytes], bool]:
        conn = RawConn(resp_node.resp_port)
        try:
            conn.send(command("SET", "q", "1") + command("QUIT") + command("GET", "q"))
            return [conn.reply(), conn.reply()], conn.closed_by_server()
        finally:
            conn.close()

    replies, closed = await in_thread(client)
    assert replies == [b"+OK\r\n", b"+OK\r\n"]
    assert closed


async def test_values_over_the_limits(tmp_path: Path) -> None:
    settings = node_settings(tmp_path, max_value_bytes=1000, max_frame_bytes=100_000)
    async with trio.open_nursery() as nursery:
        node = await start_resp_node(nursery, settings)

        def client() -> tuple[bytes, bytes, bytes, bool]:
            conn = RawConn(node.resp_port)
            try:
                too_big = conn.call("SET", "k", b"v" * 1001)
                still_open = conn.call("PING")
                conn.send(command("SET", "k", b"v" * 100_001))
                lost = conn.reply()
                return too_big, still_open, lost, conn.closed_by_server()
            finally:
                conn.close()

        too_big, still_open, lost, closed = await in_thread(client)
        assert too_big.startswith(b"-ERR SET: value is 1001 bytes, the limit is 1000")
        assert still_open == b"+PONG\r\n"
        assert lost == b"-ERR Protocol error: invalid bulk length\r\n"
        assert closed
        nursery.cancel_scope.cancel()


async def test_connections_over_the_limit_are_refused(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        node = await start_resp_node(nursery, node_settings(tmp_path, max_connections=2))

        def client() -> tuple[bytes, bool, bytes]:
            first, second = RawConn(node.resp_port), RawConn(node.resp_port)
            third = RawConn(node.resp_port)
            try:
                first.call("PING"), second.call("PING")
                refused = third.reply()
                closed = third.closed_by_server()
                return refused, closed, first.call("PING")
            finally:
                for conn in (first, second, third):
                    conn.close()

        refused, closed, ping = await in_thread(client)
        assert refused == b"-ERR max number of clients reached\r\n"
        assert closed and ping == b"+PONG\r\n"
        assert node.metric("meshcache_resp_errors_total", kind="too_many_connections") == 1
        nursery.cancel_scope.cancel()


async def test_idle_connections_are_closed(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        node = await start_resp_node(nursery, node_settings(tmp_path, idle_timeout=0.2))

        def client() -> bool:
            conn = RawConn(node.resp_port)
            try:
                conn.call("PING")
                return conn.closed_by_server()
            finally:
                conn.close()

        assert await in_thread(client)
        assert node.port.stats["closed_idle_timeout"] == 1
        nursery.cancel_scope.cancel()


async def test_a_client_that_does_not_read_is_paused_not_buffered(resp_node: RespNode) -> None:
    """Replies pile up in the kernel, then the port stops reading that client; another client
    is served meanwhile, and the first gets every reply once it reads."""
    value = b"x" * 100_000
    n = 400  # 40 MB of replies: far more than the socket buffers hold

    def client() -> tuple[bytes, int]:
        slow = RawConn(resp_node.resp_port, timeout=30)
        other = RawConn(resp_node.resp_port)
        try:
            slow.call("SET", "big", value)
            slow.send(command("GET", "big") * n)
            ping = other.call("PING")
            got = sum(1 for _ in range(n) if slow.reply().endswith(value + b"\r\n"))
            return ping, got
        finally:
            slow.close()
            other.close()

    ping, got = await in_thread(client)
    assert ping == b"+PONG\r\n" and got == n


async def test_resp3_after_hello(resp_node: RespNode) -> None:
    def client() -> list[bytes]:
        conn = RawConn(resp_node.resp_port)
        try:
            conn.call("HSET", "h", "f", "v")
            conn.call("ZADD", "z", "1.5", "m")
            hello = conn.call("HELLO", "3")
            return [hello, conn.call("HGETALL", "h"), conn.call("ZSCORE", "z", "m"),
                    conn.call("GET", "nope"), conn.call("HELLO", "2"), conn.call("GET", "nope"),
                    conn.call("HELLO", "4")]  # fmt: skip
        finally:
            conn.close()

    hello, hgetall, zscore, null3, _, null2, noproto = await in_thread(client)
    assert hello.startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n")
    assert b"$5\r\nproto\r\n:3\r\n" in hello
    assert hgetall == b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    assert zscore == b",1.5\r\n"
    assert null3 == b"_\r\n" and null2 == b"$-1\r\n"
    assert noproto == b"-NOPROTO unsupported protocol version\r\n"


async def test_select_maps_databases_and_names_to_namespaces(resp_node: RespNode) -> None:
    def client() -> list[bytes]:
        conn = RawConn(resp_node.resp_port)
        try:
            return [
                conn.call("SET", "k", "in-default"),
                conn.call("SELECT", "1"),
                conn.call("GET", "k"),
                conn.call("SET", "k", "in-db1"),
                conn.call("SELECT", "sessions"),
                conn.call("NAMESPACE"),
                conn.call("SELECT", "0"),
                conn.call("GET", "k"),
                conn.call("SELECT", "2"),
                conn.call("SELECT", "nosuch"),
                conn.call("NAMESPACE", "db1"),
                conn.call("GET", "k"),
            ]
        finally:
            conn.close()

    replies = await in_thread(client)
    assert replies == [
        b"+OK\r\n", b"+OK\r\n", b"$-1\r\n", b"+OK\r\n", b"+OK\r\n", b"$8\r\nsessions\r\n",
        b"+OK\r\n", b"$10\r\nin-default\r\n", b"-ERR DB index is out of range\r\n",
        b"-ERR no such namespace 'nosuch'\r\n", b"+OK\r\n", b"$6\r\nin-db1\r\n",
    ]  # fmt: skip
    assert resp_node.node.parts is not None
    store = resp_node.node.parts.store
    assert store.execute("db1", "GET", [b"k"]) == b"in-db1"


async def test_info_reports_what_clients_read(resp_node: RespNode) -> None:
    def client() -> bytes:
        conn = RawConn(resp_node.resp_port)
        try:
            conn.call("SET", "a", "1")
            return conn.call("INFO")
        finally:
            conn.close()

    info = await in_thread(client)
    assert b"redis_version:7.2.0\r\n" in info
    assert b"cluster_enabled:0\r\n" in info
    assert b"db0:keys=1,expires=0,avg_ttl=0\r\n" in info


async def test_garbage_on_one_connection_never_harms_another(resp_node: RespNode) -> None:
    """Random bytes, cut at random places, on many connections: each is answered or closed,
    the node keeps serving a well-behaved client, and its data is intact."""
    rng = random.Random(1234)
    alphabet = [b"*", b"$", b"\r\n", b"1", b"3", b"-", b"9999999999", b"GET", b"SET", b"k", b" ",
                b'"', b"\x00", b"PING\r\n", b"*1\r\n$4\r\nPING\r\n", b"HELLO 3\r\n"]  # fmt: skip

    def client() -> tuple[int, bytes]:
        good = RawConn(resp_node.resp_port)
        try:
            good.call("SET", "keep", "safe")
            served = 0
            for _ in range(200):
                junk = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
                bad = RawConn(resp_node.resp_port, timeout=0.2)
                try:
                    # Sent in three pieces; the node may close it before the last (lost framing).
                    first, second = sorted(rng.sample(range(len(junk) + 1), 2))
                    with contextlib.suppress(OSError):
                        for piece in (junk[:first], junk[first:second], junk[second:]):
                            bad.send(piece)
                        bad.sock.shutdown(socket.SHUT_WR)
                    bad.closed_by_server()  # reads whatever was answered, until the close
                finally:
                    bad.close()
                if good.call("PING") == b"+PONG\r\n":
                    served += 1
            return served, good.call("GET", "keep")
        finally:
            good.close()

    served, kept = await in_thread(client)
    assert served == 200
    assert kept == b"$4\r\nsafe\r\n"


async def test_a_bulk_load_takes_turns_with_other_clients(resp_node: RespNode) -> None:
    """20,000 pipelined SETs on one connection are answered in order, a few turns at a time,
    while another client's unpipelined commands keep being answered."""
    n = 20_000

    def loader() -> bool:
        conn = RawConn(resp_node.resp_port, timeout=60)
        try:
            conn.send(b"".join(command("SET", f"bulk:{i}", "x" * 50) for i in range(n)))
            conn.send(command("GET", f"bulk:{n - 1}"))
            replies = [conn.reply() for _ in range(n + 1)]
            return (
                replies[:-1] == [b"+OK\r\n"] * n and replies[-1] == b"$50\r\n" + b"x" * 50 + b"\r\n"
            )
        finally:
            conn.close()

    def pinger() -> int:
        conn = RawConn(resp_node.resp_port)
        try:
            return sum(conn.call("PING") == b"+PONG\r\n" for _ in range(200))
        finally:
            conn.close()

    results: dict[str, object] = {}

    async def run(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        results[name] = await in_thread(fn)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "loader", loader)
        nursery.start_soon(run, "pinger", pinger)
    assert results == {"loader": True, "pinger": 200}
    assert resp_node.counters.requests["SET"] == n


async def test_client_list_shows_every_open_connection(resp_node: RespNode) -> None:
    def run() -> None:
        conns = [RawConn(resp_node.resp_port) for _ in range(3)]
        try:
            ids = [int(c.call("CLIENT", "ID")[1:-2]) for c in conns]
            listed = conns[0].call("CLIENT", "LIST")
            assert [f"id={i} ".encode() in listed for i in ids] == [True] * 3
            some = conns[0].call("CLIENT", "LIST", "ID", ids[1], ids[2], 999999)
            assert some.count(b"id=") == 2 and f"id={ids[0]} ".encode() not in some
            conns[2].close()
            deadline = time.monotonic() + 5
            while f"id={ids[2]} ".encode() in conns[0].call("CLIENT", "LIST"):
                assert time.monotonic() < deadline, "a closed connection is still listed"
                time.sleep(0.01)  # poll interval while the node sees the close
        finally:
            for c in conns:
                c.close()

    await in_thread(run)
