"""The Hot keys view against three real node processes: a key read hard turns hot at its owner,
and the console lists it with its namespace, owner and holders, as HOTKEYS tells."""

from __future__ import annotations

import threading

import pytest

from meshcache.errors import MeshcacheError
from meshcache.testing.mesh import Direct, Mesh, wait_for
from meshcache.tui.app import TopApp
from meshcache.tui.source import LiveSource
from tests.tui.helpers import live_mesh, row, run, wait_screen

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NS = "hotns"
KEY = b"popular"


def test_hot_keys_view_lists_a_key_made_hot_by_a_read_load() -> None:
    with live_mesh(3) as mesh:
        policy = {"replicas": 2, "hot": {"share": 0.05, "rate": 50.0, "lease": 1.0}}
        mesh.call(mesh.nodes[0], "NS_SET", [NS, policy])
        wait_for(
            lambda: all("hot" in mesh.call(x, "NS_LIST", []).get(NS, {}) for x in mesh.nodes),
            20,
            "the hot-key policy on every node",
        )
        assert mesh.call(mesh.nodes[0], "SET", [KEY, b"v"], NS) is True
        owner = mesh.owners(KEY, 1)[0]
        others = sorted(x.node_id for x in mesh.nodes if x.node_id != owner)

        stop = threading.Event()
        errors: list[BaseException] = []

        def reader(index: int) -> None:
            try:
                with Direct(mesh.nodes[index].data_address) as d:
                    i = 0
                    while not stop.is_set():
                        d.call("GET", [KEY if i % 2 else b"cold:%d" % (i % 997)], NS)
                        i += 1
            except (MeshcacheError, OSError) as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(3)]
        for t in threads:
            t.start()
        try:
            screen = run(_hot_keys_screen(mesh, owner, others))
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert not errors, errors
        line = row(screen, NS)
        assert line is not None
        assert "on in hotns" in screen
        for node_id in others:
            assert node_id in line


async def _hot_keys_screen(mesh: Mesh, owner: str, others: list[str]) -> str:
    app = TopApp(LiveSource(mesh.nodes[0].data, timeout=3.0, budget=0.3), refresh=0.5)
    async with app.run_test(size=(200, 40)) as pilot:
        await pilot.press("5")

        def listed(screen: str) -> bool:
            line = row(screen, NS)
            return (
                line is not None
                and line.split()[1:3] == [KEY.decode(), owner]
                and all(node_id in line for node_id in others)
            )

        screen = await wait_screen(app, listed, 60, "the hot key with its owner and holders")
        await pilot.press("q")
        return screen
