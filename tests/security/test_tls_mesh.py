"""A mesh of real node processes over mutual TLS: joins, push/pull, config pulls, forwards and
replication run over TLS under the cluster's CA, and a node whose certificate another CA signed
cannot join."""

from __future__ import annotations

import re
import ssl
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import meshcache
from meshcache.errors import MeshcacheError
from meshcache.security import tls
from meshcache.testing.mesh import Direct, Mesh, wait_for
from meshcache.testing.nodes import NodeProcess
from meshcache.wire.frame import FrameReader
from tests.security.tlspki import Pki, make_pki

pytestmark = pytest.mark.slow


class TlsDirect(Direct):
    def __init__(self, address: tuple[str, int], ctx: ssl.SSLContext) -> None:
        super().__init__(address)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.reader = FrameReader()


class TlsMesh(Mesh):
    ctx: ssl.SSLContext

    def call(self, node: NodeProcess, op: str, args: list[Any], namespace: str = "default") -> Any:
        with TlsDirect(node.data_address, self.ctx) as d:
            return d.call(op, args, namespace)


def bad(node: NodeProcess, kind: str) -> float:
    host, port = node.admin_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf'^meshcache_bad_input_total\{{kind="{kind}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def args_for(cert: tls.Issued, ca: Path) -> list[str]:
    return ["--tls-cert-file", str(cert.cert), "--tls-key-file", str(cert.key),
            "--tls-ca-file", str(ca)]  # fmt: skip


def test_mesh_over_mutual_tls_keeps_another_ca_out(
    stack: ExitStack, tmp_path: Path, pki: Pki
) -> None:
    TlsMesh.ctx = tls.client_context(pki.ca, pki.client.cert, pki.client.key)
    mesh = TlsMesh(stack, tmp_path, 3, *args_for(pki.node, pki.ca))
    client = meshcache.Client(mesh.addresses, ca_file=pki.ca)
    with client:
        keys = [f"k{i}".encode() for i in range(60)]
        for key in keys:
            assert client.set(key, b"v" + key)
        assert client.mget(keys) == [b"v" + k for k in keys]
    for node in mesh.nodes:  # every node forwards what it does not own, over TLS
        with TlsDirect(node.data_address, TlsMesh.ctx) as d:
            assert [d.call("GET", [k]) for k in keys[:20]] == [b"v" + k for k in keys[:20]]
    assert all(bad(n, "tls_handshake_failed") == 0 for n in mesh.nodes)
    assert all(bad(n, "tls_bad_certificate") == 0 for n in mesh.nodes)

    # A node whose certificate another CA signed, trusting that CA: it cannot join.
    seed = mesh.nodes[0]
    stranger = NodeProcess(
        tmp_path / "stranger",
        "--profile",
        "local",
        "--join",
        seed.data,
        *args_for(pki.stranger_node, pki.stranger_ca),
    )
    stack.enter_context(stranger)

    def refused() -> bool:
        try:
            kinds = ("tls_handshake_failed", "tls_handshake_aborted", "tls_bad_certificate")
            return sum(bad(seed, kind) for kind in kinds) > 0
        except (OSError, MeshcacheError):
            return False

    wait_for(refused, 30, "the seed refusing the stranger's handshakes")
    assert len(mesh.ring(seed)["members"]) == 3
    members = {m["name"] for m in mesh.call(seed, "MEMBERS", [])}
    assert members == {n.node_id for n in mesh.nodes}

    # A stranger that trusts the cluster's CA but presents another CA's certificate is refused
    # by the seed itself.
    before = bad(seed, "tls_bad_certificate")
    intruder_ctx = tls.peer_context(pki.stranger_node.cert, pki.stranger_node.key, pki.ca)
    with (
        pytest.raises((ssl.SSLError, ConnectionError)),
        TlsDirect(seed.data_address, intruder_ctx) as d,
    ):
        d.call("MEMBERS", [])
    wait_for(
        lambda: bad(seed, "tls_bad_certificate") == before + 1, 10, "the refusal to be counted"
    )
