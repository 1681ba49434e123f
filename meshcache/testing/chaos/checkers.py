"""Invariant checkers over a chaos history and the nodes' final state, apart from scenarios.

Each checker is a pure function of data the harness collected (a :class:`~.history.History`, a
:class:`FinalState` read from every owner after the heal, samples of resources, config
attempts) and returns a :class:`Check`: pass or fail, the figures it counted, and one line per
finding. Nothing here talks to a node, so every checker is tested on synthetic histories.

**Which write a final state shows.** Values are unique, so a key's final record names the
write that produced it (a tombstone: some delete). A write ``W`` acknowledged at ``W.complete``
is **lost** when the final record is not ``W``'s and was produced by an operation that
completed before ``W`` was invoked (so it cannot be a later or concurrent write that
legitimately superseded ``W``). An operation whose outcome is unknown (timeout,
``WRITE_FAILED``, a broken connection) may have taken effect at any time after its invocation.
A delete acknowledged as ``D`` is **resurrected** when the final record is a value written by
an operation that completed before ``D`` was invoked.

An operation whose outcome is unknown is taken to have effect at any time after its
invocation, *also after its client gave up*: a request held in TCP's retransmission queue
across a partition reaches the node when the partition heals, and the node applies it with a
fresh version. An acknowledged write overwritten that way is not lost by the rule above, but
is counted (``overwritten_by_late_write``) because users do not expect it.

``quorum`` and ``all`` writes must never be lost; ``one`` writes may be (the coordinator
acknowledges before any replica has the write), so :func:`check_writes` counts them and reports
the window in which the lost ones were acknowledged.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshcache.testing.chaos.history import OK, UNKNOWN, VALUE_WRITES, History, Op

TOMBSTONE = "tombstone"
#: Levels whose acknowledged writes must survive any fault this suite injects.
DURABLE_LEVELS = frozenset({"quorum", "all"})


@dataclass(slots=True)
class Check:
    """One checker's verdict: ``ok``, its figures, and one human line per finding."""

    name: str
    ok: bool = True
    counts: dict[str, Any] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)

    def fail(self, line: str) -> None:
        self.ok = False
        self.findings.append(line)

    def note(self, line: str) -> None:
        self.findings.append(line)

    def to_mapping(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "counts": self.counts, "findings": self.findings}


@dataclass(frozen=True, slots=True)
class Held:
    """A record as the checkers see it: ``value`` (None for a tombstone or no record)."""

    kind: str | None  # "bytes", ..., "tombstone", or None: the node holds nothing
    value: str | None
    version: int

    @property
    def order(self) -> tuple[int, bool]:
        return (self.version, self.kind == TOMBSTONE)


def held(raw: Any) -> Held:
    """A :class:`Held` from a ``RECORDS`` answer item (a record list, or None)."""
    if raw is None:
        return Held(None, None, -1)
    kind, value, _expires, version = raw
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return Held(str(kind), value if kind != TOMBSTONE else None, int(version))


@dataclass(slots=True)
class FinalState:
    """What every owner of every key held once the harness stopped waiting.

    ``records[(ns, key)][node]`` is that node's raw ``RECORDS`` item; ``owners[(ns, key)]`` the
    nodes that own the key by the final ring.
    """

    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    owners: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def final(self, ns: str, key: str) -> Held:
        """The record the owners converge to: the greatest ``(version, is_delete)`` held."""
        records = [held(r) for r in self.records.get((ns, key), {}).values()]
        return max(records, key=lambda h: h.order, default=Held(None, None, -1))

    def divergent(self) -> list[tuple[str, str]]:
        """Keys whose owners do not all hold the same record."""
        bad = []
        for k, by_node in self.records.items():
            seen = {held(r) for node, r in by_node.items() if node in self.owners.get(k, by_node)}
            if len(seen) > 1:
                bad.append(k)
        return sorted(bad)


def _precedes(op: Op, t: float) -> bool:
    """True when ``op`` certainly took effect (or not) before time ``t``."""
    return op.end < t


