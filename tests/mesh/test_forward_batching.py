"""Plain clients through a non-owner, on both ports of real node processes: forwards batched per
peer without a task each, answered in request order, with mixed owners, and a peer killed while
a batch is out.
"""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis

from meshcache.node.node import READY_FILE
from meshcache.testing.mesh import Direct, Mesh, wait_for
from meshcache.testing.nodes import NodeProcess
from meshcache.wire.address import parse_address
from meshcache.wire.frame import FrameReader, Response, decode_response, encode_request

pytestmark = pytest.mark.slow


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    with ExitStack() as stack:
        yield Mesh(stack, tmp_path, 3, "--resp-port", "0")


def resp_port(node: NodeProcess) -> int:
    info = json.loads((node.data_dir / READY_FILE).read_text())
    return parse_address(info["resp"], default_port=None)[1]


def mixed_keys(mesh: Mesh, n: int) -> list[bytes]:
    """``n`` keys whose primary owners take turns over the three nodes."""
    ring = mesh.current_ring()
    by_owner: dict[str, list[bytes]] = {x.node_id: [] for x in mesh.nodes}
    i = 0
    while min(len(v) for v in by_owner.values()) < n // 3 + 1:
        key = b"mixed%d" % i
        by_owner[ring.owners(key, 1)[0].node_id].append(key)
        i += 1
    turns = list(zip(*by_owner.values(), strict=False))
    return [k for turn in turns for k in turn][:n]


def answers(sock: socket.socket, n: int) -> list[Response]:
    reader = FrameReader()
    out: list[Response] = []
    while len(out) < n:
        body = reader.next_body()
        if body is not None:
            out.append(decode_response(body))
            continue
        data = sock.recv(1 << 20)
        if not data:
            raise ConnectionError(f"closed after {len(out)} of {n} answers")
        reader.feed(data)
    return out


def forwarded_out(node: NodeProcess) -> int:
    with Direct(node.data_address) as direct:
        info: dict[str, Any] = direct.call("INFO", [])
    return int(info["mesh"]["counters"]["dataplane"].get("forwarded_out", 0))


def test_a_pipeline_of_mixed_owners_is_answered_in_order_on_the_data_port(mesh: Mesh) -> None:
    a = mesh.nodes[0]
    keys = mixed_keys(mesh, 300)
    requests: list[tuple[str, list[Any]]] = []
    for i, key in enumerate(keys):
        # Each GET right behind the SET of its key, each SET over the one before it.
        requests += [("SET", [key, b"old"]), ("SET", [key, b"v%d" % i]), ("GET", [key])]
    burst = b"".join(
        encode_request(rid, op, "default", args) for rid, (op, args) in enumerate(requests, 1)
    )
    before = forwarded_out(a)
    with socket.create_connection(a.data_address, timeout=30) as sock:
        for _ in range(2):  # the second time every peer connection is open already
            sock.sendall(burst)
            got = answers(sock, len(requests))
            assert [r.id for r in got] == list(range(1, len(requests) + 1))
            expected: list[Any] = []
            for i in range(len(keys)):
                expected += [True, True, b"v%d" % i]
            assert [r.result() for r in got] == expected
    assert forwarded_out(a) - before >= 2 * 2 * len(requests) // 3 - 3  # two thirds forwarded


def test_a_pipeline_of_mixed_owners_is_answered_in_order_on_the_resp_port(mesh: Mesh) -> None:
    keys = mixed_keys(mesh, 300)
    r = redis.Redis(port=resp_port(mesh.nodes[0]), socket_timeout=30)
    try:
        for _ in range(2):
            pipe = r.pipeline(transaction=False)
            for i, key in enumerate(keys):
                pipe.set(key, b"old")
                pipe.incr(key + b":n")
                pipe.set(key, b"v%d" % i)
                pipe.get(key)
            got = pipe.execute()
            expected: list[Any] = []
            for i in range(len(keys)):
                expected += [True, got[4 * i + 1], True, b"v%d" % i]
            assert got == expected
            assert all(type(n) is int and n >= 1 for n in got[1::4])
    finally:
        r.close()


def test_a_peer_killed_while_a_batch_is_out_fails_only_its_requests(mesh: Mesh) -> None:
    a, b, _ = mesh.nodes
    ring = mesh.current_ring()
    keys = mixed_keys(mesh, 600)
    on_b = [k for k in keys if ring.owners(k, 1)[0].node_id == b.node_id]
    not_on_b = [k for k in keys if ring.owners(k, 1)[0].node_id != b.node_id]
    # Every key stored on its owners first (replicas 2: each has a second owner).
    with Direct(a.data_address) as direct:
        direct.call("MSET", [x for k in keys for x in (k, b"=" + k)])

    def replicated() -> bool:  # b's keys on their second owners (replication is async)
        for owner in (x for x in mesh.nodes if x is not b):
            with Direct(owner.data_address) as direct:
                mine = [k for k in on_b if ring.owners(k, 2)[1].node_id == owner.node_id]
                if any(direct.local_get(k) != b"=" + k for k in mine):
                    return False
        return True

    wait_for(replicated, 30, "b's keys on their second owners")
    gets = [("GET", [k]) for k in keys]
    burst = b"".join(
        encode_request(rid, op, "default", args) for rid, (op, args) in enumerate(gets, 1)
    )
    with socket.create_connection(a.data_address, timeout=60) as sock:
        sock.sendall(burst)
        assert b.proc is not None
        b.proc.send_signal(signal.SIGKILL)  # while the batch is out (or about to be)
        b.proc.wait()
        got = answers(sock, len(gets))
        assert [r.id for r in got] == list(range(1, len(gets) + 1))
        for key, response in zip(keys, got, strict=True):
            if key in not_on_b or response.ok:
                # Not b's: unaffected. b's: failed over to its second owner, or answered
                # before b died — either way the value.
                assert response.result() == b"=" + key
            else:
                assert key in on_b
                assert response.value[0] in ("UNAVAILABLE", "TIMEOUT")
        # The client's connection goes on: a second batch without b is answered in order.
        again = [("GET", [k]) for k in not_on_b[:100]]
        sock.sendall(
            b"".join(
                encode_request(rid, op, "default", args) for rid, (op, args) in enumerate(again, 1)
            )
        )
        got = answers(sock, len(again))
        assert [r.result() for r in got] == [b"=" + k for k in not_on_b[:100]]
