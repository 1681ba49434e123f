"""The console's keys, dialogs and messages, on the recorded cluster (no nodes needed)."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Input

from meshcache.tui.app import MainScreen, TopApp
from meshcache.tui.dialogs import ConfirmScreen, HelpScreen, PolicyScreen
from meshcache.tui.model import ClusterModel, Snapshot
from meshcache.tui.source import NodeReply, Poll, RecordedSource
from meshcache.tui.table import SortableTable
from tests.tui.helpers import row, run, screen_text, wait_screen, wait_true
from tests.tui.recording import NODES, POLLS, recorded_polls

SIZE = (160, 48)


class Recorded(RecordedSource):
    """The recording, remembering whether the app closed it."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def replayed(app: TopApp) -> None:
    await wait_true(
        lambda: app.snapshot is not None and app.snapshot.polls == POLLS, 30, "the replay"
    )


def make(read_only: bool = False) -> tuple[TopApp, Recorded]:
    source = Recorded(recorded_polls(), entry=NODES[0])
    return TopApp(source, refresh=1.0, read_only=read_only, utc=True), source


def table(app: TopApp) -> SortableTable:
    found = app.main.active.table
    assert found is not None
    return found


async def select(pilot: Any, app: TopApp, key: str) -> None:
    await pilot.press("home")
    for _ in range(table(app).row_count):
        if table(app).selected_key == key:
            return
        await pilot.press("down")
    assert table(app).selected_key == key


def test_a_terminal_below_80x24_gets_a_message_not_a_traceback() -> None:
    async def body() -> None:
        app, _ = make()
        async with app.run_test(size=(70, 20)) as pilot:
            await replayed(app)
            await wait_screen(
                app,
                lambda s: "needs a terminal of at least 80x24" in s and row(s, NODES[0]) is None,
                10,
                "the too-small message",
            )
            await pilot.resize_terminal(80, 24)
            await wait_screen(app, lambda s: row(s, NODES[0]) is not None, 10, "the table")
            assert "needs a terminal" not in screen_text(app)

    run(body())


def test_sort_cycles_columns_and_reverse_flips() -> None:
    async def body() -> None:
        app, _ = make()
        async with app.run_test(size=SIZE) as pilot:
            await replayed(app)
            assert table(app).shown_keys == NODES
            await pilot.press("s")  # by gossip state: alive < dead
            screen = await wait_screen(app, lambda s: "gossip▲" in s, 10, "the sort mark")
            assert "sorted by gossip" in screen
            assert table(app).shown_keys[-1] == NODES[4]
            await pilot.press("r")
            screen = await wait_screen(app, lambda s: "gossip▼" in s, 10, "the reversed mark")
            assert "sorted by gossip (descending)" in screen
            assert table(app).shown_keys[0] == NODES[4]
            for _ in range(len(table(app).spec) - 1):
                await pilot.press("s")
            await wait_screen(app, lambda s: "node▼" in s, 10, "back to the first column")
            assert table(app).shown_keys == NODES[::-1]

    run(body())


def test_filter_keeps_matching_rows_and_escape_clears_it() -> None:
    async def body() -> None:
        app, _ = make()
        async with app.run_test(size=SIZE) as pilot:
            await replayed(app)
            await pilot.press("slash", *"leaving", "enter")
            await wait_screen(app, lambda s: "filter: leaving" in s, 10, "the filter")
            assert table(app).shown_keys == [NODES[3]]
            await pilot.press("escape")
            await wait_screen(app, lambda s: "filter cleared" in s, 10, "the filter cleared")
            assert table(app).shown_keys == NODES

    run(body())


def test_keys_typed_right_after_a_view_switch_and_slash_reach_the_filter() -> None:
    """The switch's own message is handled after "/" opened the field (a terminal sends the
    keys faster than the app handles them): the field keeps the focus, "4" is typed into it
    and does not switch to view 4."""

    async def body() -> None:
        app, _ = make()
        async with app.run_test(size=SIZE) as pilot:
            await replayed(app)
            await pilot.press("2")
            screen = app.screen
            assert isinstance(screen, MainScreen)
            screen.action_show_view(0)
            screen.action_filter()
            await pilot.press("4", "enter")
            await wait_screen(app, lambda s: "filter: 4" in s, 10, "the filter")
            assert screen.active is screen.views[0]

    run(body())


def test_help_lists_every_key() -> None:
    async def body() -> None:
        app, _ = make()
        async with app.run_test(size=(80, 24)) as pilot:
            await replayed(app)
            await pilot.press("question_mark")
            await wait_true(lambda: isinstance(app.screen, HelpScreen), 10, "the help")
            help_screen = app.screen
            assert isinstance(help_screen, HelpScreen)
            keys = {key for key, _ in help_screen.keys}
            assert {"1-5", "tab", "shift+tab", "s", "r", "/", "escape", "d", "x", "e"} <= keys
            assert {"?", "q", "ctrl+p"} <= keys
            assert all(what for _, what in help_screen.keys)
            assert [c for c, _ in help_screen.columns][:3] == ["node", "gossip", "seen"]
            await pilot.press("escape")
            await wait_true(lambda: isinstance(app.screen, MainScreen), 10, "the help closed")

    run(body())


