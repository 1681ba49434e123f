"""Config-plane figures: commit latency with 3 voter processes, and leader failover time.

Usage::

    .venv/bin/python tools/raft_figures.py [--commits 300] [--failovers 5]

Starts 3 pysyncobj voters (``meshcache.control._voter_main``), each its own OS process on a
loopback port, and prints a markdown table:

* commit latency of one config change (``update_namespace``), measured inside the proposing
  voter around ``ConfigPlane.propose`` — through the leader and through a follower (which
  forwards to the leader), p50/p99;
* leader failover: ``kill -9`` of the leader until the next config change commits through a
  survivor (retrying every failed attempt), per run, then the killed voter is restarted from
  its journal before the next run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshcache.control._voter_main import VoterProcess
from meshcache.testing.ports import free_port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def update(version: int, i: int) -> dict[str, Any]:
    return {
        "op": "update_namespace",
        "expected_version": version,
        "name": "bench",
        "changes": {"max_items": i},
    }


def propose_until_ok(voter: VoterProcess, command_for: Any, bound: float) -> dict[str, Any]:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        version = voter.request("config")["config"]["version"]
        answer = voter.request("propose", command=command_for(version), timeout=1.0)
        if answer["ok"]:
            return answer
    raise RuntimeError(f"no commit through {voter.address} within {bound} s")


def leader_of(voters: list[VoterProcess]) -> VoterProcess:
    for voter in voters:
        if voter.running:
            leader = voter.request("status")["status"]["leader"]
            for candidate in voters:
                if candidate.address == leader and candidate.running:
                    return candidate
    raise RuntimeError("no leader")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=300, help="commits per path")
    parser.add_argument("--failovers", type=int, default=5, help="kill -9 runs")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="raft-figures-"))
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    voters = [
        VoterProcess(a, [p for p in addresses if p != a], root / f"v{i}")
        for i, a in enumerate(addresses)
    ]
    try:
        for voter in voters:
            voter.launch()
        for voter in voters:
            voter.wait_ready()
        propose_until_ok(
            voters[0],
            lambda v: {"op": "create_namespace", "expected_version": v, "name": "bench"},
            bound=15,
        )
        rows: list[tuple[str, str]] = []
        leader = leader_of(voters)
        follower = next(v for v in voters if v is not leader)
        for label, voter in (("leader", leader), ("follower", follower)):
            inner: list[float] = []
            outer: list[float] = []
            # The leader's version: a follower may not have applied the last commit yet.
            version = leader.request("config")["config"]["version"]
            for i in range(args.commits):
                started = time.perf_counter()
                answer = voter.request("propose", command=update(version, i), timeout=5)
                outer.append(time.perf_counter() - started)
                if not answer["ok"]:
                    raise RuntimeError(answer)
                inner.append(answer["elapsed"])
                version = answer["config"]["version"]
            rows.append(
                (
                    f"commit latency via {label} (n={len(inner)}), p50 / p99",
                    f"{percentile(inner, 0.5) * 1e3:.2f} ms /"
                    f" {percentile(inner, 0.99) * 1e3:.2f} ms"
                    f" (with the test pipe: {percentile(outer, 0.5) * 1e3:.2f} /"
                    f" {percentile(outer, 0.99) * 1e3:.2f} ms)",
                )
            )
        failovers: list[float] = []
        for i in range(args.failovers):
            leader = leader_of(voters)
            survivor = next(v for v in voters if v is not leader)
            leader.kill()
            killed_at = time.monotonic()
            propose_until_ok(survivor, lambda v, i=i: update(v, 10_000 + i), bound=30)
            failovers.append(time.monotonic() - killed_at)
            leader.start()
            target = survivor.request("config")["config"]["version"]
            leader.request("wait_version", version=target, timeout=15)
        rows.append(
            (
                f"leader failover, kill -9 → next commit (n={len(failovers)})",
                f"median {statistics.median(failovers):.2f} s, max {max(failovers):.2f} s"
                f" (runs: {', '.join(f'{f:.2f}' for f in failovers)})",
            )
        )
    finally:
        for voter in voters:
            voter.kill()
    load = os.getloadavg()[0]
    print(f"3 voter processes on loopback, {os.cpu_count()} CPUs, load average {load:.1f}\n")
    print("| figure | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