def _producers(final: Held, ops: Sequence[Op]) -> list[Op] | None:
    """The operations that could have produced ``final``: the write of its value, or the
    deletes (a tombstone or nothing). None when a value matches no write (a phantom)."""
    if final.value is not None:
        found = [op for op in ops if op.may_write_value and op.value == final.value]
        return found or None
    return [op for op in ops if op.f == "delete"]


def _window(ops: Sequence[Op], origin: float) -> str:
    if not ops:
        return "-"
    times = sorted(op.complete for op in ops if op.complete is not None)
    return f"{times[0] - origin:+.2f}s..{times[-1] - origin:+.2f}s"


def check_writes(
    history: History,
    final: FinalState,
    levels: Mapping[str, str],
    *,
    origin: float = 0.0,
) -> Check:
    """No acknowledged ``quorum``/``all`` write lost; ``one`` losses counted; no resurrection;
    no value that no client wrote.

    Args:
        history: the cycle's operations.
        final: the owners' records after the heal.
        levels: namespace → its write consistency (``one``, ``quorum``, ``all``).
        origin: the time the lost-write window is shown relative to (the cycle's start).
    """
    check = Check("writes")
    by_key: dict[tuple[str, str], list[Op]] = defaultdict(list)
    counters = _counter_keys(history)
    for op in history.ops:
        if (op.f == "delete" and op.type in (OK, UNKNOWN)) or op.may_write_value:
            by_key[(op.ns, op.key)].append(op)
    counts: Counter[str] = Counter()
    windows: dict[str, str] = {}
    lost: dict[str, list[Op]] = defaultdict(list)
    for op in history.ops:
        if op.is_write:
            level = levels.get(op.ns, "?")
            counts[f"{level}_{op.f}_{op.type}"] += 1
    for ns, key in sorted(history.keys()):
        if (ns, key) in counters:  # counters: check_conditional
            continue
        ops = by_key.get((ns, key), [])
        level = levels.get(ns, "?")
        state = final.final(ns, key)
        producers = _producers(state, ops)
        if producers is None:
            check.fail(f"{ns}/{key}: final value {state.value!r} was never written")
            counts["phantom"] += 1
            continue
        made_by_value = state.value is not None
        for op in ops:
            if op.type != OK:
                continue
            if op.may_write_value and not (made_by_value and op.value == state.value):
                later = [p for p in producers if not _precedes(p, op.invoke)]
                if later:
                    # Superseded by a later or concurrent op. When every such op is one whose
                    # client had already given up (unknown) before this write began, it was
                    # applied after its client's timeout: counted, as users do not expect it.
                    if all(p.type == UNKNOWN and (p.complete or 0) < op.invoke for p in later):
                        counts["overwritten_by_late_write"] += 1
                        by = later[0].value or "a delete"
                        gave_up = (later[0].complete or 0) - origin
                        check.note(
                            f"{ns}/{key}: acknowledged {level} write {op.value!r} (ack "
                            f"{op.end - origin:+.2f}s) overwritten by {by!r}, whose client gave "
                            f"up at {gave_up:+.2f}s"
                        )
                    continue
                lost[level].append(op)
                what = "deleted" if not made_by_value else f"{state.value!r}"
                line = (
                    f"{ns}/{key}: acknowledged {level} write {op.value!r} "
                    f"(ack {op.end - origin:+.2f}s) lost; final {what}"
                )
                if level in DURABLE_LEVELS:
                    check.fail(line)
                else:
                    check.note(line)
            elif op.f == "delete" and made_by_value:
                later = [p for p in producers if not _precedes(p, op.invoke)]
                if not later:
                    counts["resurrected"] += 1
                    check.fail(
                        f"{ns}/{key}: acknowledged delete (ack {op.end - origin:+.2f}s) undone: "
                        f"older value {state.value!r} came back"
                    )
                elif all(p.type == UNKNOWN and (p.complete or 0) < op.invoke for p in later):
                    counts["overwritten_by_late_write"] += 1
                    check.note(
                        f"{ns}/{key}: acknowledged delete (ack {op.end - origin:+.2f}s) "
                        f"overwritten by {state.value!r}, whose client gave up at "
                        f"{(later[0].complete or 0) - origin:+.2f}s"
                    )
    for op in history.ops:
        if op.f in VALUE_WRITES and op.f != "set" and op.type == OK and op.stored:
            counts[f"{levels.get(op.ns, '?')}_conditional_stored"] += 1
    for level in ("one", "quorum", "all"):
        acked = counts[f"{level}_set_ok"] + counts[f"{level}_conditional_stored"]
        counts[f"{level}_acked"] = acked
        counts[f"{level}_lost"] = len(lost[level])
        if lost[level]:
            windows[f"{level}_loss_window"] = _window(lost[level], origin)
    counts.setdefault("resurrected", 0)
    counts.setdefault("phantom", 0)
    counts.setdefault("overwritten_by_late_write", 0)
    check.counts = {**dict(sorted(counts.items())), **windows}
    return check


