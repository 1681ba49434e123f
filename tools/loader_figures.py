"""Read-through figures against a real PostgreSQL (started here, or ``--dsn``).

Run: ``.venv/bin/python -m tools.loader_figures
[bridge|coalesce|join|stampede|misses|window|outage|steps|mget|all] [--runs 5]``; each prints a
markdown table and the machine's load average before and after.

Every figure loads with a plain ``SELECT v FROM <table> WHERE id = $1`` (a primary-key lookup,
about 0.1 ms on the server), and PostgreSQL counts the loads itself: the server started here
preloads ``pg_stat_statements``, whose ``calls`` for that query are read before and after
(a server named with ``--dsn`` must preload it too).

* **bridge**: the cost of one call through the loader's asyncio bridge
  (``meshcache/node/loader/bridge.py``) from trio, against the same coroutine awaited on the
  asyncio loop itself (the anchor), for an empty coroutine, for asyncpg's ``SELECT 1`` on
  a pooled connection, and for a one-key load as the node makes it (``PgSource``: the
  loader's plain query, sent with ``start_one`` from trio against ``_fetch_one`` on the
  loop). Microseconds per call; median and worst of ``--runs`` runs.
* **coalesce**: 1,000 concurrent GETs of one missing key spread over 3 node processes on 60
  connections; the loads PostgreSQL counted (``pg_stat_statements``).
* **join**: bursts like ``coalesce`` (a new key each) while a fourth node joins the mesh,
  until it is active and 5 more; the loads PostgreSQL counted per key.
* **stampede**: one node, ``--rate`` GETs/s of one key with a 1 s TTL and refresh-ahead 0.9
  for ``--seconds``: the loads PostgreSQL counted and the GETs answered nil or with an error.
* **window**: the consistency window: from a committed UPDATE of a cached key until every one
  of 3 nodes answers the new value (NOTIFY, then the owner's reload), every node polled at
  once, beside a background read load (none, uniform, Zipf, trending) from another process;
  ``on_notify`` drop and reload alternately; p50, p99 and max per run, with PostgreSQL's own
  NOTIFY delivery to a plain client, the nodes' own step histograms of the same run, and the
  loads PostgreSQL counted; ``--updates`` UPDATEs per run (500: the p99 is the 5th slowest).
* **outage**: PostgreSQL stopped for 10 s under reads of cached keys and of new keys on one
  node: errors on hits, the misses' latency while it is down, and how long after it is back
  the first miss loads again.
* **steps**: the miss path by step at 3 and 6 nodes from the nodes' own per-request timing
  (client, forward hop, bridge, query on source, store, replicate, flight; Raft is not on it),
  as tables and a stacked bar chart (``docs/loader_miss_path.png``), with the forward of a
  cached GET as the anchor; see :func:`breakdown`.
* **mget**: MGETs of 10 and 100 missing keys (each has a row) through a node that owns none
  of them, at 3 nodes: each owner loads its part with the namespace's batch query; p50 and
  p99 against the same MGETs once the keys are cached, and the batch queries PostgreSQL
  counted per MGET.
* **misses**: GET latency of distinct missing keys (each loaded by the plain query) against
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
import threading
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
        db = Database(dsn, None)
        _count_statements(db)
        yield db
        return
    with PostgresServer() as server:
        # pg_stat_statements needs a place in shared memory: preloaded, then a restart.
        server.psql(
            "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'", database="postgres"
        )
        server.pause()
        server.resume()
        db = Database(server.dsn, server)
        _count_statements(db)
        yield db


def _count_statements(db: Database) -> None:
    try:
        db.sql(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()"
        )
    except Exception as exc:  # a --dsn server without it: the figures cannot count
        raise SystemExit(
            f"the figures count loads with pg_stat_statements, which the server refused ({exc});"
            " add it to shared_preload_libraries"
        ) from None


def counted_table(db: Database, name: str, rows: int = 0) -> str:
    """A table ``name`` (id text, v text) with ``rows`` rows; its loader query, a plain
    primary-key ``SELECT`` whose executions PostgreSQL counts (:func:`calls`)."""
    db.sql(
        f"DROP TABLE IF EXISTS {name} CASCADE;"
        f"CREATE TABLE {name} (id text PRIMARY KEY, v text);"
        f"INSERT INTO {name} SELECT i::text, 'value ' || i FROM generate_series(0, {rows}) i;"
        f"ANALYZE {name};"
    )
    return counted_table_query(name)


def calls(db: Database, name: str) -> int:
    """How many times PostgreSQL executed the loader query of table ``name``
    (``pg_stat_statements``: every execution of the prepared statement, counted by the
    server as it ends)."""
    query = counted_table_query(name)
    return int(
        db.sql(f"SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query = '{query}'")
    )


def counted_table_query(name: str) -> str:
    return f"SELECT v FROM {name} WHERE id = $1"


# --- bridge ---------------------------------------------------------------------------------


def bridge(db: Database, runs: int, n: int = 2000) -> None:
    import asyncpg

    from meshcache.node.loader.bridge import AsyncioBridge

    async def nothing() -> None:
        return None

    from meshcache.node.loader.source import PgSource
    from meshcache.settings import SourceSettings

    query = counted_table(db, "bridge", n)
    one_key = "one-key load (PgSource)"
    rows: dict[str, list[list[float]]] = {"empty coroutine": [], "asyncpg SELECT 1": []}
    rows[one_key] = []
    for _ in range(runs):
        b = AsyncioBridge()
        b.start()
        source = PgSource("pg", SourceSettings(dsn=db.dsn), b, max_value_bytes=1 << 20)
        keys = [str(i).encode() for i in range(n)]

        async def load_here(source: PgSource = source, keys: list[bytes] = keys) -> float:
            start = time.perf_counter()
            for key in keys:
                await source._fetch_one(query, key)
            return (time.perf_counter() - start) / n * 1e6

        async def load_through(source: PgSource = source, keys: list[bytes] = keys) -> float:
            start = time.perf_counter()
            for key in keys:
                await source.start_one(query, key).result()
            return (time.perf_counter() - start) / n * 1e6

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
        here = asyncio.run_coroutine_threadsafe(load_here(), b.loop).result()
        rows[one_key].append([here, trio.run(load_through)])
        asyncio.run_coroutine_threadsafe(pool.close(), b.loop).result()
        trio.run(b.aclose)
    print(f"bridge, {n} sequential calls per run, {runs} runs (median / worst), load {_load()}")
    print("| call | on the asyncio loop (µs) | through the bridge from trio (µs) | ratio |")
    print("|---|---|---|---|")
    for label, pairs in rows.items():
        on_loop = [a for a, _ in pairs]
        via_bridge = [c for _, c in pairs]
        ratios = [c / a for a, c in pairs]
        print(
            f"| {label} | {_summary(on_loop)} | {_summary(via_bridge)} | "
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
                    keys: list[bytes] = []
                    while len(keys) < per_run:
                        key = str(next_key).encode()
                        next_key += 1
                        if n == 1 or via.node_id not in mesh.owners(key, 2)[:1]:
                            keys.append(key)
                    loaded = [ms for key in keys if (ms := _timed_get(d, key)) is not None]
                    cached = [ms for key in keys if (ms := _timed_get(d, key)) is not None]
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
    print(f"load after: {_load()}; GETs answered an error: {len(POLL_ERRORS)}")


def mget(db: Database, runs: int, tmp: Path, sizes: tuple[int, ...] = (10, 100)) -> None:
    """MGETs of N missing keys through a node that owns none of them (3 nodes), the keys
    loaded by their owners with the namespace's batch query; then the same MGETs again, the
    keys now cached (the anchor). 100 MGETs per run and size; p50 / p99 in ms per run, median
    and worst of the runs, and the batch queries PostgreSQL counted per MGET."""
    per_run = 100
    counted_table(db, "mget", 1_000_000)
    batch = "SELECT id, v FROM mget WHERE id = ANY($1)"
    loader = {"source": "pg", "query": counted_table_query("mget"), "batch_query": batch}
    print(
        f"MGET of N missing keys through a non-owner of 3 nodes, {per_run} MGETs per run and N,"
        f" {runs} runs; p50 / p99 (ms), median (worst) of the runs; load {_load()}"
    )
    print("| N | cached MGET p50 / p99 | missing MGET p50 / p99 | batch queries per MGET |")
    print("|---|---|---|---|")
    with mesh_of(3, db, tmp / "mget") as mesh:
        mesh.wait_namespace("items", {"loader": loader})
        via = mesh.nodes[-1]
        ring = mesh.current_ring()  # asked once: each ask is a round trip to a node
        next_key = 1000  # keys below it warm up: each owner prepares the batch query
        with Direct(via.data_address) as d:
            d.call("MGET", [str(i).encode() for i in range(next_key)], "items")
            for size in sizes:
                figures: dict[str, list[tuple[float, float]]] = {"miss": [], "hit": []}
                per_mget: list[float] = []
                for _ in range(runs):
                    mgets = []
                    for _ in range(per_run):
                        keys: list[bytes] = []
                        while len(keys) < size:
                            key = str(next_key).encode()
                            next_key += 1
                            if via.node_id not in (m.node_id for m in ring.owners(key, 2)):
                                keys.append(key)
                        mgets.append(keys)
                    before = _statement_calls(db, batch)
                    for tag in ("miss", "hit"):
                        times = []
                        for keys in mgets:
                            start = time.perf_counter()
                            got = d.call("MGET", keys, "items")
                            times.append((time.perf_counter() - start) * 1000)
                            if None in got:
                                raise SystemExit(
                                    f"an MGET answered nil for a key with a row: {keys}"
                                )
                        q = statistics.quantiles(times, n=100)
                        figures[tag].append((q[49], q[98]))
                    per_mget.append((_statement_calls(db, batch) - before) / per_run)

                def cell(pairs: list[tuple[float, float]]) -> str:
                    p50 = [a for a, _ in pairs]
                    p99 = [b for _, b in pairs]
                    return (
                        f"{statistics.median(p50):.2f} / {statistics.median(p99):.2f}"
                        f" ({max(p50):.2f} / {max(p99):.2f})"
                    )

                print(
                    f"| {size} | {cell(figures['hit'])} | {cell(figures['miss'])} |"
                    f" {' '.join(f'{c:.2f}' for c in per_mget)} |",
                    flush=True,
                )
    print(f"load after: {_load()}")


def _statement_calls(db: Database, query: str) -> int:
    """How many times PostgreSQL executed ``query`` (``pg_stat_statements``)."""
    text = query.replace("'", "''")
    return int(
        db.sql(f"SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query = '{text}'")
    )


def _timed_get(direct: Direct, key: bytes) -> float | None:
    """One GET's round trip in ms, or None when it was answered with an error (a failed load,
    e.g. PostgreSQL's statement timeout on a starved machine), counted in :data:`POLL_ERRORS`."""
    from meshcache.errors import CommandError

    start = time.perf_counter()
    try:
        direct.call("GET", [key], "items")
    except CommandError as exc:
        POLL_ERRORS.append(str(exc))
        return None
    return (time.perf_counter() - start) * 1000


