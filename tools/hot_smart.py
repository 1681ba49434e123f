"""Hot keys on 3 real node processes read by smart clients: balance, throughput, consistency,
reaction.

Run: ``.venv/bin/python -m tools.hot_smart [--keys 1000000] [--rounds 5] [--duration 6]
[--reaction 5 [--jump-rate 40]] [--consistency 60] [--node-cpu 0.25 --procs 6]``

``--procs`` worker processes, each one blocking smart :class:`meshcache.Client` (routing by
the ring, spreading the reads of hot keys over their copies, demanding the versions of its own
writes) in a closed loop: 90% GET, 10% SET (``--writes``) of 100-byte values, the key of each
op drawn uniformly, by Zipf(0.99), Zipf(1.2), or one key taking 30% of the ops over a uniform
rest, from ``--keys`` keys preloaded on their owners. The ``default`` namespace's hot keys
(share 0.01, rate ``--hot-rate``, 20 reads/s by default, lease 2 s, copies on every node or on
``--hot-copies`` nodes) are switched on and off between runs; every round runs every workload
off and on, alternately, on one mesh.

Each run is measured in steady state: its window of ``--duration`` s starts once ``--warmup`` s
passed and no more keys turned hot for 1 s (the hot set formed; ``HOTKEYS`` of every node polled
every 0.25 s), or after ``--settle`` s; the tool prints the warm-up each run had and the keys
hot when its window started.

* **Balance**: the GETs each node served itself in the window (GET and HOT_GET received, minus
  forwarded out, plus forwarded in; from INFO), busiest ÷ mean.
* **Throughput**: ops/s of all workers in the window, as a ratio to the uniform run with hot keys
  off of the same round (and Zipf 1.2 on ÷ uniform on). On a machine whose few cores the nodes
  share with the workers, that is the machine's throughput, nodes and workers together;
  ``--node-cpu SHARE`` holds each node process to that share of a core (``tools/cpucap.py``,
  root), so that the mesh runs at the speed of its busiest node, as nodes on machines of their
  own do, while the workers have the rest; beside it, the node processes' CPU
  seconds per 1,000 ops and the workers' (less at the mercy of other work on the machine than
  ops/s), the quarter seconds of the window in which no worker finished an op (stalls: the run
  was starved), and the copy updates a second that writes to hot keys cost their owners; under
  it a trace of the window: how busy the machine was and, per node, the CPU it used and the
  time its loop's thread waited for a core (s/s; under ``--node-cpu``, apart from the time its
  quota held it back, ``quota``), its loop's worst lag and longest step, full
  collections, and the forwards, owner catch-ups, ``FWD``/``HOTKEYS``/``RECORDS``/``RING``
  requests answered, anti-entropy rounds, connects, lost copy updates and failed replica sends
  it counted.
* **Consistency**: the 16 most popular keys are each written by one worker only (a SET of one of
  them drawn by another worker is sent as a GET), with values carrying the write's time; a
  worker reads a key right after writing it and whenever it draws it. A read by the writer
  that returns an older value than its last acknowledged write is a read-your-writes
  violation; for the other readers, the staleness of a read is its start minus the
  acknowledgement of the first write newer than what it returned. ``--consistency SECONDS``
  is a Zipf 1.2 run, hot keys on, where half of each worker's ops go to the hot keys it writes
  (so most checked reads are the writers'); the reaction runs check too, and with
  ``--check-rounds`` the throughput rounds as well. Unchecked, the rounds' workers run a plain
  loop (a GET, or a SET of ``--writes`` of the ops, of the drawn key): the checks' bookkeeping
  (half the ops of Zipf 1.2 hit the 16 checked keys) and the read-backs cost a worker more per
  op under skew than on a uniform key choice, on the cores the nodes share.
* **Reaction** (``--reaction N``): under a uniform load, one fresh key takes ``--jump-share`` of
  the ops (0.2), all reads, or ``--jump-rate`` reads a second (a key that is not read fast);
  from the key's first read: when its owner turned it hot (``HOTKEYS``' ``hot_for``), when each
  other node held a copy (``HOTKEYS`` polled every 20 ms), and when every client's router knew
  its holders; then, once the jump ends, until no node holds a copy.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import math
import multiprocessing
import os
import random
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from meshcache.testing.mesh import Mesh
from tools.bench.workload import key
from tools.cpucap import CapError, check, cpu_capped, throttled
from tools.hot_mesh import served, set_hot
from tools.mesh_figures.preload import preload_by_owner

HOT: dict[str, float] = {"share": 0.01, "rate": 20.0, "lease": 2.0}
LEASE = HOT["lease"]
#: The share of SETs among the ops (``--writes``).
WRITES = [0.1]
WRITERS_KEYS = 16
VALUE_SIZE = 100
DRAWS = 200_000
#: Seconds between handing the workers their runs and their start (spawned workers import the
#: client and fetch the ring first; on a loaded machine that takes seconds).
LEAD = 3.0
#: Seconds per step of a run's timeline of ops (ops counted when started, a write's read-back
#: not counted).
TIMELINE_STEP = 0.25
#: A run is measured once no more keys turned hot for this long (the hot set formed).
STABLE = 1.0
#: Seconds a reaction jump lasts (at least).
REACTION_FOR = 6.0
#: Sampled reads a key needs at its owner to turn hot (node/data/hot/keys.py).
MIN_SAMPLES = 4


def _draws(keys: int, workload: str, rng: random.Random) -> list[int]:
    """``DRAWS`` key ranks for a workload: ``uniform``, ``zipf:S``, ``one:SHARE``."""
    if workload == "uniform":
        return [rng.randrange(keys) for _ in range(DRAWS)]
    kind, _, arg = workload.partition(":")
    if kind == "one":
        share = float(arg)
        return [0 if rng.random() < share else rng.randrange(1, keys) for _ in range(DRAWS)]
    s = float(arg)
    cumulative = list(itertools.accumulate(1.0 / (i + 1) ** s for i in range(keys)))
    total = cumulative[-1]
    return [bisect.bisect_left(cumulative, rng.random() * total) for _ in range(DRAWS)]


def _value(stamp: int) -> bytes:
    head = b"#%d#" % stamp
    return head + b"x" * (VALUE_SIZE - len(head))


def _stamp(value: bytes | None) -> int:
    """The write time a value carries (-1: a preloaded value, or none)."""
    if not value or not value.startswith(b"#"):
        return -1
    return int(value.split(b"#", 2)[1])


def _ends(end_file: str, end: float) -> float:
    """``end``, or the earlier end the main process wrote into ``end_file`` meanwhile."""
    with contextlib.suppress(OSError, ValueError):  # not written yet
        return min(end, float(Path(end_file).read_text()))
    return end


def _warm(_: int) -> None:
    """Import the client in a worker process before any run is timed."""
    from meshcache.client.sync import Client  # noqa: F401

    time.sleep(1.0)


def _work(spec: dict[str, Any]) -> dict[str, Any]:
    """One worker: a closed loop of ops from ``spec['begin']`` until its end (wall time); what
    it saw.

    The end is ``spec['end']`` unless the main process writes an earlier one (wall seconds)
    into ``spec['end_file']`` meanwhile: the run is measured once the hot set formed, for a
    given time. With ``jump`` a fraction ``jump_share`` of the ops (or, with ``jump_rate``,
    that many reads a second, spread over the workers) go to that key.
    """
    from meshcache.client.sync import Client
    from meshcache.errors import MeshcacheError

    rng = random.Random(spec["seed"])
    draws: list[int] = spec["draws"]
    wid, workers = spec["wid"], spec["workers"]
    jump: int | None = spec.get("jump")
    jump_share: float = spec.get("jump_share", 0.2)
    jump_every = workers / spec["jump_rate"] if spec.get("jump_rate") else None
    own_share: float = spec.get("own_share", 0.0)
    writes: float = spec.get("writes", 0.1)
    mine = [rank for rank in range(WRITERS_KEYS) if rank % workers == wid]
    begin, count_from, end = spec["begin"], spec["count_from"], spec["end"]
    end_file: str | None = spec.get("end_file")
    look_at = begin  # when the end file is read next
    errors = checked = violations = jumps = 0
    first_jump = learned = None
    acked: dict[int, int] = {}  # own writer key rank -> stamp of its last acknowledged write
    acks: list[tuple[int, int, float]] = []
    reads: list[tuple[int, int, float]] = []
    bad: list[tuple[int, int, int]] = []
    timeline = [0] * (int((end - begin) / TIMELINE_STEP) + 1)  # ops done per step

    def done(at: float) -> None:
        step = int((at - begin) / TIMELINE_STEP)
        if 0 <= step < len(timeline):
            timeline[step] += 1

    with Client(spec["addresses"], timeout=10, max_connections=8) as client:
        client.ping()  # connected and the ring fetched before the start
        time.sleep(max(0.0, begin - time.time()))
        if not spec.get("check", True) and jump is None:
            return _plain(client, spec, draws, rng, timeline, begin, end, writes)
        next_jump = begin + rng.random() * (jump_every or 0.0)
        jump_key = b"" if jump is None else key(jump)
        nodes = len(spec["addresses"].split(","))
        i = rng.randrange(len(draws))
        while True:
            now = time.time()
            if end_file is not None and now >= look_at:
                look_at, end = now + 0.1, _ends(end_file, end)
            if now >= end:
                break
            counting = now >= count_from
            i += 1
            rank = draws[i % len(draws)]
            if jump is not None and (
                now >= next_jump if jump_every is not None else rng.random() < jump_share
            ):
                rank = jump
                next_jump += jump_every or 0.0
                jumps += 1
                first_jump = first_jump or now
                if learned is None and len(client.router.hot.get(jump_key, ())) == nodes:
                    learned = now
            elif mine and rng.random() < own_share:
                rank = rng.choice(mine)
            write = rng.random() < writes and (jump is None or rank != jump)
            own = rank < WRITERS_KEYS and rank % workers == wid
            try:
                if write and (own or rank >= WRITERS_KEYS):
                    stamp = time.time_ns()
                    client.set(key(rank), _value(stamp))
                    done(time.time())
                    if own:
                        acked[rank] = stamp
                        if counting:
                            acks.append((rank, stamp, time.time()))
                        # the writer reads its write back at once
                        got = _stamp(client.get(key(rank)))
                        done(time.time())
                        checked += counting
                        if got < stamp:
                            violations += counting
                            bad.append((rank, stamp, got))
                    continue
                started = time.time()
                got = _stamp(client.get(key(rank)))
                done(time.time())
                if rank < WRITERS_KEYS and counting:
                    if own and rank in acked:
                        checked += 1
                        if got < acked[rank]:
                            violations += 1
                            bad.append((rank, acked[rank], got))
                    elif not own:
                        reads.append((rank, got, started))
            except MeshcacheError:
                errors += counting
    return {
        "errors": errors,
        "checked": checked,
        "violations": violations,
        "bad": bad[:20],
        "acks": acks,
        "reads": reads,
        "timeline": timeline,
        "jumps": jumps,
        "first_jump": first_jump,
        "learned": learned,
    }


def _plain(
    client: Any,
    spec: dict[str, Any],
    draws: list[int],
    rng: random.Random,
    timeline: list[int],
    begin: float,
    end: float,
    writes: float,
) -> dict[str, Any]:
    """The throughput rounds' loop: a GET or (``writes`` of the ops) a SET of the drawn key,
    nothing checked, so every workload costs the worker the same per op."""
    from meshcache.errors import MeshcacheError

    end_file: str | None = spec.get("end_file")
    count_from = spec["count_from"]
    value = _value(0)
    look_at = begin
    errors = 0
    i = rng.randrange(len(draws))
    step = TIMELINE_STEP
    steps = len(timeline)
    while True:
        now = time.time()
        if end_file is not None and now >= look_at:
            look_at, end = now + 0.1, _ends(end_file, end)
        if now >= end:
            break
        i += 1
        k = key(draws[i % len(draws)])
        try:
            if rng.random() < writes:
                client.set(k, value)
            else:
                client.get(k)
        except MeshcacheError:
            errors += now >= count_from
            continue
        at = int((time.time() - begin) / step)
        if 0 <= at < steps:
            timeline[at] += 1
    return {
        "errors": errors,
        "checked": 0,
        "violations": 0,
        "bad": [],
        "acks": [],
        "reads": [],
        "timeline": timeline,
        "jumps": 0,
        "first_jump": None,
        "learned": None,
    }


def _staleness(results: list[dict[str, Any]]) -> tuple[float, int]:
    """The largest staleness of another reader's read of a writer's key, and reads judged."""
    acks: dict[int, list[tuple[int, float]]] = {}
    for r in results:
        for rank, stamp, at in r["acks"]:
            acks.setdefault(rank, []).append((stamp, at))
    stamps: dict[int, list[int]] = {}
    for rank, acked in acks.items():
        acked.sort()
        stamps[rank] = [s for s, _ in acked]
    worst, judged = 0.0, 0
    for r in results:
        for rank, got, started in r["reads"]:
            writes = acks.get(rank)
            if not writes:
                continue
            judged += 1
            # the first acknowledged write newer than what the read returned
            at = bisect.bisect_right(stamps[rank], got)
            if at < len(writes) and writes[at][1] <= started:
                worst = max(worst, started - writes[at][1])
    return worst, judged


def _cpu(pids: list[int]) -> float:
    """CPU seconds these processes used so far (user + system; 0 for one that is gone)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _node_cpu(mesh: Mesh) -> float:
    """CPU seconds the node processes used so far (user + system)."""
    return _cpu([node.pid for node in mesh.nodes])