def check_reads(history: History) -> Check:
    """Every value a read returned was written to that key by an operation invoked before the
    read completed (no phantom or cross-key reads)."""
    check = Check("reads")
    written: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for op in history.ops:
        if op.may_write_value and op.value is not None:
            written[(op.ns, op.key)][op.value] = op.invoke
    reads = bad = 0
    for op in history.ops:
        if op.type != OK:
            continue
        if op.f == "get":
            value, until = op.value, op.complete
        elif op.f == "cas":  # its GETS is a read too
            value, until = op.seen, op.seen_at
        else:
            continue
        reads += 1
        if value is None:
            continue
        started = written[(op.ns, op.key)].get(value)
        if started is None or until is None or started > until:
            bad += 1
            check.fail(f"{op.ns}/{op.key}: read {value!r}, which no write had produced")
    check.counts = {"reads_ok": reads, "impossible": bad}
    return check


def check_convergence(final: FinalState, converged_after: float | None, bound: float) -> Check:
    """Every owner of every key holds the same record, within ``bound`` seconds of the final
    heal (``converged_after``: when they did, None if they never did while watched)."""
    check = Check("convergence")
    divergent = final.divergent()
    check.counts = {
        "keys": len(final.records),
        "divergent": len(divergent),
        "seconds": None if converged_after is None else round(converged_after, 2),
        "bound": bound,
    }
    for ns, key in divergent[:20]:
        by_node = {n: held(r) for n, r in final.records[(ns, key)].items()}
        shown = ", ".join(
            f"{n}={h.value if h.kind != TOMBSTONE else 'deleted'}@{h.version}"
            for n, h in sorted(by_node.items())
        )
        check.fail(f"{ns}/{key}: owners differ: {shown}")
    if converged_after is None or converged_after > bound:
        check.fail(f"replicas did not converge within {bound:g}s of the heal")
    return check


def check_membership(
    rings: Mapping[str, Mapping[str, Any] | None],
    members: Mapping[str, Sequence[Mapping[str, Any]] | None],
    node_ids: Iterable[str],
    agreed_after: float | None = None,
    bound: float | None = None,
) -> Check:
    """Every node answers one ring version listing every node active, and its gossip view
    holds every node alive. ``rings`` / ``members``: each node's ``RING`` / ``MEMBERS``
    answer (None: it did not answer). With a ``bound``: they agreed within ``bound`` seconds
    of the final heal (``agreed_after``: when they did, None if they never did while watched)."""
    check = Check("membership")
    if bound is not None and (agreed_after is None or agreed_after > bound):
        check.fail(f"ring and membership not agreed within {bound:g}s of the heal")
    wanted = set(node_ids)
    versions = set()
    for node, ring in sorted(rings.items()):
        if ring is None:
            check.fail(f"{node}: no RING answer")
            continue
        versions.add(ring.get("version"))
        active = {m["node_id"] for m in ring.get("members", []) if m.get("state") == "active"}
        if active != wanted:
            check.fail(f"{node}: ring v{ring.get('version')} active {sorted(active)}")
    if len(versions) > 1:
        check.fail(f"ring versions differ: {sorted(v for v in versions if v is not None)}")
    for node, view in sorted(members.items()):
        if view is None:
            check.fail(f"{node}: no MEMBERS answer")
            continue
        alive = {m["name"] for m in view if m.get("state") == "alive"}
        if alive != wanted:
            states = {m["name"]: m.get("state") for m in view}
            check.fail(f"{node}: gossip view {states}")
    check.counts = {
        "ring_versions": sorted(v for v in versions if v is not None),
        "seconds": None if agreed_after is None else round(agreed_after, 2),
        "bound": bound,
    }
    return check


