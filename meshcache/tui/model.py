"""The console's picture of the cluster, built from polls: no widgets, no I/O, no clock.

:class:`ClusterModel` takes one :class:`~meshcache.tui.source.Poll` after another and returns a
:class:`Snapshot` — plain rows for each view — plus the :class:`Event` log of what changed
between polls. Rates (ops/s, evictions/s, ...) are counter deltas between two answers of the
same node divided by the time between them on the source's clock, so the same polls give the
same snapshot every time (the snapshot tests rely on it).

How the figures are read:

* **Members** are the union of the committed ring (the highest version any node answered), the
  gossip views (MEMBERS) of the nodes that answer, and the node the operator named. A member's
  gossip state is SWIM's own rule over those views: the highest incarnation wins, and at equal
  incarnations ``left`` > ``dead`` > ``suspect`` > ``alive``.
* **Raft role**: ``leader`` / ``voter`` when the member's Raft address (its host and
  ``raft_port``) is the leader or among the voters of RAFT_STATUS, else ``member``.
* **Ops/s** counts client requests (ops of kind read or write in the op table) from
  ``/metrics``; the console's own admin ops and node-to-node traffic are left out.
* **Latency** (p50/p99) is INFO's ``latency.data``: the node's median and 99th percentile over
  every client data op (kind read or write) answered in its recent window (10 to 20 s). A node
  that answered none in the window, or does not report latency, shows it as unknown.
* **Hot keys** are the ``HOTKEYS`` answers of the reachable nodes merged by
  :func:`~meshcache.tui.hotkeys.merge`, each key under the node that owns it; a node whose
  answer cannot be read is named, never trusted.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from meshcache.client.ring_router import RingSnapshot
from meshcache.errors import RemoteProtocolError
from meshcache.ring import Ring
from meshcache.ring.tokens import TOKEN_SPACE
from meshcache.tui import hotkeys, text
from meshcache.tui.hotkeys import HotKeys
from meshcache.tui.source import NodeReply, Poll
from meshcache.wire.address import format_address, parse_address

Level = Literal["info", "warn", "error"]

#: SWIM's precedence of member states at the same incarnation.
GOSSIP_RANK = {"alive": 0, "suspect": 1, "dead": 2, "left": 3}
#: How an event about a member's new gossip state is shown.
_GOSSIP_LEVEL: dict[str, Level] = {"alive": "info", "suspect": "warn", "left": "info"}
#: Seconds of ops/s history kept for the sparklines.
TREND_SECONDS = 300.0
#: Seconds between two reports of one node's hand-off and trouble counters (growth is summed).
REPORT_EVERY = 10.0
#: Events kept in the log (the oldest go first).
MAX_EVENTS = 500
#: (replicas, answering nodes) combinations whose spread of copies over the ring is kept.
MAX_SPREADS = 64
#: Counters of INFO's ``mesh.counters`` that report trouble, shown as events when they grow.
TROUBLE_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("dataplane", "forward_failures", "forwards failed"),
    ("dataplane", "writes_failed", "writes missed their consistency level"),
    ("dataplane", "read_repair_errors", "read repairs failed"),
    ("replicator", "send_failures", "replica batches failed"),
    ("hints", "dropped_overflow", "hints dropped (full)"),
    ("hints", "dropped_expired", "hints dropped (expired)"),
    ("peers", "timeouts", "peer requests timed out"),
    ("peers", "connect_errors", "peer connections failed"),
    ("rebalance", "handoff_refused", "hand-off records refused"),
)
#: Error codes a node sends that mean trouble on its side (others are the callers' mistakes).
TROUBLE_CODES = frozenset(
    {"INTERNAL", "UNAVAILABLE", "WRITE_FAILED", "OUT_OF_MEMORY", "TOO_MANY_CONNECTIONS"}
)
#: INFO's ``mesh.counters.rebalance`` figures: records this node sent, and received.
HANDOFF_OUT = ("records_handed_off", "records_drained")
HANDOFF_IN = ("records_pulled",)


def _data_ops() -> frozenset[str]:
    from meshcache.wire.ops import OPS, OpKind

    return frozenset(name for name, spec in OPS.items() if spec.kind is not OpKind.META)


DATA_OPS = _data_ops()


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the event log."""

    seq: int
    wall: float
    level: Level
    node: str
    text: str


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One member in the Cluster view. None means unknown (not answered, not exported)."""

    node_id: str
    address: str
    gossip: str
    incarnation: int | None
    zone: str | None
    raft: str
    ring_state: str | None
    share: float | None
    keys: int | None
    bytes: int | None
    limit: int | None
    connections: int | None
    ops: float | None
    trend: tuple[float, ...]
    hit_ratio: float | None
    hints: int | None
    handoff_out: int | None
    handoff_in: int | None
    p50: float | None
    p99: float | None
    reachable: bool
    last_seen: float | None
    problem: str | None
    config_version: int | None


@dataclass(frozen=True, slots=True)
class RingRow:
    """One ring member in the Ring view."""

    node_id: str
    address: str
    state: str
    zone: str
    weight: int
    share: float
    runs: int | None  # the ring version the node answered with (None: not reachable)
    gossip: str
    moving: int | None = None  # ranges it is pulling in or pushing out now (None: unknown)


@dataclass(frozen=True, slots=True)
class NamespaceRow:
    """One namespace: its committed policy and the figures summed over the nodes that answer."""

    name: str
    eviction: str
    max_bytes: int | None
    max_items: int | None
    default_ttl: float | None
    replicas: int | None
    consistency: str
    keys: int | None  # distinct keys on the nodes that answer (see keys_estimated)
    bytes: int | None  # accounted bytes on the nodes that answer, copies included
    hit_ratio: float | None
    evictions: float | None
    expirations: float | None
    applied: int
    nodes: int
    hot: str = "off"  # the hot-key policy in short (hotkeys.describe_policy)
    loader: str = "off"  # the read-through loader in short (text.loader)
    # True while a ring member that holds keys of the namespace does not answer: ``keys`` is
    # then the expected count, from the share of each key's copies the ring puts on the
    # nodes that answer, not an exact one.
    keys_estimated: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the views show after one poll."""

    polls: int
    at: float
    wall: float
    members: tuple[MemberRow, ...] = ()
    ring_version: int | None = None
    ring: tuple[RingRow, ...] = ()
    balance: float | None = None
    ring_agreed: bool = True
    ranges_moving: int | None = None  # summed over the members that report it
    namespaces: tuple[NamespaceRow, ...] = ()
    config: Mapping[str, Any] | None = None
    hot: HotKeys = field(default_factory=HotKeys)
    events: tuple[Event, ...] = ()
    reachable: int = 0
    lost: bool = False
    lost_since: float | None = None
    problem: str | None = None

    @property
    def hot_namespaces(self) -> tuple[str, ...]:
        """The namespaces whose committed policy has hot keys on."""
        return hotkeys.enabled_in((self.config or {}).get("namespaces"))

    @property
    def config_version(self) -> int | None:
        version = None if self.config is None else self.config.get("version")
        return version if isinstance(version, int) else None

    def member(self, node_id: str) -> MemberRow | None:
        return next((m for m in self.members if m.node_id == node_id), None)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _seconds(ms: Any) -> float | None:
    """A duration a node reports in milliseconds, in seconds; None unless a finite one >= 0."""
    value = _num(ms)
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return value / 1000


