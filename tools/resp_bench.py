"""redis-benchmark, unmodified, against redis-server and a meshcache node's RESP port.

    python -m tools.resp_bench                # 3 runs of GET/SET at -P 1 and -P 16, a table
    python -m tools.resp_bench --runs 5 --requests 200000 --pipelines 1 16
    python -m tools.resp_bench --mesh --suite # also a 3-node mesh through one node, and the
                                              # default suite of every test
    python -m tools.resp_bench --keyspace 0   # without -r: every request on one key

Each run starts nothing new: one redis-server and one meshcache node (``meshcache start
--resp-port 0``, its own process) are started once, and every run measures both, one after
the other, with the same command line:

    redis-benchmark -h 127.0.0.1 -p PORT -t get,set -c 50 -d 100 -n 200000 -r 100000 -P DEPTH --csv

With ``--mesh``, a 3-node mesh (every node with a RESP port) is measured too, redis-benchmark
talking to node 0 only, as any Redis client does: about two keys in three are another node's,
and node 0 passes each such request on to its owner. Its CPU per request is the three nodes'
together. With ``--suite``, each run also runs redis-benchmark's default suite (every test,
as ``redis-benchmark -q`` does, at ``-P 1``, ``--suite-requests`` each) on every server.

The machine's load (``/proc/loadavg``, what ``uptime`` prints) is recorded before each run:
on a shared machine the figures move with it, so the report gives the median and the worst
ratio of the runs, never one run. A run whose redis-benchmark printed an error, or whose
server answered an error, is counted in the ``errors`` column (0 is the only good value).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
TESTS = ("SET", "GET")
#: ``-r`` by default: keys ``key:000000000000`` to ``key:000000099999``, spread over a mesh's
#: owners (``--keyspace 0``: no ``-r``, every request on the one key ``key:__rand_int__``).
KEYSPACE = 100_000
MESH = "mesh via node 0"


# --- a node with its RESP port -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RespNode:
    """A node process serving RESP: its RESP port and its data address (``host:port``)."""

    resp_port: int
    data: str
    data_dir: Path
    pid: int


@contextlib.contextmanager
def resp_node(
    *extra: str,
    data_dir: Path | None = None,
    log_level: str = "warning",
    timeout: float = 30.0,
) -> Iterator[RespNode]:
    """A meshcache node with a RESP port in its own process (``meshcache start --resp-port 0``),
    stopped on the way out. ``extra``: more ``meshcache start`` flags (``--bootstrap``,
    ``--join h:p`` ...)."""
    from meshcache.node.node import READY_FILE
    from meshcache.reaper import die_with_parent, temporary_directory

    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = stack.enter_context(temporary_directory("resp-"))
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "meshcache", "start", "--resp-port", "0", "--port", "0",
            "--admin-port", "0", "--data-dir", str(data_dir), "--log-level", log_level, *extra,
        ]  # fmt: skip
        log_path = data_dir / "node.log"
        log = stack.enter_context(open(log_path, "wb"))
        # SIGKILL if this process dies: a killed benchmark leaves no node behind.
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=_repo_root(),
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
        try:
            deadline = time.monotonic() + timeout
            while (info := _ready(data_dir / READY_FILE, proc.pid)) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the node did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.05)  # polling for the ready file, with a deadline
            resp_port = int(info["resp"].rsplit(":", 1)[1])
            yield RespNode(resp_port, info["data"], data_dir, proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _ready(path: Path, pid: int) -> dict[str, str] | None:
    """The node's ready file once this process wrote it (an older run's is ignored)."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("pid") == pid else None


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


# --- the benchmark -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    """One redis-benchmark invocation: requests per second by test, and errors seen."""

    server: str
    depth: int
    rps: dict[str, float]
    errors: int
    load: float
    #: The server processes' CPU time (user + system) per request, in microseconds: what a
    #: request costs, whatever else the machine runs (rps falls with the load, this does not).
    cpu_us: float
    #: ``get,set`` or ``suite`` (the default suite, every test).
    kind: str = "get,set"


def benchmark_argv(
    port: int,
    *,
    depth: int,
    requests: int,
    clients: int,
    size: int,
    suite: bool = False,
    keyspace: int = KEYSPACE,
) -> list[str]:
    """The unmodified redis-benchmark command line of one measurement; ``suite``: every test of
    the default suite rather than ``-t get,set``; ``keyspace`` 0: no ``-r`` (one key)."""
    tests = [] if suite else ["-t", "get,set"]
    keys = ["-r", str(keyspace)] if keyspace else []
    return [
        "redis-benchmark", "-h", HOST, "-p", str(port), *tests, "-c", str(clients),
        "-d", str(size), "-n", str(requests), *keys, "-P", str(depth), "--csv",
    ]  # fmt: skip