@dataclass(frozen=True, slots=True)
class ConfigAttempt:
    """A config change (``NS_SET`` creating namespace ``name``) tried through ``node`` while a
    fault was in place. ``majority``: whether ``node`` could reach a Raft majority then (None:
    no clean answer, e.g. a one-way cut); ``outcome``: ok, fail (refused) or unknown (timed
    out); ``started`` / ``completed``: history times; ``fault_end``: when that fault ended."""

    name: str
    node: str
    majority: bool | None
    outcome: str
    started: float
    completed: float
    fault_end: float
    error: str | None = None


def check_config(
    attempts: Sequence[ConfigAttempt], final_namespaces: Mapping[str, Iterable[str] | None]
) -> Check:
    """A config change is acknowledged only on a side with a Raft majority, every node ends
    with the same committed namespaces, and every acknowledged change is among them.

    A change tried on a minority side may be held by its node and commit after the heal
    (through the then reachable leader): that is an acknowledgement after ``fault_end`` and
    allowed; one acknowledged before ``fault_end`` is not. ``final_namespaces``: each node's
    ``NS_LIST`` names after the heal (None: no answer).
    """
    check = Check("config")
    finals = {n: None if v is None else frozenset(v) for n, v in final_namespaces.items()}
    views = {v for v in finals.values() if v is not None}
    if len(views) > 1:
        shown = {n: sorted(v or ()) for n, v in finals.items()}
        check.fail(f"nodes hold different namespaces: {shown}")
    committed: set[str] = set().union(*views) if views else set()
    counts: Counter[str] = Counter()
    for a in attempts:
        side = {True: "majority", False: "minority", None: "unsure"}[a.majority]
        during = a.completed < a.fault_end
        when = "during" if during else "after"
        counts[f"{side}_{a.outcome}_{when}"] += 1
        if a.majority is False and a.outcome == OK and during:
            check.fail(
                f"{a.name} via {a.node}: acknowledged {a.completed - a.started:.2f}s after it "
                f"was sent, {a.fault_end - a.completed:.2f}s before the heal, on a side "
                "without a Raft majority"
            )
        if a.outcome == OK and a.name not in committed:
            check.fail(f"{a.name} via {a.node}: acknowledged change missing after the heal")
        if a.majority is True and a.outcome != OK:
            check.note(f"{a.name} via {a.node} (majority side): {a.outcome} {a.error or ''}")
    for node, view in finals.items():
        if view is None:
            check.fail(f"{node}: no NS_LIST answer")
    check.counts = dict(sorted(counts.items()))
    return check


def _counter_keys(history: History) -> set[tuple[str, str]]:
    """The keys ``incr`` ops work on (the workload keeps them apart from value keys)."""
    return {(op.ns, op.key) for op in history.ops if op.f == "incr"}