def _sum_known(values: Iterable[int | None]) -> int | None:
    """The sum of the values that are known; None when none is."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _dig(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _gossip_data_address(member: Mapping[str, Any]) -> str | None:
    """The data address of a MEMBERS entry: its gossip host and its ``data_port``."""
    try:
        host = parse_address(str(member.get("address"))).host
    except Exception:
        return None
    port = _int(member.get("data_port"))
    return format_address(host, port) if port else None


def _raft_address(member: Mapping[str, Any]) -> str | None:
    try:
        host = parse_address(str(member.get("address"))).host
    except Exception:
        return None
    port = _int(member.get("raft_port"))
    return format_address(host, port) if port else None


@dataclass(slots=True)
class _Counters:
    """The counters of one node's answer that rates are computed from."""

    at: float
    requests: float | None
    hits: dict[str, int]
    misses: dict[str, int]
    evictions: dict[str, int]
    expirations: dict[str, int]
    mesh: dict[tuple[str, str], int]
    handoff_out: int
    handoff_in: int
    errors: dict[str, float]

    @classmethod
    def of(cls, reply: NodeReply) -> _Counters:
        namespaces = _dig(reply.info, "namespaces") or {}
        hits: dict[str, int] = {}
        misses: dict[str, int] = {}
        evictions: dict[str, int] = {}
        expirations: dict[str, int] = {}
        for name, figures in namespaces.items():
            if not isinstance(figures, Mapping):
                continue
            hits[name] = _int(figures.get("hits")) or 0
            misses[name] = _int(figures.get("misses")) or 0
            evicted = figures.get("evictions")
            evictions[name] = (
                sum(v for v in evicted.values() if isinstance(v, int))
                if isinstance(evicted, Mapping)
                else _int(evicted) or 0
            )
            expirations[name] = _int(figures.get("expirations")) or 0
        counters = _dig(reply.info, "mesh", "counters") or {}
        mesh = {
            (part, name): _int(_dig(counters, part, name)) or 0
            for part, name, _ in TROUBLE_COUNTERS
        }
        rebalance = _dig(counters, "rebalance") or {}
        requests = None
        if reply.requests is not None:
            requests = sum(v for op, v in reply.requests.items() if op in DATA_OPS)
        return cls(
            at=reply.at,
            requests=requests,
            hits=hits,
            misses=misses,
            evictions=evictions,
            expirations=expirations,
            mesh=mesh,
            handoff_out=sum(_int(rebalance.get(k)) or 0 for k in HANDOFF_OUT),
            handoff_in=sum(_int(rebalance.get(k)) or 0 for k in HANDOFF_IN),
            errors={c: v for c, v in (reply.errors or {}).items() if c in TROUBLE_CODES},
        )


