"""The handoff's ordering rules, in process on trio's autojump clock (no network)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.control import ClusterConfig, Command
from meshcache.node.data.handoff import (
    BATCH_RECORDS,
    BULK_BYTES,
    BULK_RECORDS,
    SCAN_CHUNK,
    SETTLE_TIMEOUT,
    HandOff,
)
from meshcache.ring import Ring, RingMember, key_token
from meshcache.ring.diff import replacements
from meshcache.ring.tokens import RangeSet, ranges_to_wire
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.instrument import longest_step
from tests.node.test_dataplane import ME, OTHER, THIRD, make_plane


async def _refuse(command: Command) -> ClusterConfig:
    raise AssertionError(f"nothing should be proposed: {command}")


def _setup(
    versions: dict[str, int],
) -> tuple[HandOff, ClusterConfig, list[bytes]]:
    plane = make_plane([ME, OTHER, THIRD], replicas=1)
    config = ClusterConfig(
        version=3,
        members=tuple(RingMember(node_id=m, address=m) for m in (ME, OTHER, THIRD)),
        namespaces={"default": NamespacePolicy(replicas=1, max_bytes=1 << 20)},
    )
    foreign = [
        k
        for k in (b"key-%d" % i for i in range(300))
        if all(m.node_id != ME for m in plane.ring.owners(k, 1))
    ]
    for key in foreign:  # held from an older ring
        plane.store.execute("default", "SET", [key, b"v", {}])
    handoff = HandOff(
        plane.store,
        ME,
        plane,
        config=lambda: config,
        propose=_refuse,
        alive=lambda node: node == ME,  # no live source: nothing is pulled over the network
        dead=lambda node: False,
        config_version_of=lambda node: versions.get(node, 0),
        rate=1 << 30,
    )
    return handoff, config, foreign


def _held(handoff: HandOff, keys: list[bytes]) -> int:
    return sum(handoff.store.execute("default", "GET", [k]) is not None for k in keys)


@pytest.mark.trio
async def test_unowned_keys_stay_until_every_member_runs_the_ring(
    autojump_clock: trio.testing.MockClock,
) -> None:
    versions = {OTHER: 3, THIRD: 2}  # THIRD still routes by the ring before
    handoff, config, foreign = _setup(versions)
    async with trio.open_nursery() as nursery:
        await nursery.start(handoff.run)
        handoff.on_install(config)
        await trio.sleep(SETTLE_TIMEOUT / 4)
        assert _held(handoff, foreign) == len(foreign)  # a lagging member may read here
        versions[THIRD] = 3
        with trio.fail_after(1):
            while _held(handoff, foreign):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert handoff.stats["records_dropped"] == len(foreign)


@pytest.mark.trio
async def test_a_member_that_never_catches_up_delays_the_drop_by_the_settle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handoff, config, foreign = _setup({OTHER: 3, THIRD: 1})
    async with trio.open_nursery() as nursery:
        await nursery.start(handoff.run)
        start = trio.current_time()
        handoff.on_install(config)
        with trio.fail_after(SETTLE_TIMEOUT * 2):
            while _held(handoff, foreign):
                await trio.sleep(0.01)
        assert trio.current_time() - start >= SETTLE_TIMEOUT
        nursery.cancel_scope.cancel()
    assert handoff.stats["settle_timeouts"] >= 1


@settings(max_examples=25, deadline=None)
@given(
    nodes=st.integers(2, 6),
    leaving=st.integers(0, 5),
    replicas=st.integers(1, 3),
    weights=st.lists(st.integers(1, 3), min_size=6, max_size=6),
)
def test_replacements_are_the_pending_owners_that_do_not_own_a_key_yet(
    nodes: int, leaving: int, replicas: int, weights: list[int]
) -> None:
    """The leaving node's push targets by token ranges == the per-key rule they replace."""
    ids = [f"10.0.0.{i}:7400" for i in range(nodes)]
    members = [
        RingMember(node_id=n, address=n, weight=weights[i], state="active")
        for i, n in enumerate(ids)
    ]
    members[leaving % nodes] = dataclasses.replace(members[leaving % nodes], state="leaving")
    ring = Ring(members, 9)
    gains = replacements(ring, replicas)
    for key in (b"k%d" % i for i in range(400)):
        now = {m.node_id for m in ring.owners(key, replicas)}
        expected = {m.node_id for m in ring.pending_owners(key, replicas)} - now
        assert {t for t, ranges in gains.items() if key_token(key) in ranges} == expected