def check_conditional(
    history: History,
    final: FinalState,
    levels: Mapping[str, str],
    *,
    healthy_until: float,
    origin: float = 0.0,
) -> Check:
    """Every acknowledged conditional write is explained by the history.

    Always (whatever the faults; an ``unknown`` op may have applied at any time after its
    invocation, so it only ever widens what is allowed):

    * ``INCR``: an acknowledged result ``r`` is at least 1 and at most the number of ``INCR`` ops
      of that key invoked before it completed (no increment applied twice, no count from
      nowhere); a counter's final value is at most the number of ``INCR`` ops invoked.
    * ``SET XX`` stored, or ``SET NX`` refused: some value write of the key had been invoked
      before it completed (the key existed somewhere).
    * ``CAS`` stored: its ``GETS`` read a value (checked as a read by :func:`check_reads`).

    Only while the cluster is healthy (ops invoked and completed before ``healthy_until``, the
    start of the fault: every key has one coordinator, its first owner, which applies a
    key's writes in order):

    * acknowledged ``INCR`` ops of a key, one completed before the other was invoked, return
      increasing results;
    * ``SET NX`` is refused, and ``SET XX`` stores, when a value write of the key was
      acknowledged before it was invoked and no delete may have come between;
    * ``CAS`` is refused when a write of the key was acknowledged between its ``GETS``
      answer and its sending, and stores when no write of the key may have come between.

    During and after a fault these are not promised: an AP cache coordinates a key on each
    side of a cut from each side's own state, and last-writer-wins keeps one of two
    concurrent writes. There they are counted (``incr_regressions``, ``nx_over_value``,
    ``xx_refused_on_value``, ``cas_over_write``), not failed.
    """
    check = Check("conditional")
    counts: Counter[str] = Counter()
    by_key: dict[tuple[str, str], list[Op]] = defaultdict(list)
    for op in history.ops:
        by_key[(op.ns, op.key)].append(op)
    for op in history.ops:
        if op.f in ("setnx", "setxx", "cas", "incr"):
            level = levels.get(op.ns, "?")
            outcome = op.type if op.type != OK or op.f == "incr" else f"stored_{op.stored}"
            counts[f"{level}_{op.f}_{outcome}"] += 1

    def healthy(op: Op) -> bool:
        return op.complete is not None and op.complete < healthy_until

    def at(t: float | None) -> str:
        return "-" if t is None else f"{t - origin:+.2f}s"

    for (ns, key), ops in sorted(by_key.items()):
        incrs = [op for op in ops if op.f == "incr"]
        if incrs:
            _check_counter(check, counts, ns, key, incrs, final, healthy, at)
            continue
        values = [op for op in ops if op.may_write_value]
        deletes = [op for op in ops if op.f == "delete" and op.type != "fail"]
        for op in ops:
            if op.type != OK or op.f not in ("setnx", "setxx", "cas") or op.complete is None:
                continue
            where = (
                f"{ns}/{key}: {op.f} {op.value!r} (invoked {at(op.invoke)}, ack {at(op.complete)})"
            )
            existed_somewhere = any(w is not op and w.invoke < op.complete for w in values)
            # A value write acknowledged before op was invoked, with no delete (that may have
            # applied) invoked before op completed and not certainly done before that write.
            present = any(
                w is not op
                and w.type == OK
                and w.complete is not None
                and w.complete < op.invoke
                and not any(d.invoke < op.complete and d.end > w.invoke for d in deletes)
                for w in values
            )
            if op.f == "setxx" and op.stored and not existed_somewhere:
                check.fail(f"{where}: stored though no value of the key was ever written")
            elif op.f == "setnx" and op.stored is False and not existed_somewhere:
                check.fail(f"{where}: refused though no value of the key was ever written")
            elif op.f == "setnx" and op.stored and present:
                if healthy(op):
                    check.fail(f"{where}: stored over an acknowledged value, cluster healthy")
                else:
                    counts["nx_over_value"] += 1
            elif op.f == "setxx" and op.stored is False and present:
                if healthy(op):
                    check.fail(f"{where}: refused on an acknowledged value, cluster healthy")
                else:
                    counts["xx_refused_on_value"] += 1
            elif op.f == "cas" and op.seen_at is not None:
                # Its GETS ran in [invoke, seen_at], its CAS in [cas_at, complete].
                between = [
                    w
                    for w in (*values, *deletes)
                    if w is not op and w.invoke < op.complete and w.end > op.invoke
                ]
                sent = op.cas_at if op.cas_at is not None else op.complete
                certain = [
                    w
                    for w in between
                    if w.type == OK
                    and w.invoke > op.seen_at
                    and w.complete is not None
                    and w.complete < sent
                ]
                if op.stored and certain:
                    if healthy(op):
                        check.fail(
                            f"{where}: swapped though {certain[0].f} {certain[0].value!r} "
                            "was acknowledged between its GETS and it, cluster healthy"
                        )
                    else:
                        counts["cas_over_write"] += 1
                elif op.stored is False and op.seen is not None and not between and healthy(op):
                    check.fail(f"{where}: refused though nothing wrote the key since its GETS")
    check.counts = dict(sorted(counts.items()))
    return check