def load_average() -> float:
    """The 1-minute load average (what ``uptime`` prints first)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def error_replies(port: int) -> int:
    """The server's ``total_error_replies`` (INFO stats): redis-benchmark does not report the
    error replies it gets, so each run reads the count before and after."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n")
        data = b""
        while b"\r\n" not in data or len(data) < int(data[1 : data.index(b"\r\n")]) + 5:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith("total_error_replies:"):
            return int(line.split(":", 1)[1])
    raise RuntimeError(f"no total_error_replies in INFO stats of port {port}")


def cpu_seconds(*pids: int) -> float:
    """User + system CPU seconds of processes ``pids`` so far (/proc/PID/stat), together."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_benchmark(
    server: str,
    port: int,
    pids: tuple[int, ...],
    argv: list[str],
    depth: int,
    tests: tuple[str, ...] | None = TESTS,
) -> Result:
    """One redis-benchmark run against ``port``; ``tests``: the tests it must report (None:
    the default suite's, whatever this redis-benchmark runs)."""
    load = load_average()
    before = error_replies(port)
    cpu_before = cpu_seconds(*pids)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    cpu = cpu_seconds(*pids) - cpu_before
    rps: dict[str, float] = {}
    for row in csv.DictReader(io.StringIO(done.stdout)):
        rps[row["test"]] = float(row["rps"])
    errors = error_replies(port) - before + (done.returncode != 0)
    if tests is not None and set(rps) != set(tests):
        errors += 1
    if not rps:
        errors += 1
    requests = int(argv[argv.index("-n") + 1]) * max(1, len(rps))
    kind = "get,set" if tests is not None else "suite"
    return Result(server, depth, rps, errors, load, 1e6 * cpu / requests, kind)


@contextlib.contextmanager
def resp_mesh(nodes: int = 3) -> Iterator[tuple[int, tuple[int, ...]]]:
    """A mesh of ``nodes`` real node processes, every one with a RESP port: node 0's RESP port
    and every node's pid. Stopped on the way out."""
    from meshcache.reaper import temporary_directory
    from meshcache.testing.mesh import Mesh

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(temporary_directory("resp-mesh-"))
        mesh = Mesh(stack, tmp, nodes, "--resp-port", "0")
        resp = mesh.nodes[0].resp_address
        assert resp is not None
        yield resp[1], tuple(n.pid for n in mesh.nodes)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m tools.resp_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--pipelines", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--json", type=Path, help="also write every result here")
    parser.add_argument(
        "--mesh", action="store_true", help="also a 3-node mesh, through node 0's RESP port"
    )
    parser.add_argument(
        "--suite", action="store_true", help="also redis-benchmark's default suite, at -P 1"
    )
    parser.add_argument("--suite-requests", type=int, default=20_000)
    parser.add_argument(
        "--keyspace",
        type=int,
        default=KEYSPACE,
        help=f"redis-benchmark's -r (default {KEYSPACE}); 0: no -r, every request on one key",
    )
    args = parser.parse_args(argv)

    from tools.bench.servers import redis_server

    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        node = stack.enter_context(resp_node())
        servers: dict[str, tuple[int, tuple[int, ...]]] = {
            "redis-server": (redis.port, (redis.proc.pid,)),
            "meshcache": (node.resp_port, (node.pid,)),
        }
        if args.mesh:
            servers[MESH] = stack.enter_context(resp_mesh())
        for run in range(args.runs):
            for depth in args.pipelines:
                for name, (port, pids) in servers.items():
                    bench = benchmark_argv(port, depth=depth, requests=args.requests,
                                           clients=args.clients, size=args.size,
                                           keyspace=args.keyspace)  # fmt: skip
                    result = run_benchmark(name, port, pids, bench, depth)
                    results.append(result)
                    _progress(run, result)
            if args.suite:
                for name, (port, pids) in servers.items():
                    bench = benchmark_argv(port, depth=1, requests=args.suite_requests,
                                           clients=args.clients, size=args.size,
                                           suite=True, keyspace=args.keyspace)  # fmt: skip
                    result = run_benchmark(name, port, pids, bench, 1, tests=None)
                    results.append(result)
                    _progress(run, result)
    print(report(results, args, list(servers)))
    if args.suite:
        print()
        print(suite_report(results, args, list(servers)))
    if args.json is not None:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    return 1 if any(r.errors for r in results) else 0


