"""Config-plane figures on real processes.

* commit → applied everywhere: one voter (``--bootstrap``) and N-1 other nodes with the ``lan``
  (or ``local``) gossip profile; for each change, the time from the voter installing version v
  to the last node installing it, read from every node's JSON log (``config_installed``);
* the data path's use of Raft: the voter's Raft commit index and the config version before and
  after a burst of pipelined GET/SET (it must not move: no data op touches Raft).

    python -m tools.config_figures --nodes 5 --changes 20 --profile lan
    python -m tools.config_figures --simulate 5,25,100,400 --trials 5

``--simulate`` measures the same spread on the deterministic simulator (meshcache.testing.simnet)
with the ``lan`` profile: a new config version is a metadata change of the voter that gossip
carries; each node pulls as soon as it sees it, one round trip (2 x the 1 ms link delay) later.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from meshcache import Client
from meshcache.testing.nodes import NodeProcess


def _installs(log: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if '"config_installed"' not in line:
            continue
        record = json.loads(line)
        at = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
        out.setdefault(int(record["version"]), at)
    return out


def _wait(cond: object, timeout: float, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--profile", choices=("lan", "local"), default="lan")
    parser.add_argument("--data-ops", type=int, default=20000)
    parser.add_argument("--simulate", metavar="N,N,...", help="simulated cluster sizes instead")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.simulate:
        return simulate([int(n) for n in args.simulate.split(",")], args.trials, args.seed)
    with tempfile.TemporaryDirectory(prefix="meshcache-config-") as tmp:
        base = Path(tmp)
        nodes: list[NodeProcess] = []
        try:
            voter = NodeProcess(base / "v", "--profile", args.profile, "--bootstrap").start()
            nodes.append(voter)
            for i in range(1, args.nodes):
                nodes.append(
                    NodeProcess(
                        base / f"n{i}", "--profile", args.profile, "--join", voter.data
                    ).start()
                )
            with Client(voter.data) as c:
                _wait(lambda: len(c.ring()["members"]) == args.nodes, 60, "the ring")
            spreads = []
            with Client(voter.data) as c:
                for i in range(args.changes):
                    version = c.ns_set("figures", {"max_items": 1000 + i})
                    version = c.config()["version"]

                    def everywhere(v: int = version) -> bool:
                        return all(v in _installs(n.log_file) for n in nodes)

                    _wait(everywhere, 30, f"version {version} everywhere")
                    times = [_installs(n.log_file)[version] for n in nodes]
                    spreads.append(max(times) - _installs(voter.log_file)[version])
                    time.sleep(0.2)  # let gossip settle so each change is measured alone
                before = c.raft_status()
                t0 = time.monotonic()
                done = 0
                while done < args.data_ops:
                    with c.pipeline() as p:
                        for j in range(100):
                            p.set(f"k{done + j}", b"x" * 100)
                            p.get(f"k{done + j}")
                        p.execute()
                    done += 100
                elapsed = time.monotonic() - t0
                after = c.raft_status()
        finally:
            for n in nodes:
                n.kill()
    print("| figure | value |")
    print("|---|---|")
    print(
        f"| commit → applied on all {args.nodes} nodes ({args.profile}), p50 / p99 / max | "
        f"{percentile(spreads, 0.5) * 1000:.0f} ms / {percentile(spreads, 0.99) * 1000:.0f} ms"
        f" / {max(spreads) * 1000:.0f} ms (mean {statistics.mean(spreads) * 1000:.0f} ms,"
        f" {len(spreads)} changes) |"
    )
    print(
        f"| Raft entries committed during {2 * done:,} GET/SET ({elapsed:.1f} s) | "
        f"{after['commit_index'] - before['commit_index']} "
        f"(commit index {before['commit_index']} → {after['commit_index']}) |"
    )
    return 0


def simulate(sizes: list[int], trials: int, seed: int) -> int:
    from tools.gossip_sim import dissemination

    pull_rtt = 2 * 0.001
    print("| simulated nodes | commit -> applied on all, median (max) over trials | seed |")
    print("|---:|---|---:|")
    for n in sizes:
        result = dissemination(n, 0.0, seed, trials=trials, fractions=(1.0,))
        times = sorted(t[1.0] if t[1.0] is not None else float("inf") for t in result.trials)
        median = statistics.median_high(times) + pull_rtt
        worst = times[-1] + pull_rtt
        print(f"| {n} | {median * 1000:.0f} ms (max {worst * 1000:.0f} ms) | {seed} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
