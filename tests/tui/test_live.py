"""``meshcache top`` driven by textual's pilot against real node processes.

Each test reads the screen as text, as an operator would, and checks the cluster itself
through direct connections to every node.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from textual.widgets import Input

from meshcache import Client
from meshcache.testing.mesh import Direct, Mesh, wait_for
from meshcache.tui.app import MainScreen, TopApp
from meshcache.tui.dialogs import ConfirmScreen, PolicyScreen
from meshcache.tui.source import LiveSource
from meshcache.tui.table import SortableTable
from tests.tui.helpers import line_with, live_mesh, row, run, screen_text, wait_screen, wait_true

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SIZE = (160, 48)
REFRESH = 0.5


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with live_mesh(3) as mesh:
        mesh.wait_namespace("sessions", {"max_bytes": 1024 * 1024, "default_ttl": 300})
        yield mesh


def top(mesh: Mesh, *, read_only: bool = False, entry: int = 0) -> TopApp:
    source = LiveSource(mesh.nodes[entry].data, timeout=3.0, budget=0.3)
    return TopApp(source, refresh=REFRESH, read_only=read_only)


def ids(mesh: Mesh) -> list[str]:
    return [node.node_id for node in mesh.nodes]


async def all_alive(app: TopApp, mesh: Mesh) -> str:
    n = len(mesh.nodes)
    return await wait_screen(
        app,
        lambda s: (
            f"{n} members ({n} answer)" in s
            and all((line := row(s, i)) is not None and "alive" in line for i in ids(mesh))
        ),
        60,
        "every member alive in the Cluster view",
    )


def config_version(mesh: Mesh) -> int:
    version: int = mesh.call(mesh.live[0], "CONFIG_GET", [])["version"]
    return version


def policy_everywhere(mesh: Mesh, name: str) -> list[dict[str, Any]]:
    return [mesh.call(node, "NS_LIST", [])[name] for node in mesh.live]


def test_every_view_shows_the_three_members(mesh: Mesh) -> None:
    async def body() -> None:
        app = top(mesh)
        async with app.run_test(size=SIZE) as pilot:
            screen = await all_alive(app, mesh)
            assert line_with(screen, "leader") is not None
            await pilot.press("2")
            screen = await wait_screen(
                app,
                lambda s: (
                    "3 active" in s
                    and all((line := row(s, i)) is not None and "active" in line for i in ids(mesh))
                ),
                20,
                "the three members in the Ring view",
            )
            await pilot.press("3")
            screen = await wait_screen(
                app,
                lambda s: (line := row(s, "sessions")) is not None and "3/3" in line,
                20,
                "the namespaces applied on the three members",
            )
            assert "1.0M" in (row(screen, "sessions") or "")
            await pilot.press("4")
            await wait_screen(app, lambda s: "connected: 3 members" in s, 20, "the event log")
            await pilot.press("5")
            await wait_screen(
                app, lambda s: "hot keys are off in every namespace" in s, 20, "hot keys"
            )
            await pilot.press("1", "s")
            await wait_screen(app, lambda s: "sorted by gossip" in s, 10, "the sort message")
            await pilot.press("q")

    run(body())


LATENCY = re.compile(r"^\d+(\.\d+)?(ms|s)$")


def cell(screen: str, key: str, column: str) -> str | None:
    """The text of right-aligned ``column`` in the row of ``key`` (read under its header)."""
    header = line_with(screen, "node", column)
    line = row(screen, key)
    found = re.search(rf"(?<!\S){re.escape(column)}(?!\S)", header or "")
    if line is None or found is None:
        return None
    words = line[: found.end()].split()
    return words[-1] if words else None


def test_cluster_view_shows_each_nodes_recent_p50_and_p99(mesh: Mesh) -> None:
    # Client ops through every node (each coordinates its own: forwards included).
    for node in mesh.nodes:
        with Direct(node.data_address) as direct:
            for i in range(30):
                direct.call("SET", [b"lat:%d" % i, b"v" * 50])
                direct.call("GET", [b"lat:%d" % i])

    def shown(screen: str) -> bool:
        cells = [cell(screen, i, c) for i in ids(mesh) for c in ("p50", "p99")]
        return all(c is not None and LATENCY.match(c) for c in cells)

    async def body() -> None:
        app = top(mesh)
        async with app.run_test(size=SIZE) as pilot:
            await all_alive(app, mesh)
            await wait_screen(app, shown, 30, "p50 and p99 of every member")
            assert app.snapshot is not None
            for m in app.snapshot.members:
                assert m.p50 is not None and m.p99 is not None
                assert 0 < m.p50 <= m.p99 < 1.0, m  # loopback requests: well under a second
            await pilot.press("q")

    run(body())


def test_read_only_mode_refuses_actions(mesh: Mesh) -> None:
    before = config_version(mesh)

    async def body() -> None:
        app = top(mesh, read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            screen = await all_alive(app, mesh)
            assert "READ-ONLY" in screen
            await pilot.press("d")
            await wait_screen(
                app, lambda s: "read-only mode: drain is disabled" in s, 10, "drain refused"
            )
            assert isinstance(app.screen, MainScreen)
            await pilot.press("x")
            await wait_screen(
                app, lambda s: "read-only mode: removing a member is disabled" in s, 10, "removal"
            )
            await pilot.press("3", "e")
            await wait_screen(
                app, lambda s: "read-only mode: editing a policy is disabled" in s, 10, "edit"
            )
            assert isinstance(app.screen, MainScreen)

    run(body())
    assert config_version(mesh) == before
    assert all(m["state"] == "active" for m in mesh.ring(mesh.nodes[0])["members"])


async def select(pilot: Any, table: SortableTable, key: str) -> None:
    """Move the selection to row ``key`` with the arrow keys, as a person would."""
    await pilot.press("home")
    for _ in range(table.row_count):
        if table.selected_key == key:
            return
        await pilot.press("down")
    assert table.selected_key == key, f"{key} not among the rows {table.shown_keys}"


async def open_form(app: TopApp, pilot: Any, namespace: str) -> PolicyScreen:
    await pilot.press("3")
    await wait_screen(app, lambda s: row(s, namespace) is not None, 30, namespace)
    table = app.main.active.table
    assert table is not None
    await select(pilot, table, namespace)
    await pilot.press("e")
    await wait_true(lambda: isinstance(app.screen, PolicyScreen), 20, "the policy form")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, PolicyScreen)
    return screen


async def type_into(pilot: Any, form: PolicyScreen, field: str, value: str) -> None:
    widget = form.query_one(f"#{field}", Input)
    widget.focus()
    widget.value = ""
    await pilot.press(*value)


async def save_and_confirm(app: TopApp, pilot: Any) -> str:
    await pilot.press("ctrl+s")
    await wait_true(lambda: isinstance(app.screen, ConfirmScreen), 10, "the confirmation")
    confirmation = screen_text(app)
    await pilot.press("y")
    return confirmation


def test_policy_edited_in_the_form_is_committed_and_shown_by_every_node(mesh: Mesh) -> None:
    async def body() -> None:
        app = top(mesh)
        async with app.run_test(size=SIZE) as pilot:
            await all_alive(app, mesh)
            form = await open_form(app, pilot, "sessions")
            assert f"namespace sessions — config version {config_version(mesh)}" in screen_text(app)
            await type_into(pilot, form, "max_bytes", "2MiB")
            confirmation = await save_and_confirm(app, pilot)
            assert "max_bytes: 1MiB -> 2MiB" in confirmation
            assert "compare-and-set on config version" in confirmation
            await wait_true(lambda: isinstance(app.screen, MainScreen), 20, "the form to close")
            await wait_screen(
                app, lambda s: "namespace sessions: max_bytes committed" in s, 10, "committed"
            )
            wait_for(
                lambda: all(
                    p.get("max_bytes") == 2 * 1024 * 1024
                    for p in policy_everywhere(mesh, "sessions")
                ),
                30,
                "the new policy on every node",
            )
            await wait_screen(
                app,
                lambda s: (
                    (line := row(s, "sessions")) is not None and "2.0M" in line and "3/3" in line
                ),
                30,
                "the committed policy applied on the three members",
            )

    run(body())


def test_a_concurrent_edit_shows_the_conflict_and_the_fresh_values(mesh: Mesh) -> None:
    mesh.wait_namespace("carts", {"default_ttl": 300})

    async def body() -> None:
        app = top(mesh)
        async with app.run_test(size=SIZE) as pilot:
            await all_alive(app, mesh)
            form = await open_form(app, pilot, "carts")
            opened = form.opened.version
            # Another operator commits first.
            mesh.call(mesh.nodes[1], "NS_SET", ["carts", {"max_items": 5000}])
            await type_into(pilot, form, "default_ttl", "600")
            await save_and_confirm(app, pilot)
            screen = await wait_screen(
                app, lambda s: "CONFLICT" in s, 20, "the conflict message in the form"
            )
            assert isinstance(app.screen, PolicyScreen)
            assert f"the config changed since version {opened}" in screen
            assert form.opened.version > opened
            assert f"config version {form.opened.version}" in screen
            assert form.query_one("#max_items", Input).value == "5000"  # the fresh values
            assert form.query_one("#default_ttl", Input).value == "300"
            # Nothing of the losing edit was applied; the winner's change stands.
            assert all(
                p.get("max_items") == 5000 and p.get("default_ttl") == 300
                for p in policy_everywhere(mesh, "carts")
            )
            # Saving again, on the fresh version, commits without undoing the other change.
            await type_into(pilot, form, "default_ttl", "600")
            await save_and_confirm(app, pilot)
            await wait_true(lambda: isinstance(app.screen, MainScreen), 20, "the form to close")

    run(body())
    wait_for(
        lambda: all(
            p.get("max_items") == 5000 and p.get("default_ttl") == 600
            for p in policy_everywhere(mesh, "carts")
        ),
        30,
        "both changes on every node",
    )


def test_a_node_killed_with_kill_9_turns_dead_and_can_be_removed() -> None:
    with live_mesh(3) as mesh:
        victim = mesh.nodes[2]

        async def body() -> None:
            app = top(mesh)
            async with app.run_test(size=SIZE) as pilot:
                await all_alive(app, mesh)
                victim.kill()  # SIGKILL, reaped
                screen = await wait_screen(
                    app,
                    lambda s: (
                        (line := row(s, victim.node_id)) is not None
                        and " dead " in line
                        and " now " not in line
                    ),
                    90,
                    "the killed node dead in the Cluster view",
                )
                assert "2 answer" in screen
                assert app.snapshot is not None
                dead = app.snapshot.member(victim.node_id)
                assert dead is not None and not dead.reachable
                assert any(
                    e.node == victim.node_id and e.text.startswith("is dead")
                    for e in app.snapshot.events
                )
                # The operator takes it off the ring (compare-and-set on the version shown).
                version = app.snapshot.config_version
                table = app.main.active.table
                assert table is not None
                await select(pilot, table, victim.node_id)
                await pilot.press("x")
                await wait_true(lambda: isinstance(app.screen, ConfirmScreen), 10, "confirm")
                assert f"compare-and-set on config version {version}" in screen_text(app)
                await pilot.press("y")
                await wait_screen(
                    app, lambda s: f"removed {victim.node_id} from the ring" in s, 30, "removal"
                )
                await pilot.press("2")
                await wait_screen(
                    app,
                    lambda s: row(s, victim.node_id) is None and "2 active" in s,
                    30,
                    "the ring without the dead node",
                )

        run(body())
        ring = mesh.ring(mesh.nodes[0])
        assert victim.node_id not in [m["node_id"] for m in ring["members"]]


def test_drain_from_the_console_moves_the_node_to_leaving_then_out_of_the_ring() -> None:
    # A slow hand-off keeps the node 'leaving' long enough to be seen between polls: about
    # 4 MB to move at 512 KiB/s after a 1 MiB burst.
    with live_mesh(3, "--handoff-rate", "512k") as mesh:
        with Client(mesh.addresses) as client:
            value = b"v" * 2000
            for start in range(0, 3000, 100):
                client.mset({f"key:{i}".encode(): value for i in range(start, start + 100)})
        target = mesh.nodes[2].node_id

        async def body() -> None:
            app = top(mesh)
            async with app.run_test(size=SIZE) as pilot:
                await all_alive(app, mesh)
                table = app.main.active.table
                assert table is not None
                await select(pilot, table, target)
                await pilot.press("d")
                await wait_true(lambda: isinstance(app.screen, ConfirmScreen), 10, "confirm")
                assert f"Drain {target}?" in screen_text(app)
                await pilot.press("y")
                await wait_screen(
                    app,
                    lambda s: (line := row(s, target)) is not None and "leaving" in line,
                    60,
                    "the drained node leaving",
                )
                await pilot.press("2")
                await wait_screen(
                    app,
                    lambda s: row(s, target) is None and "2 active" in s,
                    120,
                    "the drained node out of the ring",
                )
                await pilot.press("4")
                screen = await wait_screen(
                    app, lambda s: "drained:" in s, 60, "the drain's outcome in the log"
                )
                assert "is leaving on the ring" in screen
                assert "is out of the ring" in screen

        run(body())
        ring = mesh.ring(mesh.nodes[0])
        assert target not in [m["node_id"] for m in ring["members"]]


def test_a_lost_cluster_shows_a_banner_and_is_found_again() -> None:
    with live_mesh(1) as mesh:
        node = mesh.nodes[0]

        async def body() -> None:
            app = TopApp(LiveSource(node.data, timeout=1.0, budget=0.3), refresh=REFRESH)
            async with app.run_test(size=SIZE):
                await wait_screen(app, lambda s: "1 members (1 answer)" in s, 30, "the node")
                node.signal(signal.SIGSTOP)  # the node stops answering, its sockets stay open
                try:
                    screen = await wait_screen(
                        app, lambda s: "CLUSTER LOST" in s, 30, "the lost-cluster banner"
                    )
                    assert f"no answer from {node.data} within 1 s" in screen
                finally:
                    node.signal(signal.SIGCONT)
                await wait_screen(
                    app,
                    lambda s: "CLUSTER LOST" not in s and "1 members (1 answer)" in s,
                    30,
                    "the cluster found again",
                )
                assert app.snapshot is not None
                texts = [e.text for e in app.snapshot.events]
                assert any(t.startswith("cluster lost") for t in texts)
                assert any(t.startswith("cluster answers again") for t in texts)

        run(body())
