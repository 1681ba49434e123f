"""Running redis-benchmark and reading its CSV output."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedisBenchmarkRow:
    """One test line of ``redis-benchmark --csv`` (latencies in milliseconds)."""

    test: str
    rps: float
    p50_ms: float
    p99_ms: float


def available() -> bool:
    return shutil.which("redis-benchmark") is not None


def command(
    port: int, test: str, *, conns: int, value_size: int, depth: int, requests: int, keys: int
) -> list[str]:
    return [
        "redis-benchmark",
        "-h", "127.0.0.1",
        "-p", str(port),
        "-t", test,
        "-n", str(requests),
        "-c", str(conns),
        "-d", str(value_size),
        "-P", str(depth),
        "-r", str(keys),
        "--csv",
    ]  # fmt: skip


def run(argv: list[str], timeout: float = 600.0) -> list[RedisBenchmarkRow]:
    """Run redis-benchmark with ``argv`` (from :func:`command`) and parse its CSV."""
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True).stdout
    rows = []
    for rec in csv.DictReader(io.StringIO(out)):
        rows.append(
            RedisBenchmarkRow(
                test=rec["test"],
                rps=float(rec["rps"]),
                p50_ms=float(rec["p50_latency_ms"]),
                p99_ms=float(rec["p99_latency_ms"]),
            )
        )
    return rows
