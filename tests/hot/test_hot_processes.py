"""Hot keys across three real node processes: a key turns hot under load, copies appear on
every node, a write through any node is read back by its writer through every node, the key
cools and its copies go."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from meshcache.cli import main
from meshcache.client.ring_router import RingRouter
from meshcache.client.sync import Client
from meshcache.errors import MeshcacheError
from meshcache.testing.mesh import Direct, Mesh
from tests.mesh.helpers import wait_for

pytestmark = pytest.mark.slow

NS = "hot"
LEASE = 1.0


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def _hotkeys(mesh: Mesh) -> dict[str, dict[str, object]]:
    return {x.node_id: mesh.call(x, "HOTKEYS", []) for x in mesh.nodes}


def _holders_of(mesh: Mesh, key: bytes) -> set[str]:
    return {
        node_id
        for node_id, answer in _hotkeys(mesh).items()
        if any(c["key"] == key and c["namespace"] == NS for c in answer["copies"])  # type: ignore[attr-defined]
    }


def test_a_key_turns_hot_is_copied_everywhere_read_back_by_its_writer_and_cools(
    stack: ExitStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mesh = Mesh(stack, tmp_path, 3)
    host, port = mesh.nodes[0].data.rsplit(":", 1)
    where = ["--host", host, "--port", port]
    assert main(["ns", "set", NS, "--hot-keys", "on", "--hot-share", "0.05", *where]) == 0
    assert main(["ns", "set", NS, "--hot-rate", "50", "--hot-lease", "1s", *where]) == 0
    capsys.readouterr()
    hot_policy = mesh.call(mesh.nodes[0], "NS_LIST", [])[NS]["hot"]
    assert hot_policy == {
        "enabled": True,
        "share": 0.05,
        "rate": 50.0,
        "lease": LEASE,
        "area": 0.125,
    }  # the second change kept the first one's fields
    wait_for(
        lambda: all("hot" in mesh.call(x, "NS_LIST", []).get(NS, {}) for x in mesh.nodes),
        20,
        "the hot-key policy on every node",
    )
    key = b"popular"
    assert mesh.call(mesh.nodes[0], "SET", [key, b"v0"], NS) is True
    owner = mesh.owners(key, 1)[0]
    others = {x.node_id for x in mesh.nodes} - {owner}

    stop = threading.Event()
    errors: list[BaseException] = []

    def reader(index: int) -> None:
        node = mesh.nodes[index]
        try:
            with Direct(node.data_address) as d:
                i = 0
                while not stop.is_set():
                    d.call("GET", [key if i % 2 else b"cold:%d" % (i % 997)], NS)
                    i += 1
        except (MeshcacheError, OSError) as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    try:
        took = wait_for(lambda: _holders_of(mesh, key) == others, 15, "copies on every node")
        print(f"copies on every other node {took:.2f}s after the load started")

        def served() -> dict[str, int]:
            return {
                x.node_id: mesh.mesh_info(x)["counters"]["hot"].get("reads_from_copies", 0)
                for x in mesh.nodes
            }

        wait_for(lambda: all(served()[n] > 0 for n in others), 10, "reads served from copies")
        hot = _hotkeys(mesh)[owner]["hot"]
        assert [(r["namespace"], r["key"]) for r in hot] == [(NS, key)]  # type: ignore[index]
        capsys.readouterr()
        assert main(["hotkeys", "--json", *where]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [(r["key"], r["owner"]) for r in listed["hot"]] == [(key.decode(), owner)]
        assert set(listed["hot"][0]["holders"]) == others
        # a write through any node is read back by the writer through every node
        owner_info = mesh.mesh_info(mesh.by_id(owner))["counters"]
        updates = owner_info["hot"].get("invalidations_sent", 0)
        lane_requests = owner_info["peers"].get("lane_requests", 0)
        for i in range(1, 31):
            via = mesh.nodes[i % 3]
            value = b"v%d" % i
            assert mesh.call(via, "SET", [key, value], NS) is True
            for node in mesh.nodes:
                assert mesh.call(node, "GET", [key], NS) == value, (i, node.node_id)
        # each update of the copies was a request on a connection kept for them: one per holder
        owner_info = mesh.mesh_info(mesh.by_id(owner))["counters"]
        assert owner_info["hot"]["invalidations_sent"] - updates == 30 * len(others)
        assert owner_info["hot"].get("invalidations_lost", 0) == 0
        assert owner_info["peers"]["lane_requests"] - lane_requests == 30 * len(others)
        assert owner_info["peers"]["lane_connects"] == len(others)
        turned = mesh.mesh_info(mesh.by_id(owner))["counters"]["hot"]["keys_turned_hot"]
        assert turned == 1, "the key flapped while it was read"
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors
    took = wait_for(lambda: not _holders_of(mesh, key), 20, "the cooled key's copies to go")
    print(f"no copies {took:.2f}s after the load stopped")
    owner_node = mesh.by_id(owner)
    states = [e.get("state") for e in mesh.log_events(owner_node, "hot_key")]
    assert states[:1] == ["hot"] and "cooled" in states
    assert mesh.mesh_info(owner_node)["gauges"]["hot_keys"] == 0


def test_a_smart_client_spreads_its_reads_of_a_hot_key_over_the_copies(
    stack: ExitStack, tmp_path: Path
) -> None:
    mesh = Mesh(stack, tmp_path, 3)
    policy = {"replicas": 2, "hot": {"share": 0.05, "rate": 50.0, "lease": LEASE}}
    mesh.call(mesh.nodes[0], "NS_SET", [NS, policy])
    wait_for(
        lambda: all("hot" in mesh.call(x, "NS_LIST", []).get(NS, {}) for x in mesh.nodes),
        20,
        "the hot-key policy on every node",
    )
    key = b"popular"
    owner = mesh.owners(key, 1)[0]
    others = {x.node_id for x in mesh.nodes} - {owner}

    def from_copies() -> dict[str, int]:
        return {
            x.node_id: mesh.mesh_info(x)["counters"]["hot"].get("reads_from_copies", 0)
            for x in mesh.nodes
        }

    with Client(mesh.addresses, timeout=10) as client:
        assert client.set(key, b"v0", namespace=NS) is True
        # Only this client reads, and it routes by the ring: every read starts at the owner,
        # until the key is hot and the client learns where its copies are.
        deadline = time.monotonic() + 20
        while not all(n > 100 for node, n in from_copies().items() if node in others):
            assert time.monotonic() < deadline, f"reads not spread: {from_copies()}"
            for _ in range(200):
                assert client.get(key, namespace=NS) == b"v0"
        # its own write is read back, wherever the read goes
        for i in range(1, 21):
            client.set(key, b"v%d" % i, namespace=NS)
            assert client.get(key, namespace=NS) == b"v%d" % i
        # the writes went to the owner, whose answers said the version they left: the client
        # demands it of the copies (HOT_GET)
        router = client.router
        assert isinstance(router, RingRouter)
        _, version = mesh.call(mesh.by_id(owner), "GETS", [key], NS)
        assert router.written[key][0] == version
        hot_gets = sum(mesh.call(x, "INFO", [])["requests"].get("HOT_GET", 0) for x in mesh.nodes)
        assert hot_gets >= 20
        # the owner's answers carried its hot-set version
        assert router._hot_seen and all(v > 0 for v in router._hot_seen.values())
