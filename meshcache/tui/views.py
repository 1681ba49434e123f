"""The views of ``meshcache top``: each turns a :class:`~meshcache.tui.model.Snapshot` into rows.

A view is a widget with a one-line summary and (for all but the placeholder) a
:class:`~meshcache.tui.table.SortableTable`. The app keeps them in :data:`VIEWS`, in the order
of their number keys; adding a view is one class here and one entry there. The Hot keys view
holds the place of the figures nodes do not export yet.

Colours come from the app's theme (``text-error``, ``text-warning``, ``text-success``,
``foreground-muted``), so they stay readable on light and dark themes alike.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from meshcache.tui import hotkeys, text
from meshcache.tui.hotkeys import HotKeyRow
from meshcache.tui.model import MemberRow, Snapshot
from meshcache.tui.table import Cell, Column, Row, SortableTable

#: Width of the ops/s sparkline column, in characters.
TREND_WIDTH = 12


class Palette:
    """Rich styles for states, read from the app's current theme."""

    def __init__(self, variables: dict[str, str]) -> None:
        def style(name: str, fallback: str) -> str:
            value = variables.get(name, fallback)
            return fallback if value.startswith("auto") else value

        self.error = f"bold {style('text-error', 'red')}"
        self.warning = style("text-warning", "yellow")
        self.success = style("text-success", "green")
        self.muted = style("foreground-muted", "grey50")

    def state(self, state: str | None) -> str:
        return {
            "alive": self.success,
            "active": self.success,
            "suspect": self.warning,
            "joining": self.warning,
            "leaving": self.warning,
            "dead": self.error,
            "left": self.muted,
        }.get(state or "", "")

    def level(self, level: str) -> str:
        return {"error": self.error, "warn": self.warning}.get(level, "")


class View(Vertical):
    """One screen of the console."""

    name_: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: The columns of its table (empty: no table).
    columns: ClassVar[tuple[Column, ...]] = ()
    sort_column: ClassVar[int] = 0
    reverse: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__(id=f"view-{self.name_}", classes="view")
        self.summary = Static("", classes="summary", markup=False)
        self.table: SortableTable | None = None
        if self.columns:
            self.table = SortableTable(
                self.columns,
                sort_column=self.sort_column,
                reverse=self.reverse,
                id=f"table-{self.name_}",
            )

    def compose(self) -> ComposeResult:
        yield self.summary
        if self.table is not None:
            yield self.table

    @property
    def palette(self) -> Palette:
        return Palette(self.app.theme_variables)

    def show(self, snapshot: Snapshot, utc: bool = False) -> None:
        """Show ``snapshot``; cheap when nothing changed."""
        summary = self.describe(snapshot)
        if str(self.summary.content) != summary:
            self.summary.update(summary)
        if self.table is not None:
            self.table.set_rows(self.rows(snapshot, utc))

    def describe(self, snapshot: Snapshot) -> str:
        return ""

    def rows(self, snapshot: Snapshot, utc: bool) -> list[Row]:
        return []


def _plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"


def _styled(value: str, style: str) -> Cell:
    return Text(value, style=style) if style else value


