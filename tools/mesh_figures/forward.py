"""Pipelining through a non-owner: one connection of a non-smart client, against smart routing.

A non-smart client (or any client talking to the wrong node) sends every request to one node,
which forwards each key it does not own to the key's owner. This drives one connection to
node 0 with only keys node 0 does not own, at each pipeline depth, with tools/bench's closed
loop (pre-built frames, replies checked by bytes). The comparison is what a smart client does
with the same depth: one connection per node, each carrying only the keys that node owns.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from meshcache.testing.mesh import Mesh
from tools.bench.preload import preload
from tools.bench.protocols import MeshcacheProtocol
from tools.bench.workload import Workload, key
from tools.mesh_figures.preload import preload_by_owner
from tools.mesh_figures.throughput import Run, Target, drive

DEPTHS = (1, 16)


def measure(tmp: Path, keys: int, warmup: float, duration: float) -> list[Run]:
    """Closed-loop runs on a fresh 3-node mesh: non-smart then smart, per depth."""
    runs: list[Run] = []
    with ExitStack() as stack:
        mesh = Mesh(stack, tmp, 3)
        preload_by_owner(mesh, keys)
        host, port = mesh.nodes[0].data_address
        templates = preload(host, port, MeshcacheProtocol(), Workload(keys=1))
        ring = mesh.current_ring()
        primary: dict[str, list[int]] = {x.node_id: [] for x in mesh.nodes}
        for i in range(keys):
            primary[ring.owners(key(i), 1)[0].node_id].append(i)
        node = mesh.nodes[0]
        mine = set(primary[node.node_id])
        others = [i for i in range(keys) if i not in mine]
        for depth in DEPTHS:
            runs.append(
                drive(
                    "non-smart: 1 conn to a non-owner",
                    [Target(node.data_address, 1, others)],
                    templates,
                    depth=depth,
                    warmup=warmup,
                    duration=duration,
                )
            )
            runs.append(
                drive(
                    "smart: 1 conn per node, by owner",
                    [Target(x.data_address, 1, primary[x.node_id]) for x in mesh.nodes],
                    templates,
                    depth=depth,
                    warmup=warmup,
                    duration=duration,
                )
            )
    return runs
