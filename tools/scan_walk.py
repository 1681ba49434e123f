"""How long a whole ``SCAN`` walk and a ``KEYS *`` take, beside redis-server, and what a walk
costs the node's other clients.

Fills redis-server, one meshcache node and a 3-node meshcache mesh (RESP ports) with the same
keys (``redis-benchmark -t set -r N``, 10-byte values), then walks each with redis-py's
``scan_iter`` at ``COUNT`` 10 and 1000 and runs ``KEYS *``; on the mesh through node 0, while a
second client reads one key from node 1 in a loop (its latency is the walk's cost to others).
Each walk must give every key (a walk that gives a key twice is counted and reported). ::

    python -m tools.scan_walk --keys 300000 --runs 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import redis

from meshcache.testing.mesh import Mesh
from tools.bench.servers import redis_server
from tools.resp_bench import resp_node

COUNTS = (10, 1000)


def fill(port: int, keys: int) -> None:
    """About ``keys`` distinct keys (redis-benchmark draws them; a few are never drawn)."""
    subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "set", "-n", str(keys * 3), "-r", str(keys),
         "-d", "10", "-P", "32", "-c", "8", "-q"],
        check=True,
        capture_output=True,
    )  # fmt: skip


def walks(name: str, port: int, runs: int, probe_port: int | None) -> list[str]:
    """One line per walk and one for ``KEYS *`` (and, with ``probe_port``, one of the other
    client's GETs with no walk)."""
    client = redis.Redis(port=port)
    lines: list[str] = []
    try:
        size = client.dbsize()
        if probe_port is not None:
            with probing(probe_port) as latencies:
                time.sleep(1.0)  # a measurement window, not a wait for a condition
            lines.append(f"{name}: no walk: a GET on another node {_quantiles(latencies)}")
        for count in COUNTS:
            for _ in range(runs):
                with probing(probe_port) as latencies:
                    started = time.perf_counter()
                    walked = list(client.scan_iter(count=count))
                    took = time.perf_counter() - started
                distinct = len(set(walked))
                line = (
                    f"{name}: walk COUNT {count}: {distinct:,} of {size:,} keys"
                    f" ({len(walked) - distinct} twice) in {took:.2f} s"
                )
                if latencies:
                    line += f"; a GET on another node meanwhile {_quantiles(latencies)}"
                lines.append(line)
        started = time.perf_counter()
        got = len(client.keys())
        lines.append(f"{name}: KEYS *: {got:,} keys in {time.perf_counter() - started:.2f} s")
    finally:
        client.close()
    return lines


@contextmanager
def probing(port: int | None) -> Iterator[list[float]]:
    """The latencies of GETs another client sends to ``port`` in a loop while the block runs
    (none without a port). The client is a process of its own: a thread here would wait for
    the interpreter lock while this process decodes the walk's replies."""
    latencies: list[float] = []
    if port is None:
        yield latencies
        return
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    ready = context.Event()
    receiving, sending = context.Pipe(duplex=False)
    prober = context.Process(target=_probe, args=(port, stop, ready, sending), daemon=True)
    prober.start()
    try:
        ready.wait(30)
        yield latencies
    finally:
        stop.set()
        if receiving.poll(30):
            latencies += receiving.recv()
        prober.join(30)
        receiving.close()
        sending.close()


def _probe(port: int, stop: Any, ready: Any, sending: Any) -> None:
    other = redis.Redis(port=port)
    measured: list[float] = []
    try:
        other.ping()
        ready.set()
        while not stop.is_set():
            started = time.perf_counter()
            other.get("key:000000000001")
            measured.append(time.perf_counter() - started)
    finally:
        other.close()
        sending.send(measured)


def _quantiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)

    def ms(q: float) -> str:
        return f"{ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3:.2f}"

    return f"p50 {ms(0.5)}, p99 {ms(0.99)}, max {ordered[-1] * 1e3:.1f} ms ({len(ordered):,} GETs)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=300_000, help="keys drawn (default 300000)")
    parser.add_argument("--runs", type=int, default=2, help="walks per COUNT (default 2)")
    a = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scan-walk-") as tmp:
        with redis_server() as server:
            fill(server.port, a.keys)
            for line in walks("redis-server", server.port, a.runs, None):
                print(line, flush=True)
        with resp_node(data_dir=Path(tmp) / "one") as node:
            fill(node.resp_port, a.keys)
            for line in walks("meshcache, one node", node.resp_port, a.runs, None):
                print(line, flush=True)
        with ExitStack() as stack:
            mesh = Mesh(stack, Path(tmp) / "mesh", 3, "--resp-port", "0")
            ports = []
            for member in mesh.nodes:
                assert member.resp_address is not None
                ports.append(member.resp_address[1])
            fill(ports[0], a.keys)
            name = "meshcache, 3 nodes through node 0"
            for line in walks(name, ports[0], a.runs, ports[1]):
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