def test_q_quits_cleanly_and_closes_the_source() -> None:
    async def body() -> tuple[int | None, bool]:
        app, source = make()
        async with app.run_test(size=SIZE) as pilot:
            await replayed(app)
            await pilot.press("q")
            await wait_true(lambda: not app.is_running, 10, "the app to end")
        return app.return_code, source.closed

    assert run(body()) == (0, True)


def test_actions_ask_first_and_report_their_outcome() -> None:
    async def body() -> None:
        app, source = make()
        async with app.run_test(size=SIZE) as pilot:
            await replayed(app)
            # Drain: confirmed, sent, and the refusal is shown.
            await select(pilot, app, NODES[1])
            await pilot.press("d")
            await wait_true(lambda: isinstance(app.screen, ConfirmScreen), 10, "confirm")
            assert f"Drain {NODES[1]}?" in screen_text(app)
            await pilot.press("n")
            await wait_screen(app, lambda s: "drain cancelled" in s, 10, "the cancel")
            await pilot.press("d", "y")
            await wait_screen(app, lambda s: "this is a recording" in s, 10, "the refusal")
            assert source.refused == [f"LEAVE {NODES[1]}"]
            # Removal: refused at once for a live node, confirmed for the dead one.
            await pilot.press("x")
            await wait_screen(app, lambda s: "not dead: drain it instead" in s, 10, "refusal")
            assert isinstance(app.screen, MainScreen)
            await select(pilot, app, NODES[4])
            await pilot.press("d")
            await wait_screen(app, lambda s: "does not answer" in s, 10, "no drain of the dead")
            await pilot.press("x")
            await wait_true(lambda: isinstance(app.screen, ConfirmScreen), 10, "confirm")
            assert "compare-and-set on config version 13" in screen_text(app)
            await pilot.press("y")
            await wait_screen(
                app, lambda s: "removal failed" in s and "recording" in s, 10, "the outcome"
            )
            assert source.refused[-1] == "CONFIG_PROPOSE remove_member"
            assert app.snapshot is not None
            assert any(e.level == "error" for e in app.model.last.events)  # type: ignore[union-attr]

    run(body())


def test_the_policy_form_checks_its_fields() -> None:
    async def body() -> None:
        app, _ = make()
        async with app.run_test(size=(80, 24)) as pilot:
            await replayed(app)
            await pilot.press("e")
            await wait_screen(app, lambda s: "go to the Namespaces view" in s, 10, "hint")
            await pilot.press("3")
            await select(pilot, app, "sessions")
            await pilot.press("e")
            await wait_true(lambda: isinstance(app.screen, PolicyScreen), 10, "the form")
            form = app.screen
            assert isinstance(form, PolicyScreen)
            await pilot.pause()
            screen = screen_text(app)
            assert "namespace sessions — config version 13" in screen  # fits in 80x24
            assert form.query_one("#max_bytes", Input).value == "256MiB"
            assert form.query_one("#default_ttl", Input).value == "1800"
            await pilot.press("ctrl+s")
            await wait_screen(app, lambda s: "nothing to change" in s, 10, "no change")
            field = form.query_one("#max_bytes", Input)
            field.focus()
            field.value = ""
            await pilot.press(*"lots", "ctrl+s")
            await wait_screen(app, lambda s: "max bytes: 'lots' is not a size" in s, 10, "error")
            assert isinstance(app.screen, PolicyScreen)
            await pilot.press("escape")
            await wait_screen(app, lambda s: "edit cancelled" in s, 10, "cancelled")

    run(body())


def test_read_only_refuses_before_asking() -> None:
    async def body() -> None:
        app, source = make(read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            await replayed(app)
            for key, what in (("d", "drain"), ("x", "removing a member")):
                await pilot.press(key)
                await wait_screen(
                    app, lambda s, w=what: f"read-only mode: {w} is disabled" in s, 10, what
                )
                assert isinstance(app.screen, MainScreen)
            assert source.refused == []

    run(body())


def _down(at: float) -> Poll:
    return Poll(
        at,
        START + at,
        {n: NodeReply(n, at, START + at, problem=f"cannot reach {n}: refused") for n in NODES},
    )


START = 1_700_000_000.0


def test_a_lost_cluster_shows_a_banner() -> None:
    async def body() -> None:
        polls = [*recorded_polls()[:3], _down(3.0), _down(4.0)]
        app = TopApp(RecordedSource(polls, entry=NODES[0]), refresh=1.0, utc=True)
        async with app.run_test(size=(80, 24)):
            screen = await wait_screen(app, lambda s: "CLUSTER LOST" in s, 10, "the banner")
            assert "CLUSTER LOST since 22:13:23: cannot reach 10.0.1.1:7400: refused" in screen

    run(body())


def test_an_unreadable_poll_is_reported_and_polling_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    update = ClusterModel.update

    def flaky(self: ClusterModel, poll: Poll) -> Snapshot:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ValueError("a field of an odd type")
        return update(self, poll)

    monkeypatch.setattr(ClusterModel, "update", flaky)

    async def body() -> None:
        app, _ = make()
        async with app.run_test(size=SIZE):
            await wait_true(lambda: calls == POLLS, 30, "every poll")
            screen = await wait_screen(
                app, lambda s: "could not read the nodes' answers" in s, 10, "the message"
            )
            assert row(screen, NODES[0]) is not None

    run(body())
