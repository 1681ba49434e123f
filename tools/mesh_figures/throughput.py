"""Throughput of a 3-node mesh against one node, and the cost of one forwarding hop.

The generator is tools/bench's closed loop (raw sockets, pre-built frames, replies checked by
bytes comparison). tools/bench targets one address, so routing by key is done here, before the
clock starts: every key's owner is computed from the ring, each worker process drives the
connections to one node with a pool of only the keys that node coordinates — what a smart client
does. One node gets the same 50 connections split over the same number of worker processes.

The hop cost: GETs on one connection, one at a time, to a node for keys it coordinates, then
for keys it does not (each one forwarded to the owner); and the closed loop through that
non-owner with all 50 connections.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import random
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from meshcache.testing.mesh import Mesh, MeshError
from tools.bench.histogram import LatencyHistogram
from tools.bench.loops import closed_loop, connect
from tools.bench.preload import preload
from tools.bench.protocols import MeshcacheProtocol, Protocol
from tools.bench.workload import OpPool, ReplyTemplates, Workload, key
from tools.mesh_figures.preload import preload_by_owner
from tools.mesh_figures.report import NO_FLAPS, Flaps, flaps

POOL_SIZE = 1 << 16


@dataclass(frozen=True, slots=True)
class Target:
    """One worker process: ``conns`` connections to ``address``, keys drawn from ``indexes``."""

    address: tuple[str, int]
    conns: int
    indexes: list[int]


@dataclass(frozen=True, slots=True)
class Run:
    label: str
    conns: int
    depth: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    misses: int
    #: The membership events of the mesh it ran on, over all of that mesh's runs.
    flaps: Flaps = NO_FLAPS

    def row(self) -> list[object]:
        return [
            self.label,
            self.conns,
            self.depth,
            round(self.ops_per_s),
            self.p50_ms,
            self.p99_ms,
            "ok" if not (self.errors or self.misses) else f"{self.errors} err {self.misses} miss",
            self.flaps.suspicions,
            self.flaps.deaths,
        ]


HEADER = [
    "target",
    "conns",
    "depth",
    "ops/s",
    "p50 ms",
    "p99 ms",
    "replies",
    "suspect events (mesh)",
    "dead events (mesh)",
]


def _pool(
    indexes: list[int],
    templates: ReplyTemplates,
    depth: int,
    get_ratio: float,
    seed: int,
    protocol: Protocol,
) -> OpPool:
    """Like tools.bench.workload.build_pool, over a given subset of the key space."""
    rng = random.Random(seed)
    value = Workload().value()
    requests: list[bytes] = []
    replies: list[bytes] = []
    for _ in range(POOL_SIZE):
        k = key(rng.choice(indexes))
        if rng.random() < get_ratio:
            requests.append(protocol.get(k))
            replies.append(templates.get)
        else:
            requests.append(protocol.set(k, value))
            replies.append(templates.set)
    batches = range(0, POOL_SIZE, depth)
    return OpPool(
        requests,
        replies,
        depth,
        [b"".join(requests[i : i + depth]) for i in batches],
        [b"".join(replies[i : i + depth]) for i in batches],
    )


def _worker(
    target: Target,
    templates: ReplyTemplates,
    depth: int,
    get_ratio: float,
    seed: int,
    warmup: float,
    duration: float,
    pipe: Connection,
    protocol: Protocol,
) -> None:
    try:
        pool = _pool(target.indexes, templates, depth, get_ratio, seed, protocol)
        socks = connect(*target.address, target.conns)
        try:
            pipe.send(("ready", None))
            start_ns: int = pipe.recv()
            delay = (start_ns - time.perf_counter_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)  # the common start time the parent chose
            measure_ns = start_ns + int(warmup * 1e9)
            nbatch = len(pool.batch_requests)
            result = closed_loop(
                socks,
                protocol,
                pool,
                start_offsets=[
                    seed * 7919 + i * (nbatch // target.conns) for i in range(target.conns)
                ],
                measure_from_ns=measure_ns,
                end_ns=measure_ns + int(duration * 1e9),
            )
        finally:
            for sock in socks:
                sock.close()
        pipe.send(("done", result))
    except BaseException:
        pipe.send(("error", traceback.format_exc()))
    finally:
        pipe.close()


def _expect(pipe: Connection, what: str, timeout: float) -> Any:
    if not pipe.poll(timeout):
        raise MeshError(f"a generator process did not report {what!r} in {timeout:.0f} s")
    kind, payload = pipe.recv()
    if kind != what:
        raise MeshError(f"a generator process failed:\n{payload}")
    return payload


def drive(
    label: str,
    targets: list[Target],
    templates: ReplyTemplates,
    *,
    depth: int,
    warmup: float,
    duration: float,
    get_ratio: float = 0.9,
    protocol: Protocol | None = None,
) -> Run:
    """One closed-loop measurement over ``targets`` (one process each), merged; requests in
    ``protocol`` (default: meshcache's msgpack frames; ``RedisProtocol`` for RESP ports)."""
    protocol = MeshcacheProtocol() if protocol is None else protocol
    ctx = multiprocessing.get_context("fork")
    procs, pipes = [], []
    try:
        for i, target in enumerate(targets):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker,
                args=(
                    target,
                    templates,
                    depth,
                    get_ratio,
                    i + 1,
                    warmup,
                    duration,
                    child,
                    protocol,
                ),
                daemon=True,
            )
            proc.start()
            child.close()
            procs.append(proc)
            pipes.append(parent)
        for pipe in pipes:
            _expect(pipe, "ready", 120)
        start_ns = time.perf_counter_ns() + 50_000_000
        for pipe in pipes:
            pipe.send(start_ns)
        hist = LatencyHistogram()
        ops = errors = misses = 0
        for pipe in pipes:
            part = _expect(pipe, "done", warmup + duration + 60)
            ops += part.ops
            errors += part.errors
            misses += part.misses
            hist.merge(part.counts)
        return Run(
            label,
            sum(t.conns for t in targets),
            depth,
            ops / duration,
            hist.percentile(50) / 1000,
            hist.percentile(99) / 1000,
            errors,
            misses,
        )
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for pipe in pipes:
            pipe.close()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def measure(
    tmp: Path, keys: int, conns: int, warmup: float, duration: float, depths: tuple[int, ...]
) -> list[Run]:
    runs: list[Run] = []
    every = list(range(keys))
    with ExitStack() as stack:
        solo = Mesh(stack, tmp / "one", 1)
        host, port = solo.nodes[0].data_address
        templates = preload(host, port, MeshcacheProtocol(), Workload(keys=keys))
        for depth in depths:
            targets = [Target((host, port), c, every) for c in _split(conns, 3)]
            runs.append(
                drive("one node", targets, templates, depth=depth, warmup=warmup, duration=duration)
            )
        runs = _with_flaps(runs, flaps(solo))
    with ExitStack() as stack:
        mesh = Mesh(stack, tmp / "three", 3)
        preload_by_owner(mesh, keys)
        host, port = mesh.nodes[0].data_address
        templates = preload(host, port, MeshcacheProtocol(), Workload(keys=1))
        ring = mesh.current_ring()
        primary: dict[str, list[int]] = {x.node_id: [] for x in mesh.nodes}
        for i in every:
            primary[ring.owners(key(i), 1)[0].node_id].append(i)
        by_node = [(x, primary[x.node_id]) for x in mesh.nodes]
        for depth in depths:
            targets = [
                Target(x.data_address, c, idx)
                for (x, idx), c in zip(by_node, _split(conns, 3), strict=True)
            ]
            runs.append(
                drive(
                    "3 nodes, by owner",
                    targets,
                    templates,
                    depth=depth,
                    warmup=warmup,
                    duration=duration,
                )
            )
        node = mesh.nodes[0]
        mine = primary[node.node_id]
        mine_set = set(mine)
        others = [i for i in every if i not in mine_set]
        for depth in depths:
            targets = [Target(node.data_address, c, others) for c in _split(conns, 3)]
            runs.append(
                drive(
                    "3 nodes, all via one non-owner",
                    targets,
                    templates,
                    depth=depth,
                    warmup=warmup,
                    duration=duration,
                )
            )
        for label, idx in (
            ("one GET at a time to the owner", mine),
            ("one GET at a time to a non-owner", others),
        ):
            runs.append(
                drive(
                    label,
                    [Target(node.data_address, 1, idx)],
                    templates,
                    depth=1,
                    warmup=warmup,
                    duration=duration,
                    get_ratio=1.0,
                )
            )
        solo_runs = len(depths)
        runs = runs[:solo_runs] + _with_flaps(runs[solo_runs:], flaps(mesh))
    return runs


def _with_flaps(runs: list[Run], seen: Flaps) -> list[Run]:
    return [dataclasses.replace(run, flaps=seen) for run in runs]
