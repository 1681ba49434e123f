"""One smart client's latency per kind of op, with hot keys on: what a write to a hot key costs.

Run: ``.venv/bin/python -m tools.hot_latency [--runs 2] [--seconds 5] [--hot off]``

A fresh mesh of 3 node processes (anti-entropy every 10 minutes, so no scan falls in a run),
the 100,000 most popular of 1,000,000 keys preloaded, hot keys switched on in ``default`` (the
policy of ``tools/hot_smart.py``). One blocking :class:`meshcache.Client` in this process does
one op at a time, 90% GET and 10% SET of 100-byte values of a key drawn uniformly or by Zipf
1.2, alternately, each run measured for ``--seconds`` after as long a warm-up. Each op is
classed by what the client's router knew before it: a GET or SET, of a key it knows to be hot
or not, demanding a version (a hot key it wrote lately, read as ``HOT_GET``) or not. Printed
per run: ops/s, the client's CPU per op, and per class the count and p50 / p90 / p99 / mean
latency.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

from meshcache.client.sync import Client
from meshcache.testing.mesh import Mesh
from tools.bench.workload import key
from tools.hot_mesh import set_hot
from tools.hot_smart import HOT, VALUE_SIZE, _draws
from tools.mesh_figures.preload import preload_by_owner

KEYS = 1_000_000
PRELOAD = 100_000
Class = tuple[str, bool, bool]


def _loop(
    client: Client, draws: list[int], rng: random.Random, seconds: float
) -> dict[Class, list[float]]:
    latencies: dict[Class, list[float]] = {}
    value = b"v" * VALUE_SIZE
    router = client.router
    end = time.monotonic() + seconds
    i = rng.randrange(len(draws))
    while time.monotonic() < end:
        i += 1
        k = key(draws[i % len(draws)])
        write = rng.random() < 0.1
        at_version = router.min_version(k) is not None
        kind: Class = ("SET" if write else "GET", k in router.hot, at_version)
        started = time.perf_counter()
        if write:
            client.set(k, value)
        else:
            client.get(k)
        latencies.setdefault(kind, []).append(time.perf_counter() - started)
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of each workload (2)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per run (5)")
    parser.add_argument("--hot", choices=("on", "off"), default="on")
    args = parser.parse_args(argv)
    rng = random.Random(1)
    workloads = {w: _draws(KEYS, w, rng) for w in ("uniform", "zipf:1.2")}
    with TemporaryDirectory() as tmp, ExitStack() as stack:
        mesh = Mesh(stack, Path(tmp), 3, "--anti-entropy-interval", "10m")
        preload_by_owner(mesh, PRELOAD, VALUE_SIZE)
        set_hot(mesh, HOT, args.hot == "on")
        for n in range(args.runs):
            for workload, draws in workloads.items():
                with Client(mesh.addresses, timeout=10, max_connections=8) as client:
                    _loop(client, draws, rng, args.seconds)  # warm-up: the hot set forms
                    cpu = time.process_time()
                    latencies = _loop(client, draws, rng, args.seconds)
                    cpu = time.process_time() - cpu
                ops = sum(map(len, latencies.values()))
                print(
                    f"[{n}] {workload}: {ops / args.seconds:,.0f} ops/s, client CPU"
                    f" {cpu / ops * 1e6:.0f} us/op"
                )
                for (op, hot, at_version), took in sorted(latencies.items()):
                    took.sort()
                    print(
                        f"    {op} {'hot' if hot else 'cold'}"
                        f"{' at a version' if at_version else ''}: {len(took):,} ops,"
                        f" p50 {took[len(took) // 2] * 1e3:.2f} p90"
                        f" {took[int(len(took) * 0.9)] * 1e3:.2f} p99"
                        f" {took[int(len(took) * 0.99)] * 1e3:.2f} mean"
                        f" {statistics.mean(took) * 1e3:.2f} ms"
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
