"""The read-through workload: a database writer and readers of the loader keys.

Two client roles of :class:`~.workload.ClientSpec`, run by a worker like the others:

* ``db-writer`` (in the hub, whose traffic no fault touches): UPDATEs one random row of the
  cycle's keys (``<prefix>l<i>``, ``keys`` of them) ``rate`` times a second through its own
  connection (``dsn``: the database's Unix socket), recording ``f = "dbwrite"`` with the
  version the UPDATE made (``result``); a failed UPDATE is ``unknown`` (it may have committed);
* ``loader-reader``: GETs those keys in :data:`~.pgsource.LOADER_NAMESPACE` through its client
  (smart or plain, like the mixed clients), and with probability ``writes`` SETs one instead,
  value ``<key>:s:<client>:<n>`` with the loader's TTL (a client's write in a read-through
  namespace, which a load running meanwhile must not overwrite).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from functools import partial
from typing import Any

from meshcache.testing.chaos.history import FAIL, OK, UNKNOWN, HistoryWriter, now
from meshcache.testing.chaos.pgsource import LOADER_NAMESPACE, LOADER_TTL, UPDATE


def _pace(next_at: float, period: float, stop: threading.Event) -> float:
    next_at = max(next_at + period, time.monotonic() - period)
    stop.wait(max(0.0, next_at - time.monotonic()))  # pacing, not a condition
    return next_at


def run_db_writer(spec: Any, history: HistoryWriter, stop: threading.Event) -> None:
    """UPDATE rows until ``stop`` is set (see the module doc)."""
    asyncio.run(_write_rows(spec, history, stop))


async def _write_rows(spec: Any, history: HistoryWriter, stop: threading.Event) -> None:
    import asyncpg

    rng = random.Random(spec.seed)
    period = 1.0 / spec.rate
    next_at = time.monotonic()
    n = 0
    conn: Any = None
    try:
        while not stop.is_set():
            n += 1
            key = f"{spec.key_prefix}l{rng.randrange(spec.keys)}"
            history.write(
                {"type": "invoke", "p": spec.name, "n": n, "f": "dbwrite", "ns": LOADER_NAMESPACE,
                 "key": key}
            )  # fmt: skip
            done: dict[str, Any] = {"p": spec.name, "n": n, "f": "dbwrite"}
            try:
                if conn is None:
                    conn = await asyncpg.connect(spec.dsn, timeout=spec.timeout)
                version = await conn.fetchval(UPDATE, key, timeout=spec.timeout)
                done["type"], done["result"] = OK, int(version)
            except Exception as exc:  # recorded; the next UPDATE opens a new connection
                done["type"], done["error"] = UNKNOWN, f"{type(exc).__name__}: {exc}"[:300]
                if conn is not None:
                    conn.terminate()
                    conn = None
            done["t"] = now()
            history.write(done)
            next_at = max(next_at + period, time.monotonic() - period)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # pacing
    finally:
        if conn is not None:
            await conn.close()


def run_loader_reader(spec: Any, history: HistoryWriter, stop: threading.Event) -> None:
    """GET (and now and then SET) the loader keys until ``stop`` is set."""
    import meshcache

    rng = random.Random(spec.seed)
    seeds = list(spec.seeds) if spec.smart else list(spec.seeds[:1])
    client = meshcache.Client(
        seeds, timeout=spec.timeout, connect_timeout=spec.timeout, smart=spec.smart
    )
    node = None if spec.smart else seeds[0]
    ns = LOADER_NAMESPACE
    period = 1.0 / spec.rate if spec.rate > 0 else 0.0
    next_at = time.monotonic()
    n = 0
    try:
        while not stop.is_set():
            n += 1
            key = f"{spec.key_prefix}l{rng.randrange(spec.keys)}"
            record: dict[str, Any] = {"type": "invoke", "p": spec.name, "n": n, "ns": ns}
            record["key"] = key
            if node is not None:
                record["node"] = node
            done: dict[str, Any] = {"p": spec.name, "n": n}
            if rng.random() < spec.writes:
                value = f"{key}:s:{spec.name}:{n}"
                call: Any = partial(client.set, key, value.encode(), ttl=LOADER_TTL, namespace=ns)
                record.update(f="set", value=value)
            else:
                call = partial(client.get, key, namespace=ns)
                record["f"] = "get"
            done["f"] = record["f"]
            history.write(record)
            try:
                got = call()
                if record["f"] == "get":
                    done["value"] = None if got is None else got.decode("utf-8", "replace")
                done["type"] = OK
            except Exception as exc:  # every outcome is recorded
                done["type"] = FAIL if record["f"] == "get" else UNKNOWN
                done["error"] = f"{type(exc).__name__}: {exc}"[:300]
            done["t"] = now()
            history.write(done)
            if period:
                next_at = _pace(next_at, period, stop)
    finally:
        client.close()


__all__ = ["run_db_writer", "run_loader_reader"]