@dataclass(slots=True)
class _Rates:
    """Per-second rates of one node over its last interval (None: no interval yet)."""

    ops: float | None = None
    hit_ratio: float | None = None
    ns_hits: dict[str, int] = field(default_factory=dict)
    ns_reads: dict[str, int] = field(default_factory=dict)
    ns_evictions: dict[str, float] = field(default_factory=dict)
    ns_expirations: dict[str, float] = field(default_factory=dict)


def _rates(prev: _Counters, cur: _Counters) -> _Rates | None:
    dt = cur.at - prev.at
    if dt <= 0:
        return None
    rates = _Rates()
    if cur.requests is not None and prev.requests is not None and cur.requests >= prev.requests:
        rates.ops = (cur.requests - prev.requests) / dt
    hits = reads = 0
    for name in cur.hits:
        if name not in prev.hits:
            continue
        h = cur.hits[name] - prev.hits[name]
        m = cur.misses[name] - prev.misses.get(name, 0)
        e = cur.evictions[name] - prev.evictions.get(name, 0)
        x = cur.expirations[name] - prev.expirations.get(name, 0)
        if min(h, m, e, x) < 0:
            return None  # the node restarted: its counters began again
        rates.ns_hits[name] = h
        rates.ns_reads[name] = h + m
        rates.ns_evictions[name] = e / dt
        rates.ns_expirations[name] = x / dt
        hits += h
        reads += h + m
    rates.hit_ratio = hits / reads if reads else None
    return rates


@dataclass(slots=True)
class _Node:
    """What the model remembers of one node between polls."""

    node_id: str
    address: str
    first_seen: float
    reply: NodeReply | None = None  # its latest good answer
    counters: _Counters | None = None
    fresh: bool = False  # it answered anew in the latest poll
    reported: _Counters | None = None  # counters when hand-offs and trouble were last told
    reported_at: float = -math.inf
    rates: _Rates | None = None
    trend: deque[float] = field(default_factory=deque)
    last_ok: float | None = None
    reachable: bool = False
    problem: str | None = None