def _reader_process(
    addresses: list[tuple[str, int]], load: str, keys: int, stop: Any, out: Any, ready: Any
) -> None:
    """The background read load, in a process of its own (see :func:`_background_reads`)."""
    import random

    rng = random.Random(1)
    weights = [1.0 / (i + 1) ** 0.99 for i in range(keys)]

    def pick() -> int:
        if load == "uniform":
            return rng.randrange(keys)
        if load == "zipf":
            return rng.choices(range(keys), weights)[0]
        return (int(time.monotonic()) * 5 + rng.randrange(5)) % keys

    import contextlib

    from meshcache.errors import CommandError

    directs = [Direct(address) for address in addresses]
    start, count = time.monotonic(), 0
    ready.set()
    while not stop.is_set():
        with contextlib.suppress(CommandError):  # an error answer is a read like any other
            rng.choice(directs).call("GET", [str(pick()).encode()], "items")
        count += 1
    out.put(count / (time.monotonic() - start))
    for d in directs:
        d.close()


@contextmanager
def _background_reads(mesh: Mesh, load: str, keys: int = 50) -> Iterator[list[float]]:
    """GETs of the window's keys through every node, from a process of its own (so that it
    does not share the measuring process' interpreter lock), while the block runs:
    ``uniform``, ``zipf`` (s = 0.99) or ``trending`` (a hot set of 5 keys that moves every
    second); ``none`` reads nothing. Yields a list whose one item becomes the GETs/s."""
    import multiprocessing

    rate = [0.0]
    if load == "none":
        yield rate
        return
    ctx = multiprocessing.get_context("spawn")
    stop, out, ready = ctx.Event(), ctx.Queue(), ctx.Event()
    addresses = [tuple(node.data_address) for node in mesh.nodes]
    reader = ctx.Process(target=_reader_process, args=(addresses, load, keys, stop, out, ready))
    reader.start()
    if not ready.wait(60):
        reader.kill()
        raise SystemExit("the background reader did not start")
    try:
        yield rate
    finally:
        stop.set()
        rate[0] = out.get(timeout=60)
        reader.join(timeout=60)


