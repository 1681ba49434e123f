"""The reactors' TLS socket on its own, over a socket pair: short reads keep what they could not
hand back, partial writes neither lose nor repeat a byte, and close_notify ends the stream; and
the refusal at the connection limit, told in TLS and bounded in number and time."""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from meshcache.node.net.tls import TlsRefused, TlsRefuser, TlsSocket
from meshcache.security import tls


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    d: Path = tmp_path_factory.mktemp("pki")
    tls.make_ca(d)
    node = tls.make_node_cert(d, "n")
    server = tls.server_context(node.cert, node.key, None, require_client_cert=False)
    return server, tls.client_context(d / "ca.pem")


@pytest.fixture
def pair(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> Iterator[tuple[TlsSocket, ssl.SSLSocket, Counter[str]]]:
    server_ctx, client_ctx = contexts
    a, b = socket.socketpair()
    a.setblocking(False)
    bad: Counter[str] = Counter()
    server = TlsSocket(a, server_ctx, refusal=b"-ERR\r\n", bad_input=bad)
    done: list[ssl.SSLSocket] = []
    t = threading.Thread(
        target=lambda: done.append(client_ctx.wrap_socket(b, server_hostname="localhost"))
    )
    t.start()
    buf = bytearray(64)
    deadline = time.monotonic() + 10
    # The client is done once its Finished is sent; the node, once it has read it.
    while not server.handshaken and time.monotonic() < deadline:
        select.select([a], [], [], 0.5)
        try:
            server.recv_into(buf)
        except BlockingIOError:
            continue
    t.join(10)
    assert server.handshaken
    client = done[0]
    client.settimeout(10)
    yield server, client, bad
    client.close()
    server.close()


def _read(server: TlsSocket, buf: bytearray, nbytes: int = 0) -> int:
    """Read as the reactor does: try, and wait for epoll's readiness only when told to."""
    while True:
        try:
            return server.recv_into(buf, nbytes)
        except BlockingIOError:
            select.select([server.fileno()], [], [], 5)


def test_short_reads_keep_the_rest(pair: tuple[TlsSocket, ssl.SSLSocket, Counter[str]]) -> None:
    server, client, _ = pair
    payload = bytes(range(256)) * 200  # several records
    client.sendall(payload)
    got = bytearray()
    buf = bytearray(65536)
    while len(got) < len(payload):
        n = _read(server, buf, 1000)  # the oversize-frame path reads a little at a time
        assert 0 < n <= 1000
        got += buf[:n]
    assert bytes(got) == payload


def test_partial_writes_lose_and_repeat_nothing(
    pair: tuple[TlsSocket, ssl.SSLSocket, Counter[str]],
) -> None:
    server, client, _ = pair
    server.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    chunks = [bytes([i % 251]) * (30_000 + i) for i in range(40)]
    expected = b"".join(chunks)
    received = bytearray()
    reader = threading.Thread(target=_drain, args=(client, received, len(expected)))
    # Write as a reactor does: what send did not take is offered again, first, with the next.
    unsent = b""
    partial = 0
    for chunk in chunks:
        data = unsent + chunk
        sent = server.send(data)
        partial += sent < len(data)
        unsent = data[sent:]
    reader.start()
    while unsent:
        select.select([], [server.fileno()], [], 5)
        sent = server.send(unsent)
        unsent = unsent[sent:]
    reader.join(30)
    assert partial > 0  # the kernel refused some: the path under test ran
    assert bytes(received) == expected


def _drain(client: ssl.SSLSocket, into: bytearray, n: int) -> None:
    while len(into) < n:
        data = client.recv(65536)
        if not data:
            return
        into.extend(data)


def test_close_notify_is_the_end(pair: tuple[TlsSocket, ssl.SSLSocket, Counter[str]]) -> None:
    server, client, _ = pair
    client.sendall(b"last")
    closer = threading.Thread(target=client.unwrap)  # waits for the node's close_notify
    closer.start()
    buf = bytearray(100)
    assert _read(server, buf) == 4 and bytes(buf[:4]) == b"last"
    assert _read(server, buf) == 0
    server.close()  # answers with its own close_notify
    closer.join(10)
    assert not closer.is_alive()


def test_a_plaintext_client_is_told_and_refused(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        bad: Counter[str] = Counter()
        server = TlsSocket(a, contexts[0], refusal=b"-ERR speaks TLS\r\n", bad_input=bad)
        b.sendall(b"PING\r\n")
        with pytest.raises(TlsRefused) as refused:
            _read(server, bytearray(10))
        assert refused.value.reason == "plaintext_on_tls_port"
        assert b.recv(100) == b"-ERR speaks TLS\r\n"
        assert bad == Counter({"plaintext_on_tls_port": 1})


# --- the refusal at the connection limit ------------------------------------------------------


def test_a_refused_tls_client_reads_why_and_the_close(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    a, b = socket.socketpair()
    a.setblocking(False)
    b.settimeout(10)
    told: list[bytes] = []

    def client() -> None:
        with client_ctx.wrap_socket(b, server_hostname="localhost") as conn:
            conn.sendall(b"a request the node will not read")
            data = b""
            while chunk := conn.recv(100):  # until close_notify
                data += chunk
            told.append(data)

    async def main() -> None:
        refuser = TlsRefuser(timeout=10)
        async with trio.open_nursery() as nursery:
            assert refuser.refuse(nursery, a, server_ctx, b"-ERR full\r\n")
            assert refuser.under_way == 1
            await trio.to_thread.run_sync(client)
        assert refuser.under_way == 0

    trio.run(main)
    assert told == [b"-ERR full\r\n"] and a.fileno() == -1


def test_a_plaintext_client_is_refused_in_plaintext(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.settimeout(10)

    async def main() -> bytes:
        async with trio.open_nursery() as nursery:
            TlsRefuser(timeout=10).refuse(nursery, a, contexts[0], b"-ERR full\r\n")
            b.sendall(b"PING\r\n")
            data = await trio.to_thread.run_sync(b.recv, 100)
            assert await trio.to_thread.run_sync(b.recv, 100) == b""
            return data

    assert trio.run(main) == b"-ERR full\r\n"
    b.close()


@pytest.mark.trio
async def test_refusals_are_bounded_in_number_and_time(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    autojump_clock: trio.testing.MockClock,
) -> None:
    pairs = [socket.socketpair() for _ in range(3)]
    for a, _ in pairs:
        a.setblocking(False)
    refuser = TlsRefuser(timeout=1.0, max_at_once=2)
    started = trio.current_time()
    try:
        async with trio.open_nursery() as nursery:
            results = [refuser.refuse(nursery, a, contexts[0], b"x") for a, _ in pairs]
            assert results == [True, True, False]  # the third is closed at once
            assert pairs[2][0].fileno() == -1 and refuser.under_way == 2
        # The two silent clients were given up on after the timeout.
        assert trio.current_time() - started == pytest.approx(1.0)
        assert refuser.under_way == 0 and all(a.fileno() == -1 for a, _ in pairs)
    finally:
        for a, b in pairs:
            a.close()
            b.close()
