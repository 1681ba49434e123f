"""Failure-detection figures on real processes: ``kill -9`` → every member marks the node dead.

Starts N nodes (``python -m meshcache start``) on loopback with one gossip profile, then for each
trial kills one node with SIGKILL, reads every survivor's JSON log for the moment it logged
``member_dead`` for the victim, records the latest of those (when *every* member knew), restarts
the victim under the same name and waits until everyone sees it alive again.

    python -m tools.detection --nodes 10 --trials 10 --profile lan
    python -m tools.detection --nodes 10 --trials 10 --profile local

Prints a markdown table with p50/p99 of "all members know" and of "first member knows".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from meshcache import Client
from meshcache.testing.nodes import NodeProcess


def _dead_times(log: Path, victim: str, after: float) -> list[float]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if '"member_dead"' not in line or victim not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("member") != victim:
            continue
        at = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
        if at >= after:
            out.append(at)
    return out


def _alive_everywhere(nodes: list[NodeProcess]) -> bool:
    names = {n.node_id for n in nodes}
    for n in nodes:
        try:
            with Client(n.data, timeout=2) as c:
                alive = {m["name"] for m in c.members() if m["state"] == "alive"}
        except Exception:
            return False
        if alive != names:
            return False
    return True


def _wait(cond: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(nodes_n: int, trials: int, profile: str, base: Path) -> dict[str, list[float]]:
    nodes: list[NodeProcess] = []
    try:
        first = NodeProcess(base / "n0", "--profile", profile).start()
        nodes.append(first)
        for i in range(1, nodes_n):
            nodes.append(
                NodeProcess(base / f"n{i}", "--profile", profile, "--join", first.data).start()
            )
        if not _wait(lambda: _alive_everywhere(nodes), 60):
            raise SystemExit("the mesh did not converge")
        all_know: list[float] = []
        first_knows: list[float] = []
        for trial in range(trials):
            victim = nodes[1 + trial % (nodes_n - 1)]
            survivors = [n for n in nodes if n is not victim]
            killed_at = time.time()
            os.kill(victim.pid, signal.SIGKILL)
            victim.proc.wait()  # type: ignore[union-attr]

            def everyone_knows(
                v: NodeProcess = victim, s: list[NodeProcess] = survivors, t: float = killed_at
            ) -> bool:
                return all(_dead_times(n.log_file, v.node_id, t) for n in s)

            if not _wait(everyone_knows, 120):
                raise SystemExit(f"trial {trial}: not every member marked {victim.node_id} dead")
            times = [min(_dead_times(n.log_file, victim.node_id, killed_at)) for n in survivors]
            all_know.append(max(times) - killed_at)
            first_knows.append(min(times) - killed_at)
            print(
                f"trial {trial}: first {first_knows[-1]:.2f}s, all {all_know[-1]:.2f}s",
                file=sys.stderr,
            )
            # Restart under the same name and port; wait until the mesh has healed.
            port = victim.data_address[1]
            admin = victim.admin_address[1]
            restarted = NodeProcess(
                victim.data_dir,
                "--profile",
                profile,
                "--join",
                first.data,
                port=port,
                admin_port=admin,
            ).start()
            nodes[nodes.index(victim)] = restarted
            if not _wait(lambda: _alive_everywhere(nodes), 120):
                raise SystemExit(f"trial {trial}: the restarted node did not rejoin")
        return {"all": all_know, "first": first_knows}
    finally:
        for n in nodes:
            n.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--profile", choices=("lan", "local"), default="lan")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshcache-detect-") as tmp:
        figures = run(args.nodes, args.trials, args.profile, Path(tmp))
    print("| profile | nodes | trials | first knows p50 / p99 | all know p50 / p99 | mean all |")
    print("|---|---:|---:|---:|---:|---:|")
    a, f = figures["all"], figures["first"]
    print(
        f"| {args.profile} | {args.nodes} | {args.trials} | "
        f"{percentile(f, 0.5):.2f} s / {percentile(f, 0.99):.2f} s | "
        f"{percentile(a, 0.5):.2f} s / {percentile(a, 0.99):.2f} s | {statistics.mean(a):.2f} s |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