def _poll_record(direct: Direct, key: bytes, new: bytes, within: float = 2.0) -> float | None:
    """RECORDS of ``key`` through ``direct`` (the node's own record: it never loads or
    forwards) until it holds ``new``; when it did, or None when it did not within ``within``
    seconds (its own drop, versioned later, won over the replicated value)."""
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        record = direct.call("RECORDS", [[key]], "items")[0]
        if record is not None and record[1] == new:
            return time.perf_counter()
    return None


def _poll(direct: Direct, key: bytes, new: bytes) -> float:
    """GET ``key`` through ``direct`` until it answers ``new``; when it did. A GET answered
    with an error (a load that failed, e.g. the database's statement timeout on a starved
    machine) is asked again and counted in :data:`POLL_ERRORS`."""
    from meshcache.errors import CommandError

    while True:
        try:
            if direct.call("GET", [key], "items") == new:
                return time.perf_counter()
        except CommandError as exc:
            POLL_ERRORS.append(str(exc))


#: The errors the window's polls were answered with (see :func:`_poll`).
POLL_ERRORS: list[str] = []


#: The node's own timing of an invalidation, read from INFO's ``mesh.loader_timings``.
WINDOW_STEPS = ("notify_hop", "notify_drop", "notify_reload", "query", "query_on_source")


