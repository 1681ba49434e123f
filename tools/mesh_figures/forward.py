"""Pipelining through a non-owner: one connection of a non-smart client, against smart routing.

A non-smart client (any Redis client, or any client talking to the wrong node) sends every
request to one node, which forwards each key it does not own to the key's owner. This drives
one connection to node 0 with only keys node 0 does not own, at each pipeline depth, with
tools/bench's closed loop (pre-built requests, replies checked by bytes), on the msgpack data
port and on the RESP port. The comparison is what a smart client does with the same depth: one
connection per node, each carrying only the keys that node owns, on the same protocol. Beside
it, one connection to one owner with only its keys at the same depth: the same client without
the hop, which a client through a non-owner cannot outrun.

Beside each non-smart run: node 0's CPU seconds per request (its process's user + system time
over the measured run, warm-up included, divided by the requests answered then), the cost of a
forward on the non-owner.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from meshcache.testing.mesh import Mesh
from meshcache.testing.nodes import NodeProcess
from tools.bench.preload import preload
from tools.bench.protocols import MeshcacheProtocol, Protocol, RedisProtocol
from tools.bench.workload import Workload, key
from tools.mesh_figures.preload import preload_by_owner
from tools.mesh_figures.report import flaps
from tools.mesh_figures.throughput import Run, Target, drive

DEPTHS = (1, 16)
PROTOCOLS = ("msgpack", "resp")


@dataclass(frozen=True, slots=True)
class ForwardRun:
    """One closed-loop run, with the non-owner's CPU per request (None for smart runs)."""

    protocol: str
    run: Run
    cpu_us: float | None

    def row(self) -> list[object]:
        r = self.run
        return [
            self.protocol,
            r.label,
            r.conns,
            r.depth,
            round(r.ops_per_s),
            r.p50_ms,
            r.p99_ms,
            "-" if self.cpu_us is None else round(self.cpu_us, 1),
            "ok" if not (r.errors or r.misses) else f"{r.errors} err {r.misses} miss",
            r.flaps.suspicions,
            r.flaps.deaths,
        ]


HEADER = [
    "port",
    "target",
    "conns",
    "depth",
    "ops/s",
    "p50 ms",
    "p99 ms",
    "node 0 us/req",
    "replies",
    "suspect events (mesh)",
    "dead events (mesh)",
]


def rows(runs: list[ForwardRun]) -> list[list[object]]:
    """Each run's row, the non-smart ones with their ops/s as a share of the smart client's
    on the same port at the same depth."""
    out = []
    for r in runs:
        ratio: object = ""
        if r.cpu_us is not None:
            smart = [
                s.run.ops_per_s
                for s in runs
                if s.run.label.startswith("smart")
                and s.protocol == r.protocol
                and s.run.depth == r.run.depth
            ]
            ratio = r.run.ops_per_s / smart[0] if smart and smart[0] else float("nan")
        out.append([*r.row(), ratio])
    return out


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _resp(node: NodeProcess) -> tuple[str, int]:
    assert node.resp_address is not None, "started without --resp-port"
    return node.resp_address


def measure(
    tmp: Path,
    keys: int,
    warmup: float,
    duration: float,
    protocols: tuple[str, ...] = PROTOCOLS,
) -> list[ForwardRun]:
    """Closed-loop runs on a fresh 3-node mesh: per protocol and depth, non-smart then smart."""
    runs: list[ForwardRun] = []
    with ExitStack() as stack:
        mesh = Mesh(stack, tmp, 3, "--resp-port", "0")
        preload_by_owner(mesh, keys)
        ring = mesh.current_ring()
        primary: dict[str, list[int]] = {x.node_id: [] for x in mesh.nodes}
        for i in range(keys):
            primary[ring.owners(key(i), 1)[0].node_id].append(i)
        node = mesh.nodes[0]
        assert node.proc is not None
        mine = set(primary[node.node_id])
        others = [i for i in range(keys) if i not in mine]
        for name in protocols:
            protocol: Protocol
            if name == "resp":
                protocol = RedisProtocol()
                address = {x.node_id: _resp(x) for x in mesh.nodes}
            else:
                protocol = MeshcacheProtocol()
                address = {x.node_id: x.data_address for x in mesh.nodes}
            templates = preload(*address[node.node_id], protocol, Workload(keys=1))
            for depth in DEPTHS:
                before = _cpu_seconds(node.proc.pid)
                run = drive(
                    "non-smart: 1 conn to a non-owner",
                    [Target(address[node.node_id], 1, others)],
                    templates,
                    depth=depth,
                    warmup=warmup,
                    duration=duration,
                    protocol=protocol,
                )
                spent = _cpu_seconds(node.proc.pid) - before
                # The CPU covers warm-up and measurement; the ops were counted over the
                # measurement: scale by the run's rate over both.
                done = run.ops_per_s * (warmup + duration)
                runs.append(ForwardRun(name, run, 1e6 * spent / done if done else None))
                owner = mesh.nodes[1].node_id
                for label, targets in (
                    (
                        "smart: 1 conn per node, by owner",
                        [Target(address[x.node_id], 1, primary[x.node_id]) for x in mesh.nodes],
                    ),
                    (
                        "direct: 1 conn to an owner, its keys",
                        [Target(address[owner], 1, primary[owner])],
                    ),
                ):
                    anchor = drive(
                        label,
                        targets,
                        templates,
                        depth=depth,
                        warmup=warmup,
                        duration=duration,
                        protocol=protocol,
                    )
                    runs.append(ForwardRun(name, anchor, None))
        seen = flaps(mesh)
    return [dataclasses.replace(r, run=dataclasses.replace(r.run, flaps=seen)) for r in runs]
