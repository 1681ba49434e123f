"""The chaos run's PostgreSQL: a read-through source in a network namespace of its own.

:class:`ChaosDatabase` runs a throwaway server (:class:`~meshcache.testing.postgres.PostgresServer`)
in the run's namespace ``mcchaos-<rid>-db`` at ``10.77.0.200:5432``, on the bridge like a node,
so network faults cut nodes off from it too. Its files live in the run's temporary directory
and its processes in the run's namespace: the harness's cleanup, the sweeper and the reaper
remove it with everything else (``netns.cleanup_run`` kills what runs in a run's namespaces).
The harness reaches it through its Unix socket, which no fault touches.

Its schema (:data:`SCHEMA`):

* ``chaos_items (id, version, v)``: versioned rows, ``v = '<id>:<version>'``, so a value read
  through the cache names the version it shows; the NOTIFY trigger of docs/loader.md announces
  every change on :data:`CHANNEL`;
* ``chaos_load(k)``: the loader's query; it logs every call in ``chaos_loads (id, at, by)``
  (the server's wall clock, seconds, and the address of the node that asked), so PostgreSQL
  itself counts the loads of each key and names who made them. A call cancelled before it
  commits (a load timed out at the node) leaves no row.

The namespace :data:`LOADER_NAMESPACE` loads through it (:func:`loader_policy`: TTL
:data:`LOADER_TTL`, ``on_notify = "reload"``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from meshcache.node.loader.sql import trigger_sql
from meshcache.testing.chaos import netns
from meshcache.testing.chaos.netns import Endpoint
from meshcache.testing.postgres import PostgresServer

#: The namespace whose keys are read through from the run's database.
LOADER_NAMESPACE = "chaos-load"
#: The name of the source in every node's ``[sources.NAME]``.
SOURCE = "pg"
#: The endpoint of the database (``mcchaos-<rid>-db``), its host number and bridge port.
DB_ENDPOINT = "db"
DB_HOST = 200
DB_PORT_INDEX = 90
PG_PORT = 5432
TABLE = "chaos_items"
CHANNEL = "chaos_items_changes"
#: Seconds a loaded value lives (and a client's SET of a loader key, see the workload).
LOADER_TTL = 3.0
#: Seconds a load may take before its waiters are told ``LOADER_UNAVAILABLE``.
LOAD_TIMEOUT = 1.5
QUERY = "SELECT * FROM chaos_load($1)"
SCHEMA = f"""
CREATE TABLE {TABLE} (id text PRIMARY KEY, version bigint NOT NULL, v text NOT NULL);
CREATE TABLE chaos_loads (id text NOT NULL, at double precision NOT NULL, by text NOT NULL);
CREATE FUNCTION chaos_load(k text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO chaos_loads
    VALUES (k, extract(epoch FROM clock_timestamp()), coalesce(host(inet_client_addr()), 'local'));
  RETURN QUERY SELECT v FROM {TABLE} WHERE id = k;
END $$;
"""
#: The database writer's statement: the next version of one row.
UPDATE = (
    f"UPDATE {TABLE} SET version = version + 1, v = id || ':' || (version + 1)"
    " WHERE id = $1 RETURNING version"
)


def loader_policy() -> dict[str, Any]:
    """The ``loader`` field of :data:`LOADER_NAMESPACE`'s policy."""
    return {
        "source": SOURCE,
        "query": QUERY,
        "ttl": LOADER_TTL,
        "load_timeout": LOAD_TIMEOUT,
        "channel": CHANNEL,
        "on_notify": "reload",
    }


def version_of(key: str, value: str | None) -> int | None:
    """The database version a value read of ``key`` shows (``<key>:<version>``), or None (a
    miss, or a value a client SET)."""
    if value is None or not value.startswith(f"{key}:"):
        return None
    rest = value[len(key) + 1 :]
    return int(rest) if rest.isdigit() else None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class ChaosDatabase:
    """The run's PostgreSQL in ``endpoint``'s namespace, its files under ``root``."""

    def __init__(self, endpoint: Endpoint, root: Path) -> None:
        self.endpoint = endpoint
        self.root = root
        self.server = PostgresServer(
            port=PG_PORT,
            host=endpoint.address,
            root=root,
            enter=lambda: netns.join(endpoint.netns),
        )
        # The server logs loads in wall-clock seconds; the history uses time.monotonic().
        self.wall_offset = time.time() - time.monotonic()

    @property
    def dsn(self) -> str:
        """The nodes' DSN: TCP to the database's address on the bridge."""
        return self.server.dsn

    @property
    def local_dsn(self) -> str:
        """The harness's DSN: the server's Unix socket (no network fault reaches it)."""
        return f"postgresql://{self.server.user}@/{self.server.database}?host={self.root}&port={PG_PORT}"

    def start(self) -> None:
        """Start the server in its namespace and create the schema and the NOTIFY trigger."""
        self.server.start()
        self.sql(SCHEMA + trigger_sql(CHANNEL, TABLE, "id"))

    def stop(self) -> None:
        self.server.stop()

    def sql(self, text: str) -> str:
        return self.server.psql(text)

    def add_keys(self, keys: list[str]) -> None:
        """Rows for ``keys`` at version 0."""
        if keys:
            rows = ",".join(f"({_quote(k)}, 0, {_quote(k + ':0')})" for k in keys)
            self.sql(f"INSERT INTO {TABLE} VALUES {rows} ON CONFLICT (id) DO NOTHING")

    def versions(self, prefix: str) -> dict[str, int]:
        """Each row's version, for the keys starting with ``prefix``."""
        out = self.sql(f"SELECT id, version FROM {TABLE} WHERE starts_with(id, {_quote(prefix)})")
        return {k: int(v) for k, v in (line.split("|") for line in out.splitlines() if line)}

    def loads(self, prefix: str) -> list[tuple[str, float, str]]:
        """Every logged load of a key starting with ``prefix``: (key, time.monotonic() time,
        the address of the node that made it)."""
        out = self.sql(
            f"SELECT id, at, by FROM chaos_loads WHERE starts_with(id, {_quote(prefix)})"
            " ORDER BY at"
        )
        rows = (line.split("|") for line in out.splitlines() if line)
        return [(k, float(at) - self.wall_offset, by) for k, at, by in rows]


__all__ = [
    "CHANNEL",
    "DB_ENDPOINT",
    "DB_HOST",
    "DB_PORT_INDEX",
    "LOADER_NAMESPACE",
    "LOADER_TTL",
    "LOAD_TIMEOUT",
    "PG_PORT",
    "QUERY",
    "SOURCE",
    "TABLE",
    "UPDATE",
    "ChaosDatabase",
    "loader_policy",
    "version_of",
]