def _step_counts(mesh: Mesh) -> dict[str, list[int]]:
    """Every node's step histograms summed (counts per bucket)."""
    total: dict[str, list[int]] = {}
    for node in mesh.nodes:
        steps = mesh.mesh_info(node)["loader_timings"]["steps"]
        for step in WINDOW_STEPS:
            counts = steps[step]["counts"]
            have = total.setdefault(step, [0] * len(counts))
            for i, n in enumerate(counts):
                have[i] += n
    return total


def histogram_quantile(counts: list[int], q: float) -> float:
    """The ``q`` quantile of per-bucket ``counts`` over the loader's buckets, in ms
    (linear within a bucket, as Prometheus' ``histogram_quantile``); nan when empty."""
    from meshcache.node.loader.timing import BUCKETS

    total = sum(counts)
    if not total:
        return float("nan")
    rank, seen, lower = q * total, 0, 0.0
    for bound, n in zip((*BUCKETS, BUCKETS[-1]), counts, strict=True):
        if n and seen + n >= rank:
            return (lower + (bound - lower) * (rank - seen) / n) * 1000
        seen += n
        lower = bound
    return BUCKETS[-1] * 1000


#: UPDATEs per run of ``window``: its p99 is then the 5th slowest of 500, not the slowest one
#: or two of 100 (a run takes about 10 s on a quiet machine).
WINDOW_UPDATES = 500


