"""The four benchmarks the CLI offers; each returns a markdown section.

Every scenario starts its own servers (fresh, on free loopback ports), preloads the key space,
measures, and stops them. A target that cannot be started (e.g. meshcache before its node
exists) is reported in a note under the table instead of failing the whole run.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import msgpack

from meshcache.wire import pack_frame
from tools.bench import redis_benchmark
from tools.bench.loops import BenchProtocolError
from tools.bench.preload import PreloadError, preload, request
from tools.bench.protocols import MeshcacheProtocol, RedisProtocol
from tools.bench.report import table
from tools.bench.runner import DEFAULT_POOL, LoadSpec, RunResult, WorkerError, run_load
from tools.bench.servers import (
    ServerProcess,
    ServerStartError,
    meshcache_node,
    redis_info,
    redis_server,
)
from tools.bench.workload import ReplyTemplates, Workload

TARGETS = ("redis", "meshcache")
# What can go wrong with one target without invalidating the others' figures.
TargetError = (ServerStartError, PreloadError, WorkerError, BenchProtocolError, OSError)


@dataclass(frozen=True, slots=True)
class Options:
    """Settings shared by every scenario (the CLI's flags)."""

    targets: tuple[str, ...] = TARGETS
    conns: int = 50
    depths: tuple[int, ...] = (1, 16)
    workload: Workload = field(default_factory=Workload)
    duration: float = 10.0
    warmup: float = 2.0
    procs: int = 1
    pool_size: int = DEFAULT_POOL
    seed: int = 1
    redis_executable: str = "redis-server"
    meshcache_args: tuple[str, ...] = ()
    fraction: float = 0.5
    rate: float = 0.0
    memory_keys: int = 1_000_000
    repeat: int = 3
    rb_requests: int = 0  # 0: sized to take a few seconds per test
    requests: int = 200_000  # cpu: requests measured per target and depth
    pin: bool = False  # cpu: server on the first core, generator on the second


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def start(target: str, opts: Options) -> Iterator[ServerProcess]:
    if target == "redis":
        server = redis_server(executable=opts.redis_executable)
    elif target == "meshcache":
        server = meshcache_node(extra_args=opts.meshcache_args)
    else:
        raise ValueError(f"unknown target {target!r}")
    with server as srv:
        # The pid lets a profiler attach (e.g. py-spy record --pid) while the load runs.
        log(f"{srv.name} started: pid {srv.proc.pid}, {srv.host}:{srv.port}")
        yield srv


def _spec(
    srv: ServerProcess,
    opts: Options,
    templates: ReplyTemplates,
    workload: Workload,
    *,
    depth: int,
    rate: float = 0.0,
) -> LoadSpec:
    return LoadSpec(
        host=srv.host,
        port=srv.port,
        protocol=srv.protocol.name,
        workload=workload,
        templates=templates,
        conns=opts.conns,
        depth=depth,
        procs=opts.procs,
        duration=opts.duration,
        warmup=opts.warmup,
        rate=rate,
        pool_size=opts.pool_size,
        seed=opts.seed,
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _notes(notes: list[str]) -> str:
    return "".join(f"\n\n> {note}" for note in notes)


def _ms(res: RunResult, p: float) -> float:
    return res.percentile_ms(p)


def _cpu(res: RunResult) -> str:
    """Cores used by the server and by the generator: which one was the bottleneck."""
    server = f"{res.server_cpu:.2f}" if res.server_cpu >= 0 else "?"
    return f"{server} / {res.generator_cpu:.2f}"


def _health(res: RunResult) -> str:
    bad = []
    if res.errors:
        bad.append(f"{res.errors} errors")
    if res.misses:
        bad.append(f"{res.misses} misses")
    return ", ".join(bad) or "ok"


# -- throughput --------------------------------------------------------------------------------


def throughput(opts: Options) -> str:
    """Closed loop, every target x every pipeline depth; ratio = meshcache / redis ops/s."""
    wl = opts.workload
    results: dict[tuple[str, int], RunResult] = {}
    notes: list[str] = []
    for target in opts.targets:
        try:
            with start(target, opts) as srv:
                templates = preload(srv.host, srv.port, srv.protocol, wl)
                for depth in opts.depths:
                    log(f"throughput: {target} conns={opts.conns} depth={depth} mix={wl.mix}")
                    res = run_load(
                        _spec(srv, opts, templates, wl, depth=depth), server_pid=srv.proc.pid
                    )
                    results[target, depth] = res
                    log(f"  {res.ops_per_s:,.0f} ops/s p99 {_ms(res, 99):.3f} ms")
        except TargetError as exc:
            notes.append(f"{target}: not measured — {_describe(exc)}")
    rows: list[list[object]] = []
    for depth in opts.depths:
        base = results.get(("redis", depth))
        for target in opts.targets:
            found = results.get((target, depth))
            if found is None:
                continue
            res = found
            ratio: object = "-"
            if target != "redis" and base is not None and base.ops:
                ratio = res.ops / base.ops
            rows.append(
                [
                    target,
                    opts.conns,
                    depth,
                    wl.mix,
                    res.ops_per_s,
                    _ms(res, 50),
                    _ms(res, 99),
                    _ms(res, 99.9),
                    ratio,
                    _cpu(res),
                    _health(res),
                ]
            )
    head = (
        f"### Throughput (closed loop, {wl.keys:,} keys {wl.distribution}, "
        f"{wl.value_size}-byte values, {opts.duration:g} s after {opts.warmup:g} s warm-up, "
        f"{opts.procs} generator process(es))\n\n"
    )
    headers = ["target", "conns", "depth", "GET/SET", "ops/s", "p50 ms", "p99 ms", "p999 ms"]
    headers += ["ratio", "CPU server/gen", "replies"]
    return head + table(headers, rows) + _notes(notes)


# -- latency -----------------------------------------------------------------------------------


def latency(opts: Options) -> str:
    """Open loop at ``fraction`` of meshcache's closed-loop maximum (redis's if meshcache is not
    measured), the same absolute rate for every target; latency from the scheduled send time."""
    wl = opts.workload
    order = sorted(opts.targets, key=lambda t: t != "meshcache")  # meshcache sets the rate
    maxima: dict[str, RunResult] = {}
    runs: dict[str, RunResult] = {}
    notes: list[str] = []
    rate = opts.rate
    for target in order:
        try:
            with start(target, opts) as srv:
                templates = preload(srv.host, srv.port, srv.protocol, wl)
                log(f"latency: {target} closed-loop maximum, conns={opts.conns} depth=1")
                maxima[target] = run_load(_spec(srv, opts, templates, wl, depth=1))
                if rate <= 0:
                    rate = opts.fraction * maxima[target].ops_per_s
                log(f"  max {maxima[target].ops_per_s:,.0f} ops/s; open loop at {rate:,.0f}")
                spec = _spec(srv, opts, templates, wl, depth=1, rate=rate)
                runs[target] = run_load(spec, server_pid=srv.proc.pid)
        except TargetError as exc:
            notes.append(f"{target}: not measured — {_describe(exc)}")
    rows: list[list[object]] = []
    for target in opts.targets:
        run = runs.get(target)
        if run is None:
            continue
        res = run
        rows.append(
            [
                target,
                opts.conns,
                maxima[target].ops_per_s,
                rate,
                res.ops_per_s,
                _ms(res, 50),
                _ms(res, 99),
                _ms(res, 99.9),
                res.send_lag.percentile(99) / 1000,
                res.max_send_lag_us / 1000,
                _cpu(res),
                _health(res),
            ]
        )
    ref = "meshcache" if "meshcache" in maxima else "redis"
    how = f"{opts.fraction:g} x {ref}'s maximum" if opts.rate <= 0 else "given with --rate"
    head = (
        f"### Latency (open loop at {how}, {wl.mix} GET/SET, {wl.value_size}-byte values, "
        f"no pipelining; latency from the scheduled send time)\n\n"
    )
    headers = ["target", "conns", "max ops/s", "rate ops/s", "achieved ops/s"]
    headers += ["p50 ms", "p99 ms", "p999 ms", "send lag p99 ms", "send lag max ms"]
    headers += ["CPU server/gen", "replies"]
    return head + table(headers, rows) + _notes(notes)


# -- memory ------------------------------------------------------------------------------------


def _dbsize(srv: ServerProcess) -> int:
    if isinstance(srv.protocol, MeshcacheProtocol):
        frame = pack_frame([1, "DBSIZE", "default", []])
        reply = request(srv.host, srv.port, srv.protocol, frame)
        obj = msgpack.unpackb(reply[4:], raw=False)
        return int(obj[2]) if obj[1] == 0 else -1
    reply = request(srv.host, srv.port, srv.protocol, RedisProtocol.command(b"DBSIZE"))
    return int(reply[1:].strip())


def memory(opts: Options) -> str:
    """``memory_keys`` keys of ``value_size`` bytes: bytes per key after preloading."""
    wl = replace(opts.workload, keys=opts.memory_keys)
    rows: list[list[object]] = []
    notes: list[str] = []
    redis_per_key = 0.0
    for target in opts.targets:
        try:
            with start(target, opts) as srv:
                rss0 = srv.rss_bytes()
                used0 = int(redis_info(srv)["used_memory"]) if target == "redis" else 0
                log(f"memory: {target} loading {wl.keys:,} keys of {wl.value_size} bytes")
                preload(srv.host, srv.port, srv.protocol, wl)
                stored = _dbsize(srv)
                rss1 = srv.rss_bytes()
                measured: list[tuple[str, int, int]] = []
                if target == "redis":
                    used1 = int(redis_info(srv)["used_memory"])
                    measured.append(("used_memory", used0, used1))
                    redis_per_key = (used1 - used0) / wl.keys
                measured.append(("RSS (VmRSS)", rss0, rss1))
                for metric, before, after in measured:
                    per_key = (after - before) / wl.keys
                    rows.append([target, stored, metric, before / 2**20, after / 2**20, per_key])
        except TargetError as exc:
            notes.append(f"{target}: not measured — {_describe(exc)}")
    for row in rows:
        last = row[-1]
        row.append(last / redis_per_key if isinstance(last, float) and redis_per_key else "-")
    head = (
        f"### Memory ({wl.keys:,} keys x {wl.value_size}-byte values; ratio = bytes per key / "
        "Redis's used_memory bytes per key)\n\n"
    )
    headers = ["target", "keys stored", "metric", "before MiB", "after MiB", "bytes/key", "ratio"]
    return head + table(headers, rows) + _notes(notes)


# -- calibrate ---------------------------------------------------------------------------------


def calibrate(opts: Options) -> str:
    """Our generator against redis-benchmark on the same redis-server: 100% GET and 100% SET,
    same connections, pipeline depth, value size and key space; runs interleaved, ``repeat``
    times, medians reported."""
    if not redis_benchmark.available():
        return "### Calibration\n\n> redis-benchmark is not installed (apt-get install redis-tools)"
    rows: list[list[object]] = []
    commands: list[str] = []
    with start("redis", replace(opts, targets=("redis",))) as srv:
        for depth in opts.depths:
            for test, ratio in (("set", 0.0), ("get", 1.0)):
                wl = replace(opts.workload, get_ratio=ratio)
                theirs: list[redis_benchmark.RedisBenchmarkRow] = []
                ours: list[RunResult] = []
                for attempt in range(opts.repeat):
                    log(f"calibrate: depth={depth} {test} round {attempt + 1}/{opts.repeat}")
                    templates = preload(srv.host, srv.port, srv.protocol, wl)
                    spec = _spec(srv, opts, templates, wl, depth=depth)
                    ours.append(run_load(spec, server_pid=srv.proc.pid))
                    # redis-benchmark stops after -n requests: size it from our rate so both
                    # tools run for about the same time under the same conditions.
                    requests = opts.rb_requests or max(
                        10_000, int(ours[-1].ops_per_s * (opts.duration + opts.warmup))
                    )
                    argv = redis_benchmark.command(
                        srv.port,
                        test,
                        conns=opts.conns,
                        value_size=wl.value_size,
                        depth=depth,
                        requests=requests,
                        keys=wl.keys,
                    )
                    commands.append(" ".join([*argv[:4], "<port>", *argv[5:7], *argv[9:]]))
                    preload(srv.host, srv.port, srv.protocol, wl)  # same keys for both tools
                    theirs.extend(redis_benchmark.run(argv))
                    log(f"  ours {ours[-1].ops_per_s:,.0f}  redis-benchmark {theirs[-1].rps:,.0f}")
                rb_rps = statistics.median(r.rps for r in theirs)
                our_rps = statistics.median(r.ops_per_s for r in ours)
                rows.append(
                    [
                        depth,
                        test.upper(),
                        rb_rps,
                        our_rps,
                        our_rps / rb_rps,
                        statistics.median(r.p50_ms for r in theirs),
                        statistics.median(_ms(r, 50) for r in ours),
                        statistics.median(r.p99_ms for r in theirs),
                        statistics.median(_ms(r, 99) for r in ours),
                        statistics.median(r.server_cpu for r in ours),
                        statistics.median(r.generator_cpu for r in ours),
                    ]
                )
    wl = opts.workload
    head = (
        f"### Calibration: this generator vs redis-benchmark on redis-server "
        f"({opts.conns} connections, {wl.value_size}-byte values, {wl.keys:,} keys; "
        f"median of {opts.repeat} interleaved runs)\n\n"
    )
    headers = ["depth", "test", "redis-benchmark ops/s", "ours ops/s", "ours / r-b"]
    headers += ["r-b p50 ms", "ours p50 ms", "r-b p99 ms", "ours p99 ms"]
    headers += ["redis CPU", "ours CPU"]
    cmds = "\n".join(f"    {c}" for c in dict.fromkeys(commands))
    how = "\n\nredis-benchmark ran as (`-n` sized from our rate to last as long as our run):\n\n"
    return head + table(headers, rows) + how + cmds


SCENARIOS: dict[str, Callable[[Options], str]] = {
    "calibrate": calibrate,
    "throughput": throughput,
    "latency": latency,
    "memory": memory,
}
