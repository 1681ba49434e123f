"""The ``meshcache top`` application: screens, keys, the poll loop and the actions.

:class:`TopApp` owns a :class:`~meshcache.tui.source.DataSource` and a
:class:`~meshcache.tui.model.ClusterModel`. One worker polls every ``refresh`` seconds (the
source returns within its budget however slow a node is), feeds the model, and shows the
snapshot in the view on screen. Actions run in their own workers, behind a confirmation, and
are refused in read-only mode; their outcome goes to the status line and the event log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Input, Static, Tab, Tabs
from textual.worker import Worker, WorkerState

from meshcache.errors import CommandError, ErrorCode, MeshcacheError
from meshcache.tui import text
from meshcache.tui.actions import (
    DRAIN_TIMEOUT,
    Opened,
    Outcome,
    Refused,
    check_drain,
    check_edit,
    check_remove,
    remove_member_command,
    update_namespace_command,
)
from meshcache.tui.dialogs import ConfirmScreen, HelpScreen, PolicyScreen
from meshcache.tui.model import ClusterModel, MemberRow, Snapshot
from meshcache.tui.source import DataSource
from meshcache.tui.views import VIEWS, View

#: The smallest terminal the console lays out for.
MIN_WIDTH = 80
MIN_HEIGHT = 24

#: Keys the table itself handles, listed in the help with the bindings.
TABLE_KEYS = (
    ("↑ ↓ PgUp PgDn", "move the selection"),
    ("← →", "scroll the columns of a wide table"),
    ("Home End", "first / last row"),
)

CSS = """
MainScreen { layout: vertical; }
#topline { height: 1; background: $panel; color: $text; padding: 0 1; }
#banner { height: auto; background: $error; color: $text; text-style: bold; padding: 0 1;
          display: none; }
#banner.shown { display: block; }
#tabs { height: 2; }
#views { height: 1fr; }
.view { height: 1fr; }
.summary { height: 1; padding: 0 1; color: $text-muted; }
SortableTable { height: 1fr; }
#status { height: 1; padding: 0 1; color: $text-muted; }
#status.warning { color: $text-warning; }
#filter { height: 1; display: none; }
#too-small { display: none; width: 1fr; height: 1fr; content-align: center middle;
             text-style: bold; }
MainScreen.too-small > * { display: none; }
MainScreen.too-small > #too-small { display: block; }
.dialog-screen { align: center middle; }
.dialog { width: 76; max-width: 100%; height: auto; max-height: 100%; padding: 0 1;
          border: round $primary; background: $surface; }