class ClusterView(View):
    """Members: liveness, role, ring share, load, traffic and repair figures."""

    name_ = "cluster"
    title = "Cluster"
    columns = (
        Column("node", "node", help="node id (its data address unless named)"),
        Column("gossip", "gossip", help="alive / suspect / dead / left, by SWIM's newest news"),
        Column("seen", "seen", help="when the node last answered the console itself"),
        Column("raft", "raft", help="leader / voter of the config group, or member"),
        Column(
            "ring", "ring", help="ring state: joining / active / leaving; a dash: not on the ring"
        ),
        Column("share", "share", "right", "share of the key space it owns as primary"),
        Column("keys", "keys", "right", "keys it holds, replicas included"),
        Column("memory", "memory", "right", "accounted bytes / sum of namespace max_bytes"),
        Column("ops", "ops/s", "right", "client requests per second (from /metrics)"),
        Column("trend", "ops/s trend", help="ops/s over the last minutes, newest on the right"),
        Column("hit", "hit%", "right", "reads that found the key, over the last interval"),
        Column("p50", "p50", "right", "median latency of client ops, last 10-20 s"),
        Column("p99", "p99", "right", "99th percentile latency of client ops, last 10-20 s"),
        Column("hints", "hints", "right", "writes held for unreachable owners"),
        Column("handoff", "handoff out/in", "right", "records sent / received by hand-off"),
        Column("conns", "conns", "right", "client connections open"),
        Column("inc", "inc", "right", "gossip incarnation"),
        Column("zone", "zone", help="zone of the member"),
        Column("cfg", "ring v", "right", "ring version the node runs"),
    )

    def describe(self, snapshot: Snapshot) -> str:
        members = snapshot.members
        if not members:
            return "waiting for the first answers…"
        leader = next((m.node_id for m in members if m.raft == "leader"), None)
        ops = [m.ops for m in members if m.ops is not None]
        parts = [
            f"{len(members)} members ({snapshot.reachable} answer)",
            f"leader {leader or '?'}",
            f"ring v{text.optional(snapshot.ring_version)}",
            f"cfg v{text.optional(snapshot.config_version)}",
            f"{text.rate(sum(ops)) if ops else text.UNKNOWN} ops/s",
        ]
        return " · ".join(parts)

    def rows(self, snapshot: Snapshot, utc: bool) -> list[Row]:
        palette = self.palette
        return [self._row(m, palette) for m in snapshot.members]

    @staticmethod
    def _row(m: MemberRow, palette: Palette) -> Row:
        if m.reachable:
            seen: Cell = text.ago(m.last_seen)
        else:
            seen = Text(
                "never" if m.last_seen is None else text.ago(m.last_seen), style=palette.error
            )
        memory_style = ""
        if m.limit and m.bytes is not None and m.bytes >= 0.9 * m.limit:
            memory_style = palette.warning
        handoff = (
            text.UNKNOWN
            if m.handoff_out is None
            else f"{text.count(m.handoff_out)}/{text.count(m.handoff_in)}"
        )
        raft_style = palette.success if m.raft == "leader" else ""
        cells: tuple[Cell, ...] = (
            m.node_id,
            _styled(m.gossip, palette.state(m.gossip)),
            seen,
            _styled(m.raft, raft_style),
            _styled(m.ring_state or text.UNKNOWN, palette.state(m.ring_state)),
            text.share(m.share),
            text.count(m.keys),
            _styled(text.memory(m.bytes, m.limit), memory_style),
            text.rate(m.ops),
            text.sparkline(m.trend, TREND_WIDTH) if m.trend else " " * TREND_WIDTH,
            text.percent(m.hit_ratio),
            text.latency(m.p50),
            text.latency(m.p99),
            _styled(text.count(m.hints), palette.warning if m.hints else ""),
            handoff,
            text.count(m.connections),
            text.optional(m.incarnation),
            m.zone or text.UNKNOWN,
            text.optional(m.config_version),
        )
        sort = (
            m.node_id,
            m.gossip,
            m.last_seen,
            m.raft,
            m.ring_state,
            m.share,
            m.keys,
            m.bytes,
            m.ops,
            sum(m.trend[-10:]) if m.trend else None,
            m.hit_ratio,
            m.p50,
            m.p99,
            m.hints,
            m.handoff_out,
            m.connections,
            m.incarnation,
            m.zone,
            m.config_version,
        )
        return Row(m.node_id, cells, sort)


class RingView(View):
    """The committed ring: version, each member's state and share, and the balance."""

    name_ = "ring"
    title = "Ring"
    columns = (
        Column("node", "node", help="ring member"),
        Column("state", "state", help="joining / active / leaving"),
        Column("share", "share", "right", "share of the key space it owns as primary"),
        Column("weight", "weight", "right", "relative weight (vnodes = weight x 512)"),
        Column("zone", "zone", help="zone: replicas go to distinct zones first"),
        Column("gossip", "gossip", help="its liveness by gossip"),
        Column("runs", "runs v", "right", "the ring version the node itself answered"),
        Column("moving", "moving", "right", "ranges it is pulling in or handing over now"),
        Column("address", "address", help="data address"),
    )

    def describe(self, snapshot: Snapshot) -> str:
        states: dict[str, int] = {}
        for r in snapshot.ring:
            states[r.state] = states.get(r.state, 0) + 1
        counted = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no members"
        balance = text.UNKNOWN if snapshot.balance is None else f"{snapshot.balance:.2f}"
        version = text.optional(snapshot.ring_version)
        agreed = "all nodes run it" if snapshot.ring_agreed else "NOT all nodes run it yet"
        moving = snapshot.ranges_moving
        moves = "" if moving is None else f" · {text.count(moving)} ranges moving"
        return f"ring v{version} · {counted} · balance {balance} max/mean · {agreed}{moves}"

    def rows(self, snapshot: Snapshot, utc: bool) -> list[Row]:
        palette = self.palette
        rows = []
        for r in snapshot.ring:
            stale = r.runs is not None and r.runs != snapshot.ring_version
            cells: tuple[Cell, ...] = (
                r.node_id,
                _styled(r.state, palette.state(r.state)),
                text.share(r.share),
                str(r.weight),
                r.zone or text.UNKNOWN,
                _styled(r.gossip, palette.state(r.gossip)),
                _styled(text.optional(r.runs), palette.warning if stale else ""),
                text.count(r.moving),
                r.address,
            )
            sort = (
                r.node_id, r.state, r.share, r.weight, r.zone, r.gossip, r.runs, r.moving,
                r.address,
            )  # fmt: skip
            rows.append(Row(r.node_id, cells, sort))
        return rows


