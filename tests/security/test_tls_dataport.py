"""The data port over TLS, on real node processes: round trips and deep pipelines through the
reactor's memory-BIO sessions, and every refusal (plaintext on a TLS port and the reverse, no
client certificate, another CA's or an expired certificate, garbage handshakes) answered
clearly, counted in /metrics, and harmless to the other clients."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshcache import Client
from meshcache.errors import TooManyConnectionsError
from meshcache.node.net.tls import MAX_REFUSALS
from meshcache.security import tls
from meshcache.testing.mesh import wait_for
from meshcache.testing.nodes import NodeProcess
from meshcache.wire.frame import FrameReader, Response, decode_response, encode_request
from tests.security.tlspki import Pki, make_pki, node_args


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[NodeProcess]:
    with NodeProcess(tmp_path_factory.mktemp("tls-node"), *node_args(pki)) as n:
        yield n


@pytest.fixture(scope="module")
def strict_node(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[NodeProcess]:
    with NodeProcess(
        tmp_path_factory.mktemp("strict-node"), *node_args(pki, client_auth=True)
    ) as n:
        yield n


def metric(node: NodeProcess, name: str, label: str) -> float:
    host, port = node.admin_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf'^{name}\{{[a-z]+="{label}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def bad(node: NodeProcess, kind: str) -> float:
    return metric(node, "meshcache_bad_input_total", kind)


def context(pki: Pki, *, ca: Path | None = None, cert: tls.Issued | None = None) -> ssl.SSLContext:
    return tls.client_context(ca or pki.ca, cert.cert if cert else None, cert.key if cert else None)


class Conn:
    """A blocking frame connection, TLS or not."""

    def __init__(self, node: NodeProcess, ctx: ssl.SSLContext | None) -> None:
        raw = socket.create_connection(tuple(node.data_address), timeout=10)
        self.sock: socket.socket = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
        self.reader = FrameReader()
        self.next_id = 1

    def send(self, op: str, *args: object) -> None:
        self.sock.sendall(encode_request(self.next_id, op, "default", list(args)))
        self.next_id += 1

    def answers(self, n: int) -> list[Response]:
        out: list[Response] = []
        while len(out) < n:
            while (body := self.reader.next_body()) is not None:
                out.append(decode_response(body))
            if len(out) < n:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("closed by the node")
                self.reader.feed(data)
        return out

    def call(self, op: str, *args: object) -> Response:
        self.send(op, *args)
        return self.answers(1)[0]

    def close(self) -> None:
        self.sock.close()


def test_round_trips_pipelines_and_big_answers(tls_node: NodeProcess, pki: Pki) -> None:
    c = Conn(tls_node, context(pki))
    try:
        assert c.call("SET", b"k", b"v", {}).ok
        assert c.call("GET", b"k").value == b"v"
        # A deep pipeline of values spanning several TLS records each.
        for i in range(300):
            c.send("SET", f"p{i}".encode(), bytes([i % 251]) * 3000, {})
        assert all(a.ok for a in c.answers(300))
        for i in range(300):
            c.send("GET", f"p{i}".encode())
        got = c.answers(300)
        assert [a.value for a in got] == [bytes([i % 251]) * 3000 for i in range(300)]
        # Answers far beyond the socket buffers: the node's sends are partial, its records
        # wait for writability, and nothing is lost or doubled.
        big = bytes(range(256)) * 2048  # 512 KiB
        assert c.call("SET", b"big", big, {}).ok
        for _ in range(24):
            c.send("GET", b"big")
        assert all(a.value == big for a in c.answers(24))
    finally:
        c.close()


def test_plaintext_client_on_a_tls_port_is_told(tls_node: NodeProcess, pki: Pki) -> None:
    good = Conn(tls_node, context(pki))
    before = bad(tls_node, "plaintext_on_tls_port")
    try:
        plain = Conn(tls_node, None)
        plain.send("PING")
        answer = plain.answers(1)[0]
        assert not answer.ok
        code, message = answer.value
        assert code == "TLS_REQUIRED" and "tls=True" in message
        assert plain.sock.recv(10) == b""
        plain.close()
        assert bad(tls_node, "plaintext_on_tls_port") == before + 1
        assert good.call("PING").ok
    finally:
        good.close()


def test_tls_client_on_a_plaintext_port_gets_an_alert(tmp_path: Path, pki: Pki) -> None:
    with NodeProcess(tmp_path) as plain_node:
        ok = Conn(plain_node, None)
        with pytest.raises(ssl.SSLError, match=r"PROTOCOL_VERSION|protocol version"):
            Conn(plain_node, context(pki))
        assert bad(plain_node, "tls_on_plaintext_port") == 1
        assert (
            metric(plain_node, "meshcache_connections_closed_total", "tls_on_plaintext_port") == 1
        )
        assert ok.call("PING").ok
        ok.close()


def _refused(node: NodeProcess, ctx: ssl.SSLContext) -> str:
    """Connect and send a PING; the error that ends it (TLS 1.3 reports a refused client
    certificate at the first read)."""
    try:
        c = Conn(node, ctx)
    except (ssl.SSLError, ConnectionError) as exc:
        return str(exc)
    try:
        c.call("PING")
    except (ssl.SSLError, ConnectionError) as exc:
        return str(exc)
    finally:
        c.close()
    return ""


def test_client_certificates_are_checked(strict_node: NodeProcess, pki: Pki) -> None:
    good = Conn(strict_node, context(pki, cert=pki.client))
    assert good.call("PING").ok
    assert "CERTIFICATE_REQUIRED" in _refused(strict_node, context(pki)).upper()
    assert bad(strict_node, "tls_no_client_cert") == 1
    refusal = _refused(strict_node, context(pki, cert=pki.stranger_client)).upper()
    assert "UNKNOWN_CA" in refusal or "UNKNOWN CA" in refusal
    refusal = _refused(strict_node, context(pki, cert=pki.expired_client)).upper()
    assert "EXPIRED" in refusal
    assert bad(strict_node, "tls_bad_certificate") == 2
    # A client that does not trust the node's CA refuses it itself; the node counts the
    # failed handshake.
    with pytest.raises(ssl.SSLCertVerificationError):
        Conn(strict_node, context(pki, ca=pki.stranger_ca, cert=pki.client))
    assert bad(strict_node, "tls_handshake_failed") >= 1
    assert good.call("PING").ok
    good.close()


hello_like = st.binary(min_size=1, max_size=600).map(lambda b: b"\x16\x03\x01" + b)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.one_of(hello_like, st.binary(min_size=1, max_size=600)))
def test_garbage_handshakes_harm_no_other_client(
    tls_node: NodeProcess, pki: Pki, data: bytes
) -> None:
    with socket.create_connection(tuple(tls_node.data_address), timeout=10) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except OSError:
            pass
    c = Conn(tls_node, context(pki))
    assert c.call("PING").ok
    c.close()


def test_garbage_is_counted(tls_node: NodeProcess, pki: Pki) -> None:
    before = bad(tls_node, "tls_handshake_failed")
    with socket.create_connection(tuple(tls_node.data_address), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x00\x05hello")
        assert s.recv(100)[:1] == b"\x15"  # a TLS alert
    assert bad(tls_node, "tls_handshake_failed") == before + 1


def test_sighup_reloads_certificates_and_keeps_them_on_a_bad_file(tmp_path: Path, pki: Pki) -> None:
    cert, key = tmp_path / "node.pem", tmp_path / "node.key"
    cert.write_bytes(pki.node.cert.read_bytes())
    key.write_bytes(pki.node.key.read_bytes())
    args = ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-file", str(pki.ca)]
    with NodeProcess(tmp_path / "n", *args) as node:

        def served_cn() -> str:
            c = Conn(node, context(pki))
            peer = c.sock.getpeercert()
            c.close()
            assert peer is not None
            return str(dict(x[0] for x in peer["subject"])["commonName"])

        assert served_cn() == "node1"
        open_conn = Conn(node, context(pki))
        cert.write_bytes(pki.node2.cert.read_bytes())
        key.write_bytes(pki.node2.key.read_bytes())
        node.signal(signal.SIGHUP)
        _wait_log(node, "tls_reloaded")
        assert served_cn() == "node2"
        cert.write_text("not a certificate")
        node.signal(signal.SIGHUP)
        _wait_log(node, "tls_not_reloaded")
        assert bad(node, "tls_reload_failed") == 1
        assert served_cn() == "node2"
        assert open_conn.call("PING").ok  # open connections keep their session
        open_conn.close()


def _wait_log(node: NodeProcess, event: str) -> None:
    import time

    deadline = time.monotonic() + 20
    while event not in node.log_file.read_text():
        assert time.monotonic() < deadline, f"no {event} in the log:\n{node.log_tail()}"
        time.sleep(0.02)  # polling the log file for the event, with a deadline


def test_admin_port_over_tls(tmp_path: Path, pki: Pki) -> None:
    with NodeProcess(tmp_path, *node_args(pki), "--tls-admin", "true") as node:
        host, port = node.admin_address
        ctx = context(pki)
        with urllib.request.urlopen(f"https://localhost:{port}/health", context=ctx) as r:
            assert b'"status": "ok"' in r.read() or r.status == 200
        with pytest.raises(OSError):  # plain HTTP gets no answer but a closed connection
            urllib.request.urlopen(f"http://{host}:{port}/health", timeout=10).read()
        with urllib.request.urlopen(f"https://localhost:{port}/metrics", context=ctx) as r:
            assert 'meshcache_bad_input_total{kind="admin_tls_handshake_failed"} 1.0' in (
                r.read().decode()
            )


def test_close_notify_ends_a_connection_cleanly(tls_node: NodeProcess, pki: Pki) -> None:
    before = metric(tls_node, "meshcache_connections_closed_total", "client_closed")
    c = Conn(tls_node, context(pki))
    assert c.call("PING").ok
    c.sock = c.sock.unwrap()  # close_notify, answered by the node's
    assert c.sock.recv(10) == b""
    c.close()
    assert metric(tls_node, "meshcache_connections_closed_total", "client_closed") == before + 1
    other = Conn(tls_node, context(pki))
    assert other.call("PING").ok
    other.close()


def test_a_frame_over_the_limit_over_tls(tmp_path: Path, pki: Pki) -> None:
    limits = ["--max-frame-bytes", "65536", "--max-value-bytes", "4096"]
    with NodeProcess(tmp_path, *node_args(pki), *limits) as node:
        c = Conn(node, context(pki))
        assert c.call("PING").ok
        big = encode_request(7, "SET", "default", [b"k", b"x" * 200_000, {}])
        c.sock.sendall(big)
        answer = c.answers(1)[0]
        assert not answer.ok and answer.value[0] == "TOO_LARGE"
        assert c.sock.recv(10) == b""  # the node's close_notify after its answer
        c.close()
        assert metric(node, "meshcache_connections_closed_total", "frame_too_large") == 1
        other = Conn(node, context(pki))
        assert other.call("PING").ok
        other.close()


def test_a_tls_client_over_the_connection_limit_is_told_in_tls(tmp_path: Path, pki: Pki) -> None:
    """Refused at max_connections, a TLS client reads TOO_MANY_CONNECTIONS through its TLS
    session (not a wrong-version error), then the close; the connection held no slot."""
    with NodeProcess(tmp_path, *node_args(pki), "--max-connections", "1") as node:
        first = Conn(node, context(pki))
        assert first.call("PING").ok
        second = Conn(node, context(pki))  # the handshake completes
        (answer,) = second.answers(1)
        assert not answer.ok and answer.value[0] == "TOO_MANY_CONNECTIONS"
        assert "max_connections" in answer.value[1]
        assert second.sock.recv(10) == b""  # the node's close_notify
        second.close()
        with (
            Client(node.data, ca_file=pki.ca, smart=False, timeout=10) as client,
            pytest.raises(TooManyConnectionsError, match="max_connections"),
        ):
            client.ping()
        assert bad(node, "too_many_connections") == 2
        assert metric(node, "meshcache_connections_closed_total", "too_many_connections") == 2
        assert first.call("PING").ok
        first.close()
        wait_for(lambda: _pings(node, context(pki)), 20, "the slot to be free again")


def _pings(node: NodeProcess, ctx: ssl.SSLContext) -> bool:
    c = Conn(node, ctx)
    try:
        return c.call("PING").ok
    except (OSError, ConnectionError):
        return False
    finally:
        c.close()


def test_a_flood_over_the_limit_ends_every_refused_connection(tmp_path: Path, pki: Pki) -> None:
    """Connections over the limit that never handshake, more than the refusals the port runs
    at once: each is closed (those past the bound at once, the others when their short
    handshake time is up), the connection inside the limit goes on, and every one is counted."""
    with NodeProcess(tmp_path, *node_args(pki), "--max-connections", "1") as node:
        inside = Conn(node, context(pki))
        assert inside.call("PING").ok
        flood = [
            socket.create_connection(tuple(node.data_address), timeout=20)
            for _ in range(MAX_REFUSALS + 16)
        ]
        try:
            for sock in flood:
                assert sock.recv(100) == b""  # closed by the node, nothing said
        finally:
            for sock in flood:
                sock.close()
        assert inside.call("PING").ok
        assert bad(node, "too_many_connections") == len(flood)
        # A TLS client over the limit is still told why once the flood is over.
        late = Conn(node, context(pki))
        (answer,) = late.answers(1)
        assert answer.value[0] == "TOO_MANY_CONNECTIONS"
        late.close()
        inside.close()