class RecordingPool:
    """Stands in for the peer pool: answers BULK and REPL batches as an empty target would."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, int, int]] = []  # (op, records, payload bytes)

    async def call(
        self, address: object, op: str, namespace: str, args: list[Any], *, timeout: float
    ) -> Any:
        await trio.lowlevel.checkpoint()  # as a call over the network does
        payload = args[0]
        if op == "BULK":
            self.batches.append((op, len(payload) // 2, sum(map(len, payload))))
            return [len(payload) // 2, 0, 0, 0]
        self.batches.append((op, len(payload), 0))
        return [0] * len(payload)


BIG = 200_000


def _big_setup() -> tuple[HandOff, ClusterConfig, list[bytes]]:
    """``BIG`` keys held, most of them another member's by the ring, and a few tombstones."""
    handoff, config, _ = _setup({OTHER: 3, THIRD: 3})
    store = handoff.store
    store.set_policy("default", NamespacePolicy(replicas=1))  # room for every key
    keys = [b"key:%09d" % i for i in range(BIG)]
    blob = (1 << 40).to_bytes(8, "big") + b"v" * 100
    for i in range(0, BIG, 10_000):
        store.apply_blobs("default", keys[i : i + 10_000], [blob] * 10_000, 2**63)
    return handoff, config, keys


@pytest.mark.trio
async def test_dropping_unowned_keys_is_sliced() -> None:
    handoff, config, _ = _big_setup()
    ring = Ring(list(config.members), config.version)
    held = handoff.store.key_snapshot("default")
    foreign = [k for k in held if all(m.node_id != ME for m in ring.owners(k, 1))]
    with longest_step(clock=time.thread_time) as probe:  # CPU time: a busy CI preempts
        await handoff._drop_unowned(config)
    assert handoff.stats["records_dropped"] == len(foreign) > BIG // 2
    assert probe.steps >= BIG // SCAN_CHUNK, probe.describe()
    # One copy of the key list was 54 ms at once before (walking the LRU order), then 2,000
    # removals per step.
    assert probe.longest <= 0.05, probe.describe()


@pytest.mark.trio
async def test_serving_a_hand_off_is_sliced_and_batches_stay_small() -> None:
    handoff, config, keys = _big_setup()
    store = handoff.store
    for key in keys[:500]:  # typed values and tombstones travel as REPL records
        store.execute("default", "DELETE", [key])
    for key in keys[500:1000]:
        store.execute("default", "SET", [key, b"v", {"ttl": 3600}])
    pool = RecordingPool()
    handoff.dataplane.pool = pool  # type: ignore[assignment]
    handoff.dataplane.install(config)
    ranges = Ring(list(config.members), config.version).owned_ranges(OTHER, 1)
    wanted = RangeSet(ranges)
    with longest_step(clock=time.thread_time) as probe:
        sent = await handoff.handle_handoff(
            "default", {"ranges": ranges_to_wire(ranges), "to": OTHER}
        )
    expected = sum(1 for k in store.key_snapshot("default") if key_token(k) in wanted)
    tombstones = sum(1 for k in keys[:500] if key_token(k) in wanted)
    assert sent == sum(n for _, n, _ in pool.batches) == expected + tombstones
    assert any(op == "REPL" for op, _, _ in pool.batches)
    assert sum(n for op, n, _ in pool.batches if op == "REPL") >= tombstones
    for op, n, size in pool.batches:
        if op == "BULK":
            assert n <= BULK_RECORDS and size <= BULK_BYTES + 200, (n, size)
        else:
            assert n <= BATCH_RECORDS
    assert probe.steps >= BIG // SCAN_CHUNK, probe.describe()
    assert probe.longest <= 0.05, probe.describe()
