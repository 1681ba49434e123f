"""Hot keys on 3 real node processes: throughput and balance under skew, hot keys on vs off.

Run: ``.venv/bin/python -m tools.hot_throughput [--keys 100000] [--duration 8] [--repeat 2]``

tools/bench's closed-loop generator (raw sockets, pre-built frames, every reply checked) in 3
processes, each driving ``--conns``/3 connections to one node — plain clients spread evenly over
the nodes, as behind a load balancer or with redis-style clients: a node forwards what it does
not own, or answers from a copy. 90% GET, 100-byte values, ``--keys`` keys preloaded on their
owners, depth 1. The key of each request is drawn uniformly or by Zipf(``--zipf``). The
``default`` namespace's hot keys are switched on and off between runs (``ns set --hot-keys``,
share 0.01, rate 100, lease 2 s). Each run reports ops/s and the balance of the GETs the nodes
served themselves after the warm-up (busiest ÷ mean, from INFO: GETs received - forwarded out +
forwarded in).
Ratios are against the uniform, hot-keys-off run of the same repeat (the anchor).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import os
import random
import statistics
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

from meshcache.testing.mesh import Mesh
from tools.bench.preload import preload
from tools.bench.protocols import MeshcacheProtocol
from tools.bench.workload import Workload
from tools.hot_mesh import served, set_hot
from tools.mesh_figures.preload import preload_by_owner
from tools.mesh_figures.throughput import Target, drive

HOT = {"share": 0.01, "rate": 100.0, "lease": 2.0}


def _zipf_indexes(keys: int, s: float, count: int, rng: random.Random) -> list[int]:
    cumulative = list(itertools.accumulate(1.0 / (i + 1) ** s for i in range(keys)))
    total = cumulative[-1]
    return [bisect.bisect_left(cumulative, rng.random() * total) for _ in range(count)]


class _Window:
    """The reads each node served when a run's warm-up ended: a thread waits for the load to
    start (the nodes' counts rise), then for the warm-up, and takes them, so that the balance
    covers the measured part of the run only."""

    def __init__(self, mesh: Mesh, warmup: float) -> None:
        self._mesh = mesh
        self._warmup = warmup
        self._counts: dict[str, int] | None = None
        self._thread = threading.Thread(target=self._take, daemon=True)
        self._thread.start()

    def _take(self) -> None:
        idle = sum(served(self._mesh).values())
        while sum(served(self._mesh).values()) < idle + 100:
            time.sleep(0.02)
        time.sleep(self._warmup)
        self._counts = served(self._mesh)

    def start(self) -> dict[str, int]:
        self._thread.join()
        assert self._counts is not None
        return self._counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--zipf", type=float, default=1.2)
    parser.add_argument("--conns", type=int, default=48)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", help="run only the runs whose label contains this")
    args = parser.parse_args(argv)
    rng = random.Random(1)
    uniform = list(range(args.keys))
    skewed = _zipf_indexes(args.keys, args.zipf, 200_000, rng)
    rows: list[tuple[int, str, float, float]] = []
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with TemporaryDirectory() as tmp, ExitStack() as stack:
        mesh = Mesh(stack, Path(tmp), 3)
        preload_by_owner(mesh, args.keys)
        host, port = mesh.nodes[0].data_address
        templates = preload(host, port, MeshcacheProtocol(), Workload(keys=1))
        per = args.conns // 3
        for repeat in range(args.repeat):
            for label, indexes, on in (
                ("uniform, off", uniform, False),
                (f"zipf {args.zipf}, off", skewed, False),
                (f"zipf {args.zipf}, on", skewed, True),
                ("uniform, on", uniform, True),
            ):
                if args.only and args.only not in label:
                    continue
                set_hot(mesh, HOT, on)
                targets = [Target(x.data_address, per, indexes) for x in mesh.nodes]
                window = _Window(mesh, args.warmup)
                run = drive(
                    label,
                    targets,
                    templates,
                    depth=1,
                    warmup=args.warmup,
                    duration=args.duration,
                )
                before = window.start()
                after = served(mesh)
                counts = [after[n] - before[n] for n in after]
                balance = max(counts) / statistics.mean(counts)
                bad = run.errors + run.misses
                print(
                    f"  [{repeat}] {label:<16} {run.ops_per_s:>9,.0f} ops/s  p99"
                    f" {run.p99_ms:.2f} ms  balance {balance:.2f}"
                    + (f"  ({run.errors} errors, {run.misses} misses)" if bad else "")
                )
                rows.append((repeat, label, run.ops_per_s, balance))
                hot = [mesh.mesh_info(x)["counters"].get("hot", {}) for x in mesh.nodes]
                totals: dict[str, int] = {}
                for counters in hot:
                    for what, n in counters.items():
                        totals[what] = totals.get(what, 0) + n
                print(f"      hot counters so far (all nodes): {dict(sorted(totals.items()))}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    anchors = {r: ops for r, label, ops, _ in rows if label == "uniform, off"}
    if not anchors:
        return 0
    for label in dict.fromkeys(label for _, label, _, _ in rows):
        ratios = [ops / anchors[r] for r, lab, ops, _ in rows if lab == label]
        balances = [b for _, lab, _, b in rows if lab == label]
        print(
            f"{label:<16} ops/s ÷ uniform-off: median {statistics.median(ratios):.2f} worst"
            f" {min(ratios):.2f}; balance median {statistics.median(balances):.2f} worst"
            f" {max(balances):.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
