"""RingRouter without sockets: candidates by the ring, failover order, refresh claims."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from meshcache.client.ring_router import RingRouter, RingSnapshot
from meshcache.ring import Ring, RingMember
from meshcache.wire import Address, parse_address

SEEDS = [Address("seed", 1), Address("seed", 2)]
ADDRS = ["10.0.0.1:7400", "10.0.0.2:7400", "10.0.0.3:7400"]
KEYS = [b"key:%d" % i for i in range(500)]


def ring_reply(version: int = 7, states: tuple[str, ...] = ("active",) * 3) -> dict[str, Any]:
    return {
        "version": version,
        "members": [
            {
                "node_id": f"n{i}",
                "address": ADDRS[i],
                "zone": "default",
                "weight": 1,
                "state": state,
                "share": 0.33,
            }
            for i, state in enumerate(states)
        ],
    }


NAMESPACES = {"default": {"eviction": "lru", "replicas": 2}, "one": {"replicas": 1}}


def loaded(version: int = 7, **kwargs: Any) -> RingRouter:
    router = RingRouter(SEEDS, **kwargs)
    assert router.observe_ring_version(0) is True
    router.ring_fetched([ring_reply(version), NAMESPACES])
    assert router.snapshot is not None and router.ring_version == version
    return router


def reference_ring(version: int = 7) -> Ring:
    reply = ring_reply(version)
    return Ring(
        [
            RingMember.from_mapping({k: v for k, v in m.items() if k != "share"})
            for m in reply["members"]
        ],
        version,
    )


def test_candidates_are_the_ring_owners_then_the_rest_then_the_seeds() -> None:
    router = loaded()
    ring = reference_ring()
    everyone = [parse_address(a) for a in ADDRS] + SEEDS
    for key in KEYS:
        got = list(router.candidates(key))
        owners = [parse_address(m.address) for m in ring.owners(key, 3)]
        assert got[:3] == owners
        assert sorted(got) == sorted(everyone)
        assert router.primary(key) == owners[0]


def test_keys_spread_over_every_member() -> None:
    router = loaded()
    primaries = {router.primary(key) for key in KEYS}
    assert primaries == {parse_address(a) for a in ADDRS}


def test_owners_follow_the_namespace_replicas() -> None:
    router = loaded()
    ring = reference_ring()
    for key in KEYS[:50]:
        assert router.owners(key) == tuple(parse_address(m.address) for m in ring.owners(key, 2))
        assert router.owners(key, "one") == (router.primary(key),)
        assert router.owners(key, "unknown") == (router.primary(key),)


def test_joining_members_are_not_first_owners() -> None:
    router = RingRouter(SEEDS)
    router.observe_ring_version(0)
    router.ring_fetched([ring_reply(3, ("active", "joining", "active")), NAMESPACES])
    joining = parse_address(ADDRS[1])
    for key in KEYS[:100]:
        found = list(router.candidates(key))
        assert found[0] != joining and found[1] != joining and joining in found


def test_meta_ops_go_to_the_seeds_first() -> None:
    router = loaded()
    assert list(router.candidates(None)) == [*SEEDS, *(parse_address(a) for a in ADDRS)]


def test_before_a_ring_and_with_an_empty_one_it_routes_by_seed() -> None:
    router = RingRouter(SEEDS)
    assert list(router.candidates(b"k")) == SEEDS
    assert router.primary(b"k") is None
    assert router.observe_ring_version(0) is True
    router.ring_fetched([{"version": 0, "members": []}, {"default": {"replicas": 1}}])
    assert router.snapshot is None
    assert list(router.candidates(b"k")) == SEEDS
    # Version 0 is now known: responses from the lone node ask for nothing more.
    assert router.observe_ring_version(0) is False


@pytest.mark.parametrize(
    "replies",
    [
        [{"version": "x", "members": []}, {}],
        [{"version": 2, "members": [{"node_id": "a"}]}, {}],
        [{"version": 2, "members": ["a"]}, {}],
        [ring_reply(2), {"default": {"replicas": 0}}],
        [ring_reply(2), []],
        [ring_reply(2)],
    ],
)
def test_a_failed_or_malformed_fetch_falls_back_to_seeds(replies: Any) -> None:
    router = loaded(version=1)
    assert router.observe_ring_version(2) is True
    router.ring_fetched(replies)
    assert router.snapshot is None
    assert list(router.candidates(b"k")) == SEEDS
    assert router.observe_ring_version(2) is False  # not again for the same version
    assert router.observe_ring_version(3) is True  # but for a newer one


def test_a_failed_fetch_keeps_the_ring() -> None:
    router = loaded(version=1)
    before = router.snapshot
    assert router.observe_ring_version(2) is True
    router.ring_fetched(None)
    assert router.snapshot is before
    assert router.observe_ring_version(2) is False
    assert router.observe_ring_version(3) is True
    router.ring_fetched(None)


def test_a_newer_version_is_claimed_once() -> None:
    router = loaded(version=7)
    assert router.observe_ring_version(7) is False
    assert router.observe_ring_version(6) is False
    assert router.observe_ring_version(8) is True
    assert router.observe_ring_version(9) is False  # a refresh is under way
    router.ring_fetched([ring_reply(9), NAMESPACES])
    assert router.ring_version == 9
    assert router.observe_ring_version(9) is False
    assert router.observe_ring_version(10) is True
    # The node answered an older ring than the version that asked: keep it, wait for newer.
    router.ring_fetched([ring_reply(9), NAMESPACES])
    assert router.ring_version == 9
    assert router.observe_ring_version(10) is False
    assert router.observe_ring_version(11) is True
    router.ring_fetched(None)


def test_one_thread_of_many_is_told_to_refresh() -> None:
    router = loaded(version=1)
    start = threading.Barrier(8)
    told: list[bool] = []

    def worker() -> None:
        start.wait()
        told.extend(router.observe_ring_version(5) for _ in range(200))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert told.count(True) == 1


def test_a_refused_node_goes_last_until_retry_after() -> None:
    now = [100.0]
    router = loaded(clock=lambda: now[0], retry_after=2.0)
    key = next(k for k in KEYS if router.primary(k) == parse_address(ADDRS[0]))
    first = list(router.candidates(key))
    router.failed(first[0])
    moved = list(router.candidates(key))
    assert moved == [*first[1:], first[0]]
    assert router.primary(key) == first[1]
    now[0] += 2.5
    assert list(router.candidates(key)) == first
    router.failed(first[0])
    router.connected(first[0])
    assert list(router.candidates(key)) == first


def test_snapshot_table_wraps_past_the_last_range() -> None:
    snapshot = RingSnapshot.build(reference_ring(), {"default": 1})
    assert snapshot is not None
    assert snapshot.table[-1] is snapshot.table[0]
    ring = reference_ring()
    # A token past the last vnode belongs to the first range.
    key = next(
        k for k in (b"w%d" % i for i in range(100000)) if ring.token(k) > snapshot.bounds[-1]
    )
    assert snapshot.primary(key) == parse_address(ring.primary(key).address)


def test_the_smart_flag_picks_the_router() -> None:
    import meshcache
    from meshcache.client.routing import SeedRouter

    for make in (meshcache.Client, meshcache.TrioClient, meshcache.AsyncClient):
        assert isinstance(make("a:1,b:2").router, RingRouter)  # type: ignore[attr-defined]
        dumb = make("a:1,b:2", smart=False).router  # type: ignore[attr-defined]
        assert isinstance(dumb, SeedRouter) and dumb.primary(b"k") is None
