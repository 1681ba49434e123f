"""The sync, trio and asyncio clients over TLS against real node processes: keyword arguments,
``meshcaches://`` URLs, the CLI's --tls flags, client certificates, and clear errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import trio

from meshcache import AsyncClient, Client, TrioClient
from meshcache.client.url import parse_url
from meshcache.errors import ConfigError, MeshcacheConnectionError, MeshcacheError
from meshcache.testing.nodes import NodeProcess
from tests.security.tlspki import Pki, make_pki, node_args


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[NodeProcess]:
    with NodeProcess(tmp_path_factory.mktemp("n"), *node_args(pki, client_auth=True)) as n:
        yield n


def tls_kwargs(pki: Pki) -> dict[str, object]:
    return {"ca_file": pki.ca, "cert_file": pki.client.cert, "key_file": pki.client.key}


def test_sync_client_pool_and_pipeline(node: NodeProcess, pki: Pki) -> None:
    with Client(node.data, tls=True, **tls_kwargs(pki)) as c:  # type: ignore[arg-type]
        c.set("a", b"1")
        assert c.get("a") == b"1"
        with c.pipeline() as p:
            for i in range(200):
                p.set(f"k{i}", b"x" * 5000)
            p.get("k7")
            out = p.execute()
        assert out[-1] == b"x" * 5000
        for _ in range(20):  # pooled connections are reused, not reopened
            assert c.get("a") == b"1"
        assert c.mget([f"k{i}" for i in range(50)]) == [b"x" * 5000] * 50


def test_trio_client(node: NodeProcess, pki: Pki) -> None:
    async def main() -> None:
        async with TrioClient(node.data, **tls_kwargs(pki)) as c:  # type: ignore[arg-type]
            await c.set("t", b"trio")
            assert await c.get("t") == b"trio"
            async with trio.open_nursery() as nursery:
                for i in range(8):
                    nursery.start_soon(c.set, f"t{i}", b"v")
            assert await c.mget([f"t{i}" for i in range(8)]) == [b"v"] * 8

    trio.run(main)


def test_asyncio_client(node: NodeProcess, pki: Pki) -> None:
    async def main() -> None:
        async with AsyncClient(node.data, tls=True, **tls_kwargs(pki)) as c:  # type: ignore[arg-type]
            await c.set("x", b"asyncio")
            assert await c.get("x") == b"asyncio"
            await asyncio.gather(*(c.set(f"x{i}", b"v") for i in range(8)))

    asyncio.run(main())


def test_url_forms(node: NodeProcess, pki: Pki) -> None:
    files = f"ca_file={quote(str(pki.ca))}&cert_file={quote(str(pki.client.cert))}"
    files += f"&key_file={quote(str(pki.client.key))}"
    with Client.from_url(f"meshcaches://{node.data}/default?{files}") as c:
        c.set("u", b"1")
    with Client.from_url(f"meshcache://{node.data}?tls=1&{files}") as c:
        assert c.get("u") == b"1"
    assert parse_url("meshcaches://h:1")["tls"] is True
    assert "tls" not in parse_url("meshcache://h:1")
    with pytest.raises(ConfigError, match="already means tls"):
        parse_url("meshcaches://h:1?tls=0")
    with pytest.raises(ConfigError, match="meshcaches://"):
        parse_url("rediss://h:1")


def test_clear_errors(node: NodeProcess, pki: Pki, tmp_path: Path) -> None:
    with (
        Client(
            node.data,
            ca_file=pki.stranger_ca,
            cert_file=pki.client.cert,
            key_file=pki.client.key,
            timeout=5,
        ) as c,
        pytest.raises(MeshcacheConnectionError, match="is ca_file the CA"),
    ):
        c.get("a")
    no_cert = Client(node.data, ca_file=pki.ca, timeout=5)
    with no_cert, pytest.raises(MeshcacheError, match="requires a client certificate"):
        no_cert.get("a")
    plain_client = Client(node.data, timeout=5)  # plaintext on a TLS port
    with plain_client, pytest.raises(MeshcacheError, match=r"TLS_REQUIRED|speaks TLS"):
        plain_client.get("a")
    with pytest.raises(ConfigError, match="does not exist"):
        Client(node.data, ca_file=tmp_path / "nope.pem")
    with (
        NodeProcess(tmp_path / "plain") as plain,
        Client(plain.data, ca_file=pki.ca, timeout=5) as c,
        pytest.raises(MeshcacheConnectionError, match="does not have TLS enabled"),
    ):
        c.get("a")


def test_cli_flags(node: NodeProcess, pki: Pki) -> None:
    base = [sys.executable, "-m", "meshcache"]
    where = ["--host", node.data_address.host, "--port", str(node.data_address.port)]
    tls = [
        "--tls",
        "--cacert",
        str(pki.ca),
        "--cert",
        str(pki.client.cert),
        "--key",
        str(pki.client.key),
    ]
    done = subprocess.run(
        [*base, "set", "cli", "v", *where, *tls], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [*base, "get", "cli", *where, *tls], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "v\n")
    done = subprocess.run(
        [*base, "get", "cli", *where, "--tls", "--cacert", str(pki.ca)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3 and "client certificate" in done.stderr
