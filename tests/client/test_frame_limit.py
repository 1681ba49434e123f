"""Frames over the limit (16 MiB by default), against a real node process.

The node answers a frame over its ``max_frame_bytes`` with ``TOO_LARGE`` carrying the request's
id, shuts its side, reads and drops the rest of the body, then closes: the peer reads the answer
and then the end of the stream, never a reset. Every client refuses to send a frame over its own
``max_frame`` and stays usable.
"""

from __future__ import annotations

import selectors
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import meshcache
from meshcache.testing.nodes import NodeProcess
from meshcache.wire import DEFAULT_MAX_FRAME, FrameReader, Response, decode_response
from meshcache.wire import encode_request as encode
from tests.client.cluster import FLAVORS, run_flavor, run_pipeline

BIG = 17 * 1024 * 1024  # over the node's default limit
LIMIT_TEXT = f"over the {DEFAULT_MAX_FRAME}-byte limit"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with NodeProcess(tmp_path_factory.mktemp("node"), "--log-level", "warning") as process:
        yield process


def address(node: NodeProcess) -> tuple[str, int]:
    return node.data_address.host, node.data_address.port


def big_set(rid: int, key: bytes = b"big") -> bytes:
    return encode(rid, "SET", "default", [key, b"x" * BIG])


def answers_until_end(sock: socket.socket) -> list[Response]:
    """Every answer on ``sock`` up to the end of the stream (a reset raises)."""
    reader, out = FrameReader(), []
    while data := sock.recv(1 << 16):
        reader.feed(data)
        while (body := reader.next_body()) is not None:
            out.append(decode_response(body))
    return out


def metric(node: NodeProcess, line_start: str) -> float:
    admin = node.admin_address
    with urllib.request.urlopen(f"http://{admin.host}:{admin.port}/metrics", timeout=10) as r:
        text = r.read().decode()
    values = [float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(line_start)]
    return values[0] if values else 0.0


def assert_too_large(answer: Response, rid: int) -> None:
    assert (answer.id, answer.ok) == (rid, False)
    code, message = answer.value
    assert code == "TOO_LARGE" and LIMIT_TEXT in message


# --- the node ----------------------------------------------------------------------------------


def test_a_frame_over_the_limit_is_answered_with_its_id_then_the_stream_ends(
    node: NodeProcess,
) -> None:
    bad_input = 'meshcache_bad_input_total{kind="frame_too_large"}'
    closed = 'meshcache_connections_closed_total{reason="frame_too_large"}'
    before = metric(node, bad_input), metric(node, closed)
    with socket.create_connection(address(node), timeout=30) as sock:
        # A client that sends everything, then reads: the node must read the whole body
        # for this send to complete.
        sock.sendall(encode(6, "PING", "default", []) + big_set(7))
        answers = answers_until_end(sock)
    assert len(answers) == 2 and (answers[0].id, answers[0].value) == (6, "PONG")
    assert_too_large(answers[1], 7)
    # Counted once as bad input and, once the node has dropped the body, as a connection
    # closed for it.
    assert metric(node, bad_input) == before[0] + 1
    deadline = time.monotonic() + 10
    while metric(node, closed) < before[1] + 1:
        assert time.monotonic() < deadline, "the connection was not closed"
        time.sleep(0.02)  # poll interval; the deadline bounds the wait
    assert metric(node, closed) == before[1] + 1


@pytest.mark.parametrize("attempt", range(3))
def test_a_client_that_reads_while_it_sends_gets_the_answer_every_time(
    node: NodeProcess, attempt: int
) -> None:
    # As an event-loop client (Node.js) does: write what the socket takes, read what comes.
    frame = memoryview(big_set(41 + attempt))
    received = bytearray()
    with (
        socket.create_connection(address(node), timeout=30) as sock,
        selectors.DefaultSelector() as sel,
    ):
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        ended = False
        while not ended or frame:
            for _, events in sel.select(timeout=30):
                if events & selectors.EVENT_READ and not ended:
                    data = sock.recv(1 << 16)  # a reset would raise here
                    received += data
                    ended = not data
                if events & selectors.EVENT_WRITE and frame:
                    frame = frame[sock.send(frame[: 1 << 20]) :]
            if frame.nbytes == 0 and not ended:
                sel.modify(sock, selectors.EVENT_READ)
    reader = FrameReader()
    reader.feed(received)
    body = reader.next_body()
    assert body is not None and reader.next_body() is None
    assert_too_large(decode_response(body), 41 + attempt)


def test_an_unreadable_id_is_answered_with_id_0(node: NodeProcess) -> None:
    body = b"\xc1" * (DEFAULT_MAX_FRAME + 1)  # not msgpack: no id to read
    with socket.create_connection(address(node), timeout=30) as sock:
        sock.sendall(len(body).to_bytes(4, "big") + body)
        answers = answers_until_end(sock)
    assert len(answers) == 1
    assert_too_large(answers[0], 0)


def test_the_node_serves_others_while_it_drops_a_body(node: NodeProcess) -> None:
    frame = big_set(9)
    with (
        socket.create_connection(address(node), timeout=30) as sock,
        meshcache.Client(node.data, timeout=10) as other,
    ):
        sock.sendall(frame[: 1 << 20])  # the answer comes at once; the node reads on
        reader = FrameReader()
        while (body := reader.next_body()) is None:
            data = sock.recv(1 << 16)
            assert data
            reader.feed(data)
        assert_too_large(decode_response(body), 9)
        assert sock.recv(1) == b""  # then the end of the stream
        assert other.set("meanwhile", "v") is True and other.get("meanwhile") == b"v"
        sock.sendall(frame[1 << 20 :])
        assert answers_until_end(sock) == []
        assert other.get("big") is None


# --- the clients -------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_client_refuses_a_frame_over_its_limit_before_sending_it(
    node: NodeProcess, flavor: str
) -> None:
    async def body(c: Any) -> None:
        assert await c.set("small", "1") is True
        pooled = [conn for conns in c._idle.values() for conn in conns]
        with pytest.raises(meshcache.TooLargeError, match="it was not sent") as info:
            await c.set("huge", b"x" * BIG)
        assert info.value.code == "TOO_LARGE"
        # One frame of a pipeline over the limit: nothing of the pipeline is sent.
        with pytest.raises(meshcache.TooLargeError):
            await run_pipeline(c, lambda p: p.set("first", "1").set("huge", b"x" * BIG))
        # The same connection is still pooled and serves the next calls.
        assert [conn for conns in c._idle.values() for conn in conns] == pooled
        assert await c.get("first") is None and await c.get("huge") is None
        assert await c.get("small") == b"1"

    run_flavor(flavor, node.data, body, max_connections=1, smart=False)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_client_with_a_larger_limit_gets_the_nodes_answer(node: NodeProcess, flavor: str) -> None:
    async def body(c: Any) -> None:
        with pytest.raises(meshcache.TooLargeError, match=LIMIT_TEXT):
            await c.set("huge", b"x" * BIG)
        assert await c.set("after", "ok") is True and await c.get("after") == b"ok"

    run_flavor(flavor, node.data, body, max_frame=4 * DEFAULT_MAX_FRAME, timeout=30)


def test_the_node_process_log_has_no_traceback(node: NodeProcess) -> None:
    assert "Traceback" not in Path(node.log_file).read_text()
