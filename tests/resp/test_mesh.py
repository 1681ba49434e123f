"""Any node serves any key: RESP ports of a two-node mesh (real node processes), with keys
owned by each node, read and written through the other."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from meshcache.testing.mesh import Direct, ring_of
from meshcache.wire.address import parse_address
from tests.mesh.helpers import wait_for
from tests.resp.helpers import RawConn, command
from tools.resp_bench import RespNode, resp_node

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RespNode]]:
    tmp = tmp_path_factory.mktemp("resp-mesh")
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(
            resp_node("--bootstrap", "--profile", "local", data_dir=tmp / "n0", log_level="info")
        )
        second = stack.enter_context(
            resp_node("--join", first.data, "--profile", "local", data_dir=tmp / "n1",
                      log_level="info")
        )  # fmt: skip
        nodes = [first, second]

        def both_active() -> bool:
            rings = [ring(n) for n in nodes]
            return len({r["version"] for r in rings}) == 1 and all(
                len([m for m in r["members"] if m["state"] == "active"]) == 2 for r in rings
            )

        wait_for(both_active, 60, "a ring of two active members on both nodes")
        yield nodes


def ring(node: RespNode) -> dict:  # type: ignore[type-arg]
    with Direct(parse_address(node.data)) as direct:
        answer: dict = direct.call("RING", [], "default")  # type: ignore[type-arg]
        return answer


def keys_owned_by(nodes: list[RespNode], owner: int, n: int) -> list[bytes]:
    current = ring_of(ring(nodes[0]))
    out: list[bytes] = []
    i = 0
    while len(out) < n:
        key = b"key-%d" % i
        if current.owners(key, 1)[0].node_id == nodes[owner].data:
            out.append(key)
        i += 1
    return out


def test_writes_through_one_node_are_read_through_the_other(mesh: list[RespNode]) -> None:
    a = redis.Redis(port=mesh[0].resp_port, protocol=3)
    b = redis.Redis(port=mesh[1].resp_port)
    try:
        for owner in (0, 1):
            keys = keys_owned_by(mesh, owner, 20)
            for key in keys:
                assert a.set(key, b"v-" + key)
            assert b.mget(keys) == [b"v-" + k for k in keys]
            assert a.incr(keys[0] + b":n") == 1
            assert b.incr(keys[0] + b":n") == 2
            # Composed commands that are safe anywhere run through a non-owner too.
            assert b.append(keys[1], b"!") == len(b"v-" + keys[1]) + 1
            assert a.get(keys[1]).endswith(b"!")
            assert b.delete(*keys) == 20
    finally:
        a.close()
        b.close()


def test_a_pipeline_through_a_non_owner_reads_its_own_writes(mesh: list[RespNode]) -> None:
    foreign = keys_owned_by(mesh, 1, 50)
    r = redis.Redis(port=mesh[0].resp_port)
    try:
        pipe = r.pipeline(transaction=False)
        for key in foreign:
            pipe.set(key, key)
            pipe.get(key)
            pipe.delete(key)
            pipe.get(key)
        results = pipe.execute()
        assert results == [x for key in foreign for x in (True, key, 1, None)]
    finally:
        r.close()


def test_one_step_commands_run_through_any_node(mesh: list[RespNode]) -> None:
    r = redis.Redis(port=mesh[0].resp_port, protocol=3)
    try:
        for owner in (0, 1):
            key = keys_owned_by(mesh, owner, 1)[0]
            r.set(key, "a")
            assert r.append(key, "b") == 2
            assert r.strlen(key) == 2 and r.type(key) == b"string"
            assert r.getdel(key) == b"ab" and r.exists(key) == 0
            assert r.incrbyfloat(key, 0.5) == 0.5
            assert r.expire(key, 100, nx=True) and not r.expire(key, 50, gt=True)
            r.delete(key)
            r.rpush(key, "x", "y", "z")
            assert r.lpop(key, 2) == [b"x", b"y"] and r.rpop(key, 5) == [b"z"]
            r.zadd(key, {"m": 1, "n": 2})
            assert r.zpopmax(key) == [b"n", 2.0]  # RESP3 without a count: flat, as Redis
            assert r.zpopmin(key, 3) == [[b"m", 1.0]]
            r.sadd(key, "only")
            assert r.spop(key) == b"only" and r.type(key) == b"none"
    finally:
        r.close()


def test_dbsize_and_info_on_each_node(mesh: list[RespNode], tmp_path: Path) -> None:
    r0, r1 = redis.Redis(port=mesh[0].resp_port), redis.Redis(port=mesh[1].resp_port)
    try:
        r0.flushdb()
        keys = keys_owned_by(mesh, 0, 5) + keys_owned_by(mesh, 1, 5)
        r0.mset({k: b"x" for k in keys})
        # Each node counts the keys it holds; with one replica per key the two add up.
        wait_for(lambda: r0.dbsize() + r1.dbsize() >= 10, 10, "both nodes holding their keys")
        assert r0.info("cluster")["cluster_enabled"] == 0
    finally:
        r0.close()
        r1.close()


def test_scan_and_keys_walk_every_member(mesh: list[RespNode]) -> None:
    """Keys owned by either node, more than one store table's worth on each (both hold every
    key as its replicas): a walk through either node gives each key, KEYS gives them all, and
    MATCH and TYPE filter them."""
    a = redis.Redis(port=mesh[0].resp_port)
    b = redis.Redis(port=mesh[1].resp_port, protocol=3)
    try:
        a.flushdb()
        keys = {b"scan:%d" % i for i in range(20_000)}
        pipe = a.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, b"v")
        pipe.execute()
        a.rpush(b"scan-list", b"x")
        a.sadd(b"scan-set", b"m")
        for client in (a, b):
            for count in (10, 5_000):
                walked = list(client.scan_iter(count=count))
                assert set(walked) == keys | {b"scan-list", b"scan-set"}
                assert len(walked) == len(set(walked))
            assert set(client.keys()) == keys | {b"scan-list", b"scan-set"}
            assert set(client.keys(b"scan:1999?")) == {b"scan:1999%d" % i for i in range(10)}
            assert set(client.scan_iter(match=b"scan-*")) == {b"scan-list", b"scan-set"}
            assert set(client.scan_iter(_type="LIST")) == {b"scan-list"}
            assert list(client.scan_iter(_type="stream")) == []
            assert client.dbsize() == len(keys) + 2  # each key once, though both hold it
        cursor, page = b.scan(0, count=10)
        assert cursor != 0 and page
    finally:
        a.flushdb()
        a.close()
        b.close()


def _half_closed_replies(port: int, data: bytes) -> bytes:
    """Send ``data``, shut the write side (as ``nc -N`` does) and read to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_a_client_that_half_closes_gets_every_reply(mesh: list[RespNode]) -> None:
    """Commands forwarded to the owner are answered after the client shut its write side;
    the connection closes after the last reply, and a command left incomplete is dropped."""
    foreign = keys_owned_by(mesh, 1, 1)[0]
    port = mesh[0].resp_port
    assert _half_closed_replies(port, command("SET", foreign, "v")) == b"+OK\r\n"
    for _ in range(5):
        assert _half_closed_replies(port, b"GET " + foreign + b"\r\n") == b"$1\r\nv\r\n"
    pipeline = command("GET", foreign) + command("DEL", foreign) + command("KEYS", "nomatch*")
    assert _half_closed_replies(port, pipeline + b"*2\r\n$3\r\nGET") == (b"$1\r\nv\r\n:1\r\n*0\r\n")


