"""``python -m tools.mesh_figures {consistency,loss,join,convergence,throughput,forward,all}
[--quick] [--runs N]``: each figure N times (5 by default) on fresh node processes, every run
printed and then the median, min and max, with the membership events (members suspected or
declared dead, but a node the figure kills) each run's nodes logged."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tools.mesh_figures import consistency, convergence, forward, join, loss, throughput
from tools.mesh_figures.report import repeated


@dataclass(frozen=True, slots=True)
class Sizes:
    writes: int
    loss_before: float
    loss_after: float
    join_keys: int
    join_procs: int
    join_baseline: float
    join_tail: float
    convergence_keys: int
    handoff_rates: tuple[str | None, ...]
    bench_keys: int
    warmup: float
    duration: float
    depths: tuple[int, ...]


FULL = Sizes(
    writes=2000,
    loss_before=3.0,
    loss_after=2.0,
    join_keys=200_000,
    join_procs=3,
    join_baseline=3.0,
    join_tail=3.0,
    convergence_keys=1_000_000,
    handoff_rates=(None, "512MiB"),
    bench_keys=100_000,
    warmup=2.0,
    duration=8.0,
    depths=(1, 16),
)
QUICK = Sizes(
    writes=200,
    loss_before=0.5,
    loss_after=0.5,
    join_keys=2000,
    join_procs=2,
    join_baseline=0.5,
    join_tail=0.5,
    convergence_keys=5000,
    handoff_rates=(None,),
    bench_keys=2000,
    warmup=0.1,
    duration=0.3,
    depths=(1,),
)


Once = Callable[[Path, Sizes], tuple[str, list[str], int, list[list[object]]]]
"""One run of a figure: its title, its columns, how many of them label a row, its rows."""


def _consistency(tmp: Path, s: Sizes) -> tuple[str, list[str], int, list[list[object]]]:
    result = consistency.measure(tmp, s.writes)
    title = "Consistency window (3 nodes, replicas 2, consistency one)"
    return title, consistency.HEADER, 2, [result.row()]


def _loss(tmp: Path, s: Sizes) -> tuple[str, list[str], int, list[list[object]]]:
    results = loss.measure(tmp, s.loss_before, s.loss_after)
    title = "Acknowledged writes lost to a kill -9 of a coordinator"
    return title, loss.HEADER, 1, [r.row() for r in results]


def _join(tmp: Path, s: Sizes) -> tuple[str, list[str], int, list[list[object]]]:
    result = join.measure(tmp, s.join_keys, s.join_procs, s.join_baseline, s.join_tail)
    return "Hit rate during a join (95% GET through smart clients)", join.HEADER, 2, [result.row()]


def _convergence(tmp: Path, s: Sizes) -> tuple[str, list[str], int, list[list[object]]]:
    results = [
        convergence.measure(tmp / f"rate{i}", s.convergence_keys, rate)
        for i, rate in enumerate(s.handoff_rates)
    ]
    return (
        "Ring convergence with data (3 nodes + 1)",
        convergence.HEADER,
        2,
        [r.row() for r in results],
    )


def _throughput(tmp: Path, s: Sizes) -> tuple[str, list[str], int, list[list[object]]]:
    runs = throughput.measure(tmp, s.bench_keys, 50, s.warmup, s.duration, s.depths)
    title = "Throughput and the forwarding hop (90% GET, 100 B; hop rows 100% GET)"
    return title, throughput.HEADER, 3, [r.row() for r in runs]


def _forward(tmp: Path, s: Sizes) -> tuple[str, list[str], int, list[list[object]]]:
    runs = forward.measure(tmp, s.bench_keys, s.warmup, s.duration)
    title = (
        "Pipelining through a non-owner, msgpack and RESP ports (one connection, 90% GET, 100 B)"
    )
    return title, [*forward.HEADER, "non-smart / smart"], 4, forward.rows(runs)


def _repeat(once: Once, tmp: Path, sizes: Sizes, runs: int) -> str:
    """``runs`` runs of a figure, each on fresh node processes: every run's rows, then the
    median, min and max of each column by row."""
    title = ""
    header: list[str] = []
    labels = 0
    rows: list[list[list[object]]] = []
    for i in range(runs):
        title, header, labels, one = once(tmp / f"run{i + 1}", sizes)
        rows.append(one)
        print(f"  run {i + 1}/{runs}: {one}", file=sys.stderr, flush=True)
    return f"### {title}, {runs} run(s)\n\n" + repeated(header, labels, rows)


FIGURES: dict[str, Once] = {
    "consistency": _consistency,
    "loss": _loss,
    "join": _join,
    "convergence": _convergence,
    "throughput": _throughput,
    "forward": _forward,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.mesh_figures",
        description="Measure the mesh figures on real node processes (loopback).",
    )
    parser.add_argument("figure", choices=[*FIGURES, "all"])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="runs of each figure, each on fresh node processes (default 5; 1 with --quick)",
    )
    args = parser.parse_args(argv)
    runs = args.runs if args.runs is not None else (1 if args.quick else 5)
    if runs < 1:
        parser.error("--runs must be at least 1")
    sizes = QUICK if args.quick else FULL
    names = list(FIGURES) if args.figure == "all" else [args.figure]
    command = "python -m tools.mesh_figures " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"Command: `{command}`")
    print("Load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"CPUs: {os.cpu_count()} (every node and generator process shares them)\n")
    with tempfile.TemporaryDirectory(prefix="mesh-figures-") as tmp:
        for name in names:
            started = time.monotonic()
            print(_repeat(FIGURES[name], Path(tmp) / name, sizes, runs))
            print(f"\n({name}: {time.monotonic() - started:.1f} s)\n", flush=True)
    return 0
