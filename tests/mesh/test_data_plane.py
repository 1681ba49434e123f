"""The mesh data plane across real processes: routing, replication, repair, rebalancing."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from meshcache.errors import MeshcacheError
from meshcache.hlc import make_version
from meshcache.testing.mesh import Direct, Mesh
from meshcache.testing.ports import free_port
from tests.mesh.helpers import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def keys(n: int, prefix: str = "k") -> list[bytes]:
    return [f"{prefix}{i}".encode() for i in range(n)]


def test_every_node_agrees_and_serves_every_key(stack: ExitStack, tmp_path: Path) -> None:
    mesh = Mesh(stack, tmp_path, 3)
    rings = [mesh.ring(n) for n in mesh.nodes]
    assert all(r == rings[0] for r in rings)
    ks = keys(200)
    for i, key in enumerate(ks):  # written through every node in turn
        assert mesh.call(mesh.nodes[i % 3], "SET", [key, b"v" + key]) is True
    for node in mesh.nodes:  # read through every node
        with Direct(node.data_address) as d:
            assert [d.call("GET", [k]) for k in ks] == [b"v" + k for k in ks]
            assert d.call("MGET", ks) == [b"v" + k for k in ks]
    # Each key is held by exactly its two ring owners (the default namespace has replicas=2).
    stores = {n.node_id: Direct(n.data_address) for n in mesh.nodes}
    try:

        def placed() -> bool:
            return all(
                (stores[nid].local_get(key) is not None) == (nid in mesh.owners(key, 2))
                for key in ks[:50]
                for nid in stores
            )

        wait_for(placed, 10, "every key on exactly its owners")
    finally:
        for d in stores.values():
            d.close()
    # Many-key ops split across owners and merge in order; DELETE counts across nodes.
    assert mesh.call(mesh.nodes[1], "DELETE", ks[:20]) == 20
    assert mesh.call(mesh.nodes[2], "EXISTS", ks[:40]) == 20
    assert mesh.call(mesh.nodes[0], "MGET", ks[15:25]) == [None] * 5 + [b"v" + k for k in ks[20:25]]


def test_quorum_writes_survive_kill_of_an_owner(stack: ExitStack, tmp_path: Path) -> None:
    mesh = Mesh(stack, tmp_path, 3)
    a, b, c = mesh.nodes
    mesh.wait_namespace("q", {"replicas": 3, "consistency": "quorum"})
    acked: dict[bytes, bytes] = {}
    failed = 0
    with Direct(a.data_address) as d:
        for i in range(400):
            if i == 150:
                c.kill()  # kill -9 an owner of every key in the middle of the writes
            key, value = b"q%d" % i, b"value-%d" % i
            try:
                d.call("SET", [key, value], "q")
            except MeshcacheError:
                failed += 1
                continue
            acked[key] = value
    assert len(acked) >= 390, f"{failed} writes failed"
    for node in (a, b):
        with Direct(node.data_address) as d:
            lost = [k for k, v in acked.items() if d.local_get(k, "q") != v]
        assert not lost, f"{len(lost)} acknowledged writes missing on {node.node_id}"


def test_a_paused_replica_converges_by_hints(stack: ExitStack, tmp_path: Path) -> None:
    mesh = Mesh(stack, tmp_path, 3)
    a, b, c = mesh.nodes
    mesh.wait_namespace("all3", {"replicas": 3})
    ks = keys(100)
    with Direct(a.data_address) as d:
        for k in ks:
            d.call("SET", [k, b"old"], "all3")
    c.signal(signal.SIGSTOP)  # c is cut off: it neither answers nor gossips
    try:
        wait_for(lambda: mesh.gossip_state(a, c.node_id) == "dead", 15, "c declared dead")
        with Direct(b.data_address) as d:
            for k in ks:  # the last writer, while c is away
                d.call("SET", [k, b"new"], "all3")
            d.call("DELETE", ks[:10], "all3")
    finally:
        c.signal(signal.SIGCONT)
    with Direct(c.data_address) as d:

        def converged() -> bool:
            return all(d.local_get(k, "all3") is None for k in ks[:10]) and all(
                d.local_get(k, "all3") == b"new" for k in ks[10:]
            )

        wait_for(converged, 20, "c converged to the last writer")


def test_join_and_leave_under_load(stack: ExitStack, tmp_path: Path) -> None:
    mesh = Mesh(stack, tmp_path, 3)
    a = mesh.nodes[0]
    written: dict[bytes, bytes] = {}
    errors: list[str] = []
    misses = [0, 0]  # misses, reads
    missed: list[tuple[str, bytes, bytes, object]] = []  # phase, key, expected, got
    phase = ["before"]
    stop = threading.Event()

    def load() -> None:
        rng = random.Random(7)
        with Direct(a.data_address) as d:
            i = 0
            while not stop.is_set():
                i += 1
                key = b"load%d" % rng.randrange(2000)
                try:
                    if i % 4 == 0 or key not in written:
                        value = b"%d" % i
                        d.call("SET", [key, value])
                        written[key] = value
                    else:
                        misses[1] += 1
                        got = d.call("GET", [key])
                        if got != written[key]:
                            misses[0] += 1
                            missed.append((phase[0], key, written[key], got))
                except MeshcacheError as exc:
                    errors.append(str(exc))

    worker = threading.Thread(target=load)
    worker.start()
    try:
        wait_for(lambda: len(written) > 500, 20, "some load")
        phase[0] = "join"
        mesh.start_node("--join", a.data)  # a fourth node joins under load
        mesh.wait_ring(4)
        phase[0] = "joined"
        wait_for(lambda: misses[1] > 2000, 30, "reads after the join")
        leaver = mesh.nodes[1]
        phase[0] = "leave"
        result = mesh.call(leaver, "LEAVE", [{"timeout": 30}])
        assert result["node_id"] == leaver.node_id
        rest = [n for n in mesh.nodes if n is not leaver]
        mesh.wait_ring(3, among=rest)
        phase[0] = "left"
        reads_at_leave = misses[1]
        wait_for(lambda: misses[1] > reads_at_leave + 2000, 30, "reads after the leave")
    finally:
        stop.set()
        worker.join()
    assert not errors, errors[:5]
    if missed:
        for node in mesh.nodes:
            print(node.node_id, node.log_tail(80))
    assert misses[0] == 0, (
        f"{misses[0]} of {misses[1]} reads missed or were stale; first: {missed[:5]}, "
        f"by phase: { {p: sum(1 for m in missed if m[0] == p) for p, *_ in missed} }"
    )
    for node in rest:  # every key is readable through every remaining node
        with Direct(node.data_address) as d:
            sample = list(written)[:300]
            assert [d.call("GET", [k]) for k in sample] == [written[k] for k in sample]


def test_dead_member_is_removed_and_its_keys_re_replicated(
    stack: ExitStack, tmp_path: Path
) -> None:
    mesh = Mesh(stack, tmp_path, 3, "--auto-remove-after", "1s")
    a, b, c = mesh.nodes
    ks = keys(200)
    with Direct(a.data_address) as d:
        for k in ks:
            # At ``all``: acknowledged once both owners hold it. At the default ``one`` a write
            # ``c`` coordinated may not have reached its other owner when ``c`` is killed.
            d.call("SET", [k, k, {"consistency": "all"}])
    c.kill()
    mesh.wait_ring(2, among=[a, b])
    # With two members left and replicas=2, both hold every key again.
    for node in (a, b):
        with Direct(node.data_address) as d:
            wait_for(
                lambda d=d: all(d.local_get(k) == k for k in ks),  # type: ignore[misc]
                20,
                f"every key on {node.node_id}",
            )


def test_a_restarted_node_pulls_what_it_owns(stack: ExitStack, tmp_path: Path) -> None:
    mesh = Mesh(stack, tmp_path, 3)
    a, _, c = mesh.nodes
    ks = keys(200)
    with Direct(a.data_address) as d:
        for k in ks:
            d.call("SET", [k, k])
    # Replication is asynchronous: a write c coordinated must reach its other owner before c
    # is killed, or nobody is left to pull it from.
    survivors = {n.node_id: Direct(n.data_address) for n in (a, mesh.nodes[1])}
    try:
        wait_for(
            lambda: all(
                survivors[o].local_get(k) == k
                for k in ks
                for o in mesh.owners(k, 2)
                if o in survivors
            ),
            30,
            "every key on its surviving owners",
        )
    finally:
        for direct in survivors.values():
            direct.close()
    port = c.data_address[1]
    c.kill()
    c2 = mesh.start_node("--join", a.data, port=port, name="n2")  # same dir, port and id
    assert c2.node_id == c.node_id
    mine = [k for k in ks if c.node_id in mesh.owners(k, 2)]
    with Direct(c2.data_address) as d:
        try:
            wait_for(lambda: all(d.local_get(k) == k for k in mine), 30, "the restarted node warm")
        except BaseException:
            print(c2.log_tail(60))
            raise


def test_a_first_node_restarted_without_join_finds_its_cluster_through_its_ring(
    stack: ExitStack, tmp_path: Path
) -> None:
    # The lan profile: a peer's periodic push/pull (or reconnect) reaches the restarted node
    # only every 30 s, so learning the members within a few seconds takes the node's own join
    # through the members its config's ring lists.
    mesh = Mesh(stack, tmp_path, 2, "--profile", "lan")
    a, b = mesh.nodes
    port = a.data_address[1]
    a.kill()
    # Same dir, port and id; no --join. The Raft port it took was the kernel's pick; the one it
    # would derive now (port + 1) may be any other socket's, so it is given a free one.
    raft = ("--raft-port", str(free_port()))
    a2 = mesh.start_node("--bootstrap", *raft, port=port, name="n0")
    assert a2.node_id == a.node_id

    def knows_b() -> bool:
        members = {m["name"]: m["state"] for m in mesh.call(a2, "MEMBERS", [])}
        return members.get(b.node_id) == "alive"

    try:
        wait_for(knows_b, 8, "the restarted node to hold the other member alive")
    except BaseException:
        print(a2.log_tail(60))
        raise


def test_anti_entropy_repairs_a_replica_that_missed_writes(
    stack: ExitStack, tmp_path: Path
) -> None:
    # Hints of one byte at most: every write for the paused replica is lost as a hint (and
    # counted); only anti-entropy can bring the replica back.
    mesh = Mesh(stack, tmp_path, 3, "--hint-max-bytes", "1", "--anti-entropy-interval", "1s")
    a, b, c = mesh.nodes
    mesh.wait_namespace("all3", {"replicas": 3})
    ks = keys(300)
    c.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: mesh.gossip_state(a, c.node_id) == "dead", 15, "c declared dead")
        with Direct(b.data_address) as d:
            for k in ks:
                d.call("SET", [k, b"while-away"], "all3")
            d.call("DELETE", ks[:30], "all3")
        info = mesh.call(b, "INFO", [])
        assert info["mesh"]["counters"]["hints"]["refused_too_large"] > 0
    finally:
        c.signal(signal.SIGCONT)
    with Direct(c.data_address) as d:

        def repaired() -> bool:
            return all(d.local_get(k, "all3") is None for k in ks[:30]) and all(
                d.local_get(k, "all3") == b"while-away" for k in ks[30:]
            )

        try:
            wait_for(repaired, 30, "c repaired by anti-entropy")
        except BaseException:
            for n in mesh.nodes:
                print(n.node_id, mesh.call(n, "INFO", [])["mesh"])
            raise
    counters = mesh.call(c, "INFO", [])["mesh"]["counters"]["antientropy"]
    assert counters, counters


def test_read_repair_brings_a_stale_owner_up_to_date(stack: ExitStack, tmp_path: Path) -> None:
    mesh = Mesh(stack, tmp_path, 3, "--read-repair-chance", "1")
    key = b"rr-key"
    primary_id, secondary_id = mesh.owners(key, 2)
    primary, secondary = mesh.by_id(primary_id), mesh.by_id(secondary_id)
    mesh.call(primary, "SET", [key, b"v1"])
    # Only the secondary learns a newer value (as if the primary had missed a write).
    newer = make_version(int(time.time() * 1000) + 1000)
    assert mesh.call(secondary, "REPL", [[[key, ["bytes", b"v2", None, newer]]]]) == [0]
    with Direct(primary.data_address) as d:
        # The read answers what the coordinator holds, and repairs it in the background
        # (a FWD GET is a read coordinated by the node it lands on).
        assert d.local_get(key) == b"v1"
        wait_for(lambda: d.local_get(key) == b"v2", 10, "the primary repaired by a read")
    assert mesh.call(primary, "INFO", [])["mesh"]["counters"]["dataplane"]["read_repairs"] >= 1


def test_a_drained_node_joins_again_without_a_restart(stack: ExitStack, tmp_path: Path) -> None:
    """LEAVE takes a node off the ring; JOIN puts it back: it pulls what it owns, serves it."""
    mesh = Mesh(stack, tmp_path, 3)
    a, _, c = mesh.nodes
    ks = keys(300)
    with Direct(a.data_address) as d:
        for k in ks:
            d.call("SET", [k, k])
    mesh.call(c, "LEAVE", [{"timeout": 30}])
    mesh.wait_ring(2, among=[a])
    with pytest.raises(MeshcacheError, match="INVALID_TRANSITION"):
        mesh.call(a, "JOIN", [{}])  # a is on the ring: nothing to join
    result = mesh.call(c, "JOIN", [{"timeout": 30}])
    assert result["node_id"] == c.node_id and result["state"] == "active"
    mesh.wait_ring(3)
    mine = [k for k in ks if c.node_id in mesh.owners(k, 2)]
    assert mine
    with Direct(c.data_address) as d:
        wait_for(lambda: all(d.local_get(k) == k for k in mine), 30, "the node's ranges back")
        assert all(d.call("GET", [k]) == k for k in ks)


def test_a_dropped_namespace_stays_empty_when_its_hints_replay(
    stack: ExitStack, tmp_path: Path
) -> None:
    """A replica is down while 100 keys are written (hints on the others); the namespace is
    dropped and created again; the replica returns and receives the hints: it discards them,
    and no node holds a dropped key."""
    mesh = Mesh(stack, tmp_path, 3)
    a, b, c = mesh.nodes
    policy = {"replicas": 3}
    mesh.wait_namespace("sess", policy)
    port = c.data_address.port
    c.kill()
    wait_for(lambda: all(mesh.gossip_state(x, c.node_id) == "dead" for x in (a, b)), 30, "c dead")
    ks = keys(100, "s")
    with Direct(a.data_address) as d:
        for key in ks:
            d.call("SET", [key, b"old"], "sess")
    assert mesh.call(a, "NS_DROP", ["sess"]) is True
    wait_for(lambda: all("sess" not in mesh.call(x, "NS_LIST", []) for x in (a, b)), 20, "drop")
    mesh.wait_namespace("sess", policy)
    back = mesh.start_node("--join", a.data, port=port, name=c.node_id)

    def replayed() -> int:
        return sum(
            mesh.mesh_info(x)["counters"]["replicator"].get("hints_replayed", 0) for x in (a, b)
        )

    wait_for(lambda: replayed() >= len(ks), 30, "the hints replayed")
    for node in (a, b, back):
        with Direct(node.data_address) as d:
            assert [k for k in ks if d.local_get(k, "sess") is not None] == [], node.node_id
    with Direct(a.data_address) as d:
        assert d.call("GET", [ks[0]], "sess") is None
