"""Smart clients against a real three-node mesh: keys on their primaries, split batches, refresh.

Every check reads what a node holds with a ``smart=False`` client talking to exactly that node,
and computes each key's primary from the ring that node describes, independently of the router.
Namespaces have one replica so each key lives on exactly one node whether or not the nodes
forward and replicate.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import meshcache
from meshcache.testing.nodes import NodeProcess
from tests.client.cluster import (
    FLAVORS,
    make_namespace,
    mesh,
    node_client,
    ring_of,
    run_flavor,
    run_pipeline,
)
from tests.mesh.helpers import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    with mesh(tmp_path_factory.mktemp("mesh")) as started:
        for flavor in FLAVORS:
            make_namespace(started, f"one_{flavor}", replicas=1)
        yield started


def by_address(nodes: list[NodeProcess]) -> dict[str, NodeProcess]:
    return {n.data: n for n in nodes}


@pytest.mark.parametrize("flavor", FLAVORS)
def test_keys_land_on_their_primary(nodes: list[NodeProcess], flavor: str) -> None:
    ns = f"one_{flavor}"
    keys = [f"{flavor}:{i}" for i in range(300)]

    async def body(client: Any) -> list[Any]:
        for key in keys:
            assert await client.set(key, key.encode(), namespace=ns) is True
        # The client routed by the ring the nodes hold.
        ring = ring_of(nodes[0])
        assert client.router.ring_version == ring.version
        return [client.router.primary(key.encode()) for key in keys]

    # One seed is enough: the client learns the other nodes from its ring.
    routed = run_flavor(flavor, nodes[0].data, body)
    ring = ring_of(nodes[1])
    primaries = [ring.primary(key.encode()).address for key in keys]
    assert [str(a) for a in routed] == primaries
    assert len(set(primaries)) == 3
    named = by_address(nodes)
    for key, primary in zip(keys, primaries, strict=True):
        with node_client(named[primary]) as direct:
            assert direct.get(key, namespace=ns) == key.encode(), f"{key} not on {primary}"
    counts = Counter(primaries)
    for node in nodes:
        with node_client(node) as direct:
            assert direct.dbsize(namespace=ns) == counts[node.data]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_multi_key_ops_and_pipelines_split_by_node(nodes: list[NodeProcess], flavor: str) -> None:
    ns = f"one_{flavor}"
    keys = [f"multi:{flavor}:{i}" for i in range(60)]
    values = {k: f"v{i}".encode() for i, k in enumerate(keys)}
    shuffled = random.Random(7).sample(keys, len(keys))

    async def body(client: Any) -> None:
        assert await client.mset(values, namespace=ns) is True
        assert await client.mget(shuffled, namespace=ns) == [values[k] for k in shuffled]
        assert await client.mget([*shuffled[:5], "missing"], namespace=ns) == [
            *(values[k] for k in shuffled[:5]),
            None,
        ]
        assert await client.exists(*keys, "missing", keys[0], namespace=ns) == 61

        def build(pipe: Any) -> None:
            for k in shuffled[:20]:
                pipe.get(k, namespace=ns)
            pipe.incr(f"count:{flavor}", namespace=ns)
            pipe.mget(shuffled[20:30], namespace=ns)
            pipe.ping()

        got = await run_pipeline(client, build)
        assert got == [
            *(values[k] for k in shuffled[:20]),
            1,
            [values[k] for k in shuffled[20:30]],
            True,
        ]

    run_flavor(flavor, nodes[0].data, body)
    ring = ring_of(nodes[0])
    named = by_address(nodes)
    for key in keys:
        with node_client(named[ring.primary(key.encode()).address]) as direct:
            assert direct.get(key, namespace=ns) == values[key]

    async def delete_all(client: Any) -> int:
        deleted: int = await client.delete(*keys, "missing", namespace=ns)
        return deleted

    assert run_flavor(flavor, nodes[1].data, delete_all) == 60
    for key in keys:
        with node_client(named[ring.primary(key.encode()).address]) as direct:
            assert direct.get(key, namespace=ns) is None


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_newer_ring_version_is_fetched(nodes: list[NodeProcess], flavor: str) -> None:
    fresh = f"fresh_{flavor}"

    def every_node_at(version: int) -> bool:
        return all(ring_of(node).version >= version for node in nodes)

    async def body(client: Any) -> None:
        await client.get("before")
        before = client.router.ring_version
        assert before > 0 and fresh not in client.router.snapshot.replicas
        make_namespace(nodes, fresh, replicas=1)  # commits a new config version
        newer = ring_of(nodes[0]).version
        assert newer > before
        wait_for(lambda: every_node_at(newer), 20, "every node at the new version")
        await client.get("after")  # its answer carries the newer version
        assert client.router.ring_version == newer
        assert client.router.snapshot.replicas[fresh] == 1

    run_flavor(flavor, nodes[0].data, body)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_lone_node_without_a_ring_is_served_by_seed(tmp_path: Path, flavor: str) -> None:
    with NodeProcess(tmp_path) as node:

        async def body(client: Any) -> None:
            assert await client.set("k", "v") is True
            assert await client.mget(["k", "nope"]) == [b"v", None]
            assert client.router.snapshot is None
            assert [str(a) for a in client.router.candidates(b"k")] == [node.data]

        run_flavor(flavor, node.data, body)


def test_a_killed_node_does_not_hang_the_clients(tmp_path: Path) -> None:
    timeout = 2.0
    with mesh(tmp_path) as started:
        make_namespace(started, "one", replicas=1)
        ring = ring_of(started[0])
        keys = [f"kill:{i}".encode() for i in range(120)]
        with meshcache.Client(started[0].data, timeout=timeout) as client:
            client.mset({k: k for k in keys}, namespace="one")
        victim = started[2]
        victim.kill()
        survivors_keys = [k for k in keys if ring.primary(k).address != victim.data]
        victims_keys = [k for k in keys if ring.primary(k).address == victim.data]
        assert survivors_keys and victims_keys

        for flavor in FLAVORS:

            async def body(client: Any) -> None:
                for k in survivors_keys[:20]:
                    assert await client.get(k, namespace="one") == k
                    assert await client.set(k, b"again", namespace="one") is True
                assert await client.mget(survivors_keys, namespace="one") == [
                    b"again" if i < 20 else k for i, k in enumerate(survivors_keys)
                ]
                for k in victims_keys[:5]:
                    for op in ("get", "set"):
                        start = time.monotonic()
                        try:
                            if op == "get":
                                await client.get(k, namespace="one")
                            else:
                                await client.set(k, b"new", namespace="one")
                        except meshcache.MeshcacheError:
                            pass  # the owner is down: an error is a fine answer
                        assert time.monotonic() - start < timeout + 1.0
                # Put the survivors' values back for the next front end.
                await client.mset({k: k for k in survivors_keys[:20]}, namespace="one")

            run_flavor(flavor, started[0].data + "," + started[1].data, body, timeout=timeout)