class NamespacesView(View):
    """Namespaces: committed policy and the figures summed over the nodes that answer."""

    name_ = "namespaces"
    title = "Namespaces"
    columns = (
        Column("name", "namespace", help="namespace name"),
        Column("eviction", "evict", help="eviction policy: lru / lfu / ttl / none"),
        Column("max_bytes", "max bytes", "right", "per-node bound on accounted bytes"),
        Column("max_items", "max keys", "right", "per-node bound on keys"),
        Column("ttl", "ttl", "right", "default TTL of a write that names none"),
        Column("replicas", "repl", "right", "copies of each key"),
        Column("consistency", "acks", help="when a write is acknowledged: one / quorum / all"),
        Column(
            "keys",
            "keys",
            "right",
            "distinct keys on the nodes that answer (their copies / each key's copies on them); "
            "~: a ring member holding keys does not answer, expected count from the ring",
        ),
        Column(
            "bytes", "bytes", "right", "accounted bytes on the nodes that answer, copies included"
        ),
        Column("hit", "hit%", "right", "reads that found the key, over the last interval"),
        Column("evictions", "evict/s", "right", "keys evicted per second, all nodes"),
        Column("expirations", "expire/s", "right", "keys expired per second, all nodes"),
        Column("applied", "applied", "right", "nodes running the committed policy / answering"),
        Column(
            "hot",
            "hot keys",
            help="hot-key policy: off, or on with share and rate thresholds, copies, lease",
        ),
        Column(
            "loader",
            "loader",
            help="read-through: off, or the source, loaded values' TTL, notify, refresh-ahead, "
            "stale-if-error",
        ),
    )

    def describe(self, snapshot: Snapshot) -> str:
        return (
            f"{len(snapshot.namespaces)} namespaces · config v"
            f"{text.optional(snapshot.config_version)} · e: edit the selected policy"
        )

    def rows(self, snapshot: Snapshot, utc: bool) -> list[Row]:
        palette = self.palette
        rows = []
        for n in snapshot.namespaces:
            behind = n.nodes and n.applied < n.nodes
            cells: tuple[Cell, ...] = (
                n.name,
                n.eviction,
                "unbounded" if n.max_bytes is None else text.size(n.max_bytes),
                "unbounded" if n.max_items is None else text.count(n.max_items),
                text.duration(n.default_ttl),
                text.optional(n.replicas),
                n.consistency,
                f"~{text.count(n.keys)}" if n.keys_estimated else text.count(n.keys),
                text.size(n.bytes),
                text.percent(n.hit_ratio),
                text.rate(n.evictions),
                text.rate(n.expirations),
                _styled(f"{n.applied}/{n.nodes}", palette.warning if behind else ""),
                n.hot,
                n.loader,
            )
            sort = (
                n.name,
                n.eviction,
                n.max_bytes,
                n.max_items,
                n.default_ttl,
                n.replicas,
                n.consistency,
                n.keys,
                n.bytes,
                n.hit_ratio,
                n.evictions,
                n.expirations,
                n.applied,
                n.hot,
                n.loader,
            )
            rows.append(Row(n.name, cells, sort))
        return rows


