"""The read-through loader's promises (docs/loader.md), judged over a chaos history and the
database's own log of loads; a pure function like the other checkers (:mod:`.checkers`).

Inputs: the operations on the loader keys of one cycle (``dbwrite``: an UPDATE that made
version ``result`` of the key's row, or the INSERT of the row at version 0; ``get`` of
``<key>:<version>``, or of a client's SET value ``<key>:s:...``; ``set`` with the loader's
TTL), the loads PostgreSQL logged (key, time), the
rows' versions once the writer stopped, and the fault windows: from a fault's start until
``settle`` seconds after its heal (gossip, the ring and the listening connections coming back).
Everything else is *healthy*.

The database's version of a key at time ``t``, ``db(t)``, is the highest version whose UPDATE
was acknowledged by ``t`` (0: the row as inserted). A read ``R`` invoked at ``R.invoke``:

(a) **staleness** — a value ``<key>:v`` must have ``v >= db(R.invoke - ttl - delta)``: a loaded
    value lives ``ttl`` from its load, whose query read the database at most ``delta`` (the
    load's time, a loaded machine) before it was stored; so no fault, with no refresh or
    ``stale_if_error`` configured, can serve an older one. When the read and the ``notify``
    seconds before it are healthy, ``v >= db(R.invoke - notify)``: the NOTIFY reaches the key's
    coordinator, which reloads it (``on_notify = "reload"``). ``v`` above every UPDATE invoked
    by the read's end, a value no client SET, or nil (every key has a row) is impossible — a
    nil under a fault is counted (``nil_under_fault``), not failed: a reload that fails for a
    cut from the database replicates a drop, which answers a load waiting elsewhere;
(b) **one load per miss wave** — two consecutive loads of a key, ``l1`` then ``l2``, belong to
    different waves when ``l2 - l1 >= ttl - delta`` (the value loaded at ``l1`` expired) or an
    UPDATE of the key may have been announced after ``l1`` (acknowledged no earlier than
    ``l1 - notify``, invoked before ``l2``). Otherwise ``l2`` is an extra load: a failure when
    both are healthy (concurrent misses anywhere in the mesh make one query), counted under a
    fault (owners split by a cut each load);
(c) **no wedged key** — once the writer stopped (``final_from``), reads through every node
    (process ``final_process``) return the key's last version within ``settle_bound`` seconds
    and keep returning it;
(d) **a SET wins over a load** — a read invoked after a SET ``S`` was acknowledged and ended
    before ``S`` could expire (``S.invoke + ttl - delta``) returns no database value unless an
    UPDATE of the key may have been announced after ``S`` (acknowledged no earlier than
    ``S.invoke - notify``: its reload legitimately replaces the SET). A failure when ``S`` and
    the read are healthy, counted under a fault; a SET's value read after ``S.complete + ttl +
    delta`` is a failure always.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from meshcache.testing.chaos.checkers import Check
from meshcache.testing.chaos.history import OK, UNKNOWN, History, Op
from meshcache.testing.chaos.pgsource import version_of


@dataclass(frozen=True, slots=True)
class LoaderBounds:
    """The checker's time bounds (seconds): ``ttl`` of a loaded value (and of a client's SET);
    ``delta`` for a load's time and a loaded machine; ``notify`` from an UPDATE's commit until
    the key's coordinator reloaded it; ``settle``: how long after the final heal reads through
    every node must show the last version."""

    ttl: float
    delta: float = 1.0
    notify: float = 2.0
    settle: float = 10.0


class _Key:
    """One key's database writes, as the checks ask about them."""

    def __init__(self, ops: Sequence[Op]) -> None:
        self.writes = [op for op in ops if op.f == "dbwrite" and op.type in (OK, UNKNOWN)]
        acked = sorted(
            (op.complete, op.result)
            for op in self.writes
            if op.type == OK and op.complete is not None and op.result is not None
        )
        self._times = [t for t, _ in acked]
        self._best: list[int] = []
        for _, version in acked:
            self._best.append(max(version, self._best[-1] if self._best else 0))
        # The row's INSERT (version 0) is announced like an UPDATE, but makes no version.
        self._invoked = sorted(op.invoke for op in self.writes if op.result != 0)

    def db(self, t: float) -> int:
        """The highest version acknowledged by ``t`` (0: the row as inserted)."""
        i = bisect.bisect_right(self._times, t)
        return self._best[i - 1] if i else 0

    def since(self, v: int) -> float:
        """When a version above ``v`` was first acknowledged (the key has one)."""
        return next(t for t, best in zip(self._times, self._best, strict=True) if best > v)

    def possible(self, t: float) -> int:
        """The highest version that can exist at ``t``: one per UPDATE invoked by then."""
        return bisect.bisect_right(self._invoked, t)

    def announced_between(self, start: float, end: float) -> bool:
        """Whether an UPDATE invoked before ``end`` may have been committed (and announced)
        at or after ``start``."""
        return any(op.invoke < end and op.end >= start for op in self.writes)


