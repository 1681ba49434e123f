"""The data plane's decisions without a network: replica writes, forwarded requests, routing."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.control import ClusterConfig
from meshcache.errors import CommandError, ErrorCode
from meshcache.hlc import HLC, make_version, physical_ms
from meshcache.node.data.coordinator import Coordinator
from meshcache.node.data.replication import HintQueue, VersionClamp
from meshcache.node.data.replicator import (
    APPLIED,
    MAX_QUEUED,
    REFUSED_NOT_OWNER,
    REFUSED_STORE,
    STALE,
    Replicator,
)
from meshcache.node.net.peer_pool import Address, PeerPool
from meshcache.ring import Ring, RingMember
from meshcache.store.keyspace import pack_version
from meshcache.store.policy import NamespacePolicy
from meshcache.store.store import Store
from meshcache.wire.frame import Response
from meshcache.wire.ops import OPS, Limits

NOW_S = 1_700_000_000.0
ME, OTHER, THIRD = "10.0.0.1:7400", "10.0.0.2:7400", "10.0.0.3:7400"


def make_plane(members: list[str], *, replicas: int = 2) -> Coordinator:
    hlc = HLC(lambda: int(NOW_S * 1000))
    store = Store(
        clock=lambda: NOW_S,
        hlc=hlc,
        policies={"default": NamespacePolicy(replicas=replicas, max_bytes=1 << 20)},
        tombstone_grace_s=3600.0,
    )
    pool = PeerPool()
    replicator = Replicator(
        pool,
        address_of=lambda _: None,
        alive=lambda _: False,  # nothing is sent: every replica write becomes a hint
        hints=HintQueue(max_bytes=1 << 20, max_bytes_per_target=1 << 18, max_age_s=60),
        clock=lambda: 0.0,
    )
    plane = Coordinator(
        store,
        ME,
        pool=pool,
        replicator=replicator,
        clamp=VersionClamp(hlc),
        alive=lambda node: node == ME,
        limits=Limits(max_key_bytes=64, max_value_bytes=1024),
    )
    config = ClusterConfig(
        version=3, members=tuple(RingMember(node_id=m, address=m) for m in members)
    )
    plane.install(config)
    return plane


def owned_and_foreign(plane: Coordinator, replicas: int) -> tuple[bytes, bytes]:
    ring: Ring = plane.ring
    keys = [b"key-%d" % i for i in range(200)]
    mine = next(k for k in keys if ME in {m.node_id for m in ring.owners(k, replicas)})
    other = next(k for k in keys if ME not in {m.node_id for m in ring.owners(k, replicas)})
    return mine, other


def entry(value: bytes, version: int) -> list[Any]:
    return ["bytes", value, None, version]


def test_replica_writes_apply_by_last_writer_wins_and_refuse_foreign_keys() -> None:
    plane = make_plane([ME, OTHER, THIRD], replicas=1)
    mine, foreign = owned_and_foreign(plane, 1)
    v1 = make_version(int(NOW_S * 1000) - 10)
    v2 = make_version(int(NOW_S * 1000) - 5)
    assert plane.apply_replicated("default", [[mine, entry(b"new", v2)]]) == [APPLIED]
    assert plane.apply_replicated("default", [[mine, entry(b"old", v1)]]) == [STALE]
    assert plane.store.execute("default", "GET", [mine]) == b"new"
    assert plane.apply_replicated("default", [[foreign, entry(b"x", v2)]]) == [REFUSED_NOT_OWNER]
    assert plane.store.execute("default", "GET", [foreign]) is None
    assert plane.stats["repl_refused_not_owner"] == 1
    # A delete newer than the value wins; the tombstone answers GET with nil.
    assert plane.apply_replicated("default", [[mine, ["tombstone", None, None, v2 + 1]]]) == [
        APPLIED
    ]
    assert plane.store.execute("default", "GET", [mine]) is None


def test_a_far_future_version_is_clamped_and_counted() -> None:
    plane = make_plane([ME])
    key = b"k"
    far = make_version(int(NOW_S * 1000) + 10 * 24 * 3600 * 1000)  # ten days ahead
    assert plane.apply_replicated("default", [[key, entry(b"v", far)]], peer=OTHER) == [APPLIED]
    stored = plane.store.get_entry("default", key)
    assert stored is not None
    assert physical_ms(stored.version) <= int(NOW_S * 1000) + 60_000
    assert plane.clamp.clamped == 1 and plane.clamp.by_peer[OTHER] == 1
    # The next local write beats the clamped version: a bad clock cannot pin the key.
    plane.store.execute("default", "SET", [key, b"local", {}])
    assert plane.store.execute("default", "GET", [key]) == b"local"


def test_a_record_the_store_refuses_is_answered_not_raised() -> None:
    plane = make_plane([ME])
    version = make_version(int(NOW_S * 1000))
    big = b"x" * (2 << 20)  # over the namespace's max_bytes
    assert plane.apply_replicated("default", [[b"k", entry(big, version)]]) == [REFUSED_STORE]


@pytest.mark.parametrize(
    "payload",
    [
        [b"not-a-pair"],
        [[b"k"]],
        [["str-key", entry(b"v", 1)]],
        [[b"k", ["nonsense", 1, 2, 3]]],
        [[b"k", ["bytes", 5, None, 1]]],
        [[b"k", ["tombstone", b"v", None, 1]]],
        [[b"k", ["bytes", b"v", None, -1]]],
    ],
)
def test_malformed_replica_writes_are_bad_requests(payload: list[Any]) -> None:
    plane = make_plane([ME])
    with pytest.raises(CommandError) as info:
        plane.apply_replicated("default", payload)
    assert info.value.code == ErrorCode.BAD_REQUEST


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(),
            st.binary(max_size=8),
            st.lists(st.one_of(st.binary(max_size=8), st.integers(), st.none()), max_size=5),
        ),
        max_size=4,
    )
)
def test_garbage_replica_writes_never_escape_as_anything_but_command_errors(
    payload: list[Any],
) -> None:
    plane = make_plane([ME])
    try:
        answers = plane.apply_replicated("default", payload)
    except CommandError:
        return
    assert len(answers) == len(payload)


def test_forwarded_requests_execute_here_and_refuse_node_ops() -> None:
    plane = make_plane([ME, OTHER], replicas=1)
    _, foreign = owned_and_foreign(plane, 1)
    # A forwarded write is coordinated here even if this ring says another node owns it
    # (the sender's ring may be newer): never a second hop.
    assert plane.execute_forwarded("default", ["SET", [foreign, b"v"]]) is True
    assert plane.store.execute("default", "GET", [foreign]) == b"v"
    for bad in (["PING", []], ["LEAVE", [{}]], ["NOPE", []], ["GET"], [1, []]):
        with pytest.raises(CommandError) as info:
            plane.execute_forwarded("default", bad)
        assert info.value.code == ErrorCode.BAD_REQUEST
    with pytest.raises(CommandError) as info:
        plane.execute_forwarded("default", ["SET", [b"k" * 100, b"v"]])
    assert info.value.code == ErrorCode.TOO_LARGE


def test_a_write_for_unreachable_owners_becomes_hints() -> None:
    plane = make_plane([ME, OTHER, THIRD], replicas=3)
    plane.coordinate("default", "SET", OPS["SET"], [b"k", b"v", {}])
    hints = plane.replicator.hints
    assert {h.target for t in (OTHER, THIRD) for h in hints.hints(t)} == {OTHER, THIRD}
    assert plane.replicator.stats["hinted_dead"] == 2


def test_a_lone_node_executes_locally() -> None:
    plane = make_plane([ME])
    assert plane.solo
    assert plane.execute("default", "SET", [b"k", b"v", {}]) is True
    assert plane.execute("default", "GET", [b"k"]) == b"v"


def blob(value: bytes, version: int) -> bytes:
    return pack_version(version) + value


def test_bulk_hand_off_applies_by_last_writer_wins_and_refuses_foreign_keys() -> None:
    plane = make_plane([ME, OTHER, THIRD], replicas=1)
    mine, foreign = owned_and_foreign(plane, 1)
    v1 = make_version(int(NOW_S * 1000) - 10)
    v2 = make_version(int(NOW_S * 1000) - 5)
    plane.apply_replicated("default", [[mine, entry(b"held", v2)]])
    answer = plane.apply_bulk(
        "default", [mine, blob(b"older", v1), foreign, blob(b"x", v2), b"new", blob(b"n", v2)]
    )
    owns_new = ME in {m.node_id for m in plane.ring.owners(b"new", 1)}
    assert answer == [int(owns_new), 1, 1 + int(not owns_new), 0]
    assert plane.store.execute("default", "GET", [mine]) == b"held"
    assert plane.store.execute("default", "GET", [foreign]) is None
    assert plane.stats["repl_refused_not_owner"] == 1 + int(not owns_new)


def test_bulk_clamps_a_far_future_version_like_repl() -> None:
    plane = make_plane([ME])
    far = make_version(int(NOW_S * 1000) + 10 * 24 * 3600 * 1000)
    now = make_version(int(NOW_S * 1000))
    assert plane.apply_bulk("default", [b"far", blob(b"v", far), b"k", blob(b"w", now)]) == [
        2,
        0,
        0,
        0,
    ]
    stored = plane.store.get_entry("default", b"far")
    assert stored is not None and physical_ms(stored.version) <= int(NOW_S * 1000) + 60_000
    assert plane.clamp.clamped == 1


def test_bulk_counts_what_the_store_refuses() -> None:
    plane = make_plane([ME])
    version = make_version(int(NOW_S * 1000))
    assert plane.apply_bulk("default", [b"big", blob(b"x" * (2 << 20), version)]) == [0, 0, 0, 1]
    assert plane.stats["repl_refused_too_large"] == 1


@pytest.mark.parametrize(
    "payload",
    [
        [b"odd"],
        [b"k", b"short"],
        [b"k", 5],
        ["text", blob(b"v", 1)],
        [None, blob(b"v", 1)],
    ],
)
@pytest.mark.parametrize("members", [[ME], [ME, OTHER, THIRD]])
def test_malformed_bulk_batches_are_bad_requests(payload: list[Any], members: list[str]) -> None:
    plane = make_plane(members, replicas=3)
    with pytest.raises(CommandError) as info:
        plane.apply_bulk("default", payload)
    assert info.value.code == ErrorCode.BAD_REQUEST


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(), st.binary(max_size=12), st.text(max_size=3))))
def test_garbage_bulk_batches_never_escape_as_anything_but_command_errors(
    payload: list[Any],
) -> None:
    plane = make_plane([ME, OTHER])
    try:
        answer = plane.apply_bulk("default", payload)
    except CommandError:
        return
    assert sum(answer) == len(payload) // 2


class SlowReplica(PeerPool):
    """A replica that takes REPL batches only while ``open`` is set, keeping what it applied
    (newest version per key)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = trio.Event()
        self.held: dict[bytes, int] = {}

    async def request(  # type: ignore[override]
        self, address: Any, op: str, namespace: str, args: list[Any], **kw: Any
    ) -> Response:
        await self.open.wait()
        assert op == "REPL"
        for key, record in args[0]:
            self.held[key] = max(self.held.get(key, 0), record[3])
        return Response(1, True, [APPLIED] * len(args[0]), 3)


