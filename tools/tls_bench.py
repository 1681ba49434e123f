"""TLS against plaintext on one node: both protocols, depth 1 and 16, alternating in one run.

    python -m tools.tls_bench                       # 3 rounds, a table for docs/benchmarks.md
    python -m tools.tls_bench --rounds 5 --requests 100000

Two node processes are started once (``meshcache start --resp-port 0``): one plaintext, one
with a development CA's certificate (``tls_cert_file``, ``tls_key_file``, ``tls_ca_file``).
Every round measures, for each depth, the plaintext node and then the TLS node (the order
swaps every round), with the same load:

* RESP: ``redis-benchmark -t get,set -c 50 -d 100 -P DEPTH`` (with ``--tls --cacert`` against
  the TLS node), unmodified, so the load generator is C and the node is the bottleneck;
* msgpack (the data port): this script's generator, ``--conns`` connections on one thread, each
  keeping ``DEPTH`` GETs (90 %) and SETs of 100-byte values in flight. It is Python, so its ops/s
  are bounded by the generator as much as by the node; the node's CPU per request is not.

Each measurement records the node process's CPU time (user + system, /proc/PID/stat) per
request, ops/s, and the 1-minute load average. The report gives per measure the median and the
worst of the rounds' TLS / plaintext ratios (one ratio per round, A and B measured minutes
apart at most).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from meshcache.security import tls
from meshcache.wire.frame import FrameReader, encode_request
from tools.resp_bench import (
    RespNode,
    benchmark_argv,
    cpu_seconds,
    load_average,
    resp_node,
    run_benchmark,
)


@dataclass(frozen=True, slots=True)
class Measure:
    protocol: str  # "resp" or "msgpack"
    mode: str  # "plain" or "tls"
    depth: int
    ops_s: float
    cpu_us: float
    load: float
    errors: int


@contextlib.contextmanager
def nodes(root: Path) -> Iterator[tuple[RespNode, RespNode, Path]]:
    pki = root / "pki"
    tls.make_ca(pki)
    cert = tls.make_node_cert(pki, "node")
    flags = ["--tls-cert-file", str(cert.cert), "--tls-key-file", str(cert.key)]
    flags += ["--tls-ca-file", str(pki / tls.CA_CERT)]
    with (
        resp_node(data_dir=root / "plain") as plain,
        resp_node(*flags, data_dir=root / "tls") as secure,
    ):
        yield plain, secure, pki / tls.CA_CERT


def resp_measure(node: RespNode, mode: str, ca: Path, depth: int, requests: int) -> Measure:
    argv = benchmark_argv(node.resp_port, depth=depth, requests=requests, clients=50, size=100)
    if mode == "tls":
        argv += ["--tls", "--cacert", str(ca)]
    # run_benchmark reads INFO over a plaintext socket: give it a port that speaks plaintext
    # for that (the TLS node's counts come from its own run below).
    if mode == "tls":
        load = load_average()
        cpu_before = cpu_seconds(node.pid)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        cpu = cpu_seconds(node.pid) - cpu_before
        rps = [
            float(line.split(",")[1].strip('"'))
            for line in done.stdout.splitlines()[1:]
            if line.count(",") >= 1
        ]
        errors = int(done.returncode != 0) + int(len(rps) != 2)
        return Measure("resp", mode, depth, sum(rps) / max(1, len(rps)),
                       1e6 * cpu / (2 * requests), load, errors)  # fmt: skip
    result = run_benchmark("plain", node.resp_port, node.pid, argv, depth)
    ops = sum(result.rps.values()) / max(1, len(result.rps))
    return Measure("resp", mode, depth, ops, result.cpu_us, result.load, result.errors)


def msgpack_measure(
    node: RespNode, mode: str, ca: Path, depth: int, requests: int, conns: int
) -> Measure:
    host, port = node.data.rsplit(":", 1)
    ctx = tls.client_context(ca) if mode == "tls" else None
    rng = random.Random(1)
    value = b"v" * 100
    socks: list[socket.socket] = []
    try:
        for _ in range(conns):
            raw = socket.create_connection((host, int(port)), timeout=30)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw)
        batches = []
        for b in range(64):
            frames = []
            for i in range(depth):
                key = f"k{rng.randrange(10_000)}".encode()
                if rng.random() < 0.9:
                    frames.append(encode_request(b * depth + i, "GET", "default", [key]))
                else:
                    frames.append(encode_request(b * depth + i, "SET", "default", [key, value, {}]))
            batches.append(b"".join(frames))
        readers = [FrameReader() for _ in socks]
        rounds = max(1, requests // (depth * conns))
        load = load_average()
        cpu_before = cpu_seconds(node.pid)
        start = time.perf_counter()
        errors = 0
        for r in range(rounds):
            batch = batches[r % len(batches)]
            for s in socks:
                s.sendall(batch)
            for s, reader in zip(socks, readers, strict=True):
                got = 0
                while got < depth:
                    while got < depth and reader.next_body() is not None:
                        got += 1
                    if got < depth:
                        data = s.recv(1 << 16)
                        if not data:
                            raise RuntimeError("the node closed a connection")
                        reader.feed(data)
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(node.pid) - cpu_before
    finally:
        for s in socks:
            s.close()
    done = rounds * depth * conns
    return Measure("msgpack", mode, depth, done / elapsed, 1e6 * cpu / done, load, errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.tls_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100_000, help="per test and depth")
    parser.add_argument("--conns", type=int, default=8, help="msgpack connections")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args(argv)
    measures: list[Measure] = []
    with tempfile.TemporaryDirectory(prefix="tls-bench-") as tmp, nodes(Path(tmp)) as found:
        plain, secure, ca = found
        for r in range(args.rounds):
            order = [("plain", plain), ("tls", secure)]
            if r % 2:
                order.reverse()
            for depth in args.depths:
                for mode, node in order:
                    measures.append(resp_measure(node, mode, ca, depth, args.requests))
                    n = args.requests // (4 if depth == 1 else 1)
                    measures.append(msgpack_measure(node, mode, ca, depth, n, args.conns))
                    last = measures[-2:]
                    for m in last:
                        print(
                            f"round {r + 1} {m.protocol:7} {m.mode:5} depth {m.depth:2}: "
                            f"{m.ops_s:9,.0f} ops/s  {m.cpu_us:6.2f} µs CPU/request  "
                            f"load {m.load:.1f}  errors {m.errors}",
                            file=sys.stderr,
                            flush=True,
                        )
    print(report(measures, args.rounds))
    return 0


def report(measures: list[Measure], rounds: int) -> str:
    lines = [
        "| protocol | depth | plaintext ops/s (median) | TLS ops/s (median) | TLS/plain ops/s, "
        "median (worst) | plaintext CPU µs/req | TLS CPU µs/req | TLS/plain CPU, median (worst) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(m.protocol, m.depth) for m in measures}, key=lambda k: (k[0] != "resp", k))
    for protocol, depth in keys:
        plain = [m for m in measures if (m.protocol, m.depth, m.mode) == (protocol, depth, "plain")]
        sec = [m for m in measures if (m.protocol, m.depth, m.mode) == (protocol, depth, "tls")]
        ops_ratio = [t.ops_s / p.ops_s for p, t in zip(plain, sec, strict=True)]
        cpu_ratio = [t.cpu_us / p.cpu_us for p, t in zip(plain, sec, strict=True)]
        lines.append(
            f"| {protocol} | {depth} | {statistics.median(m.ops_s for m in plain):,.0f} "
            f"| {statistics.median(m.ops_s for m in sec):,.0f} "
            f"| {statistics.median(ops_ratio):.2f} ({min(ops_ratio):.2f}) "
            f"| {statistics.median(m.cpu_us for m in plain):.2f} "
            f"| {statistics.median(m.cpu_us for m in sec):.2f} "
            f"| {statistics.median(cpu_ratio):.2f} ({max(cpu_ratio):.2f}) |"
        )
    loads = [m.load for m in measures]
    errors = sum(m.errors for m in measures)
    lines.append("")
    lines.append(
        f"{rounds} rounds, load average {min(loads):.1f} to {max(loads):.1f}, errors {errors}; "
        f"TLS: {ssl.OPENSSL_VERSION}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
