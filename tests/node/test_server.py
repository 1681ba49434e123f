"""A real node on real sockets: protocol, pipelining, limits, bad input, admin port, expiry."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from meshcache.node.node import READY_FILE, Node, NodeInfo
from meshcache.settings import LimitSettings, NodeSettings
from meshcache.wire import FrameReader, Response, decode_response, encode_request

_OPEN: list[trio.SocketStream] = []


@pytest.fixture
async def connections() -> AsyncIterator[None]:
    """Closes every RawConn a test opened. Requested by name: pytest-trio runs an async
    fixture only for the tests that name it (an autouse one is never set up)."""
    yield
    while _OPEN:
        await _OPEN.pop().aclose()


class RawConn:
    """A minimal async protocol client, so tests see exactly what the node sends."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = FrameReader()
        self.next_id = 1

    @classmethod
    async def open(cls, address: tuple[str, int]) -> RawConn:
        conn = cls(await trio.open_tcp_stream(*address))
        _OPEN.append(conn.stream)
        return conn

    async def send(self, op: str, *args: Any, ns: str = "default") -> int:
        rid = self.next_id
        self.next_id += 1
        await self.stream.send_all(encode_request(rid, op, ns, list(args)))
        return rid

    async def recv(self) -> Response | None:
        """The next response, or None when the node closed the connection."""
        with trio.fail_after(5):
            while (body := self.reader.next_body()) is None:
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                self.reader.feed(data)
        return decode_response(body)

    async def call(self, op: str, *args: Any, ns: str = "default") -> Any:
        await self.send(op, *args, ns=ns)
        resp = await self.recv()
        assert resp is not None
        return resp.result()


def settings_for(tmp_path: Path, **limits: Any) -> NodeSettings:
    return NodeSettings(
        port=0, admin_port=0, data_dir=tmp_path, limits=replace(LimitSettings(), **limits)
    )


@pytest.fixture
async def node(tmp_path: Path, connections: None) -> AsyncIterator[tuple[Node, NodeInfo]]:
    async with trio.open_nursery() as nursery:
        n = Node(settings_for(tmp_path, max_connections=50, max_frame_bytes=64 * 1024))
        info = await nursery.start(n.serve)
        yield n, info
        nursery.cancel_scope.cancel()


async def http_get(address: tuple[str, int], path: str) -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.trio
async def test_set_get_and_ready_file(node: tuple[Node, NodeInfo], tmp_path: Path) -> None:
    _, info = node
    conn = await RawConn.open(info.data_address)
    assert await conn.call("PING") == "PONG"
    assert await conn.call("SET", "k", b"v") is True
    assert await conn.call("GET", "k") == b"v"
    assert await conn.call("INCRBY", "n", 5) == 5
    ready = json.loads((tmp_path / READY_FILE).read_text())
    assert ready["data"] == f"{info.data_address[0]}:{info.data_address[1]}"


@pytest.mark.trio
async def test_pipelined_requests_are_answered_in_order(node: tuple[Node, NodeInfo]) -> None:
    _, info = node
    conn = await RawConn.open(info.data_address)
    frames = b"".join(
        encode_request(
            i, "SET" if i % 2 else "GET", "default", [f"k{i // 2}", f"v{i}"][: 1 + i % 2]
        )
        for i in range(1, 401)
    )
    await conn.stream.send_all(frames)
    ids = []
    for _ in range(400):
        resp = await conn.recv()
        assert resp is not None and resp.ok
        ids.append(resp.id)
    assert ids == list(range(1, 401))


@pytest.mark.trio
async def test_many_connections_get_their_own_answers(node: tuple[Node, NodeInfo]) -> None:
    # Requests sent on every connection before any answer is read, so one reactor round reads
    # many of them and writes the answers together; every third client hangs up right after
    # sending, so some connections close with an answer still to be written.
    _, info = node
    conns = [await RawConn.open(info.data_address) for _ in range(45)]
    for rounds in range(3):
        for i, conn in enumerate(conns):
            await conn.send("SET", f"key{i}", f"value{i}-{rounds}")
        for conn in conns:
            assert (await conn.recv()) is not None
        quitters = conns[::3]
        for i, conn in enumerate(conns):
            await conn.send("GET", f"key{i}")
        for conn in quitters:
            _OPEN.remove(conn.stream)
            await conn.stream.aclose()
        for i, conn in enumerate(conns):
            if conn not in quitters:
                resp = await conn.recv()
                assert resp is not None and resp.result() == f"value{i}-{rounds}".encode()
        conns = [c for c in conns if c not in quitters]
        # New connections may reuse the descriptors of the ones that just closed.
        conns += [await RawConn.open(info.data_address) for _ in range(len(quitters))]
    assert await conns[-1].call("PING") == "PONG"