@pytest.mark.trio
async def test_a_replica_slower_than_the_writes_gets_hints_beyond_a_bounded_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pool = SlowReplica()
    replicator = Replicator(
        pool,
        address_of=lambda _: Address("10.0.0.2", 7400),
        alive=lambda _: True,
        hints=HintQueue(max_bytes=64 << 20, max_bytes_per_target=64 << 20, max_age_s=600),
        clock=trio.current_time,
    )
    writes = 5 * MAX_QUEUED
    async with trio.open_nursery() as nursery:
        await nursery.start(replicator.run)
        for i in range(writes):
            key = b"k%d" % (i % (2 * MAX_QUEUED))  # every key written more than once
            replicator.send(OTHER, "default", key, entry(b"v", 1000 + i), 1000 + i, False)
        # The replica takes nothing yet: what waits in memory stays within the bound, the
        # rest are hints, one per key.
        assert replicator.queued() <= MAX_QUEUED
        assert replicator.stats["hinted_behind"] == writes - replicator.queued()
        assert replicator.hints.pending(OTHER) <= 2 * MAX_QUEUED
        # A write somebody waits for is queued whatever the bound.
        ack = replicator.send(OTHER, "default", b"waited", entry(b"v", 1), 1, False, want_ack=True)
        assert ack is not None and not ack.event.is_set()
        pool.open.set()
        await ack.event.wait()
        assert ack.ok
        with trio.fail_after(60):  # the hints replay after their back-off
            while replicator.queued() or replicator.hints.pending(OTHER):
                await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    # Every key reached the replica at its newest version.
    newest = {b"k%d" % (i % (2 * MAX_QUEUED)): 1000 + i for i in range(writes)}
    assert {k: v for k, v in pool.held.items() if k != b"waited"} == newest


@pytest.mark.trio
async def test_hints_whose_alive_event_was_missed_are_retried_while_the_target_lives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Writes for a target gossip holds dead become hints that wait for its ALIVE event. If
    that event never reaches the replicator (it came before they were queued, or while another
    replay ran), the hints are still replayed once gossip holds the target alive."""
    gossip = {OTHER: False}
    pool = SlowReplica()
    pool.open.set()
    replicator = Replicator(
        pool,
        address_of=lambda _: Address("10.0.0.2", 7400),
        alive=lambda node: gossip[node],
        hints=HintQueue(max_bytes=64 << 20, max_bytes_per_target=64 << 20, max_age_s=600),
        clock=trio.current_time,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(replicator.run)
        for i in range(100):
            replicator.send(OTHER, "default", b"k%d" % i, entry(b"v", 1000 + i), 1000 + i, False)
        assert replicator.stats["hinted_dead"] == 100
        gossip[OTHER] = True  # alive again, and the replicator is not told
        with trio.fail_after(30):
            while len(pool.held) < 100:
                await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert not replicator.hints.pending(OTHER)
    assert pool.held == {b"k%d" % i: 1000 + i for i in range(100)}
