"""A mesh of real node processes with users and a cluster key: the nodes authenticate to each
other with the key, clients with their passwords, and a node with another key stays out."""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import meshcache
from meshcache.errors import MeshcacheError, NoAuthError
from meshcache.security.hashing import hash_password
from meshcache.testing.mesh import Direct, Mesh, wait_for
from meshcache.testing.nodes import NodeProcess

pytestmark = pytest.mark.slow

OPS_USER, OPS_PASSWORD = "ops", "ops-pw"


def write_config(tmp_path: Path, name: str, key: bytes) -> Path:
    key_file = tmp_path / f"{name}.key"
    key_file.write_text(base64.b64encode(key).decode() + "\n")
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[node]\ncluster_key_file = "{key_file}"\n\n'
        f'[users.{OPS_USER}]\npassword = "{hash_password(OPS_PASSWORD, n=1024)}"\n'
        'permissions = ["read", "write", "admin"]\n'
    )
    return path


class SecuredMesh(Mesh):
    """The harness, authenticating every inspection call as the admin user."""

    def call(self, node: NodeProcess, op: str, args: list[Any], namespace: str = "default") -> Any:
        with Direct(node.data_address) as d:
            d.call("AUTH", [OPS_USER, OPS_PASSWORD])
            return d.call(op, args, namespace)


def metric(node: NodeProcess, line_start: str) -> float:
    host, port = node.admin_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def test_a_secured_mesh_forms_serves_and_keeps_a_stranger_out(
    stack: ExitStack, tmp_path: Path
) -> None:
    config = write_config(tmp_path, "cluster", b"c" * 32)
    mesh = SecuredMesh(stack, tmp_path, 3, "--config", str(config))
    # The joins and config pulls reached the voter, authenticated as the cluster.
    assert metric(mesh.nodes[0], 'meshcache_auth_total{outcome="peer_ok"}') > 0
    with Direct(mesh.nodes[1].data_address) as anonymous, pytest.raises(NoAuthError):
        anonymous.call("RING", [])

    client = meshcache.Client(mesh.addresses, username=OPS_USER, password=OPS_PASSWORD)
    with client:
        keys = [f"k{i}".encode() for i in range(60)]
        for key in keys:
            assert client.set(key, b"v" + key)
        assert client.mget(keys) == [b"v" + k for k in keys]
    # Replica writes reached every node over authenticated peer connections.
    wait_for(
        lambda: all(metric(n, 'meshcache_auth_total{outcome="peer_ok"}') > 0 for n in mesh.nodes),
        20,
        "every node to be reached by an authenticated peer",
    )
    for node in mesh.nodes:  # every node forwards what it does not own, authenticated
        with Direct(node.data_address) as d:
            d.call("AUTH", [OPS_USER, OPS_PASSWORD])
            assert [d.call("GET", [k]) for k in keys[:20]] == [b"v" + k for k in keys[:20]]
    assert all(metric(n, 'meshcache_auth_total{outcome="failed"}') == 0 for n in mesh.nodes)

    # A node with the same users but another cluster key: its gossip and its AUTH are refused.
    stranger = write_config(tmp_path, "stranger", b"x" * 32)
    seed = mesh.nodes[0]
    mesh.start_node("--config", str(stranger), "--join", seed.data, name="stranger")

    def refused() -> bool:
        try:
            return (
                metric(seed, 'meshcache_gossip_total{what="bad_mac"}') > 0
                or metric(seed, 'meshcache_auth_total{outcome="failed"}') > 0
            )
        except (OSError, MeshcacheError):
            return False

    wait_for(refused, 30, "the seed refusing the stranger's packets or AUTH")
    ring = mesh.ring(seed)
    assert len(ring["members"]) == 3
    members = {m["name"] for m in mesh.call(seed, "MEMBERS", [])}
    assert members == {n.node_id for n in mesh.nodes[:3]}