def window(db: Database, runs: int, tmp: Path, updates: int = WINDOW_UPDATES) -> None:
    """From a committed UPDATE until every node answers the new value, via NOTIFY; with the
    loader dropping announced keys and reloading them, run alternately."""
    import asyncpg

    from meshcache.node.loader.sql import trigger_sql

    query = counted_table(db, "win", 50)
    db.sql(trigger_sql("win_changes", "win", "id"))
    loader = {"source": "pg", "query": query, "channel": "win_changes"}
    print(
        f"consistency window, 3 nodes, {updates} UPDATEs per run, {runs} runs per mode and"
        f" read load, drop and reload alternately, every node polled at once (a thread each),"
        f" a background read load from another process; load {_load()}"
    )
    print(
        "| background reads | on_notify | run | p50 (ms) | p99 (ms) | max (ms) | other owner"
        " holds it p50/p99 | PG→client NOTIFY p50/p99 | node: notify_hop p50/p99 |"
        " notify_reload p50/p99 | query p50/p99 | on source p50/p99 | loads PostgreSQL counted"
        " | background GETs/s | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    results: dict[tuple[str, str], list[tuple[float, float, float, float, float]]] = {}
    with mesh_of(3, db, tmp / "window") as mesh:
        directs = [Direct(node.data_address) for node in mesh.nodes]

        def listening() -> bool:
            gauges = [mesh.mesh_info(node)["gauges"] for node in mesh.nodes]
            return all(g.get("loader_listening") == 1 for g in gauges)

        def installed(on_notify: str) -> bool:
            for node in mesh.nodes:
                policy = mesh.call(node, "NS_LIST", []).get("items") or {}
                if (policy.get("loader") or {}).get("on_notify") != on_notify:
                    return False
            return True

        def use(on_notify: str) -> None:
            mesh.wait_namespace("items", {"loader": {**loader, "on_notify": on_notify}})
            deadline = time.monotonic() + 30
            while not (installed(on_notify) and listening()):
                if time.monotonic() > deadline:
                    raise SystemExit("the nodes did not listen within 30 s")
                time.sleep(0.05)

        async def measure(tag: str) -> tuple[list[float], list[float], list[float]]:
            from concurrent.futures import ThreadPoolExecutor

            # Every node polled at once, one thread each: a node's window ends when its own
            # GET returns the new value, not after the other nodes' GETs of that round.
            pool = ThreadPoolExecutor(len(directs) + 1)
            by_id = {node.node_id: Direct(node.data_address) for node in mesh.nodes}
            replicas = {str(i): by_id[mesh.owners(str(i).encode(), 2)[1]] for i in range(50)}
            conn = await asyncpg.connect(db.dsn)
            heard: dict[str, float] = {}
            # A plain client's LISTEN, on a loop of its own in another thread (the polling
            # below blocks this one): PostgreSQL's own NOTIFY delivery on this machine.
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, daemon=True)
            thread.start()

            async def listen() -> Any:
                listener = await asyncpg.connect(db.dsn)
                await listener.add_listener(
                    "win_changes", lambda *a: heard.setdefault(a[3], time.perf_counter())
                )
                return listener

            listener = asyncio.run_coroutine_threadsafe(listen(), loop).result(30)
            windows, delivery, fanout = [], [], []
            try:
                for i in range(updates):
                    key = str(i % 50)
                    for d in directs:
                        d.call("GET", [key.encode()], "items")  # cached everywhere it is read
                    new = f"{tag}-{i}".encode()
                    heard.clear()
                    await conn.execute("UPDATE win SET v = $1 WHERE id = $2", new.decode(), key)
                    start = time.perf_counter()
                    seen = [pool.submit(_poll, d, key.encode(), new) for d in directs]
                    # The key's other owner holding the new value: the coordinator's replication.
                    held = pool.submit(_poll_record, replicas[key], key.encode(), new)
                    windows.append((max(f.result() for f in seen) - start) * 1000)
                    reached = held.result()
                    fanout.append(float("inf") if reached is None else (reached - start) * 1000)
                    for _ in range(1000):  # the plain client's NOTIFY, heard on its thread
                        if key in heard:
                            break
                        await asyncio.sleep(0.001)
                    if key in heard:
                        delivery.append(max(0.0, heard[key] - start) * 1000)
            finally:
                asyncio.run_coroutine_threadsafe(listener.close(), loop).result(30)
                loop.call_soon_threadsafe(loop.stop)
                thread.join(30)
                loop.close()
                await conn.close()
                pool.shutdown()
                for direct in by_id.values():
                    direct.close()
            return windows, delivery, fanout

        def fmt(counts: list[int]) -> str:
            return f"{histogram_quantile(counts, 0.5):.2f} / {histogram_quantile(counts, 0.99):.2f}"

        for load in ("none", "uniform", "zipf", "trending"):
            for run in range(runs):
                for on_notify in ("drop", "reload") if run % 2 == 0 else ("reload", "drop"):
                    use(on_notify)
                    before = _step_counts(mesh)
                    loads = calls(db, "win")
                    with _background_reads(mesh, load) as rate:
                        windows, delivery, fanout = asyncio.run(measure(f"{load}{run}{on_notify}"))
                    loads = calls(db, "win") - loads
                    after = _step_counts(mesh)
                    steps = {
                        k: [a - b for a, b in zip(after[k], before[k], strict=True)] for k in after
                    }
                    q = statistics.quantiles(windows, n=100)
                    dq = statistics.quantiles(delivery, n=100) if len(delivery) > 1 else [0.0] * 99
                    lost = sum(f == float("inf") for f in fanout)
                    fq = statistics.quantiles([f for f in fanout if f != float("inf")], n=100)
                    results.setdefault((load, on_notify), []).append(
                        (q[49], q[98], fq[49], fq[98], lost)
                    )
                    print(
                        f"| {load} | {on_notify} | {run + 1} | {q[49]:.2f} | {q[98]:.2f}"
                        f" | {max(windows):.2f} | {fq[49]:.2f} / {fq[98]:.2f} ({lost} never)"
                        f" | {dq[49]:.2f} / {dq[98]:.2f}"
                        f" | {fmt(steps['notify_hop'])} | {fmt(steps['notify_reload'])}"
                        f" | {fmt(steps['query'])} | {fmt(steps['query_on_source'])}"
                        f" | {loads} | {rate[0]:.0f} | {os.getloadavg()[0]:.1f} |",
                        flush=True,
                    )
                    if POLL_ERRORS:
                        print(f"  ({len(POLL_ERRORS)} GETs answered an error: {POLL_ERRORS[0]})")
                        POLL_ERRORS.clear()
        for d in directs:
            d.close()
    print()
    print(
        "| background reads | on_notify | p50 median (worst) | p99 median (worst) |"
        " other owner p50 median (worst) | other owner p99 median (worst) | other owner never |"
    )
    print("|---|---|---|---|---|---|---|")
    for (load, on_notify), values in results.items():
        cells = []
        for i in range(4):
            column = [v[i] for v in values]
            cells.append(f"{statistics.median(column):.2f} ({max(column):.2f})")
        never = sum(int(v[4]) for v in values)
        print(
            f"| {load} | {on_notify} | " + " | ".join(cells) + f" | {never} of"
            f" {updates * len(values)} |"
        )
    print(f"load after: {_load()}")


