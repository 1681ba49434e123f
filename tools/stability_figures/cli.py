"""``python -m tools.stability_figures {preload,mixed,convergence,join,all} [--runs N]
[--profile local|lan|both] [--quick]``.

Scenarios (3 nodes, 100-byte values, pipelining writers at depth 100, one per node):

* ``preload``: fill 1M keys at full speed, then 20 s idle (where flaps fed on themselves).
* ``mixed``: fill 200k keys, then ``--duration`` seconds of 50% GET / 50% SET at full speed.
* ``convergence``: fill 1M keys, then from a quiet mesh a fourth node joins, then one leaves.
* ``join``: fill 200k keys, then a fourth node joins and one leaves while the writers go on;
  the writers' p99 is read from the writes answered during the join.

In every scenario a probe client (:mod:`tools.stability_figures.probe`: unpipelined GETs and
SETs at ``--probe-rate`` a second, smart routing) runs throughout; its latencies during the
join and during the leave are what one ordinary client sees. ``--keep DIR`` keeps every node's
data directory and log there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from meshcache.errors import MeshcacheError
from tools.mesh_figures.report import table
from tools.stability_figures.probe import RATE as PROBE_RATE
from tools.stability_figures.scenario import NodeFigures, RunResult, run
from tools.stability_figures.writers import JOIN, LEAVE


@dataclass(frozen=True, slots=True)
class Scenario:
    keys: int
    keep_writing: bool
    join: bool
    leave: bool
    tail: float
    get_ratio: float = 0.0
    timed_load: bool = False  # --duration seconds of load after the preload


SCENARIOS = {
    "preload": Scenario(1_000_000, keep_writing=False, join=False, leave=False, tail=20.0),
    "mixed": Scenario(
        200_000,
        keep_writing=True,
        join=False,
        leave=False,
        tail=0.0,
        get_ratio=0.5,
        timed_load=True,
    ),
    "convergence": Scenario(1_000_000, keep_writing=False, join=True, leave=True, tail=3.0),
    "join": Scenario(200_000, keep_writing=True, join=True, leave=True, tail=3.0),
}
QUICK_KEYS = 20_000

HEADER = [
    "run",
    "preload s",
    "join s",
    "leave s",
    "writers' p99 / max ms in join",
    "probe p99 ms in join",
    "probe max ms in join",
    "probe p99 ms in leave",
    "probe max ms in leave",
    "probe errors",
    "answered",
    "errors",
    "suspect events",
    "dead events",
    "refuted",
    "refuted / node-min",
    "local stalls",
    "lag p99 ms (worst node)",
    "lag max ms (worst node)",
    "own lag p99 ms (worst node)",
    "own lag max ms (worst node)",
    "longest step ms",
    "longest gc ms",
    "loop held (last at)",
]


def row(label: str, r: RunResult) -> list[object]:
    during = r.phases[JOIN]
    nodes = r.nodes
    node_minutes = max(r.minutes * len(nodes), 1e-9)
    longest = max(nodes, key=lambda n: n.longest_step_ms)
    return [
        label,
        round(r.preload_s, 1),
        round(r.join_s, 2),
        round(r.leave_s, 2),
        f"{during.p99_ms():.1f} / {during.max_ms():.0f}" if during.answered else "-",
        *_probe_columns(r, JOIN),
        *_probe_columns(r, LEAVE),
        sum(p.errors for p in r.probe),
        sum(p.answered for p in r.phases),
        sum(p.errors for p in r.phases),
        r.suspicions,
        r.deaths,
        r.refutations,
        round(r.refutations / node_minutes, 2),
        sum(n.local_stalls for n in nodes),
        max(n.lag_p99_ms for n in nodes),
        max(n.lag_max_ms for n in nodes),
        max(n.own_p99_ms for n in nodes),
        max(n.own_max_ms for n in nodes),
        f"{longest.longest_step_ms:.0f} ({longest.longest_step_task})",
        max(n.gc_longest_ms for n in nodes),
        _held_column(nodes),
    ]


def _held_column(nodes: list[NodeFigures]) -> str:
    """How many lags the nodes logged as ``loop_held``, and where the worst node's last was."""
    held = sum(n.held for n in nodes)
    if not held:
        return "0"
    worst = max((n for n in nodes if n.held), key=lambda n: n.own_max_ms)
    return f"{held} ({worst.held_at})"


