"""Fault schedules, one cycle of a schedule against a cluster, and the soak.

A :class:`Schedule` is data: a fault kind, timed :class:`Step` values (network faults as JSON
specs, process faults by node name), which side each client endpoint is on, and the seed that
drew it. :func:`make_schedule` draws one from ``random.Random(f"{seed}:{cycle}")``, so a soak
(``--seed S``) and any one of its cycles (``--only K``) replay the same faults and the same
client op sequences; the timing of real processes is not replayed.

:func:`run_cycle` runs one schedule against a :class:`~.cluster.ChaosCluster`:

1. start the workload (per client endpoint a smart and a plain client, plus a smart client in
   the hub), with keys of the cycle's own prefix; wait until every client has had an op
   acknowledged, then let them run ``baseline`` seconds unhurt (the "before" figures);
2. play the steps (config changes are tried through a node on each side a quarter into a
   network fault); sample hints and file descriptors about once a second;
3. heal everything (network, paused and killed nodes, clock skew), let the clients run on for
   ``after_heal`` seconds, stop them;
4. poll until every owner of every key holds the same record and every node agrees on ring
   and membership (at most ``converge_bound`` seconds), then read the final state; poll until
   every node's hints are drained (at most ``hint_bound`` seconds after the heal: a hint to
   a peer gossip never held dead is retried with a back-off growing to 30 s);
5. run the checkers (:mod:`.checkers`) and return a :class:`CycleReport`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshcache.errors import CommandError, MeshcacheError
from meshcache.testing.chaos import checkers, faults, loadercheck
from meshcache.testing.chaos.cluster import DATA_PORT, ChaosCluster, Control, wait_until
from meshcache.testing.chaos.faults import NetFaults
from meshcache.testing.chaos.history import (
    FAIL,
    OK,
    UNKNOWN,
    History,
    HistoryTail,
    build,
    load,
    now,
    read_records,
)
from meshcache.testing.chaos.loadercycle import (
    LISTEN_BOUND,
    LOADER_BOUNDS,
    LOADER_FIGURES,
    LOADER_FINAL,
    LOADER_SETTLE,
    final_loader_reads,
    insert_rows,
    loader_counters,
    wait_listening,
)
from meshcache.testing.chaos.netns import ChaosError
from meshcache.testing.chaos.pgsource import (
    DB_ENDPOINT,
    LOADER_NAMESPACE,
)
from meshcache.testing.chaos.workload import (
    HOT_LEASE,
    HOT_NAMESPACE,
    LEVEL_OF,
    NAMESPACES,
    ClientSpec,
)

#: Every fault kind :func:`make_schedule` knows, in the soak's round-robin order.
FAULT_KINDS = (
    "partition",
    "one-way",
    "bridge",
    "isolate",
    "flapping",
    "loss",
    "kill",
    "pause",
    "skew",
)
# Config refusals after which the change may still commit (docs/protocol.md).
_UNDECIDED = frozenset({"PROPOSAL_TIMEOUT", "NO_QUORUM"})
#: Kinds :func:`make_schedule` also knows, run by the soak only when named (``--kinds``).
EXTRA_KINDS = ("slow",)
#: The hints a node may hold (its ``hint_max_bytes`` default).
HINT_MAX_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class Step:
    """At ``at`` seconds into the fault phase, do ``action`` (a :class:`ChaosCluster` fault:
    ``faults`` with a spec, ``heal``, ``kill``, ``restart``, ``pause``, ``resume``, ``skew``,
    ``throttle``, or ``config``: try a config change through a node on each side; or
    ``await_dead``: wait until ``node``'s gossip holds the nodes of ``dead`` dead, at most
    ``timeout`` s, then ``hold`` s more — the steps after it and the heal wait for it)."""

    at: float
    action: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def to_mapping(self) -> dict[str, Any]:
        return {"at": round(self.at, 3), "action": self.action, "args": dict(self.args)}


@dataclass(frozen=True, slots=True)
class Schedule:
    """One cycle's faults. ``sides``: client endpoint → the label of its side (``hub`` is
    never cut off); ``plain``: client endpoint → the node its plain client talks to;
    ``duration``: seconds of the fault phase, after which everything is healed."""

    kind: str
    seed: str
    duration: float
    steps: tuple[Step, ...]
    sides: Mapping[str, str]
    plain: Mapping[str, str]
    nodes: int = 3

    @property
    def has_db(self) -> bool:
        """Whether a fault names the database endpoint (a run with ``loader=True``)."""
        return f'"{DB_ENDPOINT}"' in json.dumps([dict(s.args) for s in self.steps])

    def to_mapping(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "seed": self.seed,
            "duration": round(self.duration, 3),
            "steps": [s.to_mapping() for s in self.steps],
            "sides": dict(self.sides),
            "plain": dict(self.plain),
            "nodes": self.nodes,
        }

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> Schedule:
        steps = tuple(Step(float(s["at"]), str(s["action"]), s.get("args", {})) for s in m["steps"])
        return cls(
            str(m["kind"]),
            str(m["seed"]),
            float(m["duration"]),
            steps,
            m["sides"],
            m["plain"],
            int(m.get("nodes", 3)),
        )


def faults_from_spec(spec: Mapping[str, Any]) -> NetFaults:
    """A :class:`NetFaults` from its JSON form: ``{"shape": "partition", "sides": [[...], ...]}``
    (``"proto": "tcp"``: TCP only, gossip passes),
    ``one_way`` (``src``, ``dst``), ``bridge`` (``left``, ``middle``, ``right``), ``isolate``
    (``node``, ``others``), ``loss`` (``endpoints``, ``p``)."""
    shape = spec["shape"]
    if shape == "partition":
        return faults.partition(
            *spec["sides"], label=spec.get("label", "partition"), proto=spec.get("proto")
        )
    if shape == "one_way":
        return faults.one_way(spec["src"], spec["dst"])
    if shape == "bridge":
        return faults.bridge(spec["left"], spec["middle"], spec["right"])
    if shape == "isolate":
        return faults.isolate(spec["node"], spec["others"])
    if shape == "loss":
        return faults.lossy(spec["endpoints"], float(spec["p"]))
    raise ValueError(f"unknown fault shape {shape!r}")


def _split(rng: random.Random, nodes: Sequence[str]) -> tuple[list[str], list[str]]:
    """A random minority (1 to (n-1)//2 nodes) and the majority."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    k = rng.randint(1, max(1, (len(nodes) - 1) // 2))
    return sorted(shuffled[:k]), sorted(shuffled[k:])


def make_schedule(
    kind: str,
    seed: str,
    nodes: Sequence[str],
    clients: Sequence[str],
    *,
    duration: float | None = None,
    loss: float | None = None,
    skew: float | None = None,
    db: bool = False,
) -> Schedule:
    """Draw a schedule of ``kind`` from ``random.Random(seed)`` for these nodes and client
    endpoints (``c0`` joins the minority or cut-off side, the others the majority).
    ``db``: the run has a database (endpoint ``db``), which joins the majority side (the
    receiving side of a one-way cut, the right of a bridge; an isolated node is cut off from
    it too); the draw is the same.

    ``loss``: the drop probability of every ``loss`` schedule (else drawn from 5, 10, 20 or
    30 %); ``skew``: the size in seconds of every ``skew`` schedule's clock offset, its sign
    still drawn (else drawn from ±2 or ±5 s). Either leaves the rest of the draw unchanged."""
    rng = random.Random(seed)
    length = duration if duration is not None else round(rng.uniform(5.0, 10.0), 1)
    steps: list[Step] = []
    sides: dict[str, str] = {c: "all" for c in clients}
    plain: dict[str, str] = {c: nodes[i % len(nodes)] for i, c in enumerate(clients)}
    minority, majority = _split(rng, nodes)
    others = [DB_ENDPOINT] if db else []

    def place(small: Sequence[str], big: Sequence[str], small_label: str, big_label: str) -> None:
        for i, c in enumerate(clients):
            on_small = i == 0
            sides[c] = small_label if on_small else big_label
            group = small if on_small else big
            plain[c] = group[i % len(group)]

    def cut(small: Sequence[str], big: Sequence[str]) -> dict[str, Any]:
        a = [*small, *(c for c in clients[:1])]
        b = [*big, *clients[1:], *others]
        return {"shape": "partition", "sides": [a, b]}

    if kind == "partition":
        place(minority, majority, "minority", "majority")
        steps += [Step(0.0, "faults", cut(minority, majority)), Step(length / 4, "config")]
    elif kind == "one-way":
        place(minority, majority, "sender", "receiver")
        src = [*minority, *clients[:1]]
        dst = [*majority, *clients[1:], *others]
        steps += [Step(0.0, "faults", {"shape": "one_way", "src": src, "dst": dst})]
        steps += [Step(length / 4, "config")]
    elif kind == "bridge":
        shuffled = list(nodes)
        rng.shuffle(shuffled)
        half = (len(nodes) - 1) // 2
        left, middle, right = shuffled[:half], shuffled[half : len(nodes) - half], shuffled[-half:]
        if not left or not right:
            raise ValueError("a bridge needs at least 3 nodes")
        place(left, right, "left", "right")
        spec = {
            "shape": "bridge",
            "left": [*left, *clients[:1]],
            "middle": middle,
            "right": [*right, *clients[1:], *others],
        }
        steps += [Step(0.0, "faults", spec), Step(length / 4, "config")]
    elif kind == "isolate":
        victim = rng.choice(list(nodes))
        rest = [n for n in nodes if n != victim]
        for i, c in enumerate(clients):
            sides[c] = "majority"
            plain[c] = rest[i % len(rest)]
        cut_from = [*rest, *clients, *others]
        steps += [Step(0.0, "faults", {"shape": "isolate", "node": victim, "others": cut_from})]
        steps += [Step(length / 4, "config")]
    elif kind == "flapping":
        place(minority, majority, "minority", "majority")
        t = 0.0
        on = True
        while t < length:
            steps.append(Step(t, "faults", cut(minority, majority)) if on else Step(t, "heal"))
            t += round(rng.uniform(0.5, 2.0), 2)
            on = not on
    elif kind == "loss":
        p = rng.choice([0.05, 0.1, 0.2, 0.3])
        if loss is not None:
            p = loss
        lossy: dict[str, Any] = {"shape": "loss", "endpoints": [*nodes, *clients, *others], "p": p}
        steps.append(Step(0.0, "faults", lossy))
    elif kind == "kill":
        victim = rng.choice(list(nodes))
        back = round(length * rng.uniform(0.4, 0.8), 2)
        steps += [Step(0.0, "kill", {"node": victim}), Step(back, "restart", {"node": victim})]
        steps += [Step(back / 2, "config")]
    elif kind == "pause":
        victim = rng.choice(list(nodes))
        held = round(rng.uniform(3.0, min(5.0, length)), 2)
        steps += [Step(0.0, "pause", {"node": victim}), Step(held, "resume", {"node": victim})]
    elif kind == "slow":
        victim = rng.choice(list(nodes))
        rate = rng.choice(["256kbit", "1mbit"])
        steps.append(Step(0.0, "throttle", {"node": victim, "rate": rate}))
    elif kind == "skew":
        victim = rng.choice(list(nodes))
        offset = rng.choice([-5.0, -2.0, 2.0, 5.0])
        if skew is not None:
            offset = math.copysign(skew, offset)
        steps.append(Step(0.0, "skew", {"node": victim, "seconds": offset}))
    else:
        known = ", ".join((*FAULT_KINDS, *EXTRA_KINDS))
        raise ValueError(f"unknown fault kind {kind!r} (known: {known})")
    return Schedule(kind, seed, length, tuple(steps), sides, plain, len(nodes))


@dataclass(slots=True)
class CycleReport:
    """What one cycle did and found. ``checks``: every checker's verdict; ``ok``: all passed."""

    cycle: int
    schedule: Schedule
    prefix: str
    started: float
    healed: float
    converged_after: float | None
    availability: dict[str, dict[str, Any]]
    checks: list[checkers.Check]
    history: str
    load1: float | None = None  # the machine's 1-minute load average at the cycle's end

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def check(self, name: str) -> checkers.Check:
        return next(c for c in self.checks if c.name == name)

    def figures(self) -> dict[str, Any]:
        """The headline figures: ops, acknowledged and lost writes per level, resurrected,
        time to converge."""
        w = self.check("writes").counts
        return {
            "kind": self.schedule.kind,
            "ops": sum(v for k, v in w.items() if k.endswith(("_ok", "_fail", "_unknown"))),
            "acked": {lv: w.get(f"{lv}_acked", 0) for lv in NAMESPACES},
            "lost": {lv: w.get(f"{lv}_lost", 0) for lv in NAMESPACES},
            "resurrected": w.get("resurrected", 0),
            "late_overwrites": w.get("overwritten_by_late_write", 0),
            "hints_drained_s": self.check("resources").counts.get("hints_drained_s"),
            "converge_s": None if self.converged_after is None else round(self.converged_after, 2),
            "agree_s": self.check("membership").counts.get("seconds"),
            "load1": self.load1,
            "conditional": {
                name: counts.get(name, 0)
                for counts in [self._counts("conditional")]
                for name in _CONDITIONAL_COUNTED
            },
            "hot": {
                name: counts[name]
                for counts in [self._counts("hot")]
                for name in _HOT_FIGURES
                if name in counts
            },
            "loader": {
                name: counts[name]
                for counts in [self._counts("loader")]
                for name in LOADER_FIGURES
                if name in counts
            },
        }

    def _counts(self, name: str) -> dict[str, Any]:
        return next((c.counts for c in self.checks if c.name == name), {})

    def to_mapping(self) -> dict[str, Any]:
        return {
            "cycle": self.cycle,
            "ok": self.ok,
            "prefix": self.prefix,
            "figures": self.figures(),
            "schedule": self.schedule.to_mapping(),
            "availability": self.availability,
            "checks": [c.to_mapping() for c in self.checks],
            "history": self.history,
        }

    def summary(self) -> str:
        f = self.figures()
        failed = [c.name for c in self.checks if not c.ok]
        return (
            f"cycle {self.cycle} {f['kind']:<9} seed={self.schedule.seed} "
            f"acked one/quorum/all {f['acked']['one']}/{f['acked']['quorum']}/{f['acked']['all']}"
            f" lost {f['lost']['one']}/{f['lost']['quorum']}/{f['lost']['all']}"
            f" resurrected {f['resurrected']} late-overwrites {f['late_overwrites']}"
            f" agreed {f['agree_s']}s converged {f['converge_s']}s"
            f" hints drained {f['hints_drained_s']}s load {f['load1']}"
            f"{self._loader_summary(f['loader'])}"
            f" {'ok' if not failed else 'FAILED: ' + ', '.join(failed)}"
        )

    @staticmethod
    def _loader_summary(f: dict[str, Any]) -> str:
        if not f:
            return ""
        return (
            f" loader: loads {f.get('loads')} extra {f.get('extra_loads')}"
            f"/{f.get('extra_loads_under_fault', 0)} under fault, stale past ttl"
            f" {f.get('stale_beyond_ttl')} past notify {f.get('stale_beyond_notify')},"
            f" wedged {f.get('wedged')}, settled {f.get('settled_max_ms')} ms"
        )


@dataclass(slots=True)
class Workload:
    """How hard the clients of a cycle work. ``levels``: the consistency levels written; the
    op mix as relative weights (see :class:`~.workload.ClientSpec`)."""

    rate: float = 25.0
    keys: int = 40
    timeout: float = 5.0
    levels: tuple[str, ...] = ("one", "quorum", "all")
    hub_client: bool = True
    plain_clients: bool = True
    writes: float = 0.7
    reads: float = 0.2
    deletes: float = 0.1
    setnx: float = 0.04
    setxx: float = 0.04
    cas: float = 0.04
    incr: float = 0.04
    #: Hot keys (:data:`~.workload.HOT_NAMESPACE`): per client endpoint a smart reader of the
    #: ``hot_keys`` keys at ``hot_rate`` reads/s, and per hot key one writer at
    #: ``hot_writer_rate`` writes/s, on an endpoint's side, that reads each write back: a
    #: plain writer through every node, a smart one (every other key) where its client
    #: routes. 0 hot keys: none.
    hot_keys: int = 0
    hot_rate: float = 150.0
    hot_writer_rate: float = 4.0
    #: Read-through keys (a cluster started with ``loader=True``; :mod:`.loaderclients`):
    #: ``loader_keys`` rows, UPDATEd ``db_rate`` times a second by a writer in the hub, read
    #: at ``loader_rate`` reads/s by a smart and a plain reader per endpoint and a smart one in
    #: the hub, which SET a key instead for a ``loader_sets`` share of their ops. 0: none.
    loader_keys: int = 0
    loader_rate: float = 20.0
    loader_sets: float = 0.05
    db_rate: float = 4.0


def client_specs(
    cluster: ChaosCluster, schedule: Schedule, prefix: str, workload: Workload
) -> dict[str, list[ClientSpec]]:
    """Endpoint → the clients its worker runs, for one cycle."""
    namespaces = tuple(NAMESPACES[lv] for lv in workload.levels)
    base = random.Random(f"{schedule.seed}:clients")

    def spec(name: str, seeds: Sequence[str], smart: bool) -> ClientSpec:
        return ClientSpec(
            name=f"{prefix}{name}",
            seeds=tuple(seeds),
            smart=smart,
            namespaces=namespaces,
            keys=workload.keys,
            key_prefix=prefix,
            writes=workload.writes,
            reads=workload.reads,
            deletes=workload.deletes,
            setnx=workload.setnx,
            setxx=workload.setxx,
            cas=workload.cas,
            incr=workload.incr,
            rate=workload.rate,
            timeout=workload.timeout,
            seed=base.randrange(1 << 30),
        )

    result: dict[str, list[ClientSpec]] = {}
    for c in cluster.client_names:
        specs = [spec(f"{c}-smart", cluster.seeds, True)]
        if workload.plain_clients:
            target = cluster.node(schedule.plain[c])
            specs.append(spec(f"{c}-plain", [target.data], False))
        result[c] = specs
    if workload.hot_keys and cluster.client_names:
        for c in cluster.client_names:
            reader = spec(f"{c}-hot-reader", cluster.seeds, True)
            result[c].append(
                dataclasses.replace(reader, role="hot-reader", keys=workload.hot_keys,
                                    rate=workload.hot_rate)
            )  # fmt: skip
        for j in range(workload.hot_keys):
            c = cluster.client_names[j % len(cluster.client_names)]
            # Even keys: a plain writer through the node its endpoint's plain client uses (on
            # its own side); odd keys: a smart writer (reads by version, docs/hotkeys.md).
            home = cluster.node(schedule.plain[c]).data
            seeds = [home, *(s for s in cluster.seeds if s != home)]
            writer = spec(f"{c}-hot-writer{j}", seeds, j % 2 == 1)
            result[c].append(
                dataclasses.replace(writer, role="hot-writer", hot_key=f"{prefix}h{j}",
                                    rate=workload.hot_writer_rate)
            )  # fmt: skip
    if workload.hub_client:
        result["hub"] = [spec("hub-smart", cluster.seeds, True)]
    if workload.loader_keys and cluster.database is not None:

        def loader_reader(name: str, seeds: Sequence[str], smart: bool) -> ClientSpec:
            return dataclasses.replace(
                spec(name, seeds, smart), role="loader-reader", keys=workload.loader_keys,
                rate=workload.loader_rate, writes=workload.loader_sets,
            )  # fmt: skip

        for c in cluster.client_names:
            result[c].append(loader_reader(f"{c}-loader-smart", cluster.seeds, True))
            target = cluster.node(schedule.plain[c])
            result[c].append(loader_reader(f"{c}-loader-plain", [target.data], False))
        writer = dataclasses.replace(
            spec("db-writer", cluster.seeds, True), role="db-writer", keys=workload.loader_keys,
            rate=workload.db_rate, dsn=cluster.database.local_dsn,
        )  # fmt: skip
        hub_reader = loader_reader("hub-loader", cluster.seeds, True)
        result.setdefault("hub", []).extend([writer, hub_reader])
    return result


class _Runner:
    """Plays one schedule against a cluster and collects what the checkers need."""

    def __init__(self, cluster: ChaosCluster, schedule: Schedule, prefix: str) -> None:
        self.cluster = cluster
        self.schedule = schedule
        self.prefix = prefix
        self.samples: list[dict[str, Any]] = []
        self.fd_base: dict[tuple[str, int], int] = {}
        self.attempts: list[checkers.ConfigAttempt] = []
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._last_sample = 0.0

    def sample(self, phase: str) -> None:
        """Hints and fds of every running node, for :func:`checkers.check_resources`."""
        self._last_sample = time.monotonic()
        for node in self.cluster.running_nodes():
            info = self.cluster.try_call(node, "INFO", [], timeout=1.0)
            gauges = info.get("mesh", {}).get("gauges", {}) if isinstance(info, dict) else {}
            fds = self.cluster.fd_count(node)
            base = None
            if fds is not None and node.pid is not None:
                base = self.fd_base.setdefault((node.name, node.pid), fds)
            self.samples.append(
                {
                    "t": now(),
                    "node": node.name,
                    "phase": phase,
                    "hints": gauges.get("hints"),
                    "hint_bytes": gauges.get("hint_bytes"),
                    "fds": fds,
                    "fds_at_start": base,
                }
            )

    def until(self, deadline: float) -> None:
        """Idle until ``deadline`` (monotonic), sampling resources about once a second."""
        while (left := deadline - time.monotonic()) > 0:
            if time.monotonic() - self._last_sample >= 1.0:
                self.sample("run")
                continue
            time.sleep(min(left, 0.1))  # the schedule's clock: steps happen at set times

    def do(self, step: Step) -> None:
        c = self.cluster
        args = step.args
        if step.action == "faults":
            c.set_faults(faults_from_spec(args))
        elif step.action == "heal":
            c.heal()
        elif step.action == "kill":
            c.kill(args["node"])
        elif step.action == "restart":
            c.restart(args["node"])
        elif step.action == "pause":
            c.pause(args["node"])
        elif step.action == "resume":
            c.resume(args["node"])
        elif step.action == "skew":
            c.restart(args["node"], skew=float(args["seconds"]))
        elif step.action == "throttle":
            c.throttle(args["node"], args.get("rate"))
        elif step.action == "config":
            self.try_config()
        elif step.action == "await_dead":
            self.await_dead(args["node"], args["dead"], float(args.get("timeout", 30.0)))
            self.until(time.monotonic() + float(args.get("hold", 0.0)))
        else:
            raise ValueError(f"unknown step action {step.action!r}")

    def await_dead(self, node: str, dead: Sequence[str], timeout: float) -> None:
        """Poll ``node``'s gossip view (``MEMBERS``, from the hub) until it holds every node of
        ``dead`` dead or left, at most ``timeout`` seconds; the moment it did (or that it did
        not) goes into the history as an ``observer`` record ``dead_seen``."""
        c = self.cluster
        wanted = {c.node(name).node_id for name in dead}
        started = time.monotonic()
        seen = False
        while time.monotonic() - started < timeout:
            view = c.try_call(c.node(node), "MEMBERS", [], timeout=1.0)
            if isinstance(view, list):
                down = {
                    m.get("name") for m in view if isinstance(m, dict)
                    and m.get("state") in ("dead", "left")
                }  # fmt: skip
                if wanted <= down:
                    seen = True
                    break
            time.sleep(0.1)  # the poll interval; the timeout bounds the wait
        if c.history is not None:
            c.history.write(
                {"type": "info", "p": "observer", "f": "dead_seen", "node": node,
                 "value": sorted(dead), "seen": seen, "after": round(time.monotonic() - started, 2)}
            )  # fmt: skip

    def try_config(self) -> None:
        """Through one running node of each reachability group, try to create a namespace
        (each in its own thread: a minority side's attempt waits for its timeout)."""
        c = self.cluster
        net = c.faults
        tried: list[frozenset[str]] = []
        for node in c.running_nodes():
            group = frozenset(n.name for n in c.running_nodes() if net.connected(node.name, n.name))
            if group in tried:
                continue
            tried.append(group)
            live_voters = [v for v in c.voter_names if c.node(v).running and not c.node(v).paused]
            majority: bool | None = net.majority(node.name, live_voters)
            if len(live_voters) * 2 <= len(c.voter_names):
                majority = False
            if net.one_way:
                majority = None  # a one-way cut has no clean sides: only agreement is checked
            name = f"cfg-{self.prefix.rstrip(':')}-{node.name}"
            t = threading.Thread(
                target=self._attempt, args=(node.name, name, majority), daemon=True
            )
            t.start()
            self.threads.append(t)

    def _attempt(self, node: str, name: str, majority: bool | None) -> None:
        c = self.cluster
        policy = {"eviction": "none", "max_bytes": 1 << 20}
        outcome, error = UNKNOWN, None
        started = now()
        try:
            control = Control(c.network.hub, (c.node(node).address, DATA_PORT), 12.0)
            try:
                control.call("NS_SET", [name, policy], "default", 12.0)
                outcome = OK
            finally:
                control.close()
        except CommandError as exc:
            outcome = UNKNOWN if str(exc.code) in _UNDECIDED else FAIL
            error = f"{exc.code}: {exc.message}"[:200]
        except (OSError, MeshcacheError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        with self._lock:
            self.attempts.append(
                checkers.ConfigAttempt(
                    name, node, majority, outcome, started, now(), float("inf"), error
                )
            )
        if c.history is not None:
            c.history.write(
                {
                    "type": "info",
                    "p": "config",
                    "f": "ns_set",
                    "value": name,
                    "node": node,
                    "majority": majority,
                    "outcome": outcome,
                    "error": error,
                    "started": started,
                }
            )


def _read_state(
    cluster: ChaosCluster, keys: Mapping[str, list[str]]
) -> tuple[checkers.FinalState, bool]:
    """Every owner's record of every key; and whether every owner answered."""
    state = checkers.FinalState()
    complete = True
    try:
        ring = cluster.current_ring()
    except (OSError, MeshcacheError):
        return state, False
    for ns, ks in keys.items():
        owners = {k: cluster.owners(ring, k) for k in ks}
        for k in ks:
            state.owners[(ns, k)] = owners[k]
            state.records[(ns, k)] = {}
        for node in cluster.nodes:
            mine = [k for k in ks if node.name in owners[k]]
            if not mine:
                continue
            try:
                got = cluster.records(node, ns, mine, timeout=5.0)
            except (OSError, MeshcacheError):
                complete = False
                continue
            for k, raw in zip(mine, got, strict=True):
                state.records[(ns, k)][node.name] = raw
    return state, complete


#: What :meth:`CycleReport.figures` shows of the conditional and hot checkers' counts.
_CONDITIONAL_COUNTED = (
    "incr_regressions",
    "nx_over_value",
    "xx_refused_on_value",
    "cas_over_write",
    "increments_lost",
)
_HOT_FIGURES = (
    "reads",
    "ryw_violations",
    "stale",
    "deleted_served",
    "max_staleness_ms",
    "reads_from_copies",
    "invalidations_lost",
)
#: The network delay (and scheduling on a loaded machine) allowed beyond a hot copy's lease.
HOT_DELTA = 1.0
_HOT_COUNTERS = ("keys_turned_hot", "reads_from_copies", "invalidations_lost", "copies_expired")


def _hot_counters(cluster: ChaosCluster) -> dict[str, int]:
    """Every running node's hot-key counters (INFO ``mesh.counters.hot``), summed: whether
    copies served reads at all, and how many updates of them were lost (a cycle reports the
    difference over it; a node restarted in it starts from 0, so that is a lower bound)."""
    total: dict[str, int] = dict.fromkeys(_HOT_COUNTERS, 0)
    for node in cluster.running_nodes():
        info = cluster.try_call(node, "INFO", [], timeout=2.0)
        mesh = info.get("mesh", {}) if isinstance(info, dict) else {}
        hot = mesh.get("counters", {}).get("hot", {}) if isinstance(mesh, dict) else {}
        for name in _HOT_COUNTERS:
            value = hot.get(name) if isinstance(hot, dict) else None
            if type(value) is int:
                total[name] += value
    return total


def _wait_hints_drained(cluster: ChaosCluster, healed: float, bound: float) -> float | None:
    """Poll every node's hint count until all are 0 (at most ``bound`` seconds after the heal);
    the seconds since the heal when they were, None if they never were."""
    deadline = healed + bound
    while True:
        counts = []
        for node in cluster.nodes:
            info = cluster.try_call(node, "INFO", [], timeout=2.0)
            gauges = info.get("mesh", {}).get("gauges", {}) if isinstance(info, dict) else {}
            counts.append(gauges.get("hints"))
        if all(c == 0 for c in counts):
            return now() - healed
        if now() > deadline:
            return None
        time.sleep(0.5)  # the poll interval; the deadline bounds the wait


def run_cycle(
    cluster: ChaosCluster,
    schedule: Schedule,
    *,
    cycle: int = 0,
    prefix: str | None = None,
    workload: Workload | None = None,
    after_heal: float = 2.0,
    converge_bound: float = 30.0,
    agree_bound: float = 10.0,
    hint_bound: float = 45.0,
    warmup_timeout: float = 60.0,
    baseline: float = 2.0,
    unskew: bool = True,
) -> CycleReport:
    """Run ``schedule`` once against ``cluster`` and check the result (see the module doc).

    The cluster is healthy again when this returns (network healed, every node running,
    skewed clocks set right unless ``unskew`` is False), unless a node cannot be restarted
    (ChaosError).
    """
    workload = workload or Workload()
    prefix = prefix if prefix is not None else f"c{cycle}:"
    assert cluster.history is not None
    cluster.history.write(
        {
            "type": "meta",
            "p": "harness",
            "f": "cycle",
            "cycle": cycle,
            "prefix": prefix,
            "schedule": schedule.to_mapping(),
        }
    )
    runner = _Runner(cluster, schedule, prefix)
    hot_before = _hot_counters(cluster) if workload.hot_keys else {}
    offset = cluster.history_path.stat().st_size
    database = cluster.database if workload.loader_keys else None
    loader_before: dict[str, int] = {}
    if database is not None:
        loader_before = loader_counters(cluster)
        insert_rows(cluster, database, [f"{prefix}l{i}" for i in range(workload.loader_keys)])
    specs = client_specs(cluster, schedule, prefix, workload)
    workers = [cluster.start_worker(where, clients) for where, clients in specs.items()]
    names = {c.name for clients in specs.values() for c in clients}

    seen: set[str] = set()
    tail = HistoryTail(cluster.history_path, offset)

    def warmed_up() -> bool:
        for worker in workers:
            if worker.proc.poll() is not None:
                raise ChaosError(
                    f"workload process {worker.names} exited with {worker.proc.returncode}: "
                    f"{worker.log_tail()}"
                )
        seen.update(str(r["p"]) for r in tail.read() if r.get("type") == OK)
        return names <= seen

    wait_until(warmed_up, warmup_timeout, "every client's first acknowledged op", every=0.25)
    runner.sample("run")
    runner.until(time.monotonic() + baseline)
    started = now()
    begin = time.monotonic()
    for step in sorted(schedule.steps, key=lambda s: s.at):
        runner.until(begin + step.at)
        runner.do(step)
    runner.until(begin + schedule.duration)
    for node in cluster.nodes:
        if node.skew and unskew:
            cluster.restart(node.name, skew=0.0)
    cluster.heal_all()
    healed = now()
    listening_at: float | None = healed
    agreed_after: float | None = None
    if database is not None:
        listening_at, agreed_after = wait_listening(cluster, healed, LISTEN_BOUND)
    runner.until(time.monotonic() + after_heal)
    for worker in workers:
        worker.stop()
    for t in runner.threads:
        t.join(30.0)
    final_from = now()
    versions: dict[str, int] = {}
    if database is not None:
        versions = database.versions(prefix)
        final_loader_reads(cluster, versions, LOADER_BOUNDS.settle + 2.0)

    everything = build(read_records(cluster.history_path, offset)).select(prefix=prefix)
    # The loader keys' reads show database versions, which no client wrote: they have a
    # checker of their own, and the other checkers see the other namespaces.
    history = History(
        [op for op in everything.ops if op.ns != LOADER_NAMESPACE], everything.events,
        everything.meta,
    )  # fmt: skip
    changes = sorted(e["t"] for e in history.events if e.get("p") == "nemesis")
    attempts = [
        dataclasses.replace(a, fault_end=min((t for t in changes if t > a.started), default=healed))
        for a in runner.attempts
    ]
    keys: dict[str, list[str]] = {}
    for ns, key in sorted(history.keys()):
        keys.setdefault(ns, []).append(key)

    converged_after: float | None = None
    deadline = time.monotonic() + converge_bound
    state = checkers.FinalState()
    while True:
        if agreed_after is None and cluster.ring_agreed() and cluster.membership_agreed():
            agreed_after = now() - healed
        state, complete = _read_state(cluster, keys)
        if (
            complete
            and not state.divergent()
            and cluster.ring_agreed()
            and cluster.membership_agreed()
        ):
            converged_after = now() - healed
            if agreed_after is None:
                agreed_after = converged_after
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)  # the poll interval; the deadline bounds the wait

    drained_after = _wait_hints_drained(cluster, healed, hint_bound)
    runner.sample("final")
    rings = {n.name: cluster.try_call(n, "RING", []) for n in cluster.nodes}
    members = {n.name: cluster.try_call(n, "MEMBERS", []) for n in cluster.nodes}
    ns_lists = {n.name: cluster.try_call(n, "NS_LIST", []) for n in cluster.nodes}
    final_ns = {
        name: None if v is None else [k for k in v if k.startswith("cfg-")]
        for name, v in ns_lists.items()
    }
    proc_sides = {
        c.name: schedule.sides.get(where, "hub") for where, cs in specs.items() for c in cs
    }
    restarted = any(s.action in ("kill", "restart", "skew") for s in schedule.steps)
    hot = (
        [
            checkers.check_hot(
                history,
                HOT_NAMESPACE,
                lease=HOT_LEASE,
                delta=HOT_DELTA,
                strict=not restarted,
                counters={
                    name: max(0, value - hot_before.get(name, 0))
                    for name, value in _hot_counters(cluster).items()
                },
                origin=started,
                unsettled=(
                    (changes[0], math.inf if drained_after is None else healed + drained_after)
                    if changes
                    else None
                ),
            )
        ]
        if workload.hot_keys
        else []
    )
    loader = []
    if database is not None:
        check = loadercheck.check_loader(
            History([op for op in everything.ops if op.ns == LOADER_NAMESPACE]),
            database.loads(prefix),
            versions,
            namespace=LOADER_NAMESPACE,
            bounds=LOADER_BOUNDS,
            faulty=[(started, (listening_at or math.inf) + LOADER_SETTLE)],
            final_from=final_from,
            final_process=LOADER_FINAL,
            origin=started,
        )
        after = loader_counters(cluster)
        check.counts.update(
            {f"node_{k}": max(0, v - loader_before.get(k, 0)) for k, v in after.items()}
        )
        check.counts["listening_after_heal_s"] = (
            None if listening_at is None else round(listening_at - healed, 2)
        )
        loader.append(check)
    checks = [
        checkers.check_writes(history, state, LEVEL_OF, origin=started),
        checkers.check_reads(history),
        checkers.check_conditional(history, state, LEVEL_OF, healthy_until=started, origin=started),
        checkers.check_convergence(state, converged_after, converge_bound),
        checkers.check_membership(
            rings, members, [n.node_id for n in cluster.nodes], agreed_after, agree_bound
        ),
        checkers.check_config(attempts, final_ns),
        checkers.check_resources(
            runner.samples, hint_max_bytes=HINT_MAX_BYTES, drained_after=drained_after
        ),
        *hot,
        *loader,
    ]
    fault_end = started + schedule.duration
    report = CycleReport(
        cycle=cycle,
        schedule=schedule,
        prefix=prefix,
        started=started,
        healed=healed,
        converged_after=converged_after,
        availability={
            "before": checkers.availability(history, proc_sides, started - baseline, started),
            "during": checkers.availability(history, proc_sides, started, fault_end),
            "after": checkers.availability(history, proc_sides, healed, healed + after_heal),
        },
        checks=checks,
        history=str(cluster.history_path),
        load1=round(os.getloadavg()[0], 2),
    )
    cluster.history.write(
        {"type": "meta", "p": "harness", "f": "cycle_report", **report.to_mapping()}
    )
    return report


def history_of(report: CycleReport) -> History:
    """The operations of ``report``'s cycle, loaded from its history file."""
    return load(Path(report.history)).select(prefix=report.prefix)


def soak(
    cycles: int,
    seed: int,
    *,
    nodes: int = 3,
    out_dir: Path,
    kinds: Sequence[str] = FAULT_KINDS,
    only: Sequence[int] | None = None,
    workload: Workload | None = None,
    log: Any = print,
    loss: float | None = None,
    skew: float | None = None,
    loader: bool = False,
) -> list[CycleReport]:
    """Run ``cycles`` randomized cycles on one cluster (kind: round-robin over ``kinds``;
    everything else drawn from ``f"{seed}:{cycle}"``); write ``history.jsonl``,
    ``reports.jsonl`` (one line per cycle) and ``summary.json`` into ``out_dir``.

    ``only``: run just these cycle numbers (a replay of those cycles of the same seed).
    ``loss`` / ``skew``: fix the loss probability / the clock offset's size (see
    :func:`make_schedule`); a replay needs the same values. ``loader``: the cluster runs a
    PostgreSQL (see :class:`~.cluster.ChaosCluster`), which joins the majority side of every
    fault; the workload's ``loader_keys`` then read through it.
    A cycle that raises (a node that does not come back) ends the soak: its error is written
    to ``reports.jsonl`` and the cycles before it are summarized.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    reports: list[CycleReport] = []
    wanted = list(range(cycles)) if only is None else sorted(set(only))
    with (
        ChaosCluster(nodes, 2, out_dir=out_dir, loader=loader) as cluster,
        open(out_dir / "reports.jsonl", "a", encoding="utf-8") as out,
    ):
        log(f"soak: {nodes} nodes, seed {seed}, run {cluster.rid}, files in {out_dir}")
        for cycle in wanted:
            kind = kinds[cycle % len(kinds)]
            schedule = make_schedule(
                kind,
                f"{seed}:{cycle}",
                cluster.node_names,
                cluster.client_names,
                loss=loss,
                skew=skew,
                db=loader,
            )
            try:
                report = run_cycle(cluster, schedule, cycle=cycle, workload=workload)
            except (ChaosError, MeshcacheError, OSError) as exc:
                # The cluster may be unusable now: stop, keeping what the cycles found.
                cluster.keep_logs = True
                error = f"{type(exc).__name__}: {exc}"
                entry = {"cycle": cycle, "ok": False, "error": error}
                out.write(json.dumps({**entry, "schedule": schedule.to_mapping()}) + "\n")
                log(f"cycle {cycle} {kind}: stopped the soak: {error}")
                break
            reports.append(report)
            out.write(json.dumps(report.to_mapping(), default=str) + "\n")
            out.flush()
            log(report.summary())
            for c in report.checks:
                for finding in c.findings[:10] if not c.ok else []:
                    log(f"    {c.name}: {finding}")
        if any(not r.ok for r in reports):
            cluster.keep_logs = True
    summary = summarize(reports)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return reports


def summarize(reports: Sequence[CycleReport]) -> dict[str, Any]:
    """Totals per fault kind: cycles, ops, acknowledged and lost writes per level,
    resurrected keys, writes overwritten by late ones, convergence and ring/membership
    agreement time (median and max), hint-drain time (max), failed checks, the machine's
    load average (min and max of the cycles' ends), the conditional checker's counted AP
    cases and the hot checker's reads, violations and worst staleness."""
    kinds: dict[str, dict[str, Any]] = {}
    times: dict[str, dict[str, list[float]]] = {}
    for r in reports:
        f = r.figures()
        k = kinds.setdefault(
            f["kind"],
            {
                "cycles": 0,
                "ops": 0,
                "acked": dict.fromkeys(NAMESPACES, 0),
                "lost": dict.fromkeys(NAMESPACES, 0),
                "resurrected": 0,
                "late_overwrites": 0,
                "converge_max_s": 0.0,
                "drain_max_s": 0.0,
                "not_converged": 0,
                "failed_checks": {},
            },
        )
        k["cycles"] += 1
        k["ops"] += f["ops"]
        t = times.setdefault(f["kind"], {"converge": [], "agree": [], "load": []})
        for name, value in (
            ("converge", f["converge_s"]),
            ("agree", f["agree_s"]),
            ("load", f["load1"]),
        ):
            if value is not None:
                t[name].append(value)
        for lv in NAMESPACES:
            k["acked"][lv] += f["acked"][lv]
            k["lost"][lv] += f["lost"][lv]
        k["resurrected"] += f["resurrected"]
        k["late_overwrites"] += f["late_overwrites"]
        if f["hints_drained_s"] is not None:
            k["drain_max_s"] = max(k["drain_max_s"], f["hints_drained_s"])
        if f["converge_s"] is None:
            k["not_converged"] += 1
        else:
            k["converge_max_s"] = max(k["converge_max_s"], f["converge_s"])
        for c in r.checks:
            if not c.ok:
                k["failed_checks"][c.name] = k["failed_checks"].get(c.name, 0) + 1
        for group in ("conditional", "hot", "loader"):
            into = k.setdefault(group, {})
            for name, value in f[group].items():
                if "max" in name:
                    into[name] = max(into.get(name, 0), value)
                else:
                    into[name] = into.get(name, 0) + value
    for kind, t in times.items():
        k = kinds[kind]
        k["converge_median_s"] = _median(t["converge"])
        k["agree_median_s"] = _median(t["agree"])
        k["agree_max_s"] = max(t["agree"], default=None)
        k["not_agreed"] = k["cycles"] - len(t["agree"])
        k["load_min"] = min(t["load"], default=None)
        k["load_max"] = max(t["load"], default=None)
    return {"cycles": len(reports), "kinds": kinds}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


__all__ = [
    "EXTRA_KINDS",
    "FAULT_KINDS",
    "CycleReport",
    "Schedule",
    "Step",
    "Workload",
    "client_specs",
    "faults_from_spec",
    "history_of",
    "make_schedule",
    "run_cycle",
    "soak",
    "summarize",
]