.dialog-title { text-style: bold; margin-bottom: 1; }
.dialog-buttons { height: 1; margin-top: 1; }
.dialog-buttons Button { margin-right: 2; }
#help { height: 22; max-height: 100%; }
#help-body { height: 1fr; }
.field { height: 1; margin-bottom: 1; }
.field-label { width: 14; }
.field Input, .field Select { width: 1fr; }
#policy-message { height: auto; min-height: 1; }
#policy-message.error { color: $text-error; text-style: bold; }
"""


class MainScreen(Screen[None]):
    """The console's one screen: title line, banner, tabs, the views, status and footer.

    The table of the view on screen has the focus (the tab bar never takes it), so the arrow
    keys always move through rows.
    """

    AUTO_FOCUS = "#table-cluster"

    BINDINGS = [
        *(
            Binding(str(i), f"show_view({i - 1})", view.title, show=False)
            for i, view in enumerate(VIEWS, start=1)
        ),
        Binding("tab", "next_view(1)", "next view", show=False, priority=True),
        Binding("shift+tab", "next_view(-1)", "previous view", show=False, priority=True),
        Binding("s", "sort", "sort", tooltip="sort by the next column"),
        Binding("r", "reverse", "reverse", tooltip="reverse the sort"),
        Binding(
            "slash",
            "filter",
            "filter",
            key_display="/",
            tooltip="show only rows containing a text (Enter keeps it, Esc clears it)",
        ),
        Binding("escape", "clear_filter", "clear filter", show=False),
        Binding(
            "d",
            "drain",
            "drain",
            tooltip="drain the selected node: hand its keys over, leave the ring (Cluster, Ring)",
        ),
        Binding(
            "x",
            "remove",
            "remove dead",
            tooltip="take the selected dead node off the ring (Cluster, Ring)",
        ),
        Binding(
            "e",
            "edit",
            "edit policy",
            tooltip="edit the selected namespace's policy, compare-and-set (Namespaces)",
        ),
        Binding("question_mark", "help", "help", key_display="?", tooltip="this help"),
        Binding("q", "quit", "quit", tooltip="quit (also ctrl+q, ctrl+c)"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.views: list[View] = [view() for view in VIEWS]

    def compose(self) -> ComposeResult:
        yield Static("", id="topline", markup=False)
        yield Static("", id="banner", markup=False)
        tabs = Tabs(
            *(
                Tab(f"{i} {v.title}", id=f"tab-{v.name_}")
                for i, v in enumerate(self.views, start=1)
            ),
            id="tabs",
        )
        tabs.can_focus = False
        yield tabs
        with ContentSwitcher(initial=f"view-{self.views[0].name_}", id="views"):
            yield from self.views
        yield Static("", id="status", markup=False)
        yield Input(
            placeholder="filter rows: type, Enter keeps it, Esc clears", id="filter", compact=True
        )
        yield Footer()
        yield Static(
            f"meshcache top needs a terminal of at least {MIN_WIDTH}x{MIN_HEIGHT}.\n"
            "Make the window larger (q quits).",
            id="too-small",
            markup=False,
        )

    @property
    def top(self) -> TopApp:
        app = self.app
        assert isinstance(app, TopApp)
        return app

    def on_mount(self) -> None:
        self.fit(self.app.size.width, self.app.size.height)
        self.focus_table()
        self.top.start()

    def on_resize(self, event: Resize) -> None:
        self.fit(event.size.width, event.size.height)

    def fit(self, width: int, height: int) -> None:
        self.set_class(width < MIN_WIDTH or height < MIN_HEIGHT, "too-small")

    @property
    def active(self) -> View:
        switcher = self.query_one("#views", ContentSwitcher)
        return next(v for v in self.views if v.id == switcher.current)

    def focus_table(self) -> None:
        """Focus the table on screen, unless the filter field is open.

        The field's display, not its focus, decides: focus moves later, so a view switch
        handled just after "/" would otherwise take the keys meant for the field.
        """
        table = self.active.table
        if table is not None and not self.query_one("#filter", Input).display:
            table.focus()

    @on(Tabs.TabActivated)
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        name = str(event.tab.id).removeprefix("tab-")
        self.query_one("#views", ContentSwitcher).current = f"view-{name}"
        if self.top.snapshot is not None:
            self.active.show(self.top.snapshot, self.top.utc)
        self.focus_table()

    def action_show_view(self, index: int) -> None:
        self.query_one("#tabs", Tabs).active = f"tab-{self.views[index].name_}"

    def action_next_view(self, step: int) -> None:
        index = self.views.index(self.active)
        self.action_show_view((index + step) % len(self.views))

    def action_sort(self) -> None:
        table = self.active.table
        if table is not None:
            label = table.cycle_sort()
            self.top.say(f"sorted by {label}{' (descending)' if table.reverse else ''}")

    def action_reverse(self) -> None:
        table = self.active.table
        if table is not None:
            descending = table.reverse_sort()
            label = table.spec[table.sort_column].label
            self.top.say(f"sorted by {label}{' (descending)' if descending else ''}")

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        table = self.active.table
        field.value = table.filter_text if table is not None else ""
        # Shown and focused at once (inline display, not a class), so nothing typed right
        # after "/" is lost.
        self.query_one("#status", Static).display = False
        field.display = True
        field.focus()

    def action_clear_filter(self) -> None:
        for view in self.views:
            if view.table is not None:
                view.table.set_filter("")
        self._close_filter()
        self.top.say("filter cleared")

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        table = self.active.table
        if table is not None:
            table.set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._close_filter()
        self.top.say(f"filter: {event.value}" if event.value.strip() else "filter cleared")

    def _close_filter(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one("#status", Static).display = True
        self.focus_table()

    def selected(self) -> str | None:
        table = self.active.table
        return None if table is None else table.selected_key

    def action_drain(self) -> None:
        self.top.drain(self.selected() if self.active.name_ in ("cluster", "ring") else None)

    def action_remove(self) -> None:
        self.top.remove(self.selected() if self.active.name_ in ("cluster", "ring") else None)

    def action_edit(self) -> None:
        if self.active.name_ != "namespaces":
            self.top.say("edit: go to the Namespaces view (3) and select a namespace", True)
            return
        self.top.edit(self.selected())

    def action_help(self) -> None:
        numbers = {str(i) for i in range(1, len(self.views) + 1)}
        keys = [(f"1-{len(self.views)}", ", ".join(v.title for v in self.views))]
        keys += [
            (b.key_display or b.key, b.tooltip or b.description)
            for b in self.BINDINGS
            if isinstance(b, Binding) and b.key not in numbers
        ]
        keys += [*TABLE_KEYS, ("ctrl+p", "command palette (themes: light and dark)")]
        columns = [(c.label, c.help) for c in self.active.columns]
        self.app.push_screen(HelpScreen(keys, columns))

    async def action_quit(self) -> None:
        await self.top.action_quit()


class TopApp(App[int]):
    """``meshcache top``: the admin console.

    Args:
        source: where polls come from and actions go (live cluster or recording).
        refresh: seconds between polls.
        read_only: refuse every action.
        utc: show event times in UTC instead of local time (stable screenshots).
    """

    CSS = CSS
    TITLE = "meshcache top"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [Binding("ctrl+c", "quit", "quit", show=False, priority=True)]

    def __init__(
        self,
        source: DataSource,
        *,
        refresh: float = 1.0,
        read_only: bool = False,
        utc: bool = False,
    ) -> None:
        super().__init__()
        self.animation_level = "none"  # nothing moves but the figures: less to redraw
        self.source = source
        self.refresh_interval = refresh
        self.read_only = read_only
        self.utc = utc
        self.model = ClusterModel(source.entry, refresh)
        self.snapshot: Snapshot | None = None
        self.message = ""
        self._closed = False

    def get_default_screen(self) -> MainScreen:
        return MainScreen()

    def start(self) -> None:
        """Start polling (called once the main screen is up)."""
        self._show_topline()
        self.run_worker(self._poll_loop(), name="poll", group="poll", exclusive=True)

    @property
    def main(self) -> MainScreen:
        return next(s for s in self.screen_stack if isinstance(s, MainScreen))

    # -- polling -------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                snapshot = self.model.update(await self.source.poll(self.model.targets()))
            except Exception as exc:
                # An answer the model cannot read must not take the console down: say so and
                # keep polling (the next answers may be fine).
                self.model.note(f"could not read a poll: {type(exc).__name__}: {exc}", "error")
                self.say(f"could not read the nodes' answers: {exc}", warning=True)
            else:
                # While the console quits, the screen's widgets go before this loop is
                # cancelled: a poll that ends then has nothing to draw on.
                with contextlib.suppress(NoMatches):
                    self.show(snapshot)
            await self.source.pause(max(0.0, self.refresh_interval - (loop.time() - started)))

    def show(self, snapshot: Snapshot) -> None:
        """Show ``snapshot`` in the title line, the banner and the view on screen."""
        self.snapshot = snapshot
        main = self.main
        self._show_topline()
        banner = main.query_one("#banner", Static)
        if snapshot.lost:
            since = text.clock(snapshot.lost_since or snapshot.wall, self.utc)
            banner.update(
                f"CLUSTER LOST since {since}: {snapshot.problem or 'no node answers'}"
                f" — retrying every {self.refresh_interval:g} s"
            )
        banner.set_class(snapshot.lost, "shown")
        main.active.show(snapshot, self.utc)

    def _show_topline(self) -> None:
        snapshot = self.snapshot
        parts = [f"meshcache top · {self.source.entry}"]
        if snapshot is None:
            parts.append("connecting…")
        else:
            parts.append(f"updated {text.clock(snapshot.wall, self.utc)}")
        parts.append(f"refresh {self.refresh_interval:g}s")
        if self.read_only:
            parts.append("READ-ONLY")
        parts.append("? help")
        self.main.query_one("#topline", Static).update(" · ".join(parts))

    def say(self, message: str, warning: bool = False) -> None:
        """Show ``message`` on the status line (and as a notification when it is a warning)."""
        self.message = message
        status = self.main.query_one("#status", Static)
        status.update(message)
        status.set_class(warning, "warning")
        if warning:
            self.notify(message, severity="warning", timeout=6)

    # -- actions ---------------------------------------------------------------------------

    def _member(self, node_id: str | None) -> MemberRow | None:
        if node_id is None or self.snapshot is None:
            return None
        return self.snapshot.member(node_id)

    def drain(self, node_id: str | None) -> None:
        """Confirm, then send LEAVE to the selected node (refused in read-only mode)."""
        try:
            member = check_drain(self._member(node_id), self.read_only)
        except Refused as exc:
            self.say(str(exc), warning=True)
            return
        lines = [
            f"{member.node_id} hands every key it holds to the owners that replace it,",
            "then leaves the ring. The process keeps running until you stop it.",
        ]

        def answered(yes: bool | None) -> None:
            if yes:
                self._drain(member)
            else:
                self.say("drain cancelled")

        self.push_screen(ConfirmScreen(f"Drain {member.node_id}?", lines, yes="Drain"), answered)

    @work(group="actions", exit_on_error=False)
    async def _drain(self, member: MemberRow) -> None:
        self.say(f"draining {member.node_id}…")
        self.model.note("drain requested", node=member.node_id)
        try:
            answer = await self.source.leave(member.address, DRAIN_TIMEOUT)
        except CommandError as exc:
            self._failed(f"drain of {member.node_id} refused: {exc.code}: {exc.message}", member)
            return
        except (MeshcacheError, OSError) as exc:
            self._failed(f"drain of {member.node_id} failed: {exc}", member)
            return
        moved = answer.get("moved")
        message = (
            f"drained {member.node_id}: {moved} records handed over, ring version "
            f"{answer.get('ring_version')}"
        )
        self.model.note(f"drained: {moved} records handed over", node=member.node_id)
        self.say(message)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """An action that failed in an unforeseen way is told, not lost (nor fatal)."""
        worker = event.worker
        if worker.group == "actions" and event.state is WorkerState.ERROR:
            self._failed(f"{worker.name or 'action'} failed: {worker.error}")

    def _failed(self, message: str, member: MemberRow | None = None) -> None:
        self.model.note(message, "error", "" if member is None else member.node_id)
        self.say(message, warning=True)

    def remove(self, node_id: str | None) -> None:
        """Confirm, then take a dead member off the ring (compare-and-set on the version
        shown when the confirmation opened)."""
        try:
            member = check_remove(self._member(node_id), self.read_only)
        except Refused as exc:
            self.say(str(exc), warning=True)
            return
        version = self.snapshot.config_version if self.snapshot else None
        if version is None:
            self.say("the config version is not known yet: try again in a moment", True)
            return
        lines = [
            f"{member.node_id} is {member.gossip}. Its ring slots go to the other members;",
            "keys held only by it are lost unless replicas hold them.",
            f"compare-and-set on config version {version}",
        ]

        def answered(yes: bool | None) -> None:
            if yes:
                self._remove(member, version)
            else:
                self.say("removal cancelled")

        self.push_screen(
            ConfirmScreen(f"Remove {member.node_id} from the ring?", lines, yes="Remove"), answered
        )

    @work(group="actions", exit_on_error=False)
    async def _remove(self, member: MemberRow, version: int) -> None:
        command = remove_member_command(member.node_id, version)
        try:
            answer = await self.source.propose(self._targets(), command)
        except CommandError as exc:
            if exc.code == ErrorCode.VERSION_CONFLICT:
                self._failed(
                    f"not removed: the config changed since version {version} (someone "
                    "committed meanwhile); look at the ring again and retry",
                    member,
                )
            else:
                self._failed(f"removal refused: {exc.code}: {exc.message}", member)
            return
        except (MeshcacheError, OSError) as exc:
            self._failed(f"removal failed: {exc}", member)
            return
        message = f"removed {member.node_id} from the ring (config version {answer.get('version')})"
        self.model.note(
            f"removed from the ring (config version {answer.get('version')})", node=member.node_id
        )
        self.say(message)

    def _targets(self) -> list[str]:
        return [m.address for m in (self.snapshot.members if self.snapshot else ()) if m.reachable]

    def edit(self, name: str | None) -> None:
        """Open the policy form on the selected namespace, at the freshly read config."""
        try:
            check_edit(self.read_only)
        except Refused as exc:
            self.say(str(exc), warning=True)
            return
        if name is None:
            self.say("select a namespace first", True)
            return
        self._open_form(name)

    @work(group="actions", exclusive=True, exit_on_error=False)
    async def _open_form(self, name: str) -> None:
        try:
            opened = await self._read(name)
        except (MeshcacheError, OSError) as exc:
            self.say(f"cannot read the config: {exc}", True)
            return
        if opened is None:
            self.say(f"namespace {name} is not in the committed config", True)
            return

        def done(message: str | None) -> None:
            if message:
                self.model.note(message)
                self.say(message)
            else:
                self.say("edit cancelled")

        self.push_screen(PolicyScreen(opened, self._commit_policy), done)

    async def _read(self, name: str) -> Opened | None:
        config = await self.source.config(self._targets())
        policy = (config.get("namespaces") or {}).get(name)
        version = config.get("version")
        if not isinstance(policy, Mapping) or not isinstance(version, int):
            return None
        return Opened(name, version, dict(policy))

    async def _commit_policy(self, opened: Opened, changes: Mapping[str, Any]) -> Outcome:
        """Commit ``changes`` compare-and-set on ``opened.version``; on a conflict, the fresh
        values for the form."""
        command = update_namespace_command(opened.name, changes, opened.version)
        try:
            answer = await self.source.propose(self._targets(), command)
        except CommandError as exc:
            if exc.code != ErrorCode.VERSION_CONFLICT:
                return Outcome(False, f"refused: {exc.code}: {exc.message}")
            try:
                fresh = await self._read(opened.name)
            except (MeshcacheError, OSError) as read_error:
                return Outcome(
                    False, f"conflict, and the fresh config cannot be read: {read_error}"
                )
            message = (
                f"CONFLICT: the config changed since version {opened.version} (someone else "
                "committed). Nothing was saved. The form now shows the fresh values"
                + ("" if fresh is None else f" of version {fresh.version}")
                + ": review them and save again."
            )
            self.model.note(
                f"policy change of {opened.name} lost a compare-and-set at version "
                f"{opened.version}",
                "warn",
            )
            return Outcome(False, message, fresh)
        except (MeshcacheError, OSError) as exc:
            return Outcome(False, f"not committed: {exc}")
        return Outcome(
            True,
            f"namespace {opened.name}: {', '.join(sorted(changes))} committed "
            f"(config version {answer.get('version')})",
        )

    # -- leaving ------------------------------------------------------------------------

    async def action_quit(self) -> None:
        await self._close()
        self.exit(0)

    async def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self.workers.cancel_group(self, "poll")
            await self.source.aclose()

    async def on_unmount(self) -> None:
        await self._close()


__all__ = ["MIN_HEIGHT", "MIN_WIDTH", "MainScreen", "TopApp"]