class EventsView(View):
    """What changed between polls, newest first; the selection stays on the newest event
    while it is on the first row (``r`` turns the log oldest-first)."""

    name_ = "events"
    title = "Events"
    reverse = True
    columns = (
        Column("time", "time", help="when the console noticed it"),
        Column("level", "level", help="info / warn / error"),
        Column("node", "node", help="the member it is about"),
        Column("event", "event", help="what changed"),
    )

    def describe(self, snapshot: Snapshot) -> str:
        warnings = sum(1 for e in snapshot.events if e.level != "info")
        return f"{len(snapshot.events)} events, newest first · {warnings} warnings or errors"

    def show(self, snapshot: Snapshot, utc: bool = False) -> None:
        table = self.table
        assert table is not None
        follow = table.cursor_row == 0
        super().show(snapshot, utc)
        if follow and table.row_count:
            table.move_cursor(row=0, animate=False)

    def rows(self, snapshot: Snapshot, utc: bool) -> list[Row]:
        palette = self.palette
        rows = []
        for e in snapshot.events:
            cells: tuple[Cell, ...] = (
                text.clock(e.wall, utc),
                _styled(e.level, palette.level(e.level)),
                e.node or text.UNKNOWN,
                _styled(e.text, palette.level(e.level)),
            )
            rows.append(Row(str(e.seq), cells, (e.seq, e.level, e.node, e.text)))
        return rows


class HotKeysView(View):
    """The hot keys of the cluster, each under its primary owner, hottest first."""

    name_ = "hotkeys"
    title = "Hot keys"
    sort_column = 3
    reverse = True
    columns = (
        Column("namespace", "namespace", help="namespace of the key"),
        Column("key", "key", help="the hot key"),
        Column("owner", "owner", help="its primary owner, which detects it and pushes copies"),
        Column("rate", "reads/s", "right", "reads per second at the owner, copies' included"),
        Column("share", "share", "right", "its share of the reads the owner serves"),
        Column("copies", "copies", "right", "nodes holding a copy"),
        Column("hot_for", "hot for", "right", "time since it turned hot"),
        Column("holders", "holders", help="the nodes holding a copy"),
    )

    def describe(self, snapshot: Snapshot) -> str:
        hot = snapshot.hot
        on = snapshot.hot_namespaces
        if hot.rows:
            namespaces = len({r.namespace for r in hot.rows})
            head = (
                f"{len(hot.rows)} hot {_plural(len(hot.rows), 'key')} in {namespaces} "
                f"{_plural(namespaces, 'namespace')}"
            )
        elif not hot.answered and not hot.unreadable:
            head = "no node reports hot keys"
        elif snapshot.config is not None and not on:
            head = "hot keys are off in every namespace"
        else:
            head = "no hot keys"
        parts = [head]
        if hot.unreadable:
            parts.append("unreadable answer from " + ", ".join(hot.unreadable))
        if on:
            parts.append("on in " + ", ".join(on))
        if hot.answered:
            parts.append(f"{text.count(hot.copies)} copies held ({text.size(hot.area_bytes)})")
        return " · ".join(parts)

    def rows(self, snapshot: Snapshot, utc: bool) -> list[Row]:
        return [
            Row(f"{i}\x00{r.owner}\x00{r.namespace}\x00{r.key}", self.cells(r), self.sort(r))
            for i, r in enumerate(snapshot.hot.rows)
        ]

    @staticmethod
    def cells(r: HotKeyRow) -> tuple[Cell, ...]:
        """What the table shows of one hot key: a dash for whatever is unknown."""
        return (
            Text(hotkeys.printable(r.namespace)),
            Text(hotkeys.printable(r.key)),
            r.owner,
            text.rate(r.rate),
            text.percent(r.share),
            text.optional(None if r.holders is None else len(r.holders)),
            text.UNKNOWN if r.hot_for is None else text.duration(round(r.hot_for)),
            hotkeys.holders_text(r.holders),
        )

    @staticmethod
    def sort(r: HotKeyRow) -> tuple[object, ...]:
        return (
            r.namespace,
            r.key,
            r.owner,
            r.rate,
            r.share,
            None if r.holders is None else len(r.holders),
            r.hot_for,
            None if r.holders is None else ", ".join(r.holders),
        )


#: The views in the order of their number keys (1, 2, ...).
VIEWS: tuple[type[View], ...] = (ClusterView, RingView, NamespacesView, EventsView, HotKeysView)

__all__ = [
    "VIEWS",
    "ClusterView",
    "EventsView",
    "HotKeysView",
    "NamespacesView",
    "Palette",
    "RingView",
    "View",
]
