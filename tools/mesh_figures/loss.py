"""Acknowledged writes lost when a coordinator is killed with ``kill -9`` mid-stream.

Writer threads SET unique keys through one smart client as fast as they are answered and note
when each ack arrived. One node (not the bootstrap voter, so the config plane stays up) is
killed mid-stream. Once the survivors see it dead and their replica queues are empty, every
acknowledged key is read from every survivor's own store; a key no survivor holds with the
acknowledged value is a lost write. The *window* is how long before the kill the first lost
write was acknowledged (the async replication lag that ``one`` accepts).
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import meshcache
from meshcache.errors import MeshcacheError
from meshcache.testing.mesh import Direct, Mesh, wait_for
from tools.mesh_figures.report import Flaps, flaps

WRITERS = 4


@dataclass(frozen=True, slots=True)
class LossResult:
    namespace: str
    replicas: int
    consistency: str
    acked: int
    acked_by_victim: int  # acks for keys whose coordinator was the killed node
    failed: int
    lost: int
    window_ms: float  # kill time - ack time of the earliest lost write (nan when none lost)
    last_lost_ms: float  # kill time - ack time of the latest lost write
    flaps: Flaps  # about the members that were not killed

    def row(self) -> list[object]:
        return [
            f"{self.namespace} (replicas {self.replicas}, {self.consistency})",
            self.acked,
            self.acked_by_victim,
            self.failed,
            self.lost,
            self.window_ms,
            self.last_lost_ms,
            self.flaps.suspicions,
            self.flaps.deaths,
        ]


HEADER = [
    "namespace",
    "acked writes",
    "acked by the killed node",
    "failed (not acked)",
    "lost",
    "first lost ack before kill ms",
    "last lost ack before kill ms",
    "suspect events (others)",
    "dead events (others)",
]


def measure(tmp: Path, before: float, after: float) -> list[LossResult]:
    """One mesh; the default namespace (``one``), then ``q3`` (replicas 3, ``quorum``)."""
    results = []
    for ns, policy in (
        ("default", {"replicas": 2, "consistency": "one"}),
        ("q3", {"replicas": 3, "consistency": "quorum"}),
    ):
        with ExitStack() as stack:
            mesh = Mesh(stack, tmp / ns, 3)
            if ns != "default":
                mesh.wait_namespace(ns, policy)
            results.append(_run(stack, mesh, ns, int(str(policy["replicas"])), before, after))
    return results


def _run(
    stack: ExitStack, mesh: Mesh, ns: str, replicas: int, before: float, after: float
) -> LossResult:
    victim = mesh.nodes[1]
    ring = mesh.current_ring()
    client = stack.enter_context(meshcache.Client(mesh.addresses, timeout=3.0))
    acks: list[tuple[bytes, float]] = []
    failed = [0] * WRITERS
    stop = threading.Event()

    def writer(w: int) -> None:
        i = 0
        while not stop.is_set():
            key = b"loss-%d-%d" % (w, i)
            i += 1
            try:
                client.set(key, key, namespace=ns)
            except MeshcacheError:
                failed[w] += 1
                continue
            acks.append((key, time.monotonic()))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    try:
        time.sleep(before)  # the stream runs for this long before the kill (a schedule)
        victim.kill()
        killed_at = time.monotonic()
        time.sleep(after)  # and keeps going on the survivors for this long
    finally:
        stop.set()
        for t in threads:
            t.join()
    survivors = [x for x in mesh.nodes if x is not victim]

    def settled() -> bool:
        for node in survivors:
            members = {m["name"]: m["state"] for m in mesh.call(node, "MEMBERS", [])}
            gauges = mesh.mesh_info(node)["gauges"]
            if members.get(victim.node_id) == "alive" or gauges["replica_writes_queued"]:
                return False
        return True

    wait_for(settled, 30, "survivors see the kill and have no replica writes queued", 0.1)
    stores = [stack.enter_context(Direct(x.data_address)) for x in survivors]
    lost = [(key, at) for key, at in acks if all(d.local_get(key, ns) != key for d in stores)]
    by_victim = sum(
        1
        for key, at in acks
        if at <= killed_at and ring.owners(key, replicas)[0].node_id == victim.node_id
    )
    before_kill = sorted(killed_at - at for _, at in lost)
    return LossResult(
        ns,
        replicas,
        "one" if ns == "default" else "quorum",
        len(acks),
        by_victim,
        sum(failed),
        len(lost),
        before_kill[-1] * 1000 if lost else float("nan"),
        before_kill[0] * 1000 if lost else float("nan"),
        flaps(mesh, killed={victim.node_id}),
    )
