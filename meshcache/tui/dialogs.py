"""Modal screens: a yes/no confirmation, the key help, and the namespace policy form.

The policy form commits through a function the app gives it, which returns an
:class:`~meshcache.tui.actions.Outcome`. On a conflict the form stays open, loads the fresh
values and the fresh version, and says so: saving again is then based on what the operator
now sees.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from meshcache.errors import ConfigError
from meshcache.tui.actions import (
    CONSISTENCIES,
    EVICTIONS,
    Opened,
    Outcome,
    changes_of,
    describe_changes,
    form_values,
    parse_form,
)


class ConfirmScreen(ModalScreen[bool]):
    """Asks one question; dismisses with True for yes (``y``), False for no (``n``, Escape)."""

    BINDINGS = [
        Binding("y", "answer(True)", "yes"),
        Binding("n", "answer(False)", "no"),
        Binding("escape", "answer(False)", "no", show=False),
    ]

    def __init__(self, title: str, lines: Sequence[str], yes: str = "Yes") -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.lines = list(lines)
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm"):
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield Static("\n".join(self.lines), classes="dialog-body", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="error", compact=True)
                yield Button("Cancel (n)", id="no", compact=True)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(False)


class HelpScreen(ModalScreen[None]):
    """Every key of the console, and what the current view's columns mean."""

    BINDINGS = [
        Binding("escape", "close", "close"),
        Binding("question_mark", "close", "close", show=False),
        Binding("q", "close", "close", show=False),
    ]

    def __init__(self, keys: Sequence[tuple[str, str]], columns: Sequence[tuple[str, str]]) -> None:
        super().__init__(classes="dialog-screen")
        self.keys = list(keys)
        self.columns = list(columns)

    def compose(self) -> ComposeResult:
        width = max((len(k) for k, _ in [*self.keys, *self.columns]), default=4) + 2
        lines = ["Keys", *(f"  {k.ljust(width)}{what}" for k, what in self.keys)]
        if self.columns:
            lines += ["", "Columns of this view"]
            lines += [f"  {k.ljust(width)}{what}" for k, what in self.columns]
        lines += ["", "Escape or ? closes this help."]
        with Vertical(classes="dialog", id="help"):
            yield Static("meshcache top — help", classes="dialog-title")
            with VerticalScroll(id="help-body"):
                yield Static("\n".join(lines), markup=False)

    def action_close(self) -> None:
        self.dismiss(None)


Commit = Callable[[Opened, dict[str, object]], Awaitable[Outcome]]


class PolicyScreen(ModalScreen[str | None]):
    """Edit one namespace's policy; commits compare-and-set on the version it was opened on.

    Dismisses with the message of a committed change, or None when cancelled.
    """

    BINDINGS = [
        Binding("escape", "cancel", "cancel"),
        Binding("ctrl+s", "save", "save"),
    ]

    def __init__(self, opened: Opened, commit: Commit) -> None:
        super().__init__(classes="dialog-screen")
        self.opened = opened
        self.commit = commit

    def compose(self) -> ComposeResult:
        values = form_values(self.opened.policy)
        with Vertical(classes="dialog", id="policy"):
            yield Static("", id="policy-title", classes="dialog-title", markup=False)
            with Horizontal(classes="field"):
                yield Label("eviction", classes="field-label")
                yield Select(
                    [(e, e) for e in EVICTIONS],
                    value=values["eviction"],
                    allow_blank=False,
                    compact=True,
                    id="eviction",
                )
            for name, label, hint in (
                ("max_bytes", "max bytes", "e.g. 256MiB; empty: unbounded"),
                ("max_items", "max keys", "empty: unbounded"),
                ("default_ttl", "default TTL", "seconds or 5m; empty: none"),
                ("replicas", "replicas", "copies of each key"),
            ):
                with Horizontal(classes="field"):
                    yield Label(label, classes="field-label")
                    yield Input(values[name], placeholder=hint, compact=True, id=name)
            with Horizontal(classes="field"):
                yield Label("consistency", classes="field-label")
                yield Select(
                    [(c, c) for c in CONSISTENCIES],
                    value=values["consistency"],
                    allow_blank=False,
                    compact=True,
                    id="consistency",
                )
            yield Static("", id="policy-message", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (ctrl+s)", id="save", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self._show_title()

    def _show_title(self) -> None:
        self.query_one("#policy-title", Static).update(
            f"namespace {self.opened.name} — config version {self.opened.version}"
        )

    def values(self) -> dict[str, str]:
        """The form's fields as text."""
        out: dict[str, str] = {}
        for name in ("eviction", "consistency"):
            out[name] = str(self.query_one(f"#{name}", Select).value)
        for name in ("max_bytes", "max_items", "default_ttl", "replicas"):
            out[name] = self.query_one(f"#{name}", Input).value
        return out

    def load(self, opened: Opened) -> None:
        """Show ``opened``'s values; saving is then based on its version."""
        self.opened = opened
        values = form_values(opened.policy)
        for name in ("eviction", "consistency"):
            self.query_one(f"#{name}", Select).value = values[name]
        for name in ("max_bytes", "max_items", "default_ttl", "replicas"):
            self.query_one(f"#{name}", Input).value = values[name]
        self._show_title()

    def say(self, message: str, error: bool = False) -> None:
        widget = self.query_one("#policy-message", Static)
        widget.update(message)
        widget.set_class(error, "error")

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_save()

    def action_save(self) -> None:
        try:
            wanted = parse_form(self.values())
        except ConfigError as exc:
            self.say(str(exc), error=True)
            return
        changes = changes_of(self.opened.policy, wanted)
        if not changes:
            self.say("nothing to change: the values are the committed ones")
            return
        lines = [
            *describe_changes(self.opened.policy, changes),
            "",
            f"compare-and-set on config version {self.opened.version}",
        ]

        def answered(yes: bool | None) -> None:
            if yes:
                self._commit(changes)

        self.app.push_screen(
            ConfirmScreen(f"Commit to namespace {self.opened.name}?", lines, yes="Commit"),
            answered,
        )

    @work(exclusive=True, group="policy-commit")
    async def _commit(self, changes: dict[str, object]) -> None:
        self.say("committing…")
        try:
            outcome = await self.commit(self.opened, changes)
        except Exception as exc:  # shown in the form; the console keeps running
            self.say(f"not committed: {type(exc).__name__}: {exc}", error=True)
            return
        if outcome.ok:
            self.dismiss(outcome.message)
            return
        if outcome.fresh is not None:
            self.load(outcome.fresh)
        self.say(outcome.message, error=True)


__all__ = ["ConfirmScreen", "HelpScreen", "PolicyScreen"]