def _progress(run: int, result: Result) -> None:
    tests = " ".join(f"{t} {result.rps.get(t, 0):9.0f}/s" for t in TESTS)
    if result.kind == "suite":
        tests = f"{len(result.rps)} tests"
    print(f"run {run + 1} {result.kind} -P {result.depth:<2} {result.server:<15} "
          f"load {result.load:5.2f} {tests} cpu {result.cpu_us:5.2f} us/request "
          f"errors {result.errors}", file=sys.stderr, flush=True)  # fmt: skip


def _ratios(redis: list[Result], other: list[Result], test: str) -> list[float]:
    """Each run's requests a second of ``other`` over redis-server's in ``test``."""
    pairs = zip(redis, other, strict=True)
    return [m.rps.get(test, 0.0) / r.rps[test] for r, m in pairs if r.rps.get(test)]


def _keys(args: argparse.Namespace) -> str:
    return f"-r {args.keyspace}" if args.keyspace else "(no -r: one key)"


def report(results: list[Result], args: argparse.Namespace, servers: list[str]) -> str:
    """A markdown table: per depth and test, each server's median rps, and each meshcache's
    ratio to redis-server (median and worst over the runs; each run's ratio compares the
    measurements of that run), and the servers' CPU per request."""
    plain = [r for r in results if r.kind == "get,set"]
    others = servers[1:]
    lines = [
        f"redis-benchmark -t get,set -c {args.clients} -d {args.size} -n {args.requests} "
        f"{_keys(args)}, {args.runs} runs; 1-minute load before the runs: "
        + ", ".join(f"{r.load:.2f}" for r in plain),
        "",
        "| -P | test | "
        + " | ".join(f"{name} rps (median)" for name in servers)
        + " | "
        + " | ".join(f"{name} ÷ redis, median (worst)" for name in others)
        + " | server CPU µs per request ("
        + " / ".join(servers)
        + ") | errors |",
        "|---|---|" + "---|" * (len(servers) + len(others) + 2),
    ]
    for depth in args.pipelines:
        by = {n: [r for r in plain if r.depth == depth and r.server == n] for n in servers}
        redis = by["redis-server"]
        for test in TESTS:
            cells = [f"{statistics.median(r.rps.get(test, 0) for r in by[n]):.0f}" for n in servers]
            for name in others:
                ratios = _ratios(redis, by[name], test)
                cells.append(f"{statistics.median(ratios):.2f} ({min(ratios):.2f})")
            cpu = " / ".join(f"{statistics.median(r.cpu_us for r in by[n]):.1f}" for n in servers)
            errors = sum(r.errors for n in servers for r in by[n])
            lines.append(f"| {depth} | {test} | " + " | ".join(cells) + f" | {cpu} | {errors} |")
    return "\n".join(lines)


def suite_report(results: list[Result], args: argparse.Namespace, servers: list[str]) -> str:
    """The default suite: per test, each server's median rps and each meshcache's median ratio
    to redis-server, and the errors of every run."""
    suite = [r for r in results if r.kind == "suite"]
    by = {n: [r for r in suite if r.server == n] for n in servers}
    others = servers[1:]
    tests = list(by["redis-server"][0].rps) if by["redis-server"] else []
    lines = [
        f"redis-benchmark (default suite) -c {args.clients} -d {args.size} "
        f"-n {args.suite_requests} {_keys(args)} -P 1, {args.runs} runs; errors: "
        + ", ".join(f"{n} {sum(r.errors for r in by[n])}" for n in servers),
        "",
        "| test | "
        + " | ".join(f"{name} rps (median)" for name in servers)
        + " | "
        + " | ".join(f"{name} ÷ redis (median)" for name in others)
        + " |",
        "|---|" + "---|" * (len(servers) + len(others)),
    ]
    for test in tests:
        cells = [f"{statistics.median(r.rps.get(test, 0) for r in by[n]):.0f}" for n in servers]
        for name in others:
            ratios = _ratios(by["redis-server"], by[name], test)
            cells.append(f"{statistics.median(ratios):.2f}" if ratios else "-")
        lines.append(f"| {test} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
