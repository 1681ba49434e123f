"""The handoff's ordering rules, in process on trio's autojump clock (no network)."""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.control import ClusterConfig, Command
from meshcache.node.data.handoff import SETTLE_TIMEOUT, HandOff
from meshcache.ring import Ring, RingMember, key_token
from meshcache.ring.diff import replacements
from meshcache.store.policy import NamespacePolicy
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