class ClusterModel:
    """Turns polls into snapshots and an event log. Feed it with :meth:`update`.

    Args:
        entry: the address the operator named; polled while no member is known.
        refresh: seconds between polls (sizes the sparkline history).
        stale_after: seconds without an answer after which a node counts as unreachable
            even if its poll has not failed yet.
    """

    def __init__(self, entry: str, refresh: float = 1.0, stale_after: float | None = None) -> None:
        self.entry = entry
        self.refresh = refresh
        self.stale_after = stale_after if stale_after is not None else max(3.0, 3 * refresh)
        self._nodes: dict[str, _Node] = {}  # by node id
        self._by_address: dict[str, str] = {}  # data address -> node id
        self._ring: Mapping[str, Any] | None = None
        # The ring built from the RING answer (None: unusable), by the answer's version.
        self._placement: tuple[int | None, Ring | None] | None = None
        self._spreads: dict[tuple[int, frozenset[str]], tuple[float, float]] = {}
        self._config: Mapping[str, Any] | None = None
        self._gossip: dict[str, Mapping[str, Any]] = {}  # node id -> merged MEMBERS entry
        self._raft_roles: dict[str, str] = {}  # raft address -> leader / voter
        self._events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self._seq = 0
        self._polls = 0
        self._last: Snapshot | None = None
        self._lost_since: float | None = None
        self._wall = 0.0

    # -- what to poll ----------------------------------------------------------------------

    def targets(self) -> list[str]:
        """The data addresses to poll next: every member that has not left, else the entry.

        While no member answers, the entry is polled too, so a cluster that comes back at the
        address the operator named is found again.
        """
        addresses = []
        ring_ids = {str(m.get("node_id")) for m in (self._ring or {}).get("members", [])}
        for node in self._nodes.values():
            state = str(self._gossip.get(node.node_id, {}).get("state", "alive"))
            if state != "left" or node.node_id in ring_ids:
                addresses.append(node.address)
        if not addresses or not any(n.reachable for n in self._nodes.values()):
            addresses.append(self.entry)
        return sorted(dict.fromkeys(addresses))

    @property
    def last(self) -> Snapshot | None:
        """The latest snapshot (None before the first poll)."""
        return self._last

    # -- events ------------------------------------------------------------------------------

    def note(self, text: str, level: Level = "info", node: str = "") -> Event:
        """Add an event of the console's own (an action and its outcome) to the log."""
        self._seq += 1
        event = Event(self._seq, self._wall, level, node, text)
        self._events.append(event)
        return event

    # -- one poll ----------------------------------------------------------------------------

    def update(self, poll: Poll) -> Snapshot:
        """Take one poll; the snapshot of the cluster after it.

        While every reply is still pending (first answers not in yet), the snapshot is empty
        and nothing is logged: not having answered yet is not a failure.
        """
        self._polls += 1
        self._wall = poll.wall
        if poll.replies and all(r.pending for r in poll.replies.values()):
            return self._last or Snapshot(polls=self._polls, at=poll.at, wall=poll.wall)
        first = self._last is None
        before = self._last
        ok = [r for r in poll.replies.values() if r.ok and r.info is not None]
        for node in self._nodes.values():
            node.fresh = False
        self._learn_nodes(poll, ok)
        self._learn_cluster(ok)
        self._learn_gossip(ok)
        self._drop_forgotten(ok)
        members = tuple(self._member_row(n, poll) for n in self._sorted_nodes())
        ring_rows, balance, agreed = self._ring_rows()
        lost = not ok and any(not r.pending for r in poll.replies.values())
        if lost and self._lost_since is None:
            self._lost_since = poll.wall
        elif not lost:
            self._lost_since = None
        problem = None
        if lost:
            failed = [r for r in poll.replies.values() if not r.pending]
            entry = poll.replies.get(self.entry)
            problem = (entry if entry is not None and not entry.pending else failed[0]).problem
        snapshot = Snapshot(
            polls=self._polls,
            at=poll.at,
            wall=poll.wall,
            members=members,
            ring_version=_int((self._ring or {}).get("version")),
            ring=ring_rows,
            balance=balance,
            ranges_moving=_sum_known(r.moving for r in ring_rows),
            ring_agreed=agreed,
            namespaces=self._namespace_rows(ok),
            config=self._config,
            hot=self._hot_keys(),
            reachable=len(ok),
            lost=lost,
            lost_since=self._lost_since,
            problem=problem,
        )
        self._diff(before, snapshot, first)
        snapshot = _with_events(snapshot, tuple(self._events))
        self._last = snapshot
        return snapshot

    def _learn_nodes(self, poll: Poll, ok: Sequence[NodeReply]) -> None:
        for reply in poll.replies.values():
            if reply.pending:
                continue
            node_id = self._by_address.get(reply.address)
            if reply.ok and reply.info is not None:
                node_id = str(reply.info.get("node_id") or reply.address)
                self._by_address[reply.address] = node_id
            if node_id is None:
                if reply.address != self.entry or self._nodes:
                    continue
                node_id = reply.address  # the entry, never answered: shown under its address
            node = self._node(node_id, reply.address, poll.at)
            if reply.ok and reply.info is not None:
                if node.reply is None or reply.at > node.reply.at:
                    self._take_answer(node, reply)
                node.reachable = poll.at - reply.at <= self.stale_after
                node.problem = (
                    None if node.reachable else f"no answer for {poll.at - reply.at:.0f} s"
                )
            else:
                node.reachable = False
                node.problem = reply.problem
        # Members learnt from others' answers.
        for reply in ok:
            for m in (reply.ring or {}).get("members", []) or []:
                if isinstance(m, Mapping) and m.get("node_id") and m.get("address"):
                    self._node(str(m["node_id"]), str(m["address"]), poll.at)
            for m in reply.members or ():
                address = _gossip_data_address(m)
                if m.get("name") and address:
                    self._node(str(m["name"]), address, poll.at)
        if self.entry in self._nodes and len(self._nodes) > 1:
            # The entry was shown under its address before it answered; others are known now.
            entry = self._nodes[self.entry]
            if entry.last_ok is None:
                del self._nodes[self.entry]

    def _node(self, node_id: str, address: str, now: float) -> _Node:
        node = self._nodes.get(node_id)
        if node is None:
            node = self._nodes[node_id] = _Node(node_id, address, now)
            node.trend = deque(maxlen=max(2, int(TREND_SECONDS / max(self.refresh, 0.05))))
        elif node.address != address and node.last_ok is None:
            node.address = address
        self._by_address.setdefault(address, node_id)
        return node

    def _take_answer(self, node: _Node, reply: NodeReply) -> None:
        counters = _Counters.of(reply)
        node.rates = None if node.counters is None else _rates(node.counters, counters)
        if node.rates is not None and node.rates.ops is not None:
            node.trend.append(node.rates.ops)
        node.counters = counters
        node.fresh = True
        node.reply = reply
        node.last_ok = reply.at

    def _learn_cluster(self, ok: Sequence[NodeReply]) -> None:
        for reply in ok:
            ring = reply.ring
            if isinstance(ring, Mapping) and (_int(ring.get("version")) or 0) >= (
                _int((self._ring or {}).get("version")) or 0
            ):
                self._ring = ring
            config = reply.config
            if isinstance(config, Mapping) and (_int(config.get("version")) or 0) >= (
                _int((self._config or {}).get("version")) or 0
            ):
                self._config = config
        roles: dict[str, str] = {}
        statuses = [r.raft for r in ok if isinstance(r.raft, Mapping)]
        if statuses:
            best = max(statuses, key=lambda s: _int(s.get("term")) or 0)
            for voter in best.get("voters") or ():
                roles[str(voter)] = "voter"
            if best.get("leader"):
                roles[str(best["leader"])] = "leader"
            self._raft_roles = roles

    def _learn_gossip(self, ok: Sequence[NodeReply]) -> None:
        if not ok:
            return  # nobody to ask: keep the last picture
        merged: dict[str, Mapping[str, Any]] = {}
        for reply in ok:
            for m in reply.members or ():
                name = str(m.get("name"))
                seen = merged.get(name)
                if seen is None or _newer(m, seen):
                    merged[name] = m
        self._gossip = merged

    def _drop_forgotten(self, ok: Sequence[NodeReply]) -> None:
        """Forget members no answering node knows any more (left long ago, or removed)."""
        if not ok:
            return
        ring_ids = {str(m.get("node_id")) for m in (self._ring or {}).get("members", [])}
        for node_id, node in list(self._nodes.items()):
            if node_id in ring_ids or node_id in self._gossip or node.reachable:
                continue
            if node.address == self.entry and node.last_ok is None:
                continue
            del self._nodes[node_id]

    def _sorted_nodes(self) -> list[_Node]:
        return sorted(self._nodes.values(), key=lambda n: n.node_id)

    def _member_row(self, node: _Node, poll: Poll) -> MemberRow:
        gossip = self._gossip.get(node.node_id, {})
        ring_member = next(
            (
                m
                for m in (self._ring or {}).get("members", [])
                if str(m.get("node_id")) == node.node_id
            ),
            None,
        )
        info = node.reply.info if node.reply is not None and node.reachable else None
        namespaces = _dig(info, "namespaces") if info is not None else None
        keys = size = limit = None
        if isinstance(namespaces, Mapping):
            figures = [f for f in namespaces.values() if isinstance(f, Mapping)]
            keys = sum(_int(f.get("items")) or 0 for f in figures)
            size = sum(_int(f.get("bytes")) or 0 for f in figures)
            bounds = [_int(_dig(f, "policy", "max_bytes")) for f in figures]
            limit = sum(b for b in bounds if b) if bounds and all(bounds) else None
        raft = "?"
        raft_address = _raft_address(gossip) if gossip else None
        if self._raft_roles:
            raft = self._raft_roles.get(raft_address or "", "member")
        rates = node.rates if info is not None else None
        counters = node.counters if info is not None else None
        latency = _dig(info, "latency", "data")
        own_ring = node.reply.ring if node.reply is not None and node.reachable else None
        return MemberRow(
            node_id=node.node_id,
            address=node.address,
            gossip=str(gossip.get("state", "?")),
            incarnation=_int(gossip.get("incarnation")),
            zone=str(gossip.get("zone") or (ring_member or {}).get("zone") or "") or None,
            raft=raft,
            ring_state=None if ring_member is None else str(ring_member.get("state")),
            share=None if ring_member is None else _num(ring_member.get("share")),
            keys=keys,
            bytes=size,
            limit=limit,
            connections=_int(_dig(info, "connections")),
            ops=None if rates is None else rates.ops,
            trend=tuple(node.trend) if info is not None else (),
            hit_ratio=None if rates is None else rates.hit_ratio,
            hints=_int(_dig(info, "mesh", "gauges", "hints")),
            handoff_out=None if counters is None else counters.handoff_out,
            handoff_in=None if counters is None else counters.handoff_in,
            p50=_seconds(_dig(latency, "p50_ms")),
            p99=_seconds(_dig(latency, "p99_ms")),
            reachable=node.reachable,
            last_seen=None if node.last_ok is None else max(0.0, poll.at - node.last_ok),
            problem=node.problem,
            config_version=_int((own_ring or {}).get("version")),
        )

    def _ring_rows(self) -> tuple[tuple[RingRow, ...], float | None, bool]:
        ring = self._ring or {}
        rows = []
        versions = set()
        for m in ring.get("members", []) or []:
            node_id = str(m.get("node_id"))
            node = self._nodes.get(node_id)
            runs = moving = None
            if node is not None and node.reachable and node.reply is not None:
                runs = _int((node.reply.ring or {}).get("version"))
                versions.add(runs)
                moving = _int(_dig(node.reply.info, "mesh", "gauges", "handoff_ranges_moving"))
            rows.append(
                RingRow(
                    node_id=node_id,
                    address=str(m.get("address", "")),
                    state=str(m.get("state", "?")),
                    zone=str(m.get("zone", "")),
                    weight=_int(m.get("weight")) or 0,
                    share=_num(m.get("share")) or 0.0,
                    runs=runs,
                    gossip=str(self._gossip.get(node_id, {}).get("state", "?")),
                    moving=moving,
                )
            )
        shares = [r.share for r in rows]
        balance = max(shares) / (sum(shares) / len(shares)) if shares and sum(shares) else None
        return tuple(rows), balance, len(versions) <= 1

    def _hot_keys(self) -> HotKeys:
        """The HOTKEYS answers of the reachable nodes, merged under each node's id."""
        return hotkeys.merge(
            {
                n.node_id: n.reply.hotkeys
                for n in self._nodes.values()
                if n.reachable and n.reply is not None
            }
        )

    def _namespace_rows(self, ok: Sequence[NodeReply]) -> tuple[NamespaceRow, ...]:
        policies: Mapping[str, Any] = (self._config or {}).get("namespaces") or {}
        names = set(policies)
        reporting = [n for n in self._nodes.values() if n.reachable and n.reply is not None]
        for node in reporting:
            names |= set(_dig(node.reply.info if node.reply else None, "namespaces") or {})
        owning = {
            str(m.get("node_id"))
            for m in (self._ring or {}).get("members", []) or []
            if m.get("state") in ("active", "leaving")
        }
        rows = []
        for name in sorted(names):
            policy = policies.get(name)
            items = size = 0
            applied = nodes = 0
            hits = reads = 0
            evictions = expirations = 0.0
            rated = False
            node_policy: Mapping[str, Any] | None = None
            holders: set[str] = set()
            for node in reporting:
                assert node.reply is not None
                figures = _dig(node.reply.info, "namespaces", name)
                if not isinstance(figures, Mapping):
                    continue
                nodes += 1
                holders.add(node.node_id)
                items += _int(figures.get("items")) or 0
                size += _int(figures.get("bytes")) or 0
                node_policy = node_policy or figures.get("policy")
                if policy is not None and _same_policy(figures.get("policy"), policy):
                    applied += 1
                rates = node.rates
                if rates is not None and name in rates.ns_reads:
                    rated = True
                    hits += rates.ns_hits[name]
                    reads += rates.ns_reads[name]
                    evictions += rates.ns_evictions[name]
                    expirations += rates.ns_expirations[name]
            shown: Mapping[str, Any] = policy if policy is not None else (node_policy or {})
            replicas = _int(shown.get("replicas"))
            keys, estimated = self._distinct_keys(items, replicas or 1, owning, holders)
            rows.append(
                NamespaceRow(
                    name=name,
                    eviction=str(shown.get("eviction", "?")),
                    max_bytes=_int(shown.get("max_bytes")),
                    max_items=_int(shown.get("max_items")),
                    default_ttl=_num(shown.get("default_ttl")),
                    replicas=replicas,
                    consistency=str(shown.get("consistency", "one")),
                    keys=keys if nodes else None,
                    bytes=size if nodes else None,
                    hit_ratio=hits / reads if reads else None,
                    evictions=evictions if rated else None,
                    expirations=expirations if rated else None,
                    applied=applied,
                    nodes=nodes,
                    hot=hotkeys.describe_policy(shown),
                    loader=text.loader(shown),
                    keys_estimated=bool(nodes) and estimated,
                )
            )
        return tuple(rows)

    def _distinct_keys(
        self, items: int, replicas: int, owning: set[str], holders: set[str]
    ) -> tuple[int, bool]:
        """The distinct keys among ``items`` copies held by ``holders``, and whether estimated.

        Each key has ``replicas`` copies on its first owners in the ring (fewer on a smaller
        ring). While every owning member answers, that divides ``items`` exactly. While some do
        not, the copies a key has on the nodes that answer depend on where the ring put it:
        the count is what the ring's spread of copies over the answering nodes gives for keys
        hashed evenly over the key space; a key whose every copy is on a member that does not
        answer is not counted.
        """
        missing = bool(owning - holders)
        spread = self._spread(replicas, frozenset(holders))
        if spread is not None:
            held, visible = spread
            if held > 0:
                return round(items * visible / held), missing
        # No ring to go by: a key has at most one copy on each answering owner.
        copies = max(1, min(replicas, len(owning & holders) or 1))
        return round(items / copies), missing

    def _spread(self, replicas: int, holders: frozenset[str]) -> tuple[float, float] | None:
        """Over the key space: the copies of a key ``holders`` hold on average, and the share
        of keys they hold a copy of; None without a ring to place keys by."""
        version = _int((self._ring or {}).get("version"))
        if self._placement is None or self._placement[0] != version:
            try:
                placed = RingSnapshot.from_replies(self._ring, {})
            except RemoteProtocolError:
                placed = None
            self._placement = (version, None if placed is None else placed.ring)
            self._spreads.clear()
        ring = self._placement[1]
        if ring is None:
            return None
        spread = self._spreads.get((replicas, holders))
        if spread is None:
            held = visible = 0
            for span, owners in ring.ranges(replicas):
                on = sum(1 for m in owners if m.node_id in holders)
                held += span.size * on
                visible += span.size if on else 0
            if len(self._spreads) >= MAX_SPREADS:
                self._spreads.clear()
            spread = self._spreads[(replicas, holders)] = (
                held / TOKEN_SPACE,
                visible / TOKEN_SPACE,
            )
        return spread

    # -- what changed ------------------------------------------------------------------------

    def _event(self, level: Level, node: str, text: str) -> None:
        self.note(text, level, node)

    def _diff(self, before: Snapshot | None, now: Snapshot, first: bool) -> None:
        if first:
            if now.lost:
                self._event("error", "", f"cannot reach the cluster: {now.problem}")
            else:
                self._event(
                    "info",
                    "",
                    f"connected: {len(now.members)} members, ring version "
                    f"{_text(now.ring_version)}, config version {_text(now.config_version)}",
                )
            return
        assert before is not None
        if now.lost and not before.lost:
            self._event("error", "", f"cluster lost: no node answers ({now.problem})")
        elif before.lost and not now.lost:
            self._event("info", "", f"cluster answers again: {now.reachable} nodes reachable")
        if now.lost:
            return
        old = {m.node_id: m for m in before.members}
        for m in now.members:
            was = old.pop(m.node_id, None)
            if was is None:
                self._event("info", m.node_id, f"joined ({m.gossip})")
                continue
            if m.gossip != was.gossip and m.gossip != "?":
                level = _GOSSIP_LEVEL.get(m.gossip, "error")
                self._event(level, m.node_id, f"is {m.gossip} (was {was.gossip})")
            if m.ring_state != was.ring_state:
                if m.ring_state is None:
                    self._event("info", m.node_id, "is out of the ring")
                else:
                    self._event("info", m.node_id, f"is {m.ring_state} on the ring")
            if was.reachable and not m.reachable:
                self._event("warn", m.node_id, f"unreachable: {m.problem}")
            elif m.reachable and not was.reachable and was.last_seen is not None:
                self._event("info", m.node_id, "answers again")
        for gone in old:
            self._event("info", gone, "is no longer a member")
        if (
            now.config_version is not None
            and before.config_version is not None
            and now.config_version > before.config_version
        ):
            self._event(
                "info",
                "",
                f"config version {before.config_version} -> {now.config_version} committed",
            )
        self._diff_counters()

    def _diff_counters(self) -> None:
        """Hand-offs and trouble reported by nodes: counters that grew since the node's last
        report, at most one report per node every :data:`REPORT_EVERY` seconds."""
        for node in self._sorted_nodes():
            cur, base = node.counters, node.reported
            if not node.fresh or cur is None:
                continue
            if base is None or _restarted(base, cur):
                node.reported = cur
                continue
            if cur.at - node.reported_at < REPORT_EVERY:
                continue
            lines = _growth(base, cur)
            if lines:
                for level, line in lines:
                    self._event(level, node.node_id, line)
                node.reported_at = cur.at
            node.reported = cur


