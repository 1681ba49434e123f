"""Consistency window: from a write's acknowledgement until every owner's store holds it.

Three nodes, the default namespace (replicas 2, consistency ``one``). Each write is a SET through
the smart client (it goes to the key's coordinator); from the moment the ack arrives, each owner's
own store is polled (``FWD GET``, no routing) until every owner returns the new value.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import meshcache
from meshcache.testing.mesh import Direct, Mesh, MeshError
from tools.mesh_figures.report import Flaps, flaps, percentile

POLL_LIMIT = 5.0  # seconds one write may take to reach every owner before the run fails


HEADER = [
    "writes",
    "keys",
    "p50 ms",
    "p99 ms",
    "max ms",
    "visible at first poll %",
    "suspect events",
    "dead events",
]


@dataclass(frozen=True, slots=True)
class ConsistencyResult:
    writes: int
    keys: int
    windows_ms: list[float]  # ascending
    zero: int  # writes every owner already held when the first poll answered
    flaps: Flaps

    def row(self) -> list[object]:
        w = self.windows_ms
        return [
            self.writes,
            self.keys,
            percentile(w, 50),
            percentile(w, 99),
            w[-1] if w else float("nan"),
            100 * self.zero / max(1, self.writes),
            self.flaps.suspicions,
            self.flaps.deaths,
        ]


def measure(tmp: Path, writes: int, keys: int = 100) -> ConsistencyResult:
    """``writes`` SETs over ``keys`` keys in a fresh 3-node mesh."""
    with ExitStack() as stack:
        mesh = Mesh(stack, tmp, 3)
        ring = mesh.current_ring()
        stores = {x.node_id: stack.enter_context(Direct(x.data_address)) for x in mesh.nodes}
        client = stack.enter_context(meshcache.Client(mesh.addresses))
        names = [b"cw%d" % i for i in range(keys)]
        owners = {k: [stores[m.node_id] for m in ring.owners(k, 2)] for k in names}
        windows: list[float] = []
        zero = 0
        for i in range(writes):
            key = names[i % keys]
            value = b"value-%d" % i
            client.set(key, value)
            acked = time.perf_counter()
            pending = list(owners[key])
            first = True
            while pending:
                pending = [d for d in pending if d.local_get(key) != value]
                if pending and time.perf_counter() - acked > POLL_LIMIT:
                    raise MeshError(f"write {i} not on every owner after {POLL_LIMIT}s")
                if first and not pending:
                    zero += 1
                first = False
            windows.append((time.perf_counter() - acked) * 1000)
        windows.sort()
        return ConsistencyResult(writes, keys, windows, zero, flaps(mesh))
