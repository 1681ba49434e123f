"""The RESP port over TLS on a real node process: redis-py's rediss:// and redis-cli --tls
--cacert work, a plaintext client is told the port speaks TLS, a TLS client on a plaintext
RESP port gets an alert, client certificates are checked — each refusal counted."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from meshcache.security import tls
from meshcache.testing.nodes import NodeProcess
from tests.security.tlspki import Pki, make_pki, node_args


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[NodeProcess]:
    with NodeProcess(tmp_path_factory.mktemp("n"), *node_args(pki), "--resp-port", "0") as n:
        yield n


def resp_port(node: NodeProcess) -> int:
    import json

    info = json.loads((node.data_dir / "node.json").read_text())
    return int(info["resp"].rsplit(":", 1)[1])


def refused(node: NodeProcess, kind: str) -> float:
    host, port = node.admin_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf'^meshcache_resp_errors_total\{{kind="{kind}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_redis_py_rediss(node: NodeProcess, pki: Pki) -> None:
    port = resp_port(node)
    for protocol in (2, 3):
        r = redis.Redis.from_url(
            f"rediss://localhost:{port}", ssl_ca_certs=str(pki.ca), protocol=protocol
        )
        with r:
            assert r.set("rp", "v")
            assert r.get("rp") == b"v"
            with r.pipeline(transaction=False) as p:
                for i in range(100):
                    p.set(f"rp{i}", "x" * 3000)
                assert all(p.execute())
            assert r.mget([f"rp{i}" for i in range(100)]) == [b"x" * 3000] * 100


def test_redis_cli_tls(node: NodeProcess, pki: Pki) -> None:
    port = resp_port(node)
    base = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--tls", "--cacert", str(pki.ca)]
    done = subprocess.run(
        [*base, "SET", "cli", "hello"], capture_output=True, text=True, timeout=30
    )
    assert done.stdout.strip() == "OK", done.stderr
    done = subprocess.run([*base, "GET", "cli"], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "hello"


def test_plaintext_on_the_tls_resp_port(node: NodeProcess, pki: Pki) -> None:
    port = resp_port(node)
    before = refused(node, "plaintext_on_tls_port")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = b""
        while chunk := raw.recv(1024):
            reply += chunk
    assert reply.startswith(b"-ERR this port speaks TLS")
    assert refused(node, "plaintext_on_tls_port") == before + 1
    with redis.Redis.from_url(f"rediss://localhost:{port}", ssl_ca_certs=str(pki.ca)) as ok:
        assert ok.ping()


def test_tls_on_a_plaintext_resp_port(tmp_path: Path, pki: Pki) -> None:
    with NodeProcess(tmp_path, "--resp-port", "0") as plain:
        port = resp_port(plain)
        ctx = tls.client_context(pki.ca)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            pytest.raises(ssl.SSLError, match=r"(?i)protocol.version"),
        ):
            ctx.wrap_socket(raw, server_hostname="localhost")
        assert refused(plain, "tls_on_plaintext_port") == 1
        with redis.Redis(port=port) as ok:
            assert ok.ping()


def test_client_certificates_on_resp(tmp_path: Path, pki: Pki) -> None:
    args = [*node_args(pki, client_auth=True), "--resp-port", "0"]
    with NodeProcess(tmp_path, *args) as strict:
        port = resp_port(strict)
        url = f"rediss://localhost:{port}"
        with redis.Redis.from_url(
            url,
            ssl_ca_certs=str(pki.ca),
            ssl_certfile=str(pki.client.cert),
            ssl_keyfile=str(pki.client.key),
        ) as ok:
            assert ok.ping()
        with (
            redis.Redis.from_url(url, ssl_ca_certs=str(pki.ca)) as anonymous,
            pytest.raises(redis.exceptions.ConnectionError),
        ):
            anonymous.ping()
        assert refused(strict, "tls_no_client_cert") == 1
        for wrong in (pki.stranger_client, pki.expired_client):  # another CA's; expired
            with (
                redis.Redis.from_url(
                    url,
                    ssl_ca_certs=str(pki.ca),
                    ssl_certfile=str(wrong.cert),
                    ssl_keyfile=str(wrong.key),
                ) as bad_cert,
                pytest.raises(redis.exceptions.ConnectionError),
            ):
                bad_cert.ping()
        assert refused(strict, "tls_bad_certificate") == 2


def test_a_tls_client_over_the_connection_limit_is_told_in_tls(tmp_path: Path, pki: Pki) -> None:
    """Refused at max_connections, a TLS client reads Redis's refusal through its TLS session:
    redis-py raises it as a ConnectionError with Redis's words, not an SSL error."""
    args = [*node_args(pki), "--resp-port", "0", "--max-connections", "1"]
    with NodeProcess(tmp_path, *args) as node:
        port = resp_port(node)
        url = f"rediss://localhost:{port}"
        with redis.Redis.from_url(url, ssl_ca_certs=str(pki.ca)) as first:
            assert first.ping()
            ctx = tls.client_context(pki.ca)
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                ctx.wrap_socket(raw, server_hostname="localhost") as conn,
            ):
                told = b""
                while chunk := conn.recv(1024):  # until the node's close_notify
                    told += chunk
            assert told == b"-ERR max number of clients reached\r\n"
            second = redis.Redis.from_url(url, ssl_ca_certs=str(pki.ca), retry=None)
            with second, pytest.raises(redis.exceptions.ConnectionError) as raised:
                second.ping()
            assert "max number of clients reached" in str(raised.value)
            assert first.ping()
        assert refused(node, "too_many_connections") == 2