def outage(db: Database, tmp: Path, down: float = 10.0) -> None:
    """PostgreSQL stopped for ``down`` seconds under a read load of hits and misses."""
    from meshcache.errors import CommandError

    server = db.server
    if server is None:
        raise SystemExit("outage stops the server: run it without --dsn")
    query = counted_table(db, "outage", 100_000)
    loader = {"source": "pg", "query": query, "load_timeout": 1.0}
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


def _timing_counts(mesh: Mesh, namespace: str) -> dict[str, list[float]]:
    """Every node's loader step histograms, and its loads of ``namespace`` as ``load``, summed:
    counts per bucket, then the sum of the observations (seconds) as the last item."""
    total: dict[str, list[float]] = {}

    def add(name: str, histogram: dict[str, Any]) -> None:
        values = [*histogram["counts"], histogram["sum"]]
        have = total.setdefault(name, [0.0] * len(values))
        for i, n in enumerate(values):
            have[i] += n

    for node in mesh.nodes:
        timings = mesh.mesh_info(node)["loader_timings"]
        for step, histogram in timings["steps"].items():
            add(step, histogram)
        for load in timings["loads"]:
            if load["namespace"] == namespace:
                add("load", load)
    return total


#: The miss path's parts, as the chart stacks them (left to right).
MISS_STEPS = (
    "client",
    "forward hop",
    "bridge",
    "query on source",
    "store",
    "replicate",
    "flight",
)


