"""``set(..., consistency=...)``: the write's own consistency level, from every front end.

A real three-node mesh, a namespace of three replicas whose level is ``one``, one node paused
(SIGSTOP): a plain SET is acknowledged by its coordinator alone, ``quorum`` by two of the three
owners, and ``all`` cannot be, so it fails with ``WRITE_FAILED`` — which only happens if the
option reaches the node.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

import meshcache
from meshcache.errors import BadRequestError, WriteFailedError
from tests.client.cluster import FLAVORS, make_namespace, mesh, run_flavor
from tests.client.fakeserver import FakeServer
from tests.mesh.helpers import wait_for

pytestmark = pytest.mark.slow


def test_the_option_goes_on_the_wire_and_bad_levels_never_leave() -> None:
    with FakeServer() as server, meshcache.Client(server.address, smart=False) as client:
        assert client.set("k", b"v", consistency="quorum") is True
        assert server.stats.requests[-1] == (
            "SET",
            "default",
            [b"k", b"v", {"consistency": "quorum"}],
        )
        sent = len(server.stats.requests)
        with pytest.raises(BadRequestError, match="consistency"):
            client.set("k", b"v", consistency="most")
        assert len(server.stats.requests) == sent


def test_a_set_names_its_own_consistency(tmp_path: Path) -> None:
    with mesh(tmp_path) as nodes:
        make_namespace(nodes, "c3", replicas=3)
        paused = nodes[2]
        with meshcache.Client(paused.data, smart=False, timeout=5) as client:
            paused_id = client.info()["node_id"]
        paused.signal(signal.SIGSTOP)
        try:

            def paused_is_dead() -> bool:
                for node in nodes[:2]:
                    with meshcache.Client(node.data, smart=False, timeout=5) as client:
                        states = {m["name"]: m["state"] for m in client.members()}
                    if states.get(paused_id) != "dead":
                        return False
                return True

            wait_for(paused_is_dead, 30, "the paused node dead by gossip")
            for flavor in FLAVORS:

                async def body(client: Any, flavor: str = flavor) -> None:
                    key = f"consistency:{flavor}"
                    assert await client.set(key, b"one", namespace="c3") is True
                    assert await client.set(key, b"q", namespace="c3", consistency="quorum")
                    with pytest.raises(WriteFailedError):
                        await client.set(key, b"all", namespace="c3", consistency="all")

                # Through one node that stands in for the paused owner (no ring routing here).
                run_flavor(flavor, nodes[0].data, body, timeout=10, smart=False)
        finally:
            paused.signal(signal.SIGCONT)
