"""The command line of the chaos suite: ``soak``, ``replay``, ``sweep`` and ``worker``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _worker(args: argparse.Namespace) -> int:
    from meshcache.testing.chaos.workload import WorkerSpec, run_worker

    return run_worker(WorkerSpec.from_json(Path(args.spec).read_text()))


def _sweep(args: argparse.Namespace) -> int:
    from meshcache.testing.chaos.netns import missing_privileges, sweep_stale

    problem = missing_privileges()
    if problem is not None:
        sys.stderr.write(f"chaos: {problem}\n")
        return 2
    for line in sweep_stale():
        print(f"removed {line}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m meshcache.testing.chaos",
        description="meshcache's chaos suite: real nodes in network namespaces, real faults.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("sweep", help="remove what crashed chaos runs left behind")
    p.set_defaults(run=_sweep)
    p = sub.add_parser("worker", help="(internal) run a workload spec; the harness starts it")
    p.add_argument("spec", help="the worker's JSON spec")
    p.set_defaults(run=_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.run(args)
    return status
