"""``python -m tools.bench {throughput,latency,memory,calibrate,all} [options]``.

Results are printed to stdout as markdown (with the machine and the command line that produced
them); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys

from tools.bench.cpu import cpu
from tools.bench.report import command_line, machine
from tools.bench.runner import DEFAULT_POOL, WorkerError
from tools.bench.scenarios import SCENARIOS, TARGETS, Options
from tools.bench.servers import ServerStartError
from tools.bench.workload import Workload


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("every value must be >= 1")
    return values


def _targets(text: str) -> tuple[str, ...]:
    names = tuple(part for part in text.split(",") if part)
    unknown = set(names) - set(TARGETS)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"targets are {', '.join(TARGETS)}")
    return names


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("workload")
    g.add_argument("--targets", type=_targets, default=TARGETS, help="redis,meshcache")
    g.add_argument("--conns", type=int, default=50, help="connections in total (50)")
    g.add_argument("--depth", type=_ints, default=(1, 16), help="pipeline depths (1,16)")
    g.add_argument("--get-ratio", type=float, default=0.9, help="fraction of GETs (0.9)")
    g.add_argument("--keys", type=int, default=100_000, help="key space (100000)")
    g.add_argument("--value-size", type=int, default=100, help="bytes per value (100)")
    g.add_argument("--dist", choices=("uniform", "zipf"), default="uniform")
    g.add_argument("--zipf-s", type=float, default=0.99, help="zipf exponent (0.99)")
    g = common.add_argument_group("run")
    g.add_argument("--duration", type=float, default=10.0, help="seconds measured (10)")
    g.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (2)")
    g.add_argument("--procs", type=int, default=1, help="generator processes (1)")
    g.add_argument("--pool", type=int, default=DEFAULT_POOL, help="pre-built ops per process")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--redis-server", default="redis-server", help="redis-server executable")
    g.add_argument(
        "--meshcache-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `python -m meshcache start` (repeatable)",
    )
    g = common.add_argument_group("latency")
    g.add_argument("--fraction", type=float, default=0.5, help="of the max throughput (0.5)")
    g.add_argument("--rate", type=float, default=0.0, help="fixed open-loop ops/s instead")
    g = common.add_argument_group("memory and calibrate")
    g.add_argument("--memory-keys", type=int, default=1_000_000, help="keys loaded (1000000)")
    g.add_argument("--repeat", type=int, default=3, help="calibration rounds (3)")
    g.add_argument("--rb-requests", type=int, default=0, help="redis-benchmark -n (auto)")
    g = common.add_argument_group("cpu")
    g.add_argument(
        "--requests", type=int, default=200_000, help="requests measured per run (200000)"
    )
    g.add_argument(
        "--pin", action="store_true", help="server on the first core, generator on the second"
    )

    top = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description="Measure meshcache against redis-server on this machine.",
    )
    sub = top.add_subparsers(dest="command", required=True)
    helps = {
        "throughput": "closed-loop ops/s and latency, side by side, per pipeline depth",
        "latency": "open-loop latency at a fraction of meshcache's maximum throughput",
        "memory": "bytes per key for 1M keys (meshcache RSS vs Redis used_memory)",
        "calibrate": "this generator vs redis-benchmark on redis-server",
        "cpu": "server CPU microseconds per request (fixed request count, --repeat rounds)",
        "all": "calibrate, throughput, latency and memory",
    }
    for name, text in helps.items():
        sub.add_parser(name, parents=[common], help=text, description=text)
    return top


def options(ns: argparse.Namespace) -> Options:
    workload = Workload(
        keys=ns.keys,
        value_size=ns.value_size,
        get_ratio=ns.get_ratio,
        distribution=ns.dist,
        zipf_s=ns.zipf_s,
    )
    return Options(
        targets=ns.targets,
        conns=ns.conns,
        depths=ns.depth,
        workload=workload,
        duration=ns.duration,
        warmup=ns.warmup,
        procs=ns.procs,
        pool_size=ns.pool,
        seed=ns.seed,
        redis_executable=ns.redis_server,
        meshcache_args=tuple(ns.meshcache_arg),
        fraction=ns.fraction,
        rate=ns.rate,
        memory_keys=ns.memory_keys,
        repeat=ns.repeat,
        rb_requests=ns.rb_requests,
        requests=ns.requests,
        pin=ns.pin,
    )


def main(argv: list[str] | None = None) -> int:
    ns = parser().parse_args(argv)
    try:
        opts = options(ns)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scenarios = {**SCENARIOS, "cpu": cpu}
    names = list(SCENARIOS) if ns.command == "all" else [ns.command]
    print(f"Measured {machine()}.\n\nCommand: `{command_line()}`\n", flush=True)
    try:
        for name in names:
            print(scenarios[name](opts) + "\n", flush=True)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    except (ServerStartError, WorkerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
