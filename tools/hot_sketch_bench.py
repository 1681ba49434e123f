"""Micro-benchmark: what hot-key detection adds to a GET its owner coordinates.

Run: ``.venv/bin/python -m tools.hot_sketch_bench [--keys 100000] [--reads 1000000] [--runs 7]``

A node of a simulated 3-node mesh (the node's own assembly, see
``meshcache/testing/simdata.py``) holds ``--keys`` 100-byte values in two namespaces that differ
only in their hot-key policy: ``off`` (none) and ``on`` (the defaults). The same Zipf(0.99)
sequence of ``--reads`` GETs goes through ``Coordinator.coordinate`` — the call that runs a GET
this node owns, detection included — in each namespace, alternating which goes first. Each run
gives the ratio of the ``on`` loop's CPU time to the ``off`` loop's (the anchor, measured in the
same run); the tool prints the median and the worst ratio over ``--runs`` runs, the ns per GET of
both, the cost of ``HotKeys.observe`` alone, and the load average, as docs/benchmarks.md wants.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import os
import random
import statistics
import time
from typing import Any

import trio

from meshcache.store.hotpolicy import HotKeyPolicy
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.simdata import SimMesh
from meshcache.wire.ops import OPS


def zipf_sample(n: int, s: float, count: int, rng: random.Random) -> list[int]:
    """``count`` ranks in ``[0, n)`` drawn with probability proportional to ``1 / (rank+1)^s``."""
    cumulative = list(itertools.accumulate(1.0 / (i + 1) ** s for i in range(n)))
    total = cumulative[-1]
    return [bisect.bisect_left(cumulative, rng.random() * total) for _ in range(count)]


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    mesh = SimMesh(
        0,
        3,
        policies={"off": NamespacePolicy(), "on": NamespacePolicy(hot=HotKeyPolicy())},
    )
    node = mesh.nodes["n0"]
    hot = node.parts.hot
    hot.tick()  # follows the policies: the "on" namespace gets its sketch
    store = node.store
    value = bytes(100)
    keys = [b"key:%08d" % i for i in range(args.keys)]
    for ns in ("off", "on"):
        for key in keys:
            store.execute(ns, "SET", [key, value, {}])
    rng = random.Random(1)
    reads = [[keys[r]] for r in zipf_sample(args.keys, args.zipf, args.reads, rng)]
    coordinate = node.coordinator.coordinate
    spec = OPS["GET"]

    def loop(ns: str) -> float:
        start = time.process_time()
        for a in reads:
            coordinate(ns, "GET", spec, a)
        return time.process_time() - start

    def observe_only() -> float:
        observe = hot.observe
        start = time.process_time()
        for a in reads:
            observe("on", a[0])
        return time.process_time() - start

    ratios, offs, ons, observes = [], [], [], []
    for run in range(args.runs):
        if run % 2:
            on, off = loop("on"), loop("off")
        else:
            off, on = loop("off"), loop("on")
        ratios.append(on / off)
        offs.append(off)
        ons.append(on)
        observes.append(observe_only())
    per = 1e9 / args.reads
    return {
        "ratio_median": statistics.median(ratios),
        "ratio_worst": max(ratios),
        "get_off_ns": statistics.median(offs) * per,
        "get_on_ns": statistics.median(ons) * per,
        "observe_ns": statistics.median(observes) * per,
        "samples": hot.sketches["on"].samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=1_000_000)
    parser.add_argument("--zipf", type=float, default=0.99)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    figures = trio.run(_measure, args)
    print(
        f"hot-key detection on a coordinated GET ({args.keys} keys, {args.reads} Zipf"
        f" {args.zipf} reads, {args.runs} runs; load average {load[0]:.2f} {load[1]:.2f}"
        f" {load[2]:.2f} before, {os.getloadavg()[0]:.2f} after)"
    )
    print(
        f"  CPU time on/off: median {figures['ratio_median']:.3f}, worst"
        f" {figures['ratio_worst']:.3f}"
    )
    print(
        f"  per GET: off {figures['get_off_ns']:.0f} ns, on {figures['get_on_ns']:.0f} ns;"
        f" HotKeys.observe alone {figures['observe_ns']:.0f} ns"
        f" ({figures['samples']} reads sampled in all)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
