"""The admin HTTP port under idle connections: a bounded number is served, more are refused at
once, so they cannot take the file descriptors the data ports need. Real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial

import pytest
import trio
from prometheus_client import CollectorRegistry

from meshcache.node.admin.http import MAX_CONNECTIONS, AdminHandler


async def until(condition: Callable[[], bool], what: str) -> None:
    with trio.fail_after(10):
        while not condition():
            await trio.sleep(0.01)  # polling a counter, bounded by the deadline


async def read_all(stream: trio.SocketStream) -> bytes:
    data = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


@pytest.fixture
async def admin_port() -> AsyncIterator[tuple[AdminHandler, int]]:
    handler = AdminHandler(CollectorRegistry(), lambda: {"status": "ok"})
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, handler.handle_stream, 0, host="127.0.0.1")
        )
        yield handler, listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_idle_connections_beyond_the_cap_are_refused_at_once(
    admin_port: tuple[AdminHandler, int],
) -> None:
    handler, port = admin_port
    assert handler.max_connections == MAX_CONNECTIONS == 64
    idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(MAX_CONNECTIONS)]
    await until(lambda: handler.connections == MAX_CONNECTIONS, "the idle connections")
    extra = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(20)]
    for stream in extra:  # answered and closed without waiting for a request
        assert (await read_all(stream)).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        await stream.aclose()
    assert handler.refused == 20 and handler.connections == MAX_CONNECTIONS
    await idle.pop().aclose()
    await until(lambda: handler.connections == MAX_CONNECTIONS - 1, "a slot")
    scrape = await trio.open_tcp_stream("127.0.0.1", port)
    await scrape.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_all(scrape)).startswith(b"HTTP/1.1 200 OK\r\n")
    await scrape.aclose()
    for stream in idle:
        await stream.aclose()
    await until(lambda: handler.connections == 0, "every connection closed")