def _probe_columns(r: RunResult, phase: int) -> list[object]:
    """The probe's service p99 and max in ``phase`` (``-`` when it answered nothing there)."""
    if len(r.probe) <= phase or not r.probe[phase].answered:
        return ["-", "-"]
    counts = r.probe[phase]
    return [round(counts.p99_ms(), 1), round(counts.max_ms(), 1)]


def summary(rows: list[list[object]]) -> list[list[object]]:
    """Median and max of every numeric column (other columns: '')."""
    out: list[list[object]] = [["median"], ["max"]]
    for col in range(1, len(HEADER)):
        values = [r[col] for r in rows]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            numbers = [float(v) for v in values]  # type: ignore[arg-type]
            out[0].append(round(statistics.median(numbers), 2))
            out[1].append(max(numbers))
        else:
            out[0].append("")
            out[1].append("")
    return out


def measure(
    name: str,
    tmp: Path,
    *,
    runs: int,
    profile: str,
    quick: bool,
    duration: float,
    keys: int | None = None,
    probe_rate: float = PROBE_RATE,
) -> str:
    s = SCENARIOS[name]
    keys = keys or (QUICK_KEYS if quick else s.keys)
    rows: list[list[object]] = []
    details: list[str] = []
    failed: list[str] = []
    for i in range(runs):
        try:
            r = run(
                tmp / f"{name}-{profile}-{i}",
                keys=keys,
                procs=3,
                profile=profile,
                get_ratio=s.get_ratio,
                keep_writing=s.keep_writing,
                load_s=(duration if s.timed_load else 2.0),
                join=s.join,
                leave=s.leave,
                tail=min(s.tail, 2.0) if quick else s.tail,
                probe_rate=probe_rate,
            )
        except (MeshcacheError, OSError) as exc:  # one failed run must not lose the others
            failed.append(f"run {i + 1} failed: {exc}")
            print(f"  {name}/{profile} {failed[-1]}", file=sys.stderr)
            continue
        rows.append(row(str(i + 1), r))
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        details.append(f"run {i + 1} (load after: {load}):\n{r.describe()}")
        print(f"  {name}/{profile} run {i + 1}/{runs}, load {load}: {rows[-1]}", file=sys.stderr)
    title = f"### {name}, profile {profile}, {keys:,} keys, {runs} runs"
    parts = [title, table(HEADER, rows + summary(rows)) if rows else "(no run completed)"]
    parts += failed
    return "\n\n".join([*parts, "Per node:\n\n" + "\n\n".join(details)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.stability_figures",
        description="Flaps, loop lag and convergence under the heaviest load, N runs each.",
    )
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario (default 5)")
    parser.add_argument("--profile", choices=["local", "lan", "both"], default="local")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of load in 'mixed' (default 60)"
    )
    parser.add_argument("--keys", type=int, help="keys to preload (default: the scenario's)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_KEYS:,} keys, short tails")
    parser.add_argument(
        "--probe-rate",
        type=float,
        default=PROBE_RATE,
        help=f"requests a second of the unpipelined probe client (default {PROBE_RATE:g}; 0: none)",
    )
    parser.add_argument(
        "--keep", type=Path, help="keep every run's node data directories and logs under DIR"
    )
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    profiles = ["local", "lan"] if args.profile == "both" else [args.profile]
    command = "python -m tools.stability_figures " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"Command: `{command}`")
    print("Load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"CPUs: {os.cpu_count()} (every node and writer process shares them)\n", flush=True)
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = str(args.keep)
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="stability-figures-"))
        for name in names:
            for profile in profiles:
                started = time.monotonic()
                print(
                    measure(
                        name,
                        Path(tmp),
                        runs=args.runs,
                        profile=profile,
                        quick=args.quick,
                        duration=args.duration,
                        keys=args.keys,
                        probe_rate=args.probe_rate,
                    )
                )
                print(f"\n({name}/{profile}: {time.monotonic() - started:.1f} s)\n", flush=True)
    return 0
