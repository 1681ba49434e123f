"""The command line of the chaos suite (``python -m meshcache.testing.chaos``).

* ``soak --cycles N --seed S [--nodes 3] [--kinds k1,k2] [--only 4,7] [--loss P] [--skew S]
  [--loader-keys N] [--out DIR]``: N cycles of randomized faults on one cluster (kinds
  round-robin, everything else drawn from ``S:<cycle>``); writes ``history.jsonl``,
  ``reports.jsonl`` and ``summary.json`` into DIR and prints one line per cycle and a table
  per fault kind. ``--only`` replays those cycles of the same seed (with the same
  ``--loss`` / ``--skew``, which fix the loss probability and the clock offset's size).
  ``--loader-keys`` adds the read-through namespace and its database. Exit 0 when every check
  of every cycle passed, 1 otherwise.
* ``replay REPORTS --cycle K``: run cycle K's recorded schedule (from a ``reports.jsonl``)
  again on a fresh cluster.
* ``sweep``: remove what crashed runs left behind (namespaces, links, files, locks).
* ``worker SPEC``: the workload process the harness starts (internal).

Exit 2 when the machine cannot run the harness (not root, no ``ip`` or ``nft``), with the
reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def _worker(args: argparse.Namespace) -> int:
    from meshcache.testing.chaos.workload import WorkerSpec, run_worker

    return run_worker(WorkerSpec.from_json(Path(args.spec).read_text()))


def _privileged() -> str | None:
    from meshcache.testing.chaos.netns import missing_privileges

    return missing_privileges(faketime=True)


def _sweep(args: argparse.Namespace) -> int:
    from meshcache.testing.chaos.netns import sweep_stale

    for line in sweep_stale():
        print(f"removed {line}")
    return 0


def _out_dir(given: Path | None, what: str) -> Path:
    if given is not None:
        return given
    return Path(f"chaos-{what}-{time.strftime('%Y%m%d-%H%M%S')}")


def table(summary: dict[str, Any]) -> str:
    """The per-kind totals of a soak summary as a Markdown table."""
    rows = [
        "| fault | cycles | ops | acked one/quorum/all | lost one/quorum/all | resurrected "
        "| late overwrites | converge median/max (s) | ring+membership agreed median/max (s) "
        "| hints drained max (s) | load | failed checks |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, k in summary["kinds"].items():
        acked = "/".join(str(k["acked"][lv]) for lv in ("one", "quorum", "all"))
        lost = "/".join(str(k["lost"][lv]) for lv in ("one", "quorum", "all"))
        failed = ", ".join(f"{n} {c}" for n, c in k["failed_checks"].items()) or "none"
        conv = f"{_s(k.get('converge_median_s'))} / {k['converge_max_s']:.1f}"
        if k["not_converged"]:
            conv += f" ({k['not_converged']} never)"
        agree = f"{_s(k.get('agree_median_s'))} / {_s(k.get('agree_max_s'))}"
        if k.get("not_agreed"):
            agree += f" ({k['not_agreed']} never)"
        load = f"{_s(k.get('load_min'))}-{_s(k.get('load_max'))}"
        rows.append(
            f"| {kind} | {k['cycles']} | {k['ops']} | {acked} | {lost} | {k['resurrected']} "
            f"| {k['late_overwrites']} | {conv} | {agree} | {k['drain_max_s']:.1f} | {load} "
            f"| {failed} |"
        )
    return "\n".join(rows)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _soak(args: argparse.Namespace) -> int:
    from meshcache.testing.chaos.scenarios import (
        EXTRA_KINDS,
        FAULT_KINDS,
        Workload,
        soak,
        summarize,
    )

    kinds = tuple(args.kinds.split(",")) if args.kinds else FAULT_KINDS
    known = (*FAULT_KINDS, *EXTRA_KINDS)
    unknown = [k for k in kinds if k not in known]
    if unknown:
        sys.stderr.write(f"chaos: unknown fault kinds {unknown}; known: {', '.join(known)}\n")
        return 2
    only = [int(x) for x in args.only.split(",")] if args.only else None
    out = _out_dir(args.out, "soak")
    workload = Workload(rate=args.rate, hot_keys=args.hot_keys, loader_keys=args.loader_keys)
    if args.plain_only:
        workload = Workload(
            rate=args.rate, hot_keys=args.hot_keys, loader_keys=args.loader_keys,
            setnx=0.0, setxx=0.0, cas=0.0, incr=0.0,
        )  # fmt: skip
    reports = soak(
        args.cycles,
        args.seed,
        nodes=args.nodes,
        out_dir=out,
        kinds=kinds,
        only=only,
        workload=workload,
        loss=args.loss,
        skew=args.skew,
        loader=args.loader_keys > 0,
    )
    print(table(summarize(reports)))
    failed = [r.cycle for r in reports if not r.ok]
    if len(reports) < len(only or range(args.cycles)):
        print(f"the soak stopped after {len(reports)} cycles (see {out}/reports.jsonl)")
        return 1
    if failed:
        pinned = "".join(
            f" --{name} {value:g}"
            for name, value in (("loss", args.loss), ("skew", args.skew))
            if value is not None
        )
        print(f"failed cycles: {failed}; replay one with --seed {args.seed}{pinned} --only N")
    return 1 if failed else 0


def _replay(args: argparse.Namespace) -> int:
    from meshcache.testing.chaos.cluster import ChaosCluster
    from meshcache.testing.chaos.scenarios import Schedule, Workload, run_cycle

    found = None
    with open(args.reports, encoding="utf-8") as f:
        for line in f:
            report = json.loads(line)
            if report.get("cycle") == args.cycle:
                found = report
    if found is None:
        sys.stderr.write(f"chaos: no cycle {args.cycle} in {args.reports}\n")
        return 2
    schedule = Schedule.from_mapping(found["schedule"])
    out = _out_dir(args.out, "replay")
    loader = schedule.has_db
    workload = Workload(loader_keys=LOADER_KEYS) if loader else None
    nodes = args.nodes or schedule.nodes
    with ChaosCluster(nodes, len(schedule.sides), out_dir=out, loader=loader) as cluster:
        result = run_cycle(cluster, schedule, cycle=args.cycle, workload=workload)
        print(result.summary())
        for c in result.checks:
            for line in c.findings:
                print(f"    {c.name}: {line}")
        if not result.ok:
            cluster.keep_logs = True
    return 0 if result.ok else 1


#: Read-through keys per cycle of a soak run with ``--loader`` and of a replay of one.
LOADER_KEYS = 8


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability between 0 and 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 60.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an offset of (0, 60] seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m meshcache.testing.chaos",
        description="meshcache's chaos suite: real nodes in network namespaces, real faults, "
        "a recorded history and checkers (docs/chaos.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("soak", help="run randomized fault cycles and check every one")
    p.add_argument("--cycles", type=int, default=50, help="how many cycles (default 50)")
    p.add_argument("--seed", type=int, default=1, help="the seed of every schedule (default 1)")
    p.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    p.add_argument(
        "--kinds",
        help="comma-separated fault kinds, run in turn (default: partition, one-way, bridge, "
        "isolate, flapping, loss, kill, pause, skew; 'slow' on request)",
    )
    p.add_argument("--only", help="run only these cycle numbers, e.g. 4,7 (a replay)")
    p.add_argument("--rate", type=float, default=25.0, help="ops/s per client (default 25)")
    p.add_argument(
        "--hot-keys",
        type=int,
        default=2,
        help="hot keys in chaos-hot, each with its own writer, read by a smart reader per "
        "client endpoint (default 2; 0: none)",
    )
    p.add_argument(
        "--loader-keys",
        type=int,
        default=0,
        help="read-through keys per cycle in chaos-load, loaded from a PostgreSQL the run "
        "starts in a namespace of its own, with a database writer and readers on every side "
        f"(default 0: none; {LOADER_KEYS} is the replay's)",
    )
    p.add_argument(
        "--plain-only",
        action="store_true",
        help="plain SET/GET/DELETE only, no conditional writes (the op sequences of soaks "
        "run before they joined the mix)",
    )
    p.add_argument(
        "--loss",
        type=_fraction,
        help="drop probability of every 'loss' cycle, e.g. 0.2 (default: drawn, 5-30%%)",
    )
    p.add_argument(
        "--skew",
        type=_seconds,
        help="size of every 'skew' cycle's clock offset in seconds, its sign drawn, "
        "e.g. 2 (default: drawn, 2 or 5)",
    )
    p.add_argument("--out", type=Path, help="output directory (default chaos-soak-<time>)")
    p.set_defaults(run=_soak, privileged=True)
    p = sub.add_parser("replay", help="run one recorded cycle's schedule again")
    p.add_argument("reports", type=Path, help="a reports.jsonl written by soak")
    p.add_argument("--cycle", type=int, required=True, help="the cycle to replay")
    p.add_argument("--nodes", type=int, help="cluster size (default: the schedule's)")
    p.add_argument("--out", type=Path, help="output directory (default chaos-replay-<time>)")
    p.set_defaults(run=_replay, privileged=True)
    p = sub.add_parser("sweep", help="remove what crashed chaos runs left behind")
    p.set_defaults(run=_sweep, privileged=True)
    p = sub.add_parser("worker", help="(internal) run a workload spec; the harness starts it")
    p.add_argument("spec", help="the worker's JSON spec")
    p.set_defaults(run=_worker, privileged=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the chaos command line; the exit code (see the module doc)."""
    args = build_parser().parse_args(argv)
    if args.privileged and (problem := _privileged()) is not None:
        sys.stderr.write(f"chaos: {problem}\n")
        return 2
    status: int = args.run(args)
    return status


__all__ = ["build_parser", "main", "table"]
