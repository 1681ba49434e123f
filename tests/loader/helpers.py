"""Tables, counting load functions, one real node and its listening set-up for the loader
tests."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

import meshcache
from meshcache.node.loader.loader import Loader
from meshcache.node.loader.sql import trigger_sql
from meshcache.node.node import Node
from meshcache.settings import load_settings
from meshcache.testing.postgres import PostgresServer

_TABLES = itertools.count(1)


class Database:
    """The DSN of the test server, and psql against it."""

    def __init__(self, dsn: str, server: PostgresServer | None) -> None:
        self.dsn = dsn
        self.server = server

    def sql(self, text: str) -> str:
        if self.server is not None:
            return self.server.psql(text)
        done = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", self.dsn, "-c", text],
            capture_output=True,
            check=True,
            timeout=30,
        )
        return done.stdout.decode().strip()


class Table:
    """A fresh ``items`` table (id text, v text) with a load function that counts its calls.

    ``query`` loads one key through ``load_<name>($1)``, which bumps a counter row per call,
    so PostgreSQL itself counts the loads (``calls()``).
    """

    def __init__(self, db: Database, *, delay: float = 0.0) -> None:
        self.db = db
        self.name = f"items{next(_TABLES)}"
        n = self.name
        db.sql(
            f"CREATE TABLE {n} (id text PRIMARY KEY, v text);"
            f"CREATE TABLE {n}_calls (n bigint NOT NULL, fail bool NOT NULL DEFAULT false);"
            f"INSERT INTO {n}_calls VALUES (0);"
            f"CREATE FUNCTION load_{n}(k text) RETURNS SETOF text LANGUAGE plpgsql AS $$"
            f" BEGIN UPDATE {n}_calls SET n = n + 1; PERFORM pg_sleep({delay});"
            f" IF (SELECT fail FROM {n}_calls) THEN RAISE EXCEPTION 'told to fail'; END IF;"
            f" RETURN QUERY SELECT v FROM {n} WHERE id = k; END $$;"
        )
        self.query = f"SELECT * FROM load_{n}($1)"
        self.batch_query = f"SELECT id, v FROM {n} WHERE id = ANY($1)"

    def put(self, key: str, value: str) -> None:
        self.db.sql(
            f"INSERT INTO {self.name} VALUES ('{key}', '{value}') "
            f"ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v"
        )

    def fail(self, failing: bool) -> None:
        """Make the load function raise (the source refuses every load) or stop raising."""
        self.db.sql(f"UPDATE {self.name}_calls SET fail = {str(failing).lower()}")

    def calls(self) -> int:
        return int(self.db.sql(f"SELECT n FROM {self.name}_calls"))

    def loader(self, **extra: Any) -> dict[str, Any]:
        return {"source": "pg", "query": self.query, **extra}


def scrape(address: tuple[str, int]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A node's ``/metrics``: sample (name, labels) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://{address[0]}:{address[1]}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def histogram(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> tuple[float, float, list[tuple[float, float]]]:
    """One histogram's (count, sum, cumulative buckets as (le, count)) out of :func:`scrape`."""
    want = set(labels.items())
    count = total = 0.0
    buckets: list[tuple[float, float]] = []
    for (sample, sample_labels), value in samples.items():
        rest = set(sample_labels)
        if not want <= rest:
            continue
        if sample == f"{name}_count" and rest == want:
            count = value
        elif sample == f"{name}_sum" and rest == want:
            total = value
        elif sample == f"{name}_bucket" and rest - want <= {("le", dict(sample_labels)["le"])}:
            buckets.append((float(dict(sample_labels)["le"]), value))
    return count, total, sorted(buckets)


@asynccontextmanager
async def one_node(
    tmp_path: Path, dsn: str, namespaces: dict[str, Any], **source: Any
) -> AsyncIterator[tuple[Node, meshcache.TrioClient]]:
    """A real node in this test's trio run, with source ``pg`` at ``dsn``, and a client."""
    settings = load_settings(
        environ={},
        overrides={
            "port": 0,
            "admin_port": 0,
            "data_dir": str(tmp_path),
            "namespaces": namespaces,
            "sources": {"pg": {"dsn": dsn, **source}},
        },
    )
    node = Node(settings)
    async with trio.open_nursery() as nursery:
        info = await nursery.start(node.serve)
        address = f"{info.data_address[0]}:{info.data_address[1]}"
        async with meshcache.TrioClient(address) as client:
            yield node, client
        nursery.cancel_scope.cancel()


def loader_stats(node: Node) -> dict[str, int]:
    assert node.parts is not None
    stats: dict[str, int] = node.parts.loader.figures()["counters"]
    return stats


async def wait_until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    try:
        with trio.fail_after(timeout):
            while not condition():
                await trio.sleep(0.01)  # the poll interval; the deadline bounds the wait
    except trio.TooSlowError:
        raise AssertionError(f"{what}: not within {timeout} s") from None


@dataclass
class Listening:
    """A node listening for its table's NOTIFYs (see :func:`listening_node`)."""

    table: Table
    node: Node
    client: meshcache.TrioClient
    loader: Loader
    channel: str


@asynccontextmanager
async def listening_node(
    tmp_path: Path, db: Database, *, rows: dict[str, str], delay: float = 0.0, **loader: Any
) -> AsyncIterator[Listening]:
    """A fresh table holding ``rows`` with the NOTIFY trigger, and one node whose namespace
    ``items`` loads from it and listens on its channel (``loader``: more loader fields),
    once it listens; the rows are read through once, so the node holds them."""
    table = Table(db, delay=delay)
    for key, value in rows.items():
        table.put(key, value)
    channel = f"{table.name}_changes"
    db.sql(trigger_sql(channel, table.name, "id"))
    namespaces = {"items": {"loader": table.loader(channel=channel, **loader)}}
    async with one_node(tmp_path, db.dsn, namespaces) as (node, client):
        assert node.parts is not None
        parts = node.parts
        await wait_until(lambda: parts.loader.listening, "listening")
        for key, value in rows.items():
            assert await client.get(key, namespace="items") == value.encode()
        yield Listening(table, node, client, parts.loader, channel)
