"""Instructions a node process executes per request, counted by valgrind (callgrind).

On a shared 2-core machine wall-clock and even CPU-time figures swing by tens of percent with
whatever else runs; the number of instructions the node executes for a fixed request count does
not. This starts ``python -m meshcache start`` from a source tree under callgrind, drives a
warm-up, zeroes the counters (``callgrind_control -z``), drives ``--requests`` requests (90% GET,
10% SET of 100-byte values over 1,000 keys, ``--depth`` pipelined on one connection), dumps the
counters and prints user-space instructions per request. The kernel's work (``send``/``recv``)
is not counted: at depth 16 the node's CPU is nearly all user time, at depth 1 about 60% of it.

Compare two versions by running it on two trees, e.g. the commit before a change::

    git archive <commit> | tar -x -C /tmp/before
    python -m tools.instructions --tree /tmp/before --depth 16
    python -m tools.instructions --tree . --depth 16

Background tasks (gossip, the loop monitor) run during the measured part too; they are the same
for both trees but make a run differ from the next by a few tenths of a percent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshcache.wire import FrameReader, encode_request

START_TIMEOUT = 600.0  # seconds: a node's imports are ~50x slower under valgrind


def drive(sock: socket.socket, reader: FrameReader, first: int, n: int, depth: int) -> None:
    """Send ``n`` requests ``depth`` at a time and read every answer."""
    rid = first
    sent = 0
    while sent < n:
        k = min(depth, n - sent)
        frames = []
        for _ in range(k):
            rid += 1
            key = b"key:%d" % (rid % 1000)
            if rid % 10 == 0:
                frames.append(encode_request(rid, "SET", "default", [key, b"x" * 100]))
            else:
                frames.append(encode_request(rid, "GET", "default", [key]))
        sock.sendall(b"".join(frames))
        got = 0
        while got < k:
            while reader.next_body() is not None:
                got += 1
            if got < k:
                data = sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("the node closed the connection")
                reader.feed(data)
        sent += k


def measure(tree: Path, depth: int, requests: int, warmup: int) -> float:
    """Instructions per request of a node started from ``tree``."""
    tmp = Path(tempfile.mkdtemp(prefix="meshcache-instructions-"))
    data = tmp / "data"
    data.mkdir()
    out = tmp / "callgrind.out"
    argv = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", "--dump-instr=no",
        sys.executable, "-m", "meshcache", "start",
        "--port", "0", "--admin-port", "0", "--data-dir", str(data),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    log = (tmp / "node.log").open("wb")
    proc = subprocess.Popen(argv, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = data / "node.json"
        deadline = time.monotonic() + START_TIMEOUT
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (tmp / "node.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"the node did not start:\n{tail}")
            time.sleep(0.5)
        host, _, port = json.loads(ready.read_text())["data"].rpartition(":")
        with socket.create_connection((host.strip("[]"), int(port))) as sock:
            reader = FrameReader()
            drive(sock, reader, 0, warmup, depth)
            subprocess.run(
                ["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True
            )
            drive(sock, reader, warmup, requests, depth)
            subprocess.run(
                ["callgrind_control", "-d", "measured", str(proc.pid)],
                check=True,
                capture_output=True,
            )
        [dump] = [p for p in tmp.glob("callgrind.out.*.1")]
        summary = next(
            line for line in dump.read_text().splitlines() if line.startswith("summary:")
        )
        return int(summary.split()[1]) / requests
    finally:
        proc.terminate()
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.instructions", description=__doc__)
    parser.add_argument("--tree", type=Path, default=Path.cwd(), help="source tree of the node")
    parser.add_argument("--depth", type=int, default=16, help="pipeline depth (16)")
    parser.add_argument("--requests", type=int, default=20_000, help="measured requests (20000)")
    parser.add_argument("--warmup", type=int, default=3_000, help="requests before (3000)")
    ns = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    per_request = measure(ns.tree.resolve(), ns.depth, ns.requests, ns.warmup)
    print(
        f"{ns.tree}: {per_request:,.0f} instructions per request "
        f"(depth {ns.depth}, {ns.requests:,} requests, 90/10 GET/SET)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
