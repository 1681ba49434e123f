"""The read-through loader's part of a chaos cycle, on the cluster: the cycle's rows, the
nodes' listeners after a heal, the final reads of every loader key through every node, and the
loader's counters and figures in a cycle's report (:mod:`.scenarios` runs the cycle,
:mod:`.loadercheck` judges it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from meshcache.errors import MeshcacheError
from meshcache.testing.chaos import loadercheck
from meshcache.testing.chaos.cluster import ChaosCluster
from meshcache.testing.chaos.history import FAIL, OK, now
from meshcache.testing.chaos.pgsource import (
    LOAD_TIMEOUT,
    LOADER_NAMESPACE,
    LOADER_TTL,
    ChaosDatabase,
    version_of,
)

#: The loader checker's bounds: the loader's TTL; a second for a load and a loaded machine;
#: 2 s from an UPDATE until its NOTIFY reloaded the key; 10 s for every key to read its last
#: version once the writer stopped.
LOADER_BOUNDS = loadercheck.LoaderBounds(ttl=LOADER_TTL, delta=1.0, notify=2.0, settle=10.0)
#: Seconds after every node listens again (after the heal) until the cycle is healthy again
#: for the loader checker: gossip and the ring agreeing, a coordinator per key.
LOADER_SETTLE = 3.0
#: Seconds the harness waits after the heal for every node to listen again.
LISTEN_BOUND = 30.0
#: The process name of the harness's reads of every loader key through every node.
LOADER_FINAL = "loader-final"
LOADER_COUNTERS = (
    "queries",
    "loaded",
    "coalesced",
    "stale_sets_prevented",
    "reloaded",
    "early_reloads",
    "load_failures",
    "load_timeouts",
    "fast_failures",
    "resyncs",
    "listener_lost",
)
LOADER_FIGURES = (
    "loads",
    "waves",
    "extra_loads",
    "extra_loads_under_fault",
    "stale_beyond_ttl",
    "stale_beyond_notify",
    "set_overwritten",
    "set_overwritten_under_fault",
    "wedged",
    "max_staleness_fault_ms",
    "settled_max_ms",
)


def loader_counters(cluster: ChaosCluster) -> dict[str, int]:
    """Every running node's loader counters (INFO ``mesh.counters.loader``), summed."""
    total: dict[str, int] = dict.fromkeys(LOADER_COUNTERS, 0)
    for node in cluster.running_nodes():
        info = cluster.try_call(node, "INFO", [], timeout=2.0)
        mesh = info.get("mesh", {}) if isinstance(info, dict) else {}
        counters = mesh.get("counters", {}).get("loader", {}) if isinstance(mesh, dict) else {}
        for name in LOADER_COUNTERS:
            value = counters.get(name) if isinstance(counters, dict) else None
            if type(value) is int:
                total[name] += value
    return total


def insert_rows(cluster: ChaosCluster, database: ChaosDatabase, keys: list[str]) -> None:
    """Insert the cycle's rows at version 0, recorded as a ``dbwrite`` of each key (the INSERT
    is announced on the channel like an UPDATE)."""
    history = cluster.history
    assert history is not None
    for n, key in enumerate(keys, 1):
        history.write(
            {"type": "invoke", "p": "db-setup", "n": n, "f": "dbwrite", "ns": LOADER_NAMESPACE,
             "key": key}
        )  # fmt: skip
    database.add_keys(keys)
    for n in range(1, len(keys) + 1):
        history.write({"type": OK, "p": "db-setup", "n": n, "f": "dbwrite", "result": 0})


def wait_listening(
    cluster: ChaosCluster, healed: float, bound: float
) -> tuple[float | None, float | None]:
    """After the heal: poll every node's ``loader_listening`` gauge until each listens on its
    channel again, and ring and membership agreement (at most ``bound`` seconds): when every
    node listened, and the seconds after the heal when they agreed (None: not in time).
    Agreement is timed here because the loader's cycle runs on long after the heal."""
    deadline = time.monotonic() + bound
    listening_at: float | None = None
    agreed_after: float | None = None
    while listening_at is None or agreed_after is None:
        if agreed_after is None and cluster.ring_agreed() and cluster.membership_agreed():
            agreed_after = now() - healed
        if listening_at is None:
            listening = []
            for node in cluster.nodes:
                info = cluster.try_call(node, "INFO", [], timeout=2.0)
                mesh = info.get("mesh", {}) if isinstance(info, dict) else {}
                listening.append(mesh.get("gauges", {}).get("loader_listening", 0))
            if all(n >= 1 for n in listening):
                listening_at = now()
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)  # the poll interval; the deadline bounds the wait
    return listening_at, agreed_after


def final_loader_reads(cluster: ChaosCluster, versions: Mapping[str, int], bound: float) -> None:
    """Read every loader key through every node, from the hub, in rounds until one round shows
    every key's last version everywhere (at most ``bound`` seconds); each read goes into the
    history as a ``get`` of process :data:`LOADER_FINAL` with its ``node``."""
    history = cluster.history
    assert history is not None
    deadline = time.monotonic() + bound
    n = 0
    while True:
        everywhere = True
        for key, version in sorted(versions.items()):
            for node in cluster.nodes:
                n += 1
                history.write(
                    {"type": "invoke", "p": LOADER_FINAL, "n": n, "f": "get",
                     "ns": LOADER_NAMESPACE, "key": key, "node": node.name}
                )  # fmt: skip
                done: dict[str, Any] = {"p": LOADER_FINAL, "n": n, "f": "get"}
                try:
                    got = cluster.call(
                        node, "GET", [key.encode()], LOADER_NAMESPACE, timeout=LOAD_TIMEOUT + 2
                    )
                    value = None if got is None else bytes(got).decode("utf-8", "replace")
                    done.update(type=OK, value=value)
                    everywhere &= version_of(key, value) == version
                except (OSError, MeshcacheError) as exc:
                    done.update(type=FAIL, error=f"{type(exc).__name__}: {exc}"[:300])
                    everywhere = False
                history.write(done)
        if everywhere or time.monotonic() > deadline:
            return
        time.sleep(0.25)  # the poll interval; the deadline bounds the wait
