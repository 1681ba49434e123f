"""Client benchmark: ops/s and client CPU per op of every front end against a real node.

Run: ``.venv/bin/python -m tools.bench_client [--seconds 1.5] [--only sync,trio,asyncio,raw]``

Starts one node (``meshcache start`` in its own process, data dir in a temp dir), stores 1000 keys
of 100-byte values, then times, for each front end, for ``--seconds`` each:

* sequential GET and SET (one request in flight);
* pipelined GET and SET, 100 per pipeline (``--pipeline``);
* sync only: ``--threads`` threads sharing one ``meshcache.Client``.

``raw socket`` is the floor on this machine: a pre-encoded GET (or SET) frame written with a
blocking ``sendall`` and its answer read with ``recv_into``, no client library at all. ``raw
trio`` and ``raw asyncio`` are the floors of each event loop: the same frame sent and its answer
awaited with the least the loop allows (``wait_readable``; a protocol and a future).

Client CPU is ``time.process_time()`` of this process (every thread) divided by the ops done, so
it does not count the node's work and is far less disturbed by other load than ops/s is; the
node's CPU per op (from /proc) is shown too, to tell who was the bottleneck. Each row is the best
of ``--repeat`` runs by client CPU. Output is a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import trio

import meshcache
from meshcache.testing.nodes import NodeProcess

VALUE = bytes(range(100))
KEYS = [b"bench:%04d" % i for i in range(1000)]
_HEADER = struct.Struct(">I")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    client: str
    workload: str
    ops: int
    wall: float
    cpu: float
    node_cpu: float

    def cells(self) -> list[str]:
        return [
            self.client,
            self.workload,
            f"{self.ops / self.wall:,.0f}",
            f"{self.cpu / self.ops * 1e6:.1f}",
            f"{self.node_cpu / self.ops * 1e6:.1f}",
        ]


def _node_cpu(pid: int) -> float:
    """User + system CPU seconds of the node process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


class Meter:
    """Times one run: wall clock, this process's CPU and the node's CPU."""

    def __init__(self, node_pid: int) -> None:
        self.node_pid = node_pid

    def __enter__(self) -> Meter:
        self.node0 = _node_cpu(self.node_pid)
        self.cpu0 = time.process_time()
        self.wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        self.node = _node_cpu(self.node_pid) - self.node0


# -- the bare-socket floor -----------------------------------------------------------------------


def _frame(obj: Any) -> bytes:
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    return _HEADER.pack(len(body)) + body