def _check_counter(
    check: Check,
    counts: Counter[str],
    ns: str,
    key: str,
    incrs: list[Op],
    final: FinalState,
    healthy: Any,
    at: Any,
) -> None:
    acked = [op for op in incrs if op.type == OK and op.result is not None]
    for op in acked:
        assert op.result is not None and op.complete is not None
        invoked = sum(1 for o in incrs if o.invoke < op.complete)
        if not 1 <= op.result <= invoked:
            check.fail(
                f"{ns}/{key}: incr acknowledged {op.result} at {at(op.complete)}, with "
                f"{invoked} incr(s) invoked by then"
            )
    for a in acked:
        for b in acked:
            assert a.result is not None and b.result is not None
            if a.complete is not None and a.complete < b.invoke and b.result <= a.result:
                if healthy(b):
                    check.fail(
                        f"{ns}/{key}: incr acknowledged {b.result} at {at(b.complete)} after "
                        f"one acknowledged {a.result} at {at(a.complete)}, cluster healthy"
                    )
                else:
                    counts["incr_regressions"] += 1
    state = final.final(ns, key)
    if state.value is not None:
        try:
            value = int(state.value)
        except ValueError:
            check.fail(f"{ns}/{key}: counter holds {state.value!r}")
            return
        if not 0 <= value <= len(incrs):
            check.fail(f"{ns}/{key}: counter ends at {value}, {len(incrs)} incr(s) invoked")
        counts["increments_lost"] += len(acked) and max(
            0, max((op.result or 0) for op in acked) - value
        )