@pytest.mark.trio
async def test_bad_input_harms_no_one(node: tuple[Node, NodeInfo]) -> None:
    n, info = node
    good = await RawConn.open(info.data_address)
    await good.call("SET", "keep", b"safe")
    bad = await RawConn.open(info.data_address)
    # Not msgpack: answered, connection kept.
    await bad.stream.send_all(struct.pack(">I", 2) + b"\xc1\xc1")
    resp = await bad.recv()
    assert resp is not None and resp.value[0] == "BAD_REQUEST"
    assert await bad.call("PING") == "PONG"
    # Unknown op and wrong types: answered, connection kept.
    await bad.send("FROB", "x")
    resp = await bad.recv()
    assert resp is not None and resp.value[0] == "UNKNOWN_OP"
    await bad.send("LPUSH", "keep", "x")
    resp = await bad.recv()
    assert resp is not None and resp.value[0] == "WRONGTYPE"
    # A frame over the limit: TOO_LARGE (id 0: the body holds none), then the end of the
    # stream; the node reads and drops the rest of the body, then closes the connection.
    await bad.stream.send_all(struct.pack(">I", 10**7) + b"x" * 100)
    resp = await bad.recv()
    assert resp is not None and resp.value[0] == "TOO_LARGE" and resp.id == 0
    assert await bad.recv() is None
    await bad.stream.send_all(b"x" * (10**7 - 100))
    with trio.fail_after(10):
        while not n.counters.connections_closed["frame_too_large"]:
            await trio.sleep(0.01)  # poll interval; the deadline bounds the wait
    # The other client and the stored value are untouched.
    assert await good.call("GET", "keep") == b"safe"
    status, body = await http_get(info.admin_address, "/metrics")
    assert status == 200
    text = body.decode()
    for kind in ("malformed_msgpack", "unknown_op", "frame_too_large"):
        assert f'meshcache_bad_input_total{{kind="{kind}"}} 1.0' in text
    assert 'meshcache_errors_total{code="WRONGTYPE"} 1.0' in text
    assert n.counters.connections_closed["frame_too_large"] == 1


@pytest.mark.trio
async def test_connection_limit(tmp_path: Path, connections: None) -> None:
    async with trio.open_nursery() as nursery:
        node = Node(settings_for(tmp_path, max_connections=2))
        info = await nursery.start(node.serve)
        first = await RawConn.open(info.data_address)
        second = await RawConn.open(info.data_address)
        assert await first.call("PING") == "PONG" and await second.call("PING") == "PONG"
        third = await RawConn.open(info.data_address)
        resp = await third.recv()
        assert resp is not None and resp.value[0] == "TOO_MANY_CONNECTIONS"
        assert await third.recv() is None
        # The refused connection was accepted and closed: opened less closed is still open.
        counters = node.counters
        closed = sum(counters.connections_closed.values())
        assert counters.connections_opened - closed == counters.connections_current == 2
        await first.stream.aclose()
        # A slot frees up once the node has seen the close.
        with trio.fail_after(5):
            while True:
                fourth = await RawConn.open(info.data_address)
                await fourth.send("PING")
                resp = await fourth.recv()
                if resp is not None and resp.ok:
                    break
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_idle_connections_are_closed(tmp_path: Path, connections: None) -> None:
    async with trio.open_nursery() as nursery:
        node = Node(settings_for(tmp_path, idle_timeout=0.2))
        info = await nursery.start(node.serve)
        conn = await RawConn.open(info.data_address)
        assert await conn.call("PING") == "PONG"
        assert await conn.recv() is None  # closed by the reaper within recv's deadline
        assert node.counters.connections_closed["idle_timeout"] == 1
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_health_and_unknown_paths(node: tuple[Node, NodeInfo]) -> None:
    n, info = node
    status, body = await http_get(info.admin_address, "/health")
    assert status == 200 and json.loads(body)["node_id"] == n.node_id
    status, _ = await http_get(info.admin_address, "/nope")
    assert status == 404


@pytest.mark.trio
async def test_a_reset_on_the_admin_port_harms_nothing(node: tuple[Node, NodeInfo]) -> None:
    """A TCP check or a port scan that resets its connection, before or in the middle of a
    request head, leaves the node serving."""
    n, info = node
    for sent in (b"", b"GET /metr"):
        stream = await trio.open_tcp_stream(*info.admin_address)
        if sent:
            await stream.send_all(sent)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()  # a reset: SO_LINGER 0
    status, body = await http_get(info.admin_address, "/health")
    assert status == 200 and json.loads(body)["node_id"] == n.node_id


@pytest.mark.trio
async def test_keys_expire_without_being_read(node: tuple[Node, NodeInfo]) -> None:
    _, info = node
    conn = await RawConn.open(info.data_address)
    for i in range(50):
        await conn.call("SET", f"t{i}", b"x", {"ttl": 0.1})
    await conn.call("SET", "forever", b"x")
    with trio.fail_after(5):
        while (await conn.call("INFO"))["namespaces"]["default"]["items"] != 1:
            await trio.sleep(0.05)
    assert await conn.call("DBSIZE") == 1


@pytest.mark.trio
async def test_info_describes_the_node(node: tuple[Node, NodeInfo]) -> None:
    n, info = node
    conn = await RawConn.open(info.data_address)
    await conn.call("SET", "a", b"1")
    described = await conn.call("INFO")
    assert described["node_id"] == n.node_id
    assert described["namespaces"]["default"]["items"] == 1
    assert described["connections"] >= 1