def check_loader(
    history: History,
    loads: Sequence[tuple[str, float] | tuple[str, float, str]],
    final_versions: Mapping[str, int],
    *,
    namespace: str,
    bounds: LoaderBounds,
    faulty: Sequence[tuple[float, float]] = (),
    final_from: float | None = None,
    final_process: str = "loader-final",
    origin: float = 0.0,
) -> Check:
    """Judge (a)-(d) of the module doc over ``namespace``'s operations in ``history``.

    Args:
        loads: every load PostgreSQL logged of the cycle's keys, as (key, time), or (key, time,
            the node's address) — named in the findings.
        final_versions: each key's row version once the writer stopped.
        faulty: (start, end) windows that are not healthy (a fault until its heal + settle).
        final_from: when the writer stopped and the final reads began.
        final_process: the process name of the final reads (one ``node`` per read).
        origin: the time findings are shown relative to (the fault's start).
    """
    check = Check("loader")
    counts: Counter[str] = Counter()
    ttl, delta, notify = bounds.ttl, bounds.delta, bounds.notify

    def healthy(start: float, end: float) -> bool:
        return not any(a < end and start < b for a, b in faulty)

    def at(t: float) -> str:
        return f"{t - origin:+.2f}s"

    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history.ops:
        if op.ns == namespace:
            by_key[op.key].append(op)
    worst = {"healthy": 0.0, "fault": 0.0}
    for key, ops in sorted(by_key.items()):
        rows = _Key(ops)
        sets = {op.value: op for op in ops if op.f == "set" and op.value is not None}
        acked_sets = [op for op in sets.values() if op.type == OK]
        for r in ops:
            if r.f != "get":
                continue
            if r.type != OK:
                counts["reads_failed_" + ("healthy" if healthy(r.invoke, r.end) else "fault")] += 1
                continue
            counts["reads_ok"] += 1
            end = r.complete if r.complete is not None else r.invoke
            through = f" through {r.node}" if r.node else ""
            where = f"{key}: {r.process} read {r.value!r}{through} at {at(r.invoke)}"
            if r.value is None:
                if not healthy(r.invoke, end):
                    # A load's waiters answered a drop replicated meanwhile: a reload that
                    # failed for a cut from the database replicates the drop.
                    check.note(f"{where}: nil under a fault")
                    counts["nil_under_fault"] += 1
                else:
                    check.fail(f"{where}: nil, though the key has a row")
                    counts["impossible"] += 1
                continue
            v = version_of(key, r.value)
            if v is None:
                s = sets.get(r.value)
                if s is None or s.invoke > end:
                    check.fail(f"{where}: a value nobody wrote")
                    counts["impossible"] += 1
                elif s.type == OK and r.invoke > s.end + ttl + delta:
                    check.fail(f"{where}: a SET acknowledged at {at(s.end)} past its TTL")
                    counts["set_past_ttl"] += 1
                else:
                    counts["reads_of_sets"] += 1
                continue
            if v > rows.possible(end):
                check.fail(f"{where}: version {v} was not written yet")
                counts["impossible"] += 1
                continue
            # (a) staleness
            now_db = rows.db(r.invoke)
            if v < now_db:
                lag = r.invoke - rows.since(v)
                side = "healthy" if healthy(r.invoke - notify, end) else "fault"
                worst[side] = max(worst[side], lag)
                counts[f"stale_reads_{side}"] += 1
                if v < rows.db(r.invoke - ttl - delta):
                    check.fail(f"{where}: {lag:.2f}s stale, beyond the TTL ({ttl:g}s) + {delta:g}s")
                    counts["stale_beyond_ttl"] += 1
                elif side == "healthy" and v < rows.db(r.invoke - notify):
                    check.fail(f"{where}: {lag:.2f}s stale while healthy, beyond {notify:g}s")
                    counts["stale_beyond_notify"] += 1
            # (d) a SET acknowledged before the read, alive through it, wins over a load
            for s in acked_sets:
                assert s.complete is not None
                if not (s.complete < r.invoke and end < s.invoke + ttl - delta):
                    continue
                if rows.announced_between(s.invoke - notify, end):
                    continue
                line = f"{where}: a load replaced SET {s.value!r} (ack {at(s.complete)})"
                if healthy(s.invoke, end):
                    check.fail(line)
                    counts["set_overwritten"] += 1
                else:
                    check.note(line)
                    counts["set_overwritten_under_fault"] += 1
                break
    # (b) one load per key per miss wave
    loads_of: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for load in loads:
        loads_of[load[0]].append((load[1], f" by {load[2]}" if len(load) > 2 else ""))
    for key, times in sorted(loads_of.items()):
        times.sort()
        rows = _Key(by_key.get(key, []))
        counts["loads"] += len(times)
        counts["loads_max_per_key"] = max(counts["loads_max_per_key"], len(times))
        for (l1, by1), (l2, by2) in itertools.pairwise(times):
            if l2 - l1 >= ttl - delta or rows.announced_between(l1 - notify, l2):
                counts["waves"] += 1
                continue
            line = f"{key}: loaded at {at(l1)}{by1} and again at {at(l2)}{by2}, in one miss wave"
            if healthy(l1, l2):
                check.fail(line)
                counts["extra_loads"] += 1
            else:
                check.note(line)
                counts["extra_loads_under_fault"] += 1
        counts["waves"] += 1  # each key's first load starts a wave
    # (c) no wedged key
    if final_from is not None:
        settled_max = 0.0
        for key, version in sorted(final_versions.items()):
            final = [op for op in by_key.get(key, []) if op.process == final_process]
            by_node: dict[str, list[Op]] = defaultdict(list)
            for op in final:
                by_node[op.node or "?"].append(op)
            if not by_node:
                check.fail(f"{key}: never read after the heal")
                counts["wedged"] += 1
                continue
            for node, reads in sorted(by_node.items()):
                reads.sort(key=lambda op: op.invoke)
                settled: float | None = None
                for op in reads:
                    good = op.type == OK and version_of(key, op.value) == version
                    if good and settled is None:
                        settled = op.complete if op.complete is not None else op.invoke
                    elif not good:
                        settled = None
                if settled is None or settled - final_from > bounds.settle:
                    last = reads[-1].value if reads[-1].type == OK else reads[-1].error
                    check.fail(
                        f"{key}: through {node}, not at version {version} within "
                        f"{bounds.settle:g}s of the writer's stop (last read: {last!r})"
                    )
                    counts["wedged"] += 1
                else:
                    settled_max = max(settled_max, settled - final_from)
        counts["settled_max_ms"] = round(settled_max * 1000)
    counts["max_staleness_healthy_ms"] = round(worst["healthy"] * 1000)
    counts["max_staleness_fault_ms"] = round(worst["fault"] * 1000)
    for name in ("stale_beyond_ttl", "stale_beyond_notify", "extra_loads", "set_overwritten",
                 "impossible", "wedged"):  # fmt: skip
        counts.setdefault(name, 0)
    check.counts = dict(sorted(counts.items()))
    return check


__all__ = ["LoaderBounds", "check_loader"]
