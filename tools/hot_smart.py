"""Hot keys on 3 real node processes read by smart clients: balance, throughput, consistency,
reaction.

Run: ``.venv/bin/python -m tools.hot_smart [--keys 1000000] [--rounds 5] [--duration 6]
[--reaction 5] [--consistency 60]``

``--procs`` worker processes, each one blocking smart :class:`meshcache.Client` (routing by
the ring, spreading the reads of hot keys over their copies, demanding the versions of its own
writes) in a closed loop: 90% GET, 10% SET of 100-byte values, the key of each op drawn
uniformly, by Zipf(0.99), Zipf(1.2), or one key taking 30% of the ops over a uniform rest, from
``--keys`` keys preloaded on their owners. The ``default`` namespace's hot keys (share 0.01,
rate ``--hot-rate``, 20 reads/s by default, lease 2 s, copies on every node) are switched on
and off between runs; every round runs every workload off and on, alternately, on one mesh.

* **Balance**: the GETs each node served itself (GET and HOT_GET received, minus forwarded out,
  plus forwarded in; from INFO), busiest ÷ mean.
* **Throughput**: ops/s of all workers, as a ratio to the uniform run with hot keys off of the
  same round (and Zipf 1.2 on ÷ uniform on).
* **Consistency**: the 16 most popular keys are each written by one worker only (a SET of one of
  them drawn by another worker is sent as a GET), with values carrying the write's time; a
  worker reads a key right after writing it and whenever it draws it. A read by the writer
  that returns an older value than its last acknowledged write is a read-your-writes
  violation; for the other readers, the staleness of a read is its start minus the
  acknowledgement of the first write newer than what it returned. Every run checks it;
  ``--consistency SECONDS`` adds a Zipf 1.2 run, hot keys on, where half of each worker's ops
  go to the hot keys it writes (so most checked reads are the writers').
* **Reaction** (``--reaction N``): under a uniform load, 20% of the reads jump to one fresh key;
  the time until every node but its owner holds a copy (``HOTKEYS`` polled every 20 ms), then,
  once the jump ends, until no node holds one.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import multiprocessing
import os
import random
import statistics
import time
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from meshcache.testing.mesh import Mesh
from tools.bench.workload import key
from tools.hot_mesh import served, set_hot
from tools.mesh_figures.preload import preload_by_owner

HOT: dict[str, float] = {"share": 0.01, "rate": 20.0, "lease": 2.0}
LEASE = HOT["lease"]
WRITERS_KEYS = 16
VALUE_SIZE = 100
DRAWS = 200_000
#: Seconds between handing the workers their runs and their start (spawned workers import the
#: client and fetch the ring first; on a loaded machine that takes seconds).
LEAD = 3.0


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


def _warm(_: int) -> None:
    """Import the client in a worker process before any run is timed."""
    from meshcache.client.sync import Client  # noqa: F401

    time.sleep(1.0)


def _work(spec: dict[str, Any]) -> dict[str, Any]:
    """One worker: a closed loop of ops until ``spec['end']`` (wall time); what it saw."""
    from meshcache.client.sync import Client
    from meshcache.errors import MeshcacheError

    rng = random.Random(spec["seed"])
    draws: list[int] = spec["draws"]
    wid, workers = spec["wid"], spec["workers"]
    jump: int | None = spec.get("jump")
    own_share: float = spec.get("own_share", 0.0)
    mine = [rank for rank in range(WRITERS_KEYS) if rank % workers == wid]
    count_from, end = spec["count_from"], spec["end"]
    ops = errors = checked = violations = 0
    acked: dict[int, int] = {}  # own writer key rank -> stamp of its last acknowledged write
    acks: list[tuple[int, int, float]] = []
    reads: list[tuple[int, int, float]] = []
    bad: list[tuple[int, int, int]] = []
    with Client(spec["addresses"], timeout=10, max_connections=8) as client:
        client.ping()  # connected and the ring fetched before the start
        time.sleep(max(0.0, spec["begin"] - time.time()))
        i = rng.randrange(len(draws))
        while True:
            now = time.time()
            if now >= end:
                break
            counting = now >= count_from
            i += 1
            rank = draws[i % len(draws)]
            if jump is not None and rng.random() < 0.2:
                rank = jump
            elif mine and rng.random() < own_share:
                rank = rng.choice(mine)
            write = rng.random() < 0.1
            own = rank < WRITERS_KEYS and rank % workers == wid
            try:
                if write and (own or rank >= WRITERS_KEYS):
                    stamp = time.time_ns()
                    client.set(key(rank), _value(stamp))
                    ops += counting
                    if own:
                        acked[rank] = stamp
                        if counting:
                            acks.append((rank, stamp, time.time()))
                        # the writer reads its write back at once
                        got = _stamp(client.get(key(rank)))
                        ops += counting
                        checked += counting
                        if got < stamp:
                            violations += counting
                            bad.append((rank, stamp, got))
                    continue
                started = time.time()
                got = _stamp(client.get(key(rank)))
                ops += counting
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
        "ops": ops,
        "errors": errors,
        "checked": checked,
        "violations": violations,
        "bad": bad[:20],
        "acks": acks,
        "reads": reads,
    }


def _staleness(results: list[dict[str, Any]]) -> tuple[float, int]:
    """The largest staleness of another reader's read of a writer's key, and reads judged."""
    acks: dict[int, list[tuple[int, float]]] = {}
    for r in results:
        for rank, stamp, at in r["acks"]:
            acks.setdefault(rank, []).append((stamp, at))
    for acked in acks.values():
        acked.sort()
    worst, judged = 0.0, 0
    for r in results:
        for rank, got, started in r["reads"]:
            writes = acks.get(rank)
            if not writes:
                continue
            judged += 1
            # the first acknowledged write newer than what the read returned
            at = bisect.bisect_right([s for s, _ in writes], got)
            if at < len(writes) and writes[at][1] <= started:
                worst = max(worst, started - writes[at][1])
    return worst, judged


def _run(
    pool: Any,
    mesh: Mesh,
    draws: list[int],
    procs: int,
    warmup: float,
    duration: float,
    seed: int,
    own_share: float = 0.0,
) -> list[dict[str, Any]]:
    start = time.time() + LEAD
    specs = [
        {
            "addresses": mesh.addresses,
            "draws": draws,
            "wid": w,
            "workers": procs,
            "seed": seed * 100 + w,
            "begin": start,
            "count_from": start + warmup,
            "end": start + warmup + duration,
            "own_share": own_share,
        }
        for w in range(procs)
    ]
    results: list[dict[str, Any]] = pool.map(_work, specs)
    return results


def _copies_of(mesh: Mesh, k: bytes) -> int:
    n = 0
    for node in mesh.nodes:
        answer = mesh.call(node, "HOTKEYS", [])
        n += any(c["key"] == k for c in answer["copies"])
    return n


def _reaction(pool: Any, mesh: Mesh, keys: int, preloaded: int, procs: int, reps: int) -> None:
    """Under uniform load, 20% of the reads jump to one key: copies everywhere, then none."""
    rng = random.Random(7)
    uniform = _draws(keys, "uniform", rng)
    ups, downs = [], []
    for rep in range(reps):
        jump = preloaded - 1 - rep * 7919  # an unpopular key that exists
        k = key(jump)
        owner = mesh.owners(k, 1)[0]
        holders = len(mesh.nodes) - 1
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
                    "end": jumped + 6.0,
                    "jump": jump,
                }
                for w in range(procs)
            ],
        )
        up = None
        while time.time() < jumped + 6.0:
            if time.time() >= jumped and _copies_of(mesh, k) == holders:
                up = time.time() - jumped
                break
            time.sleep(0.02)
        async_result.get()
        stopped = time.time()
        down = None
        while time.time() < stopped + 20:
            if _copies_of(mesh, k) == 0:
                down = time.time() - stopped
                break
            time.sleep(0.05)
        print(
            f"  reaction [{rep}] key owned by {owner}: copies on every other node after"
            f" {up if up is None else round(up, 3)} s; none after"
            f" {down if down is None else round(down, 2)} s (lease {LEASE} s)"
        )
        ups.append(up if up is not None else float("inf"))
        downs.append(down if down is not None else float("inf"))
    print(
        f"reaction: copies everywhere median {statistics.median(ups):.3f} s worst {max(ups):.3f} s;"
        f" none after the jump median {statistics.median(downs):.2f} s worst {max(downs):.2f} s"
        f" ({reps} jumps, lease {LEASE} s)"
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
    parser.add_argument("--warmup", type=float, default=3.0)
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
    parser.add_argument("--reaction", type=int, default=0, help="jumps to time (0: none)")
    parser.add_argument(
        "--consistency",
        type=float,
        default=0.0,
        help="seconds of Zipf 1.2 with hot keys on where half of each worker's ops go to the"
        " hot keys it writes (0: none)",
    )
    args = parser.parse_args(argv)
    HOT["rate"] = args.hot_rate
    rng = random.Random(1)
    workloads = args.workloads.split(",")
    draws = {w: _draws(args.keys, w, rng) for w in workloads}
    rows: list[dict[str, Any]] = []
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ctx = multiprocessing.get_context("spawn")
    with TemporaryDirectory() as tmp, ExitStack() as stack:
        mesh = Mesh(stack, Path(tmp), 3)
        started = time.monotonic()
        preloaded = args.keys if args.preload is None else min(args.preload, args.keys)
        preload_by_owner(mesh, preloaded, VALUE_SIZE)
        print(
            f"preloaded {preloaded:,} of {args.keys:,} keys in {time.monotonic() - started:.0f} s"
        )
        pool = stack.enter_context(ctx.Pool(args.procs))
        pool.map(_warm, range(args.procs), chunksize=1)
        if args.reaction:
            set_hot(mesh, HOT, True)
            _reaction(pool, mesh, args.keys, preloaded, args.procs, args.reaction)
        if args.consistency:
            set_hot(mesh, HOT, True)
            skewed = draws.get("zipf:1.2") or _draws(args.keys, "zipf:1.2", rng)
            results = _run(pool, mesh, skewed, args.procs, 3.0, args.consistency, 99, 0.5)
            stale, judged = _staleness(results)
            print(
                f"consistency: {sum(r['ops'] for r in results) / args.consistency:,.0f} ops/s;"
                f" RYW violations {sum(r['violations'] for r in results)} in"
                f" {sum(r['checked'] for r in results):,} checked reads of the writers' own"
                f" hot keys; other readers' stalest read {stale:.3f} s of {judged:,}"
                f" (lease {LEASE} s); errors {sum(r['errors'] for r in results)};"
                f" load {os.getloadavg()[0]:.1f}"
            )
            for r in results:
                if r["bad"]:
                    print(f"      violations: {r['bad'][:5]}")
        for rnd in range(args.rounds):
            for workload in workloads:
                for on in (False, True) if rnd % 2 == 0 else (True, False):
                    set_hot(mesh, HOT, on)
                    before = served(mesh)
                    results = _run(
                        pool, mesh, draws[workload], args.procs, args.warmup, args.duration, rnd
                    )
                    after = served(mesh)
                    counts = [after[n] - before[n] for n in after]
                    mean = statistics.mean(counts)
                    balance = max(counts) / mean if mean > 0 else float("nan")
                    ops = sum(r["ops"] for r in results) / args.duration
                    checked = sum(r["checked"] for r in results)
                    violations = sum(r["violations"] for r in results)
                    errors = sum(r["errors"] for r in results)
                    stale, judged = _staleness(results)
                    label = f"{workload} {'on' if on else 'off'}"
                    load = os.getloadavg()[0]
                    print(
                        f"  [{rnd}] {label:<16} {ops:>8,.0f} ops/s  balance {balance:.2f}  RYW"
                        f" {violations}/{checked}  stalest {stale:.3f} s of {judged} reads"
                        f"  errors {errors}  load {load:.1f}"
                    )
                    for r in results:
                        if r["bad"]:
                            print(f"      violations: {r['bad'][:5]}")
                    rows.append(
                        {
                            "round": rnd,
                            "label": label,
                            "ops": ops,
                            "balance": balance,
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
            f" worst {max(balances):.2f}"
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
