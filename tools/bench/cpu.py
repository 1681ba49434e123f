"""CPU time the server spends per request: ``python -m tools.bench cpu``.

Throughput on a shared 2-core machine swings with whatever else runs; the CPU time the server
process burns per request moves much less. For each target this starts a fresh server, preloads
the key space, drives a warm-up, then drives exactly ``--requests`` requests (closed loop,
``--conns`` connections, each pipeline depth) and reads the server's utime + stime from
``/proc/<pid>/stat`` before and after: µs of server CPU per request. It also reports the
server's context switches per request: voluntary ones (it went to sleep waiting for work; fewer
means more requests per wake-up, which is cheaper) and involuntary ones (another process took
its core: a shared machine, and that run's figure is suspect), the generator's own CPU per
request and the wall-clock rate (noisy; for orientation only). ``--repeat`` runs alternate the
targets round by round and the table shows the best and the median.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from tools.bench.loops import closed_loop, connect
from tools.bench.preload import preload
from tools.bench.report import table
from tools.bench.runner import cpu_seconds
from tools.bench.scenarios import Options, TargetError, _describe, _notes, log, start
from tools.bench.servers import ServerProcess
from tools.bench.workload import ReplyTemplates, build_pool

WARMUP_FRACTION = 0.2  # of --requests, driven before measuring (caches, allocator, JIT-free)
DEADLINE_S = 600.0  # a run that takes longer than this has lost track of the server


@dataclass(frozen=True, slots=True)
class CpuSample:
    """One measured run of ``requests`` requests against one server."""

    requests: int
    server_cpu_s: float
    server_user_s: float
    switches: int
    preempted: int
    generator_cpu_s: float
    wall_s: float
    errors: int
    misses: int

    @property
    def server_us(self) -> float:
        return self.server_cpu_s / self.requests * 1e6

    @property
    def server_user_us(self) -> float:
        """The part spent in the server's own code (Python), not in the kernel."""
        return self.server_user_s / self.requests * 1e6

    @property
    def generator_us(self) -> float:
        return self.generator_cpu_s / self.requests * 1e6

    @property
    def switches_per_request(self) -> float:
        return self.switches / self.requests

    @property
    def preempted_per_request(self) -> float:
        return self.preempted / self.requests

    @property
    def ops_per_s(self) -> float:
        return self.requests / self.wall_s


def user_seconds(pid: int) -> float:
    """User-mode CPU seconds process ``pid`` (all its threads) has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> tuple[int, int]:
    """Voluntary and involuntary context switches of every thread of process ``pid``."""
    voluntary = involuntary = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue  # a thread that ended between the listing and the read
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                voluntary += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                involuntary += int(line.split()[1])
    return voluntary, involuntary


def drive(
    srv: ServerProcess, opts: Options, templates: ReplyTemplates, *, depth: int, requests: int
) -> CpuSample:
    """Warm up, then drive exactly ``requests`` requests (whole batches) and measure."""
    pool = build_pool(
        opts.workload,
        srv.protocol,
        templates,
        size=opts.pool_size,
        depth=depth,
        seed=opts.seed,
    )
    nbatch = len(pool.batch_requests)
    if opts.pin and len(os.sched_getaffinity(0)) >= 2:
        # One core each: the scheduler then never puts the two on one core for a while,
        # which otherwise moves the figure by a quarter from run to run.
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(srv.proc.pid, {cores[0]})
        os.sched_setaffinity(0, {cores[1]})
    socks = connect(srv.host, srv.port, opts.conns)
    try:
        offsets = [i * (nbatch // max(1, opts.conns)) for i in range(opts.conns)]
        pid = srv.proc.pid

        def run(batches: int) -> tuple[int, int, int]:
            now = time.perf_counter_ns()
            res = closed_loop(
                socks,
                srv.protocol,
                pool,
                start_offsets=offsets,
                measure_from_ns=0,
                end_ns=now + int(DEADLINE_S * 1e9),
                max_batches=batches,
            )
            return res.ops, res.errors, res.misses

        run(max(opts.conns, int(requests * WARMUP_FRACTION) // depth))
        batches = max(opts.conns, requests // depth)
        srv.check_alive()
        cpu0, user0, sw0 = cpu_seconds(pid), user_seconds(pid), context_switches(pid)
        gen0, wall0 = time.process_time(), time.perf_counter()
        done, errors, misses = run(batches)
        wall = time.perf_counter() - wall0
        gen = time.process_time() - gen0
        cpu1, user1, sw1 = cpu_seconds(pid), user_seconds(pid), context_switches(pid)
    finally:
        for sock in socks:
            sock.close()
    if done != batches * depth:
        raise RuntimeError(f"{done} of {batches * depth} requests answered before the deadline")
    return CpuSample(
        done,
        cpu1 - cpu0,
        user1 - user0,
        sw1[0] - sw0[0],
        sw1[1] - sw0[1],
        gen,
        wall,
        errors,
        misses,
    )


def cpu(opts: Options) -> str:
    """Server CPU µs per request for every target x depth, ``opts.repeat`` alternating rounds."""
    wl = opts.workload
    samples: dict[tuple[str, int], list[CpuSample]] = {}
    notes: list[str] = []
    failed: set[str] = set()
    for round_ in range(opts.repeat):
        for target in opts.targets:
            if target in failed:
                continue
            try:
                with start(target, opts) as srv:
                    templates = preload(srv.host, srv.port, srv.protocol, wl)
                    for depth in opts.depths:
                        s = drive(srv, opts, templates, depth=depth, requests=opts.requests)
                        samples.setdefault((target, depth), []).append(s)
                        log(
                            f"cpu round {round_ + 1}/{opts.repeat}: {target} depth={depth} "
                            f"{s.server_us:.2f} us/req server ({s.server_user_us:.2f} user), "
                            f"{s.generator_us:.2f} generator, "
                            f"{s.switches_per_request:.3f} sleeps/req, "
                            f"{s.preempted_per_request:.3f} preempted/req, {s.ops_per_s:,.0f} ops/s"
                        )
            except (*TargetError, RuntimeError) as exc:
                failed.add(target)
                notes.append(f"{target}: not measured — {_describe(exc)}")
    rows: list[list[object]] = []
    for depth in opts.depths:
        for target in opts.targets:
            runs = samples.get((target, depth))
            if not runs:
                continue
            us = [s.server_us for s in runs]
            bad = sum(s.errors for s in runs), sum(s.misses for s in runs)
            rows.append(
                [
                    target,
                    opts.conns,
                    depth,
                    runs[0].requests,
                    min(us),
                    statistics.median(us),
                    statistics.median(s.server_user_us for s in runs),
                    statistics.median(s.switches_per_request for s in runs),
                    statistics.median(s.preempted_per_request for s in runs),
                    statistics.median(s.generator_us for s in runs),
                    statistics.median(s.ops_per_s for s in runs),
                    "ok" if bad == (0, 0) else f"{bad[0]} errors, {bad[1]} misses",
                ]
            )
    head = (
        f"### Server CPU per request (closed loop, {wl.keys:,} keys {wl.distribution}, "
        f"{wl.value_size}-byte values, {wl.mix} GET/SET; best and median of {opts.repeat})\n\n"
    )
    headers = ["target", "conns", "depth", "requests", "server µs/req best", "median"]
    headers += ["of which user µs/req"]
    headers += ["sleeps/req", "preempted/req", "generator µs/req", "ops/s", "replies"]
    return head + table(headers, rows) + _notes(notes)
