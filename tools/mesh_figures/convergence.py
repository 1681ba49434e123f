"""Ring convergence with data: a join and a leave of a loaded mesh, timed from the ring.

Join: from the moment the new node's ring entry is committed as ``joining`` (the first RING of
the bootstrap node that lists it, polled every few ms) until every node's RING shows four active
members; the joiner's log gives ``handoff_pulled`` (records, seconds). Leave: once the join is
over — the three old nodes have dropped the keys they no longer own (``unowned_dropped``) — from
sending ``LEAVE`` to one node until it answers (``moved`` records) and until every remaining
node's RING shows three active members. Each figure is one topology change from a quiet mesh.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from meshcache.errors import MeshcacheError
from meshcache.testing.mesh import Direct, Mesh, MeshError, wait_for
from tools.mesh_figures.join import preload_mesh

POLL = 0.005


@dataclass(frozen=True, slots=True)
class ConvergenceResult:
    keys: int
    handoff_rate: str
    join_s: float  # joining committed -> active on every node
    pulled: int  # records the joiner pulled
    pull_s: float  # the joiner's own handoff_pulled seconds
    leave_answer_s: float  # LEAVE sent -> LEAVE answered
    leave_s: float  # LEAVE sent -> 3 active members on every remaining node
    moved: int

    def row(self) -> list[object]:
        return [
            self.keys,
            self.handoff_rate,
            self.join_s,
            self.pulled,
            self.pull_s,
            self.leave_answer_s,
            self.leave_s,
            self.moved,
        ]


HEADER = [
    "keys",
    "--handoff-rate",
    "join: joining -> active everywhere s",
    "records pulled",
    "joiner's pull s (log)",
    "leave: LEAVE -> answered s",
    "leave: LEAVE -> ring of 3 everywhere s",
    "records moved",
]


def _first_joining(mesh: Mesh, stop: threading.Event, seen: list[float]) -> None:
    """Poll the bootstrap node's RING until it lists a fourth member; note when."""
    with Direct(mesh.nodes[0].data_address) as d:
        while not stop.is_set():
            try:
                ring = d.call("RING", [])
            except (OSError, MeshcacheError):
                continue
            if len(ring["members"]) >= 4:
                seen.append(time.monotonic())
                return
            time.sleep(POLL)  # poll interval; bounded by the caller's deadline


def measure(tmp: Path, keys: int, handoff_rate: str | None) -> ConvergenceResult:
    extra = ("--handoff-rate", handoff_rate) if handoff_rate else ()
    with ExitStack() as stack:
        mesh = Mesh(stack, tmp, 3, *extra)
        preload_mesh(mesh, keys)
        seen: list[float] = []
        stop = threading.Event()
        watcher = threading.Thread(target=_first_joining, args=(mesh, stop, seen))
        watcher.start()
        try:
            joiner = mesh.start_node("--join", mesh.nodes[0].data)
            wait_for(lambda: mesh.ring_agreed(4), 300, "the fourth node active everywhere", POLL)
            active_at = time.monotonic()
        finally:
            stop.set()
            watcher.join()
        if not seen:
            raise MeshError("never saw the fourth member as joining")
        pulls = [e for e in mesh.log_events(joiner, "handoff_pulled") if e.get("records")]
        pulled = sum(int(e["records"]) for e in pulls)
        pull_s = sum(float(e["seconds"]) for e in pulls)
        version = int(mesh.ring(joiner)["version"])
        for old in mesh.nodes[:3]:
            wait_for(
                lambda old=old: any(  # type: ignore[misc]
                    int(e.get("ring_version", 0)) >= version
                    for e in mesh.log_events(old, "unowned_dropped")
                ),
                120,
                f"{old.node_id} to drop what it no longer owns",
                0.05,
            )
        leaver = mesh.nodes[1]
        rest = [x for x in mesh.nodes if x is not leaver]
        sent = time.monotonic()
        with Direct(leaver.data_address, timeout=600) as d:
            result = d.call("LEAVE", [{"timeout": 300}])
        answered = time.monotonic()
        wait_for(lambda: mesh.ring_agreed(3, among=rest), 300, "ring of 3 after the leave", POLL)
        left = time.monotonic()
        return ConvergenceResult(
            keys,
            handoff_rate or "64MiB (default)",
            active_at - seen[0],
            pulled,
            pull_s,
            answered - sent,
            left - sent,
            int(result["moved"]),
        )
