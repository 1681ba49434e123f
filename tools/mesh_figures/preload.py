"""Filling a mesh fast: each key is sent straight to its primary owner, pipelined.

Sending everything through one node is far slower: that node forwards each key it does not own
and answers one client connection's pipelined requests one at a time, so every forwarded SET
costs a full hop round trip (measured: about 1,000 SETs/s through one node of three).
"""

from __future__ import annotations

import socket

from meshcache.testing.mesh import Mesh, MeshError
from tools.bench.protocols import MeshcacheProtocol
from tools.bench.workload import Workload, key

BATCH = 1000


def preload_by_owner(mesh: Mesh, keys: int, value_size: int = 100) -> None:
    """SET ``key(0..keys-1)`` to the workload's value, each on its primary owner."""
    ring = mesh.current_ring()
    protocol = MeshcacheProtocol()
    value = Workload(value_size=value_size).value()
    by_node: dict[str, list[int]] = {x.node_id: [] for x in mesh.live}
    for i in range(keys):
        by_node[ring.owners(key(i), 1)[0].node_id].append(i)
    for node_id, indexes in by_node.items():
        with socket.create_connection(mesh.by_id(node_id).data_address, timeout=60) as sock:
            for start in range(0, len(indexes), BATCH):
                part = indexes[start : start + BATCH]
                sock.sendall(b"".join(protocol.set(key(i), value) for i in part))
                _expect_ok(sock, protocol, len(part))


def _expect_ok(sock: socket.socket, protocol: MeshcacheProtocol, n: int) -> None:
    buf = bytearray()
    pos = 0
    while n:
        end = protocol.reply_end(buf, pos)
        if end < 0:
            data = sock.recv(1 << 20)
            if not data:
                raise MeshError("a node closed the preload connection")
            buf += data
            continue
        if protocol.classify(bytes(buf[pos:end])) != 0:
            raise MeshError(f"a preload SET was refused: {bytes(buf[pos:end])[:200]!r}")
        pos = end
        n -= 1
