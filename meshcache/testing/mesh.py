"""A mesh of real node processes on loopback, and blocking one-node connections to inspect it.

Used by the multi-process tests and by ``tools/mesh_figures``. The first node bootstraps the
config group (on kernel-picked data and Raft ports), the others join it with ``--profile
local``, and the mesh is ready once every node's RING lists every member as active. Nothing
here sleeps for a fixed time: it polls for a condition until a deadline.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from meshcache.errors import MeshcacheError
from meshcache.ring import Ring, RingMember, RingState
from meshcache.testing.nodes import NodeProcess
from meshcache.wire.frame import FrameReader, decode_response, encode_request


class MeshError(MeshcacheError):
    """The mesh did not do what was waited for in time, or a node died under a harness."""


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, every: float = 0.02
) -> float:
    """Poll ``condition`` until true; the seconds it took. Raises MeshError after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise MeshError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)  # the poll interval; the deadline bounds the wait
    return time.monotonic() - start


class Direct:
    """A blocking connection to exactly one node: no routing, no retries.

    ``local_get`` reads that node's own store (a ``FWD`` of ``GET`` runs where it lands).
    """

    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader()
        self.rid = 0

    def call(self, op: str, args: list[Any], namespace: str = "default") -> Any:
        self.rid += 1
        self.sock.sendall(encode_request(self.rid, op, namespace, args))
        while (body := self.reader.next_body()) is None:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("node closed the connection")
            self.reader.feed(data)
        return decode_response(body).result()

    def local_get(self, key: bytes, namespace: str = "default") -> bytes | None:
        value: bytes | None = self.call("FWD", ["GET", [key]], namespace)
        return value

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Direct:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rings_agreed(rings: list[dict[str, Any]], n: int) -> bool:
    """Whether RING results are one ring version of ``n`` members, every one active."""
    return len({r["version"] for r in rings}) == 1 and all(
        len(r["members"]) == n and all(m["state"] == RingState.ACTIVE for m in r["members"])
        for r in rings
    )


def ring_of(ring: dict[str, Any]) -> Ring:
    """A :class:`Ring` from a RING result."""
    members = [
        RingMember.from_mapping({k: v for k, v in m.items() if k != "share"})
        for m in ring["members"]
    ]
    return Ring(members, ring["version"])


class Mesh:
    """``n`` nodes in their own processes; all of them are killed when ``stack`` closes."""

    def __init__(self, stack: ExitStack, tmp: Path, n: int, *extra: str) -> None:
        self.stack = stack
        self.tmp = tmp
        self.extra = extra
        self.nodes: list[NodeProcess] = []
        # A bootstrap voter on a kernel-picked data port takes a kernel-picked Raft port too.
        self.start_node("--bootstrap")
        for _ in range(n - 1):
            self.start_node("--join", self.nodes[0].data)
        self.wait_ring(n)

    def start_node(self, *args: str, port: int = 0, name: str | None = None) -> NodeProcess:
        """Start one more node (``name``: its data dir under ``tmp``; reuse one to restart)."""
        name = name or f"n{len(self.nodes)}"
        node = NodeProcess(self.tmp / name, "--profile", "local", *self.extra, *args, port=port)
        self.stack.enter_context(node)
        self.nodes.append(node)
        return node

    @property
    def live(self) -> list[NodeProcess]:
        return [x for x in self.nodes if x.proc is not None and x.proc.poll() is None]

    @property
    def addresses(self) -> str:
        """``h:p,h:p,...`` of the live nodes, for a smart client."""
        return ",".join(x.data for x in self.live)

    def call(self, node: NodeProcess, op: str, args: list[Any], namespace: str = "default") -> Any:
        with Direct(node.data_address) as d:
            return d.call(op, args, namespace)

    def ring(self, node: NodeProcess) -> dict[str, Any]:
        ring: dict[str, Any] = self.call(node, "RING", [])
        return ring

    def ring_agreed(self, n: int, among: list[NodeProcess] | None = None) -> bool:
        """Every node (of ``among``) holds the same ring of ``n`` active members."""
        try:
            rings = [self.ring(x) for x in (among or self.live)]
        except (OSError, MeshcacheError):
            return False
        return rings_agreed(rings, n)

    def wait_ring(
        self, n: int, among: list[NodeProcess] | None = None, timeout: float = 60
    ) -> None:
        wait_for(lambda: self.ring_agreed(n, among), timeout, f"{n} active members everywhere")

    def wait_namespace(self, name: str, policy: dict[str, Any]) -> None:
        """Commit namespace ``name`` and wait until every live node has it."""
        self.call(self.nodes[0], "NS_SET", [name, policy])
        wait_for(
            lambda: all(name in self.call(x, "NS_LIST", []) for x in self.live),
            20,
            f"namespace {name} on every node",
        )

    def gossip_state(self, observer: NodeProcess, node_id: str) -> str | None:
        """The state ``observer``'s gossip holds for ``node_id`` (alive, suspect, dead, left)."""
        states = {m["name"]: m["state"] for m in self.call(observer, "MEMBERS", [])}
        return states.get(node_id)

    def current_ring(self) -> Ring:
        return ring_of(self.ring(self.live[0]))

    def owners(self, key: bytes, replicas: int) -> list[str]:
        """The node ids owning ``key`` by the current ring, in preference order."""
        return [m.node_id for m in self.current_ring().owners(key, replicas)]

    def by_id(self, node_id: str) -> NodeProcess:
        return next(x for x in self.nodes if x.node_id == node_id)

    def mesh_info(self, node: NodeProcess) -> dict[str, Any]:
        """INFO's ``mesh`` map of one node (data-plane counters and gauges)."""
        info: dict[str, Any] = self.call(node, "INFO", [])
        mesh: dict[str, Any] = info.get("mesh", {})
        return mesh

    def log_events(self, node: NodeProcess, event: str) -> list[dict[str, Any]]:
        """The node's JSON log lines whose event is ``event``, in order."""
        found = []
        for line in node.log_file.read_text(errors="replace").splitlines():
            if f'"{event}"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == event:
                found.append(entry)
        return found
