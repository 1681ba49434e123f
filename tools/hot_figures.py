"""Hot-key figures from the data-plane simulation: balance of reads and reaction time.

Run: ``.venv/bin/python -m tools.hot_figures [--nodes 12] [--reads 60000] [--seeds 3]``

The nodes are the node's own assembly over the simulated network (``meshcache/testing/
simdata.py``) in mock time; plain clients send GETs to a uniformly chosen node, which forwards
them to the key's owner or answers from a copy. Keys are drawn from 1,000,000 (the 5,000 most
popular exist, 100-byte values; a read of any other is a miss at its owner). The namespaces
``off`` and ``on`` differ only in their hot-key policy (``on``: share ``--share``, 0.01 by
default, rate 20 reads/s of mesh time, copies on every node, lease 2 s).

* **Balance** (per workload: Zipf 0.99, Zipf 1.2, one key taking 30% of reads over a uniform
  rest): the reads each node *served* (from its store as the owner, or from a copy) during
  ``--reads`` GETs after a warm-up of 2 s of mesh time (64 readers, 32,000 GETs a second); the
  figure is the busiest node's count divided by the mean. Median and worst over ``--seeds`` seeds.
* **Reaction**: under a uniform load a key jumps to 20% of the reads; the mesh time until every
  other node holds a copy of it, and after the jump ends, until no node holds one.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import os
import random
import statistics
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from meshcache.store.hotpolicy import HotKeyPolicy
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.simdata import SimMesh

KEYS = 1_000_000
EXISTING = 5_000
POLICIES = {
    "off": NamespacePolicy(replicas=2),
    "on": NamespacePolicy(replicas=2, hot=HotKeyPolicy(share=0.01, rate=20.0, lease=2.0)),
}
READERS = 64
#: Mesh seconds between two reads of one reader.
PACE = 0.002
#: Mesh seconds of reads before a balance run is counted (the hot set forms within one).
WARMUP = 2.0


def _key(rank: int) -> bytes:
    return b"key:%07d" % rank


def _zipf(s: float) -> Callable[[random.Random], int]:
    cumulative = list(itertools.accumulate(1.0 / (i + 1) ** s for i in range(KEYS)))
    total = cumulative[-1]
    return lambda rng: bisect.bisect_left(cumulative, rng.random() * total)


def _one_key(share: float) -> Callable[[random.Random], int]:
    return lambda rng: 0 if rng.random() < share else rng.randrange(1, KEYS)


def _served(mesh: SimMesh) -> dict[str, int]:
    """GETs each node answered itself: received, minus forwarded away, plus forwarded in."""
    out = {}
    for node_id, node in mesh.nodes.items():
        stats = node.coordinator.stats
        out[node_id] = (
            node.dispatcher.counters.requests["GET"]
            - stats["forwarded_out"]
            + stats["forwarded_in"]
        )
    return out


async def _load(
    mesh: SimMesh, ns: str, draw: Callable[[random.Random], int], rng: random.Random, reads: int
) -> None:
    left = [reads]

    async def reader() -> None:
        while left[0] > 0:
            left[0] -= 1
            await mesh.client(rng.choice(mesh.ids), ns, "GET", _key(draw(rng)))
            await trio.sleep(PACE)

    async with trio.open_nursery() as nursery:
        for _ in range(READERS):
            nursery.start_soon(reader)


async def _balance_run(
    seed: int, nodes: int, draw: Callable[[random.Random], int], reads: int
) -> dict[str, float]:
    mesh = SimMesh(seed, nodes, policies=POLICIES, anti_entropy_interval=None)
    rng = random.Random(seed)
    out = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        value = bytes(100)
        for ns in POLICIES:
            for rank in range(EXISTING):
                key = _key(rank)
                owner = mesh.owners(ns, key)[0]
                mesh.nodes[owner].store.execute(ns, "SET", [key, value, {}])
        for ns in POLICIES:
            warm = int(WARMUP / PACE * READERS)
            await _load(mesh, ns, draw, rng, warm)
            before = _served(mesh)
            await _load(mesh, ns, draw, rng, reads)
            after = _served(mesh)
            counts = [after[n] - before[n] for n in mesh.ids]
            out[ns] = max(counts) / statistics.mean(counts)
        nursery.cancel_scope.cancel()
    return out


async def _reaction_run(seed: int, nodes: int) -> tuple[float, float]:
    mesh = SimMesh(seed, nodes, policies=POLICIES, anti_entropy_interval=None)
    rng = random.Random(seed)
    key = _key(0)
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        mesh.nodes[mesh.owners("on", key)[0]].store.execute("on", "SET", [key, bytes(100), {}])
        uniform = _one_key(0.0)
        await _load(mesh, "on", uniform, rng, int(2.0 / PACE * READERS))
        owner = mesh.owners("on", key)[0]
        others = [n for n in mesh.ids if n != owner]
        jump = trio.CancelScope()

        async def jumped() -> None:
            with jump:
                await _load(mesh, "on", _one_key(0.2), rng, 10**9)

        nursery.start_soon(jumped)
        appeared = await mesh.wait_until(
            lambda: all(("on", key) in mesh.nodes[n].parts.hot.area for n in others),
            timeout=30.0,
            what="copies on every node",
            poll=0.01,
        )
        await trio.sleep(3.0)
        jump.cancel()
        uniform_scope = trio.CancelScope()

        async def background() -> None:
            with uniform_scope:
                await _load(mesh, "on", uniform, rng, 10**9)

        nursery.start_soon(background)
        gone = await mesh.wait_until(
            lambda: not any(("on", key) in mesh.nodes[n].parts.hot.area for n in mesh.ids),
            timeout=60.0,
            what="no copies",
            poll=0.01,
        )
        nursery.cancel_scope.cancel()
    return appeared, gone


def _in_mock_time(fn: Callable[..., Any], *args: Any) -> Any:
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=12)
    parser.add_argument("--reads", type=int, default=60_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--skip-reaction", action="store_true")
    parser.add_argument("--share", type=float, default=0.01, help="hot.share of 'on' (0.01)")
    parser.add_argument(
        "--only", choices=("zipf 0.99", "zipf 1.2", "one key 30%"), help="one workload only"
    )
    args = parser.parse_args(argv)
    hot = POLICIES["on"].hot
    assert hot is not None
    POLICIES["on"] = POLICIES["on"].replace(hot=hot.replace(share=args.share))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    workloads = {
        "zipf 0.99": _zipf(0.99),
        "zipf 1.2": _zipf(1.2),
        "one key 30%": _one_key(0.3),
    }
    print(
        f"balance: busiest node's reads / mean, {args.nodes} simulated nodes, {args.reads} GETs"
        f" after {WARMUP:g} s of mesh time of warm-up"
    )
    for name, draw in workloads.items():
        if args.only and name != args.only:
            continue
        runs = [
            _in_mock_time(_balance_run, seed, args.nodes, draw, args.reads)
            for seed in range(args.seeds)
        ]
        off = [r["off"] for r in runs]
        on = [r["on"] for r in runs]
        print(
            f"  {name:<12} off median {statistics.median(off):.2f} worst {max(off):.2f}"
            f" | on median {statistics.median(on):.2f} worst {max(on):.2f}"
        )
    if not args.skip_reaction:
        reactions = [_in_mock_time(_reaction_run, seed, args.nodes) for seed in range(args.seeds)]
        up = [a for a, _ in reactions]
        down = [g for _, g in reactions]
        print(
            f"reaction (mesh seconds): copies on every node after a jump to 20%: median"
            f" {statistics.median(up):.2f} worst {max(up):.2f}; no copy after the jump ends:"
            f" median {statistics.median(down):.2f} worst {max(down):.2f} (lease 2 s)"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