def test_a_forwarded_reply_keeps_the_protocol_its_command_ran_under(
    mesh: list[RespNode],
) -> None:
    """HELLO 3, then commands on a key another node owns, then HELLO 2 before their replies
    are in: those replies are RESP3, as the connection spoke when they ran."""
    foreign = keys_owned_by(mesh, 1, 1)[0]
    conn = RawConn(mesh[0].resp_port)
    try:
        conn.call("DEL", foreign, foreign + b"h", foreign + b"s")
        conn.call("HSET", foreign + b"h", "f", "v")
        conn.call("SADD", foreign + b"s", "m")
        lines = [
            ("HELLO", "3"),
            ("ZADD", foreign, "1.5", "a", "2", "b"),
            ("ZRANGE", foreign, "0", "-1", "WITHSCORES"),
            ("ZRANGEBYSCORE", foreign, "-inf", "+inf", "WITHSCORES"),
            ("ZPOPMIN", foreign, "1"),
            ("ZPOPMAX", foreign),
            ("HKEYS", foreign + b"h"),
            ("HVALS", foreign + b"h"),
            ("SMISMEMBER", foreign + b"s", "m", "x"),
            ("HELLO", "2"),
        ]
        conn.send(b"".join(command(*line) for line in lines))
        replies = [conn.reply() for _ in lines]
    finally:
        conn.close()
    assert replies[2] == b"*2\r\n*2\r\n$1\r\na\r\n,1.5\r\n*2\r\n$1\r\nb\r\n,2\r\n"
    assert replies[3] == replies[2]
    assert replies[4] == b"*1\r\n*2\r\n$1\r\na\r\n,1.5\r\n"
    assert replies[5] == b"*2\r\n$1\r\nb\r\n,2\r\n"
    assert replies[6] == b"*1\r\n$1\r\nf\r\n"
    assert replies[7] == b"*1\r\n$1\r\nv\r\n"
    assert replies[8] == b"*2\r\n:1\r\n:0\r\n"
