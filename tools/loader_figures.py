"""Read-through figures against a real PostgreSQL (started here, or ``--dsn``).

Run: ``.venv/bin/python -m tools.loader_figures [bridge|coalesce|stampede|misses|all]
[--runs 5]``; each prints a markdown table and the machine's load average before and after.

* **bridge**: the cost of one call through the loader's asyncio bridge
  (``meshcache/node/loader/bridge.py``) from trio, against the same coroutine awaited on the
  asyncio loop itself (the anchor), for an empty coroutine and for asyncpg's ``SELECT 1`` on
  a pooled connection. Microseconds per call; median and worst of ``--runs`` runs.
* **coalesce**: 1,000 concurrent GETs of one missing key spread over 3 node processes on 60
  connections; the loads PostgreSQL counted (a counting function in the loader query).
* **join**: bursts like ``coalesce`` (a new key each) while a fourth node joins the mesh,
  until it is active and 5 more; the loads PostgreSQL counted per key.
* **stampede**: one node, ``--rate`` GETs/s of one key with a 1 s TTL and refresh-ahead 0.9
  for ``--seconds``: the loads PostgreSQL counted and the GETs answered nil or with an error.
* **window**: the consistency window: from a committed UPDATE of a cached key until every one
  of 3 nodes answers the new value (NOTIFY invalidation, then a reload at the owner), one
  reader polling every node; p50, p99 and max per run.
* **outage**: PostgreSQL stopped for 10 s under reads of cached keys and of new keys on one
  node: errors on hits, the misses' latency while it is down, and how long after it is back
  the first miss loads again.
* **steps**: the miss path by step at 3 and 6 nodes (client, forward, query, bridge, coalesce +
  store + replicate; Raft is not on it), as a table and a stacked bar chart
  (``docs/loader_miss_path.png``); see :func:`breakdown` for how each step is derived.
* **misses**: GET latency of distinct missing keys (each loaded from a 0.1 ms query) against
  GETs of keys already cached (the anchor), through a node that owns none of them, with 1 and
  3 nodes; p50 and p99 in milliseconds per run, median and worst of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import trio

from meshcache.testing.mesh import Direct, Mesh
from meshcache.testing.postgres import PostgresServer
from meshcache.wire.frame import FrameReader, decode_response, encode_request


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} / {max(values):.1f}"


class Database:
    def __init__(self, dsn: str, server: PostgresServer | None) -> None:
        self.dsn = dsn
        self.server = server

    def sql(self, text: str) -> str:
        if self.server is not None:
            return self.server.psql(text)
        import subprocess

        done = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", self.dsn, "-c", text], capture_output=True, check=True
        )
        return done.stdout.decode().strip()


@contextmanager
def database(dsn: str | None) -> Iterator[Database]:
    if dsn:
        yield Database(dsn, None)
        return
    with PostgresServer() as server:
        yield Database(server.dsn, server)


def counted_table(db: Database, name: str, rows: int = 0) -> str:
    """A table ``name`` (id text, v text) with ``rows`` rows and a counting loader query."""
    db.sql(
        f"DROP TABLE IF EXISTS {name}, {name}_calls CASCADE;"
        f"CREATE TABLE {name} (id text PRIMARY KEY, v text);"
        f"INSERT INTO {name} SELECT i::text, 'value ' || i FROM generate_series(0, {rows}) i;"
        f"CREATE TABLE {name}_calls (n bigint NOT NULL); INSERT INTO {name}_calls VALUES (0);"
        f"CREATE OR REPLACE FUNCTION load_{name}(k text) RETURNS SETOF text LANGUAGE plpgsql AS"
        f" $$ BEGIN UPDATE {name}_calls SET n = n + 1;"
        f" RETURN QUERY SELECT v FROM {name} WHERE id = k; END $$;"
    )
    return f"SELECT * FROM load_{name}($1)"


def calls(db: Database, name: str) -> int:
    return int(db.sql(f"SELECT n FROM {name}_calls"))


# --- bridge ---------------------------------------------------------------------------------


def bridge(db: Database, runs: int, n: int = 2000) -> None:
    import asyncpg

    from meshcache.node.loader.bridge import AsyncioBridge

    async def nothing() -> None:
        return None

    rows: dict[str, list[list[float]]] = {"empty coroutine": [], "asyncpg SELECT 1": []}
    for _ in range(runs):
        b = AsyncioBridge()
        b.start()

        async def open_pool() -> Any:
            return await asyncpg.create_pool(db.dsn, min_size=1, max_size=1)

        pool = asyncio.run_coroutine_threadsafe(open_pool(), b.loop).result()

        async def select(pool: Any = pool) -> Any:
            return await pool.fetchval("SELECT 1")

        async def direct(fn: Callable[[], Any]) -> float:
            start = time.perf_counter()
            for _ in range(n):
                await fn()
            return (time.perf_counter() - start) / n * 1e6

        async def through(fn: Callable[[], Any], b: AsyncioBridge = b) -> float:
            start = time.perf_counter()
            for _ in range(n):
                await b.run(fn)
            return (time.perf_counter() - start) / n * 1e6

        for label, fn in (("empty coroutine", nothing), ("asyncpg SELECT 1", select)):
            anchor = asyncio.run_coroutine_threadsafe(direct(fn), b.loop).result()
            crossed = trio.run(through, fn)
            rows[label].append([anchor, crossed])
        asyncio.run_coroutine_threadsafe(pool.close(), b.loop).result()
        trio.run(b.aclose)
    print(f"bridge, {n} sequential calls per run, {runs} runs (median / worst), load {_load()}")
    print("| call | on the asyncio loop (µs) | through the bridge from trio (µs) | ratio |")
    print("|---|---|---|---|")
    for label, pairs in rows.items():
        anchor = [a for a, _ in pairs]
        crossed = [c for _, c in pairs]
        ratios = [c / a for a, c in pairs]
        print(
            f"| {label} | {_summary(anchor)} | {_summary(crossed)} | "
            f"{statistics.median(ratios):.1f} / {max(ratios):.1f} |"
        )


# --- mesh helpers ---------------------------------------------------------------------------


@contextmanager
def mesh_of(n: int, db: Database, tmp: Path) -> Iterator[Mesh]:
    os.environ["MESHCACHE_SOURCE_PG_DSN"] = db.dsn
    with ExitStack() as stack:
        yield Mesh(stack, tmp, n)


async def _burst(addresses: list[Any], key: bytes, per_conn: int, conns: int) -> int:
    answered = 0

    async def one(address: Any) -> None:
        nonlocal answered
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(
                b"".join(encode_request(i + 1, "GET", "items", [key]) for i in range(per_conn))
            )
            reader = FrameReader()
            got = 0
            while got < per_conn:
                while (body := reader.next_body()) is not None:
                    decode_response(body).result()
                    got += 1
                if got < per_conn:
                    reader.feed(await stream.receive_some(65536))
            answered += got

    async with trio.open_nursery() as nursery:
        for i in range(conns):
            nursery.start_soon(one, addresses[i % len(addresses)])
    return answered


def _loader_counter(mesh: Mesh, node: Any, name: str) -> int:
    counters = mesh.mesh_info(node)["counters"].get("loader", {})
    return int(counters.get(name, 0))


def coalesce(db: Database, runs: int, tmp: Path) -> None:
    print(
        "coalescing: 1,000 concurrent GETs of one missing key, 3 nodes, 60 connections;"
        f" load {_load()}"
    )
    print("| run | GETs answered | queries PostgreSQL counted | loads per node |")
    print("|---|---|---|---|")
    query = counted_table(db, "coalesce", 10)
    with mesh_of(3, db, tmp / "coalesce") as mesh:
        mesh.wait_namespace("items", {"loader": {"source": "pg", "query": query}})
        addresses = [node.data_address for node in mesh.nodes]
        for run in range(runs):
            before = calls(db, "coalesce")
            key = str(run % 10).encode()
            mesh.call(mesh.nodes[0], "DELETE", [key], "items")
            queried = [_loader_counter(mesh, node, "queries") for node in mesh.nodes]
            answered = trio.run(_burst, addresses, key, 17, 60)
            by_node = [
                _loader_counter(mesh, node, "queries") - q
                for node, q in zip(mesh.nodes, queried, strict=True)
            ]
            print(
                f"| {run + 1} | {answered} | {calls(db, 'coalesce') - before}"
                f" | {' '.join(map(str, by_node))} |"
            )
    print(f"load after: {_load()}")


def coalesce_join(db: Database, tmp: Path) -> None:
    """Bursts of one new key each while a fourth node joins a 3-node mesh."""
    import threading

    query = counted_table(db, "cjoin", 1000)
    with mesh_of(3, db, tmp / "cjoin") as mesh:
        mesh.wait_namespace("items", {"loader": {"source": "pg", "query": query}})
        joined = threading.Event()

        def join() -> None:
            mesh.start_node("--join", mesh.nodes[0].data)
            mesh.wait_ring(4)
            joined.set()

        joiner = threading.Thread(target=join, daemon=True)
        rows = []
        key = 0
        joiner.start()
        while not joined.is_set() or key < 5:
            addresses = [node.data_address for node in mesh.nodes if node.data_address.port]
            before = calls(db, "cjoin")
            trio.run(_burst, addresses, str(key).encode(), 17, 60)
            rows.append((key, len(addresses), joined.is_set(), calls(db, "cjoin") - before))
            key += 1
        joiner.join()
    during = [r[3] for r in rows if not r[2]]
    after = [r[3] for r in rows if r[2]]
    print(
        f"coalescing while a node joins: bursts of 1,020 GETs (one new key each); loads per key"
        f" while the 4th node joined: {during}, once it was active: {after}; load {_load()}"
    )


def stampede(db: Database, tmp: Path, rate: int, seconds: float) -> None:
    query = counted_table(db, "stampede", 1)
    loader = {"source": "pg", "query": query, "ttl": 1.0, "refresh_ahead": 0.9}
    with mesh_of(1, db, tmp / "stampede") as mesh:
        mesh.wait_namespace("items", {"loader": loader})
        nils = errors = reads = 0
        with Direct(mesh.nodes[0].data_address) as d:
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < seconds:
                try:
                    value = d.call("GET", [b"1"], "items")
                    nils += value is None
                except Exception:  # counted: the figure says how many
                    errors += 1
                reads += 1
                ahead = reads / rate - elapsed
                if ahead > 0:
                    time.sleep(ahead)  # paces the reads at the rate
    print(
        f"stampede: {reads} GETs of one key in {seconds:g} s ({reads / seconds:.0f}/s), TTL 1 s,"
        f" refresh-ahead 0.9: {calls(db, 'stampede')} queries, {nils} nil, {errors} errors;"
        f" load {_load()}"
    )


def misses(db: Database, runs: int, tmp: Path, per_run: int = 300) -> None:
    query = counted_table(db, "misses", 200_000)
    print(f"GET latency through a non-owner, {per_run} GETs per run, {runs} runs; load {_load()}")
    print(
        "| nodes | cached GET p50 / p99 (ms) | miss loaded p50 / p99 (ms) | miss p50 / cached p50 |"
    )
    print("|---|---|---|---|")
    next_key = 0
    for n in (1, 3):
        hit50: list[float] = []
        hit99: list[float] = []
        miss50: list[float] = []
        miss99: list[float] = []
        with mesh_of(n, db, tmp / f"misses{n}") as mesh:
            mesh.wait_namespace("items", {"loader": {"source": "pg", "query": query}})
            via = mesh.nodes[-1]
            with Direct(via.data_address) as d:
                for _ in range(runs):
                    keys = []
                    while len(keys) < per_run:
                        key = str(next_key).encode()
                        next_key += 1
                        if n == 1 or via.node_id not in mesh.owners(key, 2)[:1]:
                            keys.append(key)
                    loaded = []
                    for key in keys:
                        start = time.perf_counter()
                        d.call("GET", [key], "items")
                        loaded.append((time.perf_counter() - start) * 1000)
                    cached = []
                    for key in keys:
                        start = time.perf_counter()
                        d.call("GET", [key], "items")
                        cached.append((time.perf_counter() - start) * 1000)
                    for source, p50, p99 in ((loaded, miss50, miss99), (cached, hit50, hit99)):
                        q = statistics.quantiles(source, n=100)
                        p50.append(q[49])
                        p99.append(q[98])
        ratio = [m / h for m, h in zip(miss50, hit50, strict=True)]
        print(
            f"| {n} | {statistics.median(hit50):.2f} / {statistics.median(hit99):.2f}"
            f" (worst {max(hit50):.2f} / {max(hit99):.2f})"
            f" | {statistics.median(miss50):.2f} / {statistics.median(miss99):.2f}"
            f" (worst {max(miss50):.2f} / {max(miss99):.2f})"
            f" | {statistics.median(ratio):.1f} |"
        )
    print(f"load after: {_load()}")


@contextmanager
def _background_reads(mesh: Mesh, load: str, keys: int = 50) -> Iterator[list[float]]:
    """GETs of the window's keys through every node, from one thread, while the block runs:
    ``uniform``, ``zipf`` (s = 0.99) or ``trending`` (a hot set of 5 keys that moves every
    second); ``none`` reads nothing. Yields a list whose one item becomes the GETs/s."""
    import random
    import threading

    rate = [0.0]
    if load == "none":
        yield rate
        return
    stop = threading.Event()
    rng = random.Random(1)
    weights = [1.0 / (i + 1) ** 0.99 for i in range(keys)]

    def pick() -> int:
        if load == "uniform":
            return rng.randrange(keys)
        if load == "zipf":
            return rng.choices(range(keys), weights)[0]
        return (int(time.monotonic()) * 5 + rng.randrange(5)) % keys

    def run() -> None:
        directs = [Direct(node.data_address) for node in mesh.nodes]
        start, count = time.monotonic(), 0
        while not stop.is_set():
            rng.choice(directs).call("GET", [str(pick()).encode()], "items")
            count += 1
        rate[0] = count / (time.monotonic() - start)
        for d in directs:
            d.close()

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    try:
        yield rate
    finally:
        stop.set()
        reader.join()


def window(db: Database, runs: int, tmp: Path, updates: int = 100) -> None:
    """From a committed UPDATE until every node answers the new value, via NOTIFY."""
    import asyncpg

    from meshcache.node.loader.sql import trigger_sql

    counted_table(db, "win", 50)
    db.sql(trigger_sql("win_changes", "win", "id"))
    loader = {"source": "pg", "query": "SELECT v FROM win WHERE id = $1", "channel": "win_changes"}
    print(
        f"consistency window, 3 nodes, {updates} UPDATEs per run, {runs} runs, one reader"
        f" polling every node, beside a background read load; load {_load()}"
    )
    print("| background reads | run | p50 (ms) | p99 (ms) | max (ms) | background GETs/s |")
    print("|---|---|---|---|---|---|")
    with mesh_of(3, db, tmp / "window") as mesh:
        mesh.wait_namespace("items", {"loader": loader})
        directs = [Direct(node.data_address) for node in mesh.nodes]

        def listening() -> bool:
            gauges = [mesh.mesh_info(node)["gauges"] for node in mesh.nodes]
            return all(g.get("loader_listening") == 1 for g in gauges)

        deadline = time.monotonic() + 30
        while not listening():
            if time.monotonic() > deadline:
                raise SystemExit("the nodes did not listen within 30 s")
            time.sleep(0.05)

        async def measure(run: int) -> list[float]:
            conn = await asyncpg.connect(db.dsn)
            windows = []
            try:
                for i in range(updates):
                    key = str(i % 50)
                    for d in directs:
                        d.call("GET", [key.encode()], "items")  # cached everywhere it is read
                    new = f"run{run}-{i}".encode()
                    await conn.execute("UPDATE win SET v = $1 WHERE id = $2", new.decode(), key)
                    start = time.perf_counter()
                    pending = list(directs)
                    while pending:
                        pending = [
                            d for d in pending if d.call("GET", [key.encode()], "items") != new
                        ]
                    windows.append((time.perf_counter() - start) * 1000)
            finally:
                await conn.close()
            return windows

        for load in ("none", "uniform", "zipf", "trending"):
            for run in range(runs):
                with _background_reads(mesh, load) as rate:
                    windows = asyncio.run(measure(run))
                q = statistics.quantiles(windows, n=100)
                print(
                    f"| {load} | {run + 1} | {q[49]:.2f} | {q[98]:.2f} | {max(windows):.2f}"
                    f" | {rate[0]:.0f} |"
                )
        for d in directs:
            d.close()
    print(f"load after: {_load()}")


def outage(db: Database, tmp: Path, down: float = 10.0) -> None:
    """PostgreSQL stopped for ``down`` seconds under a read load of hits and misses."""
    from meshcache.errors import CommandError

    server = db.server
    if server is None:
        raise SystemExit("outage stops the server: run it without --dsn")
    counted_table(db, "outage", 100_000)
    loader = {"source": "pg", "query": "SELECT v FROM outage WHERE id = $1", "load_timeout": 1.0}
    with mesh_of(1, db, tmp / "outage") as mesh, Direct(mesh.nodes[0].data_address) as d:
        mesh.wait_namespace("items", {"loader": loader})
        cached = [str(i).encode() for i in range(100)]
        for key in cached:
            d.call("GET", [key], "items")
        fresh = iter(str(i).encode() for i in range(1000, 100_000))
        hit_errors = hits = 0
        miss_ms: list[float] = []
        miss_errors = 0

        def read_for(seconds: float, record: bool) -> float | None:
            """Hits and misses for ``seconds``; the time of the first miss that loaded."""
            nonlocal hit_errors, hits, miss_errors
            first_load = None
            start = time.monotonic()
            while time.monotonic() - start < seconds:
                for key in cached[:10]:
                    try:
                        hits += d.call("GET", [key], "items") is not None
                    except CommandError:
                        hit_errors += 1
                began = time.perf_counter()
                try:
                    d.call("GET", [next(fresh)], "items")
                    if first_load is None:
                        first_load = time.monotonic() - start
                except CommandError:
                    miss_errors += record
                if record:
                    miss_ms.append((time.perf_counter() - began) * 1000)
            return first_load

        read_for(2.0, False)
        server.pause()
        read_for(down, True)
        server.resume()
        resumed = read_for(5.0, False)
    q = statistics.quantiles(miss_ms, n=100)
    print(
        f"outage: PostgreSQL stopped {down:g} s under reads (1 node, load_timeout 1 s):"
        f" {hit_errors} errors in {hits} hits; {miss_errors} of {len(miss_ms)} misses failed,"
        f" their latency p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms, max {max(miss_ms):.1f} ms;"
        f" first load {resumed if resumed is None else round(resumed, 2)} s after it came back;"
        f" load {_load()}"
    )


def breakdown(db: Database, runs: int, tmp: Path, per_run: int = 300) -> None:
    """The miss path's steps at 3 and 6 nodes, from distributions measured in one run.

    Measured: a cached GET sent to the key's owner (client and node), the same through a
    non-owner (adds the forward), a miss sent to the owner (adds the load), the query alone on
    the asyncio loop, and one bridge crossing. The steps are differences of medians: client =
    owner hit; forward = non-owner hit - owner hit; query = the query alone; bridge = one
    crossing; coalesce + store + replicate = owner miss - owner hit - query - bridge.
    """
    import asyncpg

    from meshcache.node.loader.bridge import AsyncioBridge

    counted_table(db, "steps", 300_000)
    plain = "SELECT v FROM steps WHERE id = $1"
    results: dict[int, dict[str, float]] = {}
    for n in (3, 6):
        med: dict[str, list[float]] = {
            k: [] for k in ("owner_hit", "other_hit", "owner_miss", "query", "bridge")
        }
        with mesh_of(n, db, tmp / f"steps{n}") as mesh:
            mesh.wait_namespace("items", {"loader": {"source": "pg", "query": plain}})
            by_id = {node.node_id: Direct(node.data_address) for node in mesh.nodes}
            next_key = n * 100_000
            for _ in range(runs):
                keys = [str(next_key + i).encode() for i in range(per_run)]
                next_key += per_run
                owners = {k: mesh.owners(k, 2)[0] for k in keys}
                timing: dict[str, list[float]] = {"owner_miss": [], "owner_hit": []}
                for key in keys:
                    for what in ("owner_miss", "owner_hit"):
                        start = time.perf_counter()
                        by_id[owners[key]].call("GET", [key], "items")
                        timing[what].append((time.perf_counter() - start) * 1000)
                other = []
                for key in keys:
                    via = next(d for nid, d in by_id.items() if nid not in mesh.owners(key, 2))
                    start = time.perf_counter()
                    via.call("GET", [key], "items")
                    other.append((time.perf_counter() - start) * 1000)
                med["owner_miss"].append(statistics.median(timing["owner_miss"]))
                med["owner_hit"].append(statistics.median(timing["owner_hit"]))
                med["other_hit"].append(statistics.median(other))
            for d in by_id.values():
                d.close()
        bridge = AsyncioBridge()
        bridge.start()

        async def direct_query() -> list[float]:
            conn = await asyncpg.connect(db.dsn)
            out = []
            for i in range(per_run):
                start = time.perf_counter()
                await conn.fetchval(plain, str(i))
                out.append((time.perf_counter() - start) * 1000)
            await conn.close()
            return out

        async def nothing() -> None:
            return None

        async def crossings(bridge: AsyncioBridge = bridge) -> list[float]:
            out = []
            for _ in range(per_run):
                start = time.perf_counter()
                await bridge.run(nothing)
                out.append((time.perf_counter() - start) * 1000)
            return out

        for _ in range(runs):
            med["query"].append(
                statistics.median(
                    asyncio.run_coroutine_threadsafe(direct_query(), bridge.loop).result()
                )
            )
            med["bridge"].append(statistics.median(trio.run(crossings)))
        trio.run(bridge.aclose)
        m = {k: statistics.median(v) for k, v in med.items()}
        results[n] = {
            "client": m["owner_hit"],
            "forward": max(0.0, m["other_hit"] - m["owner_hit"]),
            "query": m["query"],
            "bridge": m["bridge"],
            "coalesce+store+replicate": max(
                0.0, m["owner_miss"] - m["owner_hit"] - m["query"] - m["bridge"]
            ),
        }
    steps = list(next(iter(results.values())))
    print(f"miss path by step, medians of {runs} runs of {per_run} keys (ms); load {_load()}")
    print("| nodes | " + " | ".join(steps) + " | total | Raft |")
    print("|---|" + "---|" * (len(steps) + 2))
    for n, row in results.items():
        cells = " | ".join(f"{row[s]:.3f}" for s in steps)
        print(f"| {n} | {cells} | {sum(row.values()):.3f} | 0 |")
    chart = Path("docs/loader_miss_path.png")
    write_bar_chart(chart, results, steps)
    print(f"chart: {chart}")


#: Colours of the chart's steps, in order (the table's columns).
_COLOURS = [(66, 133, 244), (219, 68, 55), (244, 180, 0), (15, 157, 88), (171, 71, 188)]


def write_bar_chart(path: Path, results: dict[int, dict[str, float]], steps: list[str]) -> None:
    """A stacked horizontal bar per node count (steps left to right in ``_COLOURS``' order),
    as a PNG written with zlib alone; the longest bar fills the width, the table gives values."""
    import struct
    import zlib

    width, bar, gap = 800, 40, 20
    height = gap + len(results) * (bar + gap)
    scale = (width - 2 * gap) / max(sum(r.values()) for r in results.values())
    pixels = [[(255, 255, 255)] * width for _ in range(height)]
    for row, step_values in enumerate(results.values()):
        top = gap + row * (bar + gap)
        x = float(gap)
        for colour, step in zip(_COLOURS, steps, strict=False):
            end = x + step_values[step] * scale
            for y in range(top, top + bar):
                for px in range(int(x), min(int(end), width)):
                    pixels[y][px] = colour
            x = end
    raw = b"".join(b"\x00" + bytes(c for p in line for c in p) for line in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    )
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools.loader_figures", description=__doc__)
    parser.add_argument(
        "what",
        choices=(
            "bridge",
            "coalesce",
            "join",
            "stampede",
            "misses",
            "window",
            "outage",
            "steps",
            "all",
        ),
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dsn", help="an existing PostgreSQL (default: start one)")
    parser.add_argument("--rate", type=int, default=5000, help="stampede: GETs per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="stampede: duration")
    args = parser.parse_args(argv)
    import tempfile

    socket.setdefaulttimeout(30)
    with database(args.dsn) as db, tempfile.TemporaryDirectory(prefix="loader-fig-") as tmp:
        if args.what in ("bridge", "all"):
            bridge(db, args.runs)
        if args.what in ("coalesce", "all"):
            coalesce(db, args.runs, Path(tmp))
        if args.what in ("join", "all"):
            coalesce_join(db, Path(tmp))
        if args.what in ("stampede", "all"):
            stampede(db, Path(tmp), args.rate, args.seconds)
        if args.what in ("misses", "all"):
            misses(db, args.runs, Path(tmp))
        if args.what in ("window", "all"):
            window(db, args.runs, Path(tmp))
        if args.what in ("outage", "all"):
            outage(db, Path(tmp))
        if args.what in ("steps", "all"):
            breakdown(db, args.runs, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
