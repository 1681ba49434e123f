"""redis-benchmark, unmodified, against redis-server and a meshcache node's RESP port.

    python -m tools.resp_bench                # 3 runs of GET/SET at -P 1 and -P 16, a table
    python -m tools.resp_bench --runs 5 --requests 200000 --pipelines 1 16

Each run starts nothing new: one redis-server and one meshcache node (``meshcache start
--resp-port 0``, its own process) are started once, and every run measures both, one after
the other, with the same command line:

    redis-benchmark -h 127.0.0.1 -p PORT -t get,set -c 50 -d 100 -n 200000 -P DEPTH --csv

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
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
TESTS = ("SET", "GET")


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

    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="resp-")))
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "meshcache", "start", "--resp-port", "0", "--port", "0",
            "--admin-port", "0", "--data-dir", str(data_dir), "--log-level", log_level, *extra,
        ]  # fmt: skip
        log_path = data_dir / "node.log"
        log = stack.enter_context(open(log_path, "wb"))
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=_repo_root())
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
    #: The server process's CPU time (user + system) per request, in microseconds: what a
    #: request costs, whatever else the machine runs (rps falls with the load, this does not).
    cpu_us: float


def benchmark_argv(port: int, *, depth: int, requests: int, clients: int, size: int) -> list[str]:
    """The unmodified redis-benchmark command line of one measurement."""
    return [
        "redis-benchmark", "-h", HOST, "-p", str(port), "-t", "get,set",
        "-c", str(clients), "-d", str(size), "-n", str(requests), "-P", str(depth), "--csv",
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_benchmark(server: str, port: int, pid: int, argv: list[str], depth: int) -> Result:
    load = load_average()
    before = error_replies(port)
    cpu_before = cpu_seconds(pid)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    cpu = cpu_seconds(pid) - cpu_before
    rps: dict[str, float] = {}
    for row in csv.DictReader(io.StringIO(done.stdout)):
        rps[row["test"]] = float(row["rps"])
    errors = error_replies(port) - before + (done.returncode != 0)
    if set(rps) != set(TESTS):
        errors += 1
    requests = int(argv[argv.index("-n") + 1]) * len(TESTS)
    return Result(server, depth, rps, errors, load, 1e6 * cpu / requests)


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
    args = parser.parse_args(argv)

    from tools.bench.servers import redis_server

    results: list[Result] = []
    with redis_server() as redis, resp_node() as mesh:
        servers = {
            "redis-server": (redis.port, redis.proc.pid),
            "meshcache": (mesh.resp_port, mesh.pid),
        }
        for run in range(args.runs):
            for depth in args.pipelines:
                for name, (port, pid) in servers.items():
                    bench = benchmark_argv(port, depth=depth, requests=args.requests,
                                           clients=args.clients, size=args.size)  # fmt: skip
                    result = run_benchmark(name, port, pid, bench, depth)
                    results.append(result)
                    print(f"run {run + 1} -P {depth:<2} {name:<12} load {result.load:5.2f} "
                          + " ".join(f"{t} {result.rps.get(t, 0):9.0f}/s" for t in TESTS)
                          + f" cpu {result.cpu_us:5.2f} us/request errors {result.errors}",
                          file=sys.stderr, flush=True)  # fmt: skip
    print(report(results, args))
    if args.json is not None:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    return 1 if any(r.errors for r in results) else 0


def report(results: list[Result], args: argparse.Namespace) -> str:
    """A markdown table: per depth and test, each server's median rps and the ratio's median
    and worst over the runs (each run's ratio compares the two measurements of that run)."""
    lines = [
        f"redis-benchmark -t get,set -c {args.clients} -d {args.size} -n {args.requests}, "
        f"{args.runs} runs; 1-minute load before the runs: "
        + ", ".join(f"{r.load:.2f}" for r in results),
        "",
        "| -P | test | redis-server rps (median) | meshcache rps (median) | ratio median | "
        "ratio worst | server CPU µs per request of the run (redis / meshcache) | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for depth in args.pipelines:
        redis = [r for r in results if r.depth == depth and r.server == "redis-server"]
        mesh = [r for r in results if r.depth == depth and r.server == "meshcache"]
        for test in TESTS:
            ratios = [
                m.rps.get(test, 0.0) / r.rps[test]
                for r, m in zip(redis, mesh, strict=True)
                if r.rps.get(test)
            ]
            errors = sum(r.errors for r in redis + mesh)
            lines.append(
                f"| {depth} | {test} | {statistics.median(r.rps.get(test, 0) for r in redis):.0f} "
                f"| {statistics.median(m.rps.get(test, 0) for m in mesh):.0f} "
                f"| {statistics.median(ratios):.2f} | {min(ratios):.2f} "
                f"| {statistics.median(r.cpu_us for r in redis):.1f} / "
                f"{statistics.median(m.cpu_us for m in mesh):.1f} | {errors} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