def _seq(value: str | None) -> int | None:
    """The op number a hot writer's value ``<name>:<n>`` carries (None: a miss)."""
    if value is None:
        return None
    try:
        return int(value.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def check_hot(
    history: History,
    namespace: str,
    *,
    lease: float,
    delta: float,
    strict: bool = True,
    counters: Mapping[str, int] | None = None,
    origin: float = 0.0,
    unsettled: tuple[float, float] | None = None,
) -> Check:
    """The promises of docs/hotkeys.md, over the reads and writes of the hot keys of
    ``namespace`` (each written by one writer, values ``<writer>:<n>`` with ``n`` rising;
    writes acknowledged at ``all``, so every node's own store holds every acknowledged write
    and only a copy can serve an older value):

    * **read-your-writes**: a plain writer's read through the node its writes go through (that
      node dropped and fenced its copy when the write passed), and any read of a smart writer
      (ops without ``node``: its client sends writes of a hot key to the owner and reads it by
      the version the write left), never returns older than its newest acknowledged write;
    * **staleness**: no read, through any node, returns a value older than a write
      acknowledged more than ``lease + delta`` before the read began (a copy whose update was
      lost is served until its lease ends, plus one network delay: ``delta``);
    * **deleted keys**: no read returns a value a delete acknowledged more than
      ``lease + delta`` before the read began had removed.

    A miss is explained by a delete (acknowledged or unknown) of a later number than the
    newest acknowledged write; an unknown write may have applied whenever after its
    invocation, so it only ever makes a read fresher. Not promised, so counted:
    ``ryw_elsewhere_within_lease`` (a writer reading an older value through another node,
    within the lease: the update of that node's copy was lost). With ``strict`` False
    (faults that restart a node, whose store starts empty), violations are counted, not
    failed. ``counters``: the nodes' summed hot-key counters, shown with the figures.

    ``unsettled`` (from the first fault until the hints written since were drained, after the
    heal): a write acknowledged then may have been taken by stand-ins for owners out of the
    writer's node's reach (or held dead by it, before membership agreed again), and those
    owners' own records hold it only once the hints arrive. A read of such an owner's older
    record in that window is the data plane's eventual consistency (the ``converge`` checker
    bounds it), not a copy outliving its lease: it is counted, not failed —
    ``stale_after_cut`` (its worst lag ``max_staleness_after_cut_ms``) for the staleness bound,
    ``ryw_after_cut`` for a plain writer reading through its node. A smart writer's reads are
    held to read-your-writes throughout (its ``HOT_GET`` carries the write's version, and the
    owner takes the newest record of the live members), and a write acknowledged before the
    fault to the bound.
    """
    check = Check("hot")
    counts: Counter[str] = Counter()
    bound = lease + delta
    keys: dict[str, list[Op]] = defaultdict(list)
    for op in history.ops:
        if op.ns == namespace:
            keys[op.key].append(op)
    worst = worst_after_cut = 0.0

    def in_cut(t: float) -> bool:
        return unsettled is not None and unsettled[0] <= t < unsettled[1]

    def flag(line: str) -> None:
        if strict:
            check.fail(line)
        else:
            check.note(line)

    for key, ops in sorted(keys.items()):
        writes = [op for op in ops if op.is_write]
        writers = {op.process for op in writes}
        if len(writers) > 1:
            check.fail(f"{key}: written by {sorted(writers)}, the checker needs one writer")
            continue
        writer = next(iter(writers), None)
        acked = sorted((op for op in writes if op.type == OK), key=lambda o: o.n)
        deletes = [op for op in writes if op.f == "delete" and op.type != "fail"]
        write_node = next((op.node for op in writes if op.node is not None), None)
        for r in ops:
            if r.f != "get" or r.type != OK:
                continue
            counts["reads"] += 1
            before = [w for w in acked if w.complete is not None and w.complete <= r.invoke]
            if not before:
                continue
            newest = before[-1]
            seq = _seq(r.value)
            if seq is not None and seq >= newest.n:
                continue
            if seq is None:
                if newest.f == "delete" or any(
                    d.n > newest.n and d.invoke < (r.complete or r.invoke) for d in deletes
                ):
                    continue
                # The miss shows the state of the newest delete older than newest, if any.
                seq = max((d.n for d in deletes if d.n < newest.n), default=-1)
            stale_since = min(
                (w.complete for w in acked if w.n > seq and w.complete is not None),
                default=r.invoke,
            )
            lag = r.invoke - stale_since
            if in_cut(stale_since) and in_cut(r.invoke):
                if r.process != writer or r.node != write_node:
                    counts["stale_after_cut"] += 1
                    worst_after_cut = max(worst_after_cut, lag)
                    continue
                if write_node is not None:  # a plain writer through its node
                    counts["ryw_after_cut"] += 1
                    continue
                # a smart writer: held to read-your-writes below
            worst = max(worst, lag)
            shown = "a miss" if r.value is None else repr(r.value)
            where = (
                f"{key}: {r.process} read {shown} through {r.node or 'a smart client'} at "
                f"{r.invoke - origin:+.2f}s, {lag:.2f}s after {newest.f} {newest.n} was "
                "acknowledged"
            )
            if r.process == writer and r.node == write_node:
                # A plain writer reading through the node it writes through, or a smart writer
                # (no node: its client routes, and reads a hot key it wrote by version).
                counts["ryw_violations"] += 1
                flag(f"{where}: read-your-writes")
            elif lag > bound:
                deleted = any(d.type == OK and d.n > seq for d in acked if d.f == "delete")
                counts["deleted_served" if deleted and r.value is not None else "stale"] += 1
                flag(f"{where}: staler than the lease ({lease:g}s) + {delta:g}s")
            elif r.process == writer:
                counts["ryw_elsewhere_within_lease"] += 1
    counts["max_staleness_ms"] = round(worst * 1000)
    if counts["stale_after_cut"]:
        counts["max_staleness_after_cut_ms"] = round(worst_after_cut * 1000)
    counts.setdefault("ryw_violations", 0)
    counts.setdefault("stale", 0)
    counts.setdefault("deleted_served", 0)
    check.counts = {**dict(sorted(counts.items())), **(counters or {})}
    return check


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1, nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def side_figures(ops: Sequence[Op], seconds: float) -> dict[str, Any]:
    """Availability figures of ``ops`` over a window of ``seconds``: counts by outcome,
    acknowledged writes per second, and write latency p50/p99 (ms, acknowledged ones)."""
    writes = [op for op in ops if op.is_write]
    ok_writes = [op for op in writes if op.type == OK]
    lat = [op.latency for op in ok_writes if op.latency is not None]
    all_lat = [op.latency for op in writes if op.latency is not None]
    p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
    any99 = percentile(all_lat, 0.99)
    return {
        "ops": len(ops),
        "ok": sum(op.type == OK for op in ops),
        "writes": len(writes),
        "writes_ok": len(ok_writes),
        "writes_per_s": round(len(ok_writes) / seconds, 2) if seconds > 0 else None,
        "write_p50_ms": None if p50 is None else round(p50 * 1000, 1),
        "write_p99_ms": None if p99 is None else round(p99 * 1000, 1),
        "write_p99_any_ms": None if any99 is None else round(any99 * 1000, 1),
    }


def availability(
    history: History, sides: Mapping[str, str], start: float, end: float
) -> dict[str, dict[str, Any]]:
    """Per side, the figures (:func:`side_figures`) of the operations its clients invoked in
    ``[start, end)``; ``sides`` maps a client (history process) to its side's label."""
    window = history.between(start, end)
    result = {}
    for label in sorted(set(sides.values())):
        ops = [op for op in window if sides.get(op.process) == label]
        result[label] = side_figures(ops, end - start)
    return result


def check_resources(
    samples: Sequence[Mapping[str, Any]],
    *,
    hint_max_bytes: int,
    drained_after: float | None,
    fd_slack: int = 64,
) -> Check:
    """Hints stay within ``hint_max_bytes`` and drain once healed (``drained_after``: seconds
    from the heal until every node held none, None if they never did while watched); a node's
    open file descriptors end within ``fd_slack`` of where its process began.

    ``samples``: ``{"t", "node", "phase" ("run" | "final"), "hints", "hint_bytes", "fds",
    "fds_at_start"}`` dicts (None for a figure a node did not give).
    """
    check = Check("resources")
    peak_bytes = peak_hints = 0
    fds_peak = 0
    for s in samples:
        hb = s.get("hint_bytes") or 0
        peak_bytes = max(peak_bytes, hb)
        peak_hints = max(peak_hints, s.get("hints") or 0)
        fds_peak = max(fds_peak, s.get("fds") or 0)
        if hb > hint_max_bytes:
            check.fail(f"{s['node']}: {hb} hint bytes > bound {hint_max_bytes}")
        if s.get("phase") == "final":
            if s.get("hints"):
                check.fail(f"{s['node']}: {s['hints']} hints left after convergence")
            fds, base = s.get("fds"), s.get("fds_at_start")
            if fds is not None and base is not None and fds > base + fd_slack:
                check.fail(f"{s['node']}: {fds} fds after the heal, {base} at its start")
    if drained_after is None:
        check.fail("hints were not drained within the bound after the heal")
    check.counts = {
        "peak_hints": peak_hints,
        "peak_hint_bytes": peak_bytes,
        "peak_fds": fds_peak,
        "hints_drained_s": None if drained_after is None else round(drained_after, 2),
    }
    return check


__all__ = [
    "DURABLE_LEVELS",
    "Check",
    "ConfigAttempt",
    "FinalState",
    "Held",
    "availability",
    "check_conditional",
    "check_config",
    "check_convergence",
    "check_hot",
    "check_membership",
    "check_reads",
    "check_resources",
    "check_writes",
    "held",
    "percentile",
    "side_figures",
]
