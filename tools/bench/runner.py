"""Running one measurement across several worker processes and merging what they saw.

The parent forks ``procs`` workers; each connects its share of the connections, builds its own
op pool (own seed), reports ready, and waits for a common start time (CLOCK_MONOTONIC is shared
by all processes), so warm-up and the measurement window are the same wall-clock interval in
every worker. Histograms come back as count lists and are added up.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from meshcache.reaper import die_with_parent
from tools.bench.histogram import LatencyHistogram
from tools.bench.loops import LoopResult, closed_loop, connect, open_loop
from tools.bench.protocols import protocol_named
from tools.bench.workload import ReplyTemplates, Workload, build_pool

DEFAULT_POOL = 1 << 17


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One measurement: where, what, how hard, how long.

    ``rate`` 0 means closed loop (as fast as the server answers, ``depth`` requests in flight
    per connection); a positive ``rate`` is the total requests per second of an open-loop run,
    where ``depth`` only shapes how the op pool is grouped and is otherwise ignored.
    """

    host: str
    port: int
    protocol: str  # "redis" or "meshcache"
    workload: Workload
    templates: ReplyTemplates
    conns: int = 50
    depth: int = 1
    procs: int = 1
    duration: float = 10.0
    warmup: float = 2.0
    rate: float = 0.0
    pool_size: int = DEFAULT_POOL
    seed: int = 1


@dataclass(slots=True)
class RunResult:
    """Merged result of every worker."""

    spec: LoadSpec
    ops: int = 0
    misses: int = 0
    errors: int = 0
    max_send_lag_us: int = 0
    hist: LatencyHistogram = field(default_factory=LatencyHistogram)
    send_lag: LatencyHistogram = field(default_factory=LatencyHistogram)  # open loop only
    generator_cpu: float = 0.0  # cores the generator processes used while running
    server_cpu: float = -1.0  # cores the server used in the measurement window (-1: unknown)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.spec.duration

    def percentile_ms(self, p: float) -> float:
        return self.hist.percentile(p) / 1000.0


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _worker(
    spec: LoadSpec,
    index: int,
    conns: int,
    pipe: Connection,
    die_with_parent: Callable[[], None] | None,
) -> None:
    if die_with_parent is not None:
        die_with_parent()  # a killed bench takes its load workers with it
    try:
        protocol = protocol_named(spec.protocol)
        pool = build_pool(
            spec.workload,
            protocol,
            spec.templates,
            size=spec.pool_size,
            depth=spec.depth,
            seed=spec.seed * 1000 + index,
        )
        socks = connect(spec.host, spec.port, conns)
        try:
            pipe.send(("ready", None))
            start_ns: int = pipe.recv()
            measure_ns = start_ns + int(spec.warmup * 1e9)
            end_ns = measure_ns + int(spec.duration * 1e9)
            delay = (start_ns - time.perf_counter_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)  # the common start time the parent chose
            nbatch = len(pool.batch_requests)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            if spec.rate > 0:
                result = open_loop(
                    socks,
                    protocol,
                    pool,
                    rate=spec.rate / spec.procs,
                    start_offset=(index * 7919) % len(pool.requests),
                    start_ns=start_ns,
                    measure_from_ns=measure_ns,
                    end_ns=end_ns,
                )
            else:
                offsets = [(index * 7919 + i * (nbatch // max(1, conns))) for i in range(conns)]
                result = closed_loop(
                    socks,
                    protocol,
                    pool,
                    start_offsets=offsets,
                    measure_from_ns=measure_ns,
                    end_ns=end_ns,
                )
            result.cpu_share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        finally:
            for sock in socks:
                sock.close()
        pipe.send(("done", result))
    except KeyboardInterrupt:
        pass
    except BaseException:
        pipe.send(("error", traceback.format_exc()))
    finally:
        pipe.close()


class WorkerError(Exception):
    """A worker process failed; the message holds its traceback."""


def run_load(spec: LoadSpec, *, server_pid: int | None = None) -> RunResult:
    """Run one measurement and return the merged result.

    With ``server_pid``, the CPU time that process used during the measurement window is
    reported too (``server_cpu``, in cores): a server near 1.0 is the bottleneck.

    Raises:
        WorkerError: a worker could not connect or lost track of the server's replies.
    """
    if spec.procs < 1 or spec.conns < spec.procs:
        raise ValueError("need at least one process and one connection per process")
    ctx = multiprocessing.get_context("fork")
    procs: list[Any] = []
    pipes: list[Connection] = []
    try:
        for index, conns in enumerate(_split(spec.conns, spec.procs)):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker, args=(spec, index, conns, child, die_with_parent()), daemon=True
            )
            proc.start()
            child.close()
            procs.append(proc)
            pipes.append(parent)
        for pipe in pipes:
            _expect(pipe, "ready", timeout=120.0)
        start_ns = time.perf_counter_ns() + 50_000_000
        for pipe in pipes:
            pipe.send(start_ns)
        result = RunResult(spec)
        if server_pid is not None:
            measure_ns = start_ns + int(spec.warmup * 1e9)
            end_ns = measure_ns + int(spec.duration * 1e9)
            _sleep_until(measure_ns)
            cpu0 = cpu_seconds(server_pid)
            _sleep_until(end_ns)
            result.server_cpu = (cpu_seconds(server_pid) - cpu0) / spec.duration
        limit = spec.warmup + spec.duration + 60.0
        for pipe in pipes:
            part: LoopResult = _expect(pipe, "done", timeout=limit)
            result.ops += part.ops
            result.misses += part.misses
            result.errors += part.errors
            result.max_send_lag_us = max(result.max_send_lag_us, part.max_send_lag_us)
            result.hist.merge(part.counts)
            result.send_lag.merge(part.lag_counts)
            result.generator_cpu += part.cpu_share
        for proc in procs:
            proc.join(10)
        return result
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for pipe in pipes:
            pipe.close()


def _sleep_until(t_ns: int) -> None:
    delay = (t_ns - time.perf_counter_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)  # a point in the run's schedule, not a condition


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` (all its threads) has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of stat(5)); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _expect(pipe: Connection, what: str, *, timeout: float) -> Any:
    if not pipe.poll(timeout):
        raise WorkerError(f"a worker did not report {what!r} within {timeout:.0f} s")
    try:
        kind, payload = pipe.recv()
    except EOFError:
        raise WorkerError("a worker exited without reporting") from None
    if kind == "error":
        raise WorkerError(f"a worker failed:\n{payload}")
    if kind != what:
        raise WorkerError(f"a worker reported {kind!r}, expected {what!r}")
    return payload