def breakdown(db: Database, runs: int, tmp: Path, per_run: int = 300) -> None:
    """The miss path's steps at 3 and 6 nodes, from the nodes' own per-request timing.

    Each run sends ``per_run`` GETs of distinct missing keys (each has a row), one at a time,
    to a node that owns none of them, and reads every node's loader histograms (INFO's
    ``mesh.loader_timings``) before and after: forward (the non-owner's wait for the owner),
    load (the owner's load, start to stored), query (as the node waits for it), query on
    source (the driver's call alone), store, replicate; p50 and p99 from the buckets. The
    parts are differences of exact means (the histograms' sums over their counts), which add
    up: client = the GET's round trip seen by the client minus forward; forward hop =
    forward minus load; bridge = query minus query on source; flight = load minus query,
    store and replicate (scheduling the load, the flight's bookkeeping). The same keys are
    then read again, cached at their owner, the same way: that GET's forward (``hit
    forward``) is the anchor for the miss's forward hop. PostgreSQL counts the loads.
    """
    plain = counted_table(db, "steps", 300_000)
    results: dict[int, dict[str, float]] = {}
    raw: dict[int, dict[str, list[tuple[float, float, float]]]] = {}
    for n in (3, 6):
        per: dict[str, list[tuple[float, float, float]]] = {}
        with mesh_of(n, db, tmp / f"steps{n}") as mesh:
            mesh.wait_namespace("items", {"loader": {"source": "pg", "query": plain}})
            by_id = {node.node_id: Direct(node.data_address) for node in mesh.nodes}
            next_key = (n // 3 - 1) * 150_000  # keys with a row, new to this mesh
            for _ in range(runs):
                keys = [str(next_key + i).encode() for i in range(per_run)]
                next_key += per_run
                vias = [
                    next(d for nid, d in by_id.items() if nid not in mesh.owners(key, 2))
                    for key in keys
                ]
                loads = calls(db, "steps")
                for tag in ("", "hit "):  # the misses, then the same keys cached
                    before = _timing_counts(mesh, "items")
                    client = []
                    for key, via in zip(keys, vias, strict=True):
                        ms = _timed_get(via, key)
                        if ms is not None:
                            client.append(ms)
                    after = _timing_counts(mesh, "items")
                    q = statistics.quantiles(client, n=100)
                    per.setdefault(f"{tag}total", []).append(
                        (q[49], q[98], statistics.fmean(client))
                    )
                    steps: tuple[str, ...] = ("forward",)
                    if not tag:
                        steps += ("load", "query", "query_on_source", "store", "replicate")
                    for step in steps:
                        was = before.get(step, [0.0] * len(after[step]))  # no load before
                        delta = [a - b for a, b in zip(after[step], was, strict=True)]
                        counts, total = [int(c) for c in delta[:-1]], delta[-1]
                        mean = total * 1000 / sum(counts) if sum(counts) else float("nan")
                        per.setdefault(f"{tag}{step}", []).append(
                            (
                                histogram_quantile(counts, 0.5),
                                histogram_quantile(counts, 0.99),
                                mean,
                            )
                        )
                per.setdefault("loads counted", []).append((0.0, 0.0, calls(db, "steps") - loads))
            for d in by_id.values():
                d.close()
        raw[n] = per
        m = {k: statistics.median(v[2] for v in values) for k, values in per.items()}
        print(
            f"{n} nodes: a miss's forward hop {m['forward'] - m['load']:.3f} ms (mean) against a"
            f" cached GET's whole forward {m['hit forward']:.3f} ms",
            flush=True,
        )
        results[n] = {
            "client": max(0.0, m["total"] - m["forward"]),
            "forward hop": max(0.0, m["forward"] - m["load"]),
            "bridge": max(0.0, m["query"] - m["query_on_source"]),
            "query on source": m["query_on_source"],
            "store": m["store"],
            "replicate": m["replicate"],
            "flight": max(0.0, m["load"] - m["query"] - m["store"] - m["replicate"]),
        }
    print(
        f"miss path, {runs} runs of {per_run} distinct missing keys through a non-owner; the"
        f" nodes' own step histograms; p50 / p99 / mean (ms), median of the runs; load {_load()}"
    )
    names: tuple[str, ...] = ("total", "forward", "load", "query", "query_on_source")
    names += ("store", "replicate", "hit total", "hit forward")
    print("| nodes | " + " | ".join(names) + " | loads PostgreSQL counted per run |")
    print("|---|" + "---|" * (len(names) + 1))
    for n, per in raw.items():
        cells = []
        for name in names:
            p50, p99, mean = (statistics.median(v[i] for v in per[name]) for i in range(3))
            cells.append(f"{p50:.2f} / {p99:.1f} / {mean:.2f}")
        counted = " ".join(str(int(v[2])) for v in per["loads counted"])
        print(f"| {n} | " + " | ".join(cells) + f" | {counted} |")
    print()
    print("parts of the mean (ms):")
    print("| nodes | " + " | ".join(MISS_STEPS) + " | total | Raft |")
    print("|---|" + "---|" * (len(MISS_STEPS) + 2))
    for n, row in results.items():
        parts = " | ".join(f"{row[part]:.3f}" for part in MISS_STEPS)
        print(f"| {n} | {parts} | {sum(row.values()):.3f} | 0 |")
    print(f"GETs answered an error: {len(POLL_ERRORS)}")
    chart = Path("docs/loader_miss_path.png")
    write_bar_chart(chart, results, list(MISS_STEPS))
    print(f"chart: {chart}")


#: Colours of the chart's steps, in order (the table's columns).
_COLOURS = [
    (66, 133, 244),
    (219, 68, 55),
    (15, 157, 88),
    (244, 180, 0),
    (171, 71, 188),
    (0, 172, 193),
    (120, 120, 120),
]


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
            "mget",
            "all",
        ),
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dsn", help="an existing PostgreSQL (default: start one)")
    parser.add_argument("--rate", type=int, default=5000, help="stampede: GETs per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="stampede: duration")
    parser.add_argument(
        "--updates", type=int, default=WINDOW_UPDATES, help="window: UPDATEs per run"
    )
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
            window(db, args.runs, Path(tmp), args.updates)
        if args.what in ("outage", "all"):
            outage(db, Path(tmp))
        if args.what in ("steps", "all"):
            breakdown(db, args.runs, Path(tmp))
        if args.what in ("mget", "all"):
            mget(db, args.runs, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