#: Counters a run's trace shows the change of, per node: (part of INFO's ``mesh`` counters, or
#: ``requests`` for the requests it answered by op; name; label).
TRACED = (
    ("dataplane", "forwarded_out", "forwarded"),
    ("dataplane", "reads_caught_up", "caught up"),
    ("requests", "FWD", "FWD"),
    ("requests", "HOTKEYS", "HOTKEYS"),
    ("requests", "RECORDS", "RECORDS"),
    ("requests", "RING", "RING"),
    ("antientropy", "rounds", "ae rounds"),
    ("antientropy", "scanned_keys", "ae scanned"),
    ("peers", "connects", "connects"),
    ("peers", "lane_connects", "lane connects"),
    ("hot", "invalidations_lost", "updates lost"),
    ("replicator", "send_failures", "repl failures"),
)


def _machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _snapshot(mesh: Mesh) -> dict[str, dict[str, float]]:
    """Per node (``n0``… in start order): CPU seconds and run-queue wait seconds of its
    process so far (/proc), the counters of :data:`TRACED`, its full garbage collections,
    and its loop's figures now."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, dict[str, float]] = {}
    for i, node in enumerate(mesh.nodes):
        fields = Path(f"/proc/{node.pid}/stat").read_text().rsplit(")", 1)[1].split()
        waited = 0.0
        with contextlib.suppress(OSError):
            waited = int(Path(f"/proc/{node.pid}/schedstat").read_text().split()[1]) / 1e9
        info: dict[str, Any] = mesh.call(node, "INFO", [])
        # Time its quota held it back (``--node-cpu``), which the kernel counts as waiting.
        waited_for_quota = throttled(node.pid)
        counters = info.get("mesh", {}).get("counters", {})
        loop = info.get("loop", {})
        row: dict[str, float] = {
            "cpu": (int(fields[11]) + int(fields[12])) / tick,
            "wait": waited,
            "throttled": waited_for_quota,
            "gc": loop.get("gc_full", 0),
            "lag_max_ms": loop.get("lag_max_ms", 0.0),
            "lag_own_max_ms": loop.get("lag_own_max_ms", 0.0),
            "longest_step_ms": loop.get("longest_step_ms", 0.0),
        }
        for part, name, label in TRACED:
            source = info.get("requests", {}) if part == "requests" else counters.get(part, {})
            row[label] = source.get(name, 0)
        out[f"n{i}"] = row
    return out


def _trace(
    before: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
    machine: tuple[int, int],
    duration: float,
) -> str:
    """What the nodes did in a run's window: per node, CPU used (s/s), time runnable but
    waiting for a core (s/s, the main thread) and, held to a share of a core, time held back
    by its quota (s/s, the whole process), the loop's worst lag (its own part) and longest
    step in the last window, and the counters of :data:`TRACED` that moved; and how busy the
    machine was."""
    parts = []
    for node, row in after.items():
        was = before[node]
        moved = ", ".join(
            f"{label} {row[label] - was[label]:.0f}"
            for _, _, label in TRACED
            if row[label] != was[label]
        )
        held = (row["throttled"] - was["throttled"]) / duration
        waited = (row["wait"] - was["wait"]) / duration
        parts.append(
            f"{node}: cpu {(row['cpu'] - was['cpu']) / duration:.2f}"
            f" wait {max(0.0, waited - held):.2f}"
            + (f" quota {held:.2f}" if held else "")
            + f" lag {row['lag_max_ms']:.0f} ({row['lag_own_max_ms']:.0f} own) ms"
            f" step {row['longest_step_ms']:.0f} ms gc {row['gc'] - was['gc']:.0f}"
            + (f" [{moved}]" if moved else "")
        )
    busy = machine[0] / machine[1] if machine[1] else float("nan")
    return f"machine {busy:.0%} busy; " + "; ".join(parts)


def _copies_of(mesh: Mesh, k: bytes) -> int:
    """Nodes holding a copy of ``k`` now."""
    n = 0
    for node in mesh.nodes:
        answer = mesh.call(node, "HOTKEYS", [])
        n += any(c["key"] == k for c in answer["copies"])
    return n


def _updates(mesh: Mesh) -> int:
    """Copy updates the owners sent for writes to hot keys so far (one per key and holder)."""
    return sum(
        mesh.mesh_info(n)["counters"]["hot"].get("invalidations_sent", 0) for n in mesh.nodes
    )


def _hot_count(mesh: Mesh) -> int:
    """Keys hot on their owners now, over every node."""
    return sum(len(mesh.call(node, "HOTKEYS", [])["hot"]) for node in mesh.nodes)


def _sleep_until(at: float) -> None:
    time.sleep(max(0.0, at - time.time()))


@dataclass(frozen=True, slots=True)
class Run:
    """One measured run: its window starts once the hot set formed."""

    results: list[dict[str, Any]]
    ops: float  # ops/s done in the window
    balance: float  # busiest node's served reads ÷ mean, in the window
    warmed: float  # seconds from the workers' start to the window
    hot_keys: int  # keys hot on their owners when the window started
    stalls: int  # steps of TIMELINE_STEP in the window in which no worker finished an op
    cpu_per_kop: float  # node CPU seconds per 1,000 ops in the window
    client_cpu_per_kop: float  # the workers' CPU seconds per 1,000 ops in the window
    updates_per_s: float  # copy updates of writes to hot keys a second, in the window
    trace: str  # what the nodes and the machine did in the window (:func:`_trace`)


def _run(
    pool: Any,
    mesh: Mesh,
    tmp: Path,
    draws: list[int],
    procs: int,
    warmup: float,
    duration: float,
    seed: int,
    own_share: float = 0.0,
    settle: float = 10.0,
    check: bool = True,
) -> Run:
    """Workers from ``LEAD`` s on; the window of ``duration`` s starts once ``warmup`` s passed
    and no more keys turned hot for ``STABLE`` s (the hot set formed), or ``settle`` s passed.
    ``check``: the workers check consistency (see the module docstring); without it they run
    the plain loop of the throughput rounds."""
    start = time.time() + LEAD
    end_file = tmp / f"end-{time.time_ns()}"
    specs = [
        {
            "addresses": mesh.addresses,
            "draws": draws,
            "wid": w,
            "workers": procs,
            "seed": seed * 100 + w,
            "begin": start,
            "count_from": start + warmup,
            "end": start + settle + duration + 1.0,
            "end_file": str(end_file),
            "own_share": own_share,
            "writes": WRITES[0],
            "check": check,
        }
        for w in range(procs)
    ]
    pending = pool.map_async(_work, specs)
    _sleep_until(start)
    most, grown = -1, start
    while True:
        now = time.time()
        hot = _hot_count(mesh)
        if hot > most:
            most, grown = hot, now
        if (now >= start + warmup and now - grown >= STABLE) or now >= start + settle:
            break
        time.sleep(0.25)
    first = math.ceil((time.time() - start) / TIMELINE_STEP)
    window_start = start + first * TIMELINE_STEP
    _sleep_until(window_start)
    workers = [p.pid for p in multiprocessing.active_children() if p.pid is not None]
    before, cpu_before, updates = served(mesh), _node_cpu(mesh), _updates(mesh)
    clients_before = _cpu(workers)
    traced, machine = _snapshot(mesh), _machine_cpu()
    window_end = window_start + duration
    end_file.write_text(repr(window_end))
    _sleep_until(window_end)
    cpu = _node_cpu(mesh) - cpu_before
    clients = _cpu(workers) - clients_before
    machine_after = _machine_cpu()
    trace = _trace(
        traced,
        _snapshot(mesh),
        (machine_after[0] - machine[0], machine_after[1] - machine[1]),
        duration,
    )
    results: list[dict[str, Any]] = pending.get()
    after = served(mesh)
    updates = _updates(mesh) - updates
    counts = [after[n] - before[n] for n in after]
    mean = statistics.mean(counts)
    steps = [sum(col) for col in zip(*(r["timeline"] for r in results), strict=True)]
    window = steps[first : first + round(duration / TIMELINE_STEP)]
    done = sum(window)
    return Run(
        results=results,
        ops=done / duration,
        balance=max(counts) / mean if mean > 0 else float("nan"),
        warmed=window_start - start,
        hot_keys=most,
        stalls=sum(1 for n in window if n == 0),
        cpu_per_kop=1000 * cpu / done if done else float("nan"),
        client_cpu_per_kop=1000 * clients / done if done else float("nan"),
        updates_per_s=updates / duration,
        trace=trace,
    )


def _reaction(
    pool: Any,
    mesh: Mesh,
    keys: int,
    preloaded: int,
    procs: int,
    reps: int,
    share: float,
    rate: float | None,
) -> None:
    """Under uniform load, a fresh key takes ``share`` of the ops (or ``rate`` reads a second):
    when it turned hot at its owner, when every other node held a copy, when every client knew
    its holders; then, once the jump ends, until no node holds a copy."""
    rng = random.Random(7)
    uniform = _draws(keys, "uniform", rng)
    ups, knew, downs = [], [], []
    jump_for = REACTION_FOR if rate is None else max(REACTION_FOR, 4 * MIN_SAMPLES / rate * 16)
    for rep in range(reps):
        jump = preloaded - 1 - rep * 7919  # an unpopular key that exists
        k = key(jump)
        owner = mesh.owners(k, 1)[0]
        holders = {n.node_id for n in mesh.nodes} - {owner}
        jumped = time.time() + LEAD  # when the workers start
        async_result = pool.map_async(
            _work,
            [
                {
                    "addresses": mesh.addresses,
                    "draws": uniform,
                    "wid": w,
                    "workers": procs,
                    "seed": 1000 + rep * 10 + w,
                    "begin": jumped,
                    "count_from": jumped,
                    "end": jumped + jump_for,
                    "jump": jump,
                    "jump_share": share,
                    "jump_rate": rate,
                }
                for w in range(procs)
            ],
        )
        hot_at = None
        copies: dict[str, float] = {}
        slowest_poll = 0.0
        _sleep_until(jumped)
        while time.time() < jumped + jump_for and len(copies) < len(holders):
            polled = time.time()
            for node in mesh.nodes:
                answer = mesh.call(node, "HOTKEYS", [])
                seen = time.time()
                if node.node_id == owner and hot_at is None:
                    for row in answer["hot"]:
                        if row["key"] == k:
                            hot_at = seen - row["hot_for"]
                if (
                    node.node_id in holders
                    and node.node_id not in copies
                    and any(c["key"] == k for c in answer["copies"])
                ):
                    copies[node.node_id] = seen
            slowest_poll = max(slowest_poll, time.time() - polled)
            time.sleep(0.02)
        results = async_result.get()
        stopped = time.time()
        down = None
        while time.time() < stopped + 20:
            if _copies_of(mesh, k) == 0:
                down = time.time() - stopped
                break
            time.sleep(0.05)
        firsts = [r["first_jump"] for r in results if r["first_jump"] is not None]
        began = min(firsts) if firsts else jumped
        reads = sum(r["jumps"] for r in results) / max(1e-9, jump_for - (began - jumped))

        def since(at: float | None, began: float = began) -> str:
            return "never" if at is None else f"{at - began:.3f} s"

        up = None if len(copies) < len(holders) else max(copies.values()) - began
        learned = [r["learned"] for r in results]
        known = None if None in learned else max(learned) - began
        print(
            f"  reaction [{rep}] {reads:.0f} reads/s of the key (owner {owner}), first read"
            f" {began - jumped:+.3f} s after the planned start; hot at its owner after"
            f" {since(hot_at)}; copies on "
            + ", ".join(f"{n} after {since(at)}" for n, at in sorted(copies.items()))
            + "; every client knew its holders after"
            f" {since(None if known is None else began + known)};"
            f" none left {down if down is None else round(down, 2)} s after the jump"
            f" (polls took up to {slowest_poll * 1000:.0f} ms)"
        )
        ups.append(up if up is not None else float("inf"))
        knew.append(known if known is not None else float("inf"))
        downs.append(down if down is not None else float("inf"))
    what = f"{share:.0%} of the ops" if rate is None else f"{rate:g} reads/s"
    print(
        f"reaction ({reps} jumps to {what}, from the key's first read): copies on every node"
        f" median {statistics.median(ups):.3f} s worst {max(ups):.3f} s; every client knew the"
        f" holders median {statistics.median(knew):.3f} s worst {max(knew):.3f} s; none after the"
        f" jump median {statistics.median(downs):.2f} s worst {max(downs):.2f} s"
        f" (lease {LEASE} s); load {os.getloadavg()[0]:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument(
        "--preload",
        type=int,
        default=None,
        help="preload only the most popular this many keys (a read of another one misses at"
        " its owner, a SET creates it); default: every key",
    )
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="the least warm-up (s); a run is measured once no key turned hot for"
        f" {STABLE:g} s after it, or after --settle s",
    )
    parser.add_argument("--settle", type=float, default=10.0, help="the most warm-up (s)")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--workloads", default="uniform,zipf:0.99,zipf:1.2,one:0.3", help="comma-separated"
    )
    parser.add_argument(
        "--hot-rate",
        type=float,
        default=HOT["rate"],
        help="the policy's rate threshold (reads/s); Python clients do a few thousand ops/s",
    )
    parser.add_argument(
        "--hot-share",
        type=float,
        default=HOT["share"],
        help="the policy's share threshold (a key's share of its owner's reads)",
    )
    parser.add_argument(
        "--hot-copies",
        type=int,
        default=None,
        help="the policy's copies: nodes beyond the owner holding a copy (default: every node)",
    )
    parser.add_argument("--writes", type=float, default=0.1, help="the share of SETs (0.1)")
    parser.add_argument("--reaction", type=int, default=0, help="jumps to time (0: none)")
    parser.add_argument(
        "--jump-share", type=float, default=0.2, help="the share of the ops a jump takes (0.2)"
    )
    parser.add_argument(
        "--jump-rate",
        type=float,
        default=None,
        help="a jump takes this many reads a second instead of a share of the ops",
    )
    parser.add_argument(
        "--consistency",
        type=float,
        default=0.0,
        help="seconds of Zipf 1.2 with hot keys on where half of each worker's ops go to the"
        " hot keys it writes (0: none)",
    )
    parser.add_argument(
        "--check-rounds",
        action="store_true",
        help="the throughput rounds' workers check consistency too (by default they run a plain"
        " GET/SET loop, so every workload costs them the same per op; --consistency checks)",
    )
    parser.add_argument(
        "--node-cpu",
        type=float,
        default=None,
        help="hold each node process to this share of a core (cgroups, root; e.g. 0.25): the"
        " mesh then runs at the speed of its busiest node, as nodes on machines of their own"
        " do, and the workers have the rest of the machine (default: unbounded)",
    )
    parser.add_argument(
        "--anti-entropy-interval",
        default=None,
        help="passed to every node (e.g. 10m; default: the node's, 60 s): a scan of a node's"
        " store in a window of a few seconds costs that run a share of the machine",
    )
    args = parser.parse_args(argv)
    if args.node_cpu is not None:
        try:
            check(args.node_cpu)
        except (CapError, OSError, ValueError) as exc:
            parser.error(f"--node-cpu: {exc}")
    if not 0 < args.hot_share <= 1:
        parser.error("--hot-share: must be in (0, 1]")
    HOT["rate"] = args.hot_rate
    HOT["share"] = args.hot_share
    if args.hot_copies is not None:
        HOT["copies"] = args.hot_copies
    WRITES[0] = args.writes
    rng = random.Random(1)
    workloads = args.workloads.split(",")
    draws = {w: _draws(args.keys, w, rng) for w in workloads}
    rows: list[dict[str, Any]] = []
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ctx = multiprocessing.get_context("spawn")
    with TemporaryDirectory() as tmp, ExitStack() as stack:
        extra = (
            ()
            if args.anti_entropy_interval is None
            else (
                "--anti-entropy-interval",
                args.anti_entropy_interval,
            )
        )
        mesh = Mesh(stack, Path(tmp), 3, *extra)
        started = time.monotonic()
        preloaded = args.keys if args.preload is None else min(args.preload, args.keys)
        preload_by_owner(mesh, preloaded, VALUE_SIZE)
        print(
            f"preloaded {preloaded:,} of {args.keys:,} keys in {time.monotonic() - started:.0f} s"
        )
        if args.node_cpu is not None:
            try:
                stack.enter_context(cpu_capped([n.proc.pid for n in mesh.nodes], args.node_cpu))
            except (CapError, OSError, ValueError) as exc:
                parser.exit(2, f"--node-cpu: {exc}\n")
            print(f"each node held to {args.node_cpu:g} of a core")
        pool = stack.enter_context(ctx.Pool(args.procs))
        pool.map(_warm, range(args.procs), chunksize=1)
        if args.reaction:
            set_hot(mesh, HOT, True)
            _reaction(
                pool,
                mesh,
                args.keys,
                preloaded,
                args.procs,
                args.reaction,
                args.jump_share,
                args.jump_rate,
            )
        if args.consistency:
            set_hot(mesh, HOT, True)
            skewed = draws.get("zipf:1.2") or _draws(args.keys, "zipf:1.2", rng)
            run = _run(
                pool, mesh, Path(tmp), skewed, args.procs, 3.0, args.consistency, 99, 0.5, 3.0
            )
            stale, judged = _staleness(run.results)
            print(
                f"consistency: {run.ops:,.0f} ops/s;"
                f" RYW violations {sum(r['violations'] for r in run.results)} in"
                f" {sum(r['checked'] for r in run.results):,} checked reads of the writers' own"
                f" hot keys; other readers' stalest read {stale:.3f} s of {judged:,}"
                f" (lease {LEASE} s); errors {sum(r['errors'] for r in run.results)};"
                f" load {os.getloadavg()[0]:.1f}"
            )
            for r in run.results:
                if r["bad"]:
                    print(f"      violations: {r['bad'][:5]}")
        for rnd in range(args.rounds):
            for workload in workloads:
                for on in (False, True) if rnd % 2 == 0 else (True, False):
                    set_hot(mesh, HOT, on)
                    run = _run(
                        pool,
                        mesh,
                        Path(tmp),
                        draws[workload],
                        args.procs,
                        args.warmup,
                        args.duration,
                        rnd,
                        settle=args.settle,
                        check=args.check_rounds,
                    )
                    checked = sum(r["checked"] for r in run.results)
                    violations = sum(r["violations"] for r in run.results)
                    errors = sum(r["errors"] for r in run.results)
                    stale, judged = _staleness(run.results)
                    label = f"{workload} {'on' if on else 'off'}"
                    print(
                        f"  [{rnd}] {label:<16} {run.ops:>7,.0f} ops/s  balance {run.balance:.2f}"
                        f"  after {run.warmed:.2f} s of warm-up ({run.hot_keys} hot keys)"
                        f"  node CPU {run.cpu_per_kop:.3f} client CPU"
                        f" {run.client_cpu_per_kop:.3f} s/1,000 ops  stalls {run.stalls}"
                        f"  copy updates {run.updates_per_s:.0f}/s"
                        f"  RYW {violations}/{checked}  stalest {stale:.3f} s of {judged} reads"
                        f"  errors {errors}  load {os.getloadavg()[0]:.1f}"
                    )
                    print(f"      trace: {run.trace}")
                    for r in run.results:
                        if r["bad"]:
                            print(f"      violations: {r['bad'][:5]}")
                    rows.append(
                        {
                            "round": rnd,
                            "label": label,
                            "ops": run.ops,
                            "cpu": run.cpu_per_kop,
                            "client_cpu": run.client_cpu_per_kop,
                            "balance": run.balance,
                            "checked": checked,
                            "violations": violations,
                            "stale": stale,
                        }
                    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    anchors = {r["round"]: r["ops"] for r in rows if r["label"] == "uniform off"}
    anchors_on = {r["round"]: r["ops"] for r in rows if r["label"] == "uniform on"}
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        balances = [r["balance"] for r in mine]
        line = (
            f"{label:<16} balance median {statistics.median(balances):.2f}"
            f" worst {max(balances):.2f}; CPU median nodes"
            f" {statistics.median(r['cpu'] for r in mine):.3f}, clients"
            f" {statistics.median(r['client_cpu'] for r in mine):.3f} s/1,000 ops"
        )
        if anchors:
            ratios = [r["ops"] / anchors[r["round"]] for r in mine if r["round"] in anchors]
            line += (
                f"; ops/s ÷ uniform off median {statistics.median(ratios):.2f}"
                f" worst {min(ratios):.2f}"
            )
        if label.endswith(" on") and anchors_on:
            ratios = [r["ops"] / anchors_on[r["round"]] for r in mine if r["round"] in anchors_on]
            line += f"; ÷ uniform on median {statistics.median(ratios):.2f} worst {min(ratios):.2f}"
        line += (
            f"; RYW {sum(r['violations'] for r in mine)}/{sum(r['checked'] for r in mine)};"
            f" stalest {max(r['stale'] for r in mine):.3f} s"
        )
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