def raw_loop(address: tuple[str, int], op: str, seconds: float) -> int:
    """One pre-encoded request at a time on a blocking socket; answers framed, not decoded."""
    args: list[Any] = [KEYS[0]] if op == "GET" else [KEYS[0], VALUE, {}]
    request = _frame([1, op, "default", args])
    sock = socket.create_connection(address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(65536)
    view = memoryview(buf)
    ops = 0
    deadline = time.perf_counter() + seconds
    try:
        while True:
            for _ in range(256):
                sock.sendall(request)
                got = sock.recv_into(view)
                while got < 4 or got < 4 + _HEADER.unpack_from(buf)[0]:
                    got += sock.recv_into(view[got:])
            ops += 256
            if time.perf_counter() >= deadline:
                return ops
    finally:
        sock.close()


async def raw_trio_loop(address: tuple[str, int], op: str, seconds: float) -> int:
    """The trio floor: a pre-encoded request, ``send``, ``wait_readable``, ``recv``."""
    args: list[Any] = [KEYS[0]] if op == "GET" else [KEYS[0], VALUE, {}]
    request = _frame([1, op, "default", args])
    sock = socket.create_connection(address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    ops = 0
    deadline = time.perf_counter() + seconds
    try:
        while True:
            for _ in range(256):
                sock.send(request)
                data = b""
                while len(data) < 4 or len(data) < 4 + _HEADER.unpack_from(data)[0]:
                    await trio.lowlevel.wait_readable(sock)
                    data += sock.recv(65536)
            ops += 256
            if time.perf_counter() >= deadline:
                return ops
    finally:
        trio.lowlevel.notify_closing(sock)
        sock.close()


class _RawProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.data += data
        size = len(self.data)
        if size >= 4 and size >= 4 + _HEADER.unpack_from(self.data)[0]:
            self.data = b""
            if self.waiter is not None:
                self.waiter.set_result(None)


async def raw_asyncio_loop(address: tuple[str, int], op: str, seconds: float) -> int:
    """The asyncio floor: a pre-encoded request, ``transport.write``, a future per answer."""
    args: list[Any] = [KEYS[0]] if op == "GET" else [KEYS[0], VALUE, {}]
    request = _frame([1, op, "default", args])
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_RawProtocol, *address)
    ops = 0
    deadline = time.perf_counter() + seconds
    try:
        while True:
            for _ in range(256):
                proto.waiter = loop.create_future()
                transport.write(request)
                await proto.waiter
            ops += 256
            if time.perf_counter() >= deadline:
                return ops
    finally:
        transport.close()


# -- sync ----------------------------------------------------------------------------------------


def sync_sequential(client: meshcache.Client, op: str, seconds: float) -> int:
    get, set_ = client.get, client.set
    ops = 0
    deadline = time.perf_counter() + seconds
    while True:
        if op == "GET":
            for key in KEYS[:256]:
                get(key)
        else:
            for key in KEYS[:256]:
                set_(key, VALUE)
        ops += 256
        if time.perf_counter() >= deadline:
            return ops


def sync_pipelined(client: meshcache.Client, op: str, seconds: float, depth: int) -> int:
    ops = 0
    deadline = time.perf_counter() + seconds
    keys = KEYS[:depth]
    while time.perf_counter() < deadline:
        pipe = client.pipeline()
        if op == "GET":
            for key in keys:
                pipe.get(key)
        else:
            for key in keys:
                pipe.set(key, VALUE)
        pipe.execute()
        ops += depth
    return ops


def sync_threads(client: meshcache.Client, seconds: float, threads: int) -> int:
    counts = [0] * threads
    start = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        start.wait()
        counts[i] = sync_sequential(client, "GET", seconds)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    for t in pool:
        t.join()
    return sum(counts)


# -- async (trio and asyncio share the loops) ----------------------------------------------------


async def async_sequential(client: Any, op: str, seconds: float) -> int:
    get, set_ = client.get, client.set
    ops = 0
    deadline = time.perf_counter() + seconds
    while True:
        if op == "GET":
            for key in KEYS[:256]:
                await get(key)
        else:
            for key in KEYS[:256]:
                await set_(key, VALUE)
        ops += 256
        if time.perf_counter() >= deadline:
            return ops


async def async_pipelined(client: Any, op: str, seconds: float, depth: int) -> int:
    ops = 0
    deadline = time.perf_counter() + seconds
    keys = KEYS[:depth]
    while time.perf_counter() < deadline:
        pipe = client.pipeline()
        if op == "GET":
            for key in keys:
                pipe.get(key)
        else:
            for key in keys:
                pipe.set(key, VALUE)
        await pipe.execute()
        ops += depth
    return ops


# -- the runner ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, node: NodeProcess, args: argparse.Namespace) -> None:
        self.node = node
        self.args = args
        self.rows: list[Row] = []

    def measure(self, client: str, workload: str, run: Callable[[], int]) -> None:
        best: Row | None = None
        for _ in range(self.args.repeat):
            with Meter(self.node.pid) as m:
                ops = run()
            row = Row(client, workload, ops, m.wall, m.cpu, m.node)
            if best is None or row.cpu / row.ops < best.cpu / best.ops:
                best = row
        assert best is not None
        self.rows.append(best)
        print("  " + " | ".join(best.cells()), file=sys.stderr, flush=True)

    def workloads(self) -> list[tuple[str, str, int]]:
        """(label, op, pipeline depth or 0)."""
        depth = self.args.pipeline
        return [
            ("GET", "GET", 0),
            ("SET", "SET", 0),
            (f"GET x{depth} pipelined", "GET", depth),
            (f"SET x{depth} pipelined", "SET", depth),
        ]

    def run_raw(self) -> None:
        address = self.node.data_address
        s = self.args.seconds
        self.measure("raw socket", "GET", lambda: raw_loop(address, "GET", s))
        self.measure("raw socket", "SET", lambda: raw_loop(address, "SET", s))

    def run_sync(self) -> None:
        s = self.args.seconds
        with meshcache.Client(self.node.data) as client:
            sync_sequential(client, "GET", 0.2)  # connect and warm up
            for label, op, depth in self.workloads():
                self.measure("sync", label, self._sync_run(client, op, depth))
            n = self.args.threads
            self.measure("sync", f"GET, {n} threads", lambda: sync_threads(client, s, n))

    def _sync_run(self, client: meshcache.Client, op: str, depth: int) -> Callable[[], int]:
        s = self.args.seconds
        if depth:
            return lambda: sync_pipelined(client, op, s, depth)
        return lambda: sync_sequential(client, op, s)

    async def measure_async(
        self, client: str, workload: str, run: Callable[[], Awaitable[int]]
    ) -> None:
        best: Row | None = None
        for _ in range(self.args.repeat):
            with Meter(self.node.pid) as m:
                ops = await run()
            row = Row(client, workload, ops, m.wall, m.cpu, m.node)
            if best is None or row.cpu / row.ops < best.cpu / best.ops:
                best = row
        assert best is not None
        self.rows.append(best)
        print("  " + " | ".join(best.cells()), file=sys.stderr, flush=True)

    def run_async(self, name: str, client_cls: Any, run: Callable[[Any], Any]) -> None:
        s = self.args.seconds
        address = self.node.data_address
        raw = raw_trio_loop if name == "trio" else raw_asyncio_loop

        def async_run(client: Any, op: str, depth: int) -> Callable[[], Awaitable[int]]:
            if depth:
                return lambda: async_pipelined(client, op, s, depth)
            return lambda: async_sequential(client, op, s)

        async def main() -> None:
            for op in ("GET", "SET"):
                await self.measure_async(f"raw {name}", op, functools.partial(raw, address, op, s))
            async with client_cls(self.node.data) as client:
                await async_sequential(client, "GET", 0.2)  # connect and warm up
                for label, op, depth in self.workloads():
                    await self.measure_async(name, label, async_run(client, op, depth))

        run(main)

    def table(self) -> str:
        head = ["client", "workload", "ops/s", "client CPU µs/op", "node CPU µs/op"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row.cells()) + " |" for row in self.rows]
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="length of each run")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; the best is kept")
    parser.add_argument("--pipeline", type=int, default=100, help="requests per pipeline")
    parser.add_argument("--threads", type=int, default=8, help="threads sharing one sync Client")
    parser.add_argument(
        "--only",
        default="raw,sync,trio,asyncio",
        help="comma-separated subset of raw,sync,trio,asyncio",
    )
    args = parser.parse_args(argv)
    which = {part.strip() for part in args.only.split(",") if part.strip()}

    with tempfile.TemporaryDirectory(prefix="bench_client-") as tmp:
        node = NodeProcess(Path(tmp)).start()
        try:
            with meshcache.Client(node.data) as client:
                pipe = client.pipeline()
                for key in KEYS:
                    pipe.set(key, VALUE)
                pipe.execute()
            bench = Bench(node, args)
            if "raw" in which:
                bench.run_raw()
            if "sync" in which:
                bench.run_sync()
            if "trio" in which:
                bench.run_async("trio", meshcache.TrioClient, trio.run)
            if "asyncio" in which:
                bench.run_async("asyncio", meshcache.AsyncClient, lambda fn: asyncio.run(fn()))
        finally:
            node.kill()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}, {args.seconds} s per run, "
        f"best of {args.repeat}\n"
    )
    print(bench.table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
