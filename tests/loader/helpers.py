"""Tables, counting load functions and node settings for the loader tests."""

from __future__ import annotations

import itertools
import subprocess
from typing import Any

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