def _restarted(before: _Counters, after: _Counters) -> bool:
    return after.handoff_out < before.handoff_out or any(
        after.mesh[key] < before.mesh.get(key, 0) for key in after.mesh
    )


def _growth(before: _Counters, after: _Counters) -> list[tuple[Level, str]]:
    """What grew between two answers of one node, as event lines."""
    lines: list[tuple[Level, str]] = []
    out = after.handoff_out - before.handoff_out
    into = after.handoff_in - before.handoff_in
    if out > 0:
        lines.append(("info", f"handed off {out} records"))
    if into > 0:
        lines.append(("info", f"received {into} records by hand-off"))
    trouble = []
    for part, name, what in TROUBLE_COUNTERS:
        grew = after.mesh[(part, name)] - before.mesh.get((part, name), 0)
        if grew > 0:
            trouble.append(f"{grew} {what}")
    for code, count in sorted(after.errors.items()):
        grew_errors = count - before.errors.get(code, 0)
        if grew_errors > 0:
            trouble.append(f"{grew_errors:g} {code} errors sent")
    if trouble:
        lines.append(("warn", "reports " + ", ".join(trouble)))
    return lines


def _newer(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """SWIM's rule: does gossip entry ``a`` override ``b``?"""
    ia, ib = _int(a.get("incarnation")) or 0, _int(b.get("incarnation")) or 0
    if ia != ib:
        return ia > ib
    return GOSSIP_RANK.get(str(a.get("state")), 0) > GOSSIP_RANK.get(str(b.get("state")), 0)


def _same_policy(applied: Any, committed: Mapping[str, Any]) -> bool:
    """Does a node's applied policy (INFO, every field) match the committed one (CONFIG_GET,
    defaults left out)?"""
    if not isinstance(applied, Mapping):
        return False
    from meshcache.store.policy import NamespacePolicy

    try:
        want = NamespacePolicy.from_mapping(committed).to_mapping()
        have = NamespacePolicy.from_mapping(
            {k: v for k, v in applied.items() if v is not None}
        ).to_mapping()
    except Exception:
        return False
    return bool(want == have)


def _text(value: object) -> str:
    return "?" if value is None else str(value)


def _with_events(snapshot: Snapshot, events: tuple[Event, ...]) -> Snapshot:
    from dataclasses import replace

    return replace(snapshot, events=events)


__all__ = [
    "DATA_OPS",
    "GOSSIP_RANK",
    "ClusterModel",
    "Event",
    "MemberRow",
    "NamespaceRow",
    "RingRow",
    "Snapshot",
]
