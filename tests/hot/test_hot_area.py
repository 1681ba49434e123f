"""The hot area (bounded LRU copies under leases) and a holder's refusals of bad pushes."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshcache.errors import CommandError, ErrorCode
from meshcache.hlc import HLC
from meshcache.node.data.hot.area import (
    COPY_OVERHEAD,
    FLOOR_OVERHEAD,
    MAX_FLOOR_BYTES,
    HotArea,
)
from meshcache.node.data.hot.keys import HotKeys
from meshcache.ring import Ring, RingMember
from meshcache.store.hotpolicy import HotKeyPolicy
from meshcache.store.policy import NamespacePolicy
from meshcache.store.store import Store
from meshcache.store.values import PLAIN
from meshcache.testing.simdata import SimMesh


def test_copies_are_served_while_their_lease_runs_and_their_entry_lives() -> None:
    area = HotArea()
    assert area.put("ns", b"a", b"1", 10, None, lease_end=5.0)
    assert area.put("ns", b"b", b"2", 10, expires_at=1000.5, lease_end=50.0)
    assert area.get("ns", b"a", now=4.9, wall=1000.0) is not None
    assert area.get("ns", b"b", now=4.9, wall=1000.0) is not None
    assert area.get("ns", b"a", now=5.0, wall=1000.0) is None  # lease over
    assert area.get("ns", b"b", now=5.0, wall=1000.5) is None  # the entry expired
    assert len(area) == 0 and area.total_bytes == 0
    assert area.stats["copies_expired"] == 2


def test_versions_only_move_forward_and_drops_respect_them() -> None:
    area = HotArea()
    area.put("ns", b"k", b"new", 20, None, 10.0)
    assert not area.put("ns", b"k", b"old", 19, None, 10.0)
    assert area.put("ns", b"k", b"new", 20, None, 12.0)  # a renewal
    copy = area.get("ns", b"k", 11.0, 0.0)
    assert copy is not None and copy.value == b"new" and copy.lease_end == 12.0
    assert not area.drop("ns", b"k", version=20)  # the copy is not older than that
    assert area.drop("ns", b"k", version=21)
    assert area.stats["copies_stale"] == 1 and area.stats["copies_renewed"] == 1


def test_a_copy_that_leaves_keeps_older_pushes_out() -> None:
    """The owner's pushes travel on different connections, so an older one can arrive after the
    holder dropped a newer copy (a write passed, the key cooled, the lease ran out): it is
    refused, and the same version is stored again."""
    area = HotArea()
    area.put("ns", b"k", b"v20", 20, None, 10.0)
    assert area.drop("ns", b"k")  # a write passed through: its copy is dropped
    assert area.newest("ns", b"k") == 20
    assert not area.put("ns", b"k", b"v19", 19, None, 10.0)  # a late update of an older write
    assert area.put("ns", b"k", b"v20", 20, None, 10.0)  # the key turned hot again, unwritten
    assert area.put("ns", b"k", b"v21", 21, None, 10.0)
    # a drop of a version keeps older pushes out though no copy was held (HOT_DROP at v30)
    assert not area.drop("ns", b"j", version=31)
    assert area.newest("ns", b"j") == 30
    assert not area.put("ns", b"j", b"v29", 29, None, 10.0)
    assert area.put("ns", b"j", b"v30", 30, None, 10.0)
    # a drop with no version (the owner holds no record of the key) keeps nothing out
    assert not area.drop("ns", b"m", version=2**63 + 1)
    assert area.newest("ns", b"m") == -1
    assert area.put("ns", b"m", b"v5", 5, None, 10.0)
    # a lapsed lease leaves the copy's version behind too
    assert area.get("ns", b"m", now=10.0, wall=0.0) is None
    assert not area.put("ns", b"m", b"v4", 4, None, 20.0)
    assert area.stats["copies_stale"] == 3
    area.drop_namespace("ns")
    assert area.put("ns", b"m", b"v4", 4, None, 20.0)


def test_a_version_a_forwarded_write_left_keeps_older_copies_out() -> None:
    """The owner answered a write this node forwarded with the version it left (v30): a copy
    older than it goes, one at least as new stays, and no push older than it is stored, the
    one just below it included (versions of writes a millisecond apart differ by one)."""
    area = HotArea()
    area.put("ns", b"k", b"v20", 20, None, 10.0)
    assert area.at_least("ns", b"k", 30)
    assert area.get("ns", b"k", 1.0, 0.0) is None and area.newest("ns", b"k") == 30
    assert not area.put("ns", b"k", b"v29", 29, None, 10.0)
    assert area.put("ns", b"k", b"v30", 30, None, 10.0)
    assert not area.at_least("ns", b"k", 30)  # the copy is that version: it stays
    assert not area.at_least("ns", b"k", 25)
    copy = area.get("ns", b"k", 1.0, 0.0)
    assert copy is not None and copy.version == 30
    assert not area.at_least("ns", b"j", 7)  # no copy held: the floor alone
    assert not area.put("ns", b"j", b"v6", 6, None, 10.0)
    assert area.stats["copies_stale"] == 2 and area.stats["copies_dropped"] == 1


def test_the_floors_are_bounded_oldest_first() -> None:
    area = HotArea()
    fit = MAX_FLOOR_BYTES // (len(b"k000000") + FLOOR_OVERHEAD)
    keys = [b"k%06d" % i for i in range(fit + 10)]
    for key in keys:
        area.drop("ns", key, version=6)
    assert [area.newest("ns", key) for key in keys[:10]] == [-1] * 10
    assert all(area.newest("ns", key) == 5 for key in keys[10:])
    assert area.put("ns", keys[0], b"v1", 1, None, 1.0)
    assert not area.put("ns", keys[-1], b"v1", 1, None, 1.0)


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=200),
    limit=st.integers(min_value=COPY_OVERHEAD + 1, max_value=5000),
)
@settings(max_examples=200, deadline=None)
def test_the_area_never_holds_more_than_its_bound(sizes: list[int], limit: int) -> None:
    area = HotArea()
    area.set_limit("ns", limit)
    for i, size in enumerate(sizes):
        key = b"k%d" % (i % 37)
        area.put("ns", key, b"x" * size, i, None, 100.0)
        assert area.bytes_of("ns") <= limit
        assert area.bytes_of("ns") == sum(c.size for _, c in area.slots())
    # the most recently stored copy is kept when it fits at all
    last = len(sizes) - 1
    if len(b"k%d" % (last % 37)) + sizes[-1] + COPY_OVERHEAD <= limit:
        assert ("ns", b"k%d" % (last % 37)) in area


def test_least_recently_used_copies_go_first() -> None:
    area = HotArea()
    one = len(b"a") + 10 + COPY_OVERHEAD
    area.set_limit("ns", 3 * one)
    for key in (b"a", b"b", b"c"):
        area.put("ns", key, b"x" * 10, 1, None, 100.0)
    area.get("ns", b"a", 0.0, 0.0)  # a is used: b is now the oldest
    area.put("ns", b"d", b"x" * 10, 1, None, 100.0)
    assert [slot[1] for slot, _ in area.slots()] == [b"c", b"a", b"d"]
    assert area.stats["copies_evicted"] == 1


NS = "hot"
POLICY = NamespacePolicy(hot=HotKeyPolicy(share=0.05, rate=1.0, lease=1.0))


@pytest.mark.trio
async def test_a_holder_refuses_pushes_it_cannot_trust(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mesh = SimMesh(3, 3, policies={NS: POLICY, "cold": NamespacePolicy()})
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        key = b"some-key"
        owner, *others = [m.node_id for m in mesh.ring.owners(key, 3)]
        holder, stranger = others
        version = mesh.config.version
        hot = mesh.nodes[holder].parts.hot
        item = [key, b"v", 5, None]
        # from a node that is not the key's primary owner: skipped and counted
        assert await mesh.client(holder, NS, "HOT_PUSH", stranger, version, 1.0, [item]) == [-1]
        assert hot.stats["refused_not_owner"] == 1 and (NS, key) not in hot.area
        # under another ring version
        with pytest.raises(CommandError) as stale:
            await mesh.client(holder, NS, "HOT_PUSH", owner, version + 1, 1.0, [item])
        assert stale.value.code is ErrorCode.STALE_CONFIG
        with pytest.raises(CommandError) as dropped:
            await mesh.client(holder, NS, "HOT_DROP", owner, version - 1, [[key, 9]])
        assert dropped.value.code is ErrorCode.STALE_CONFIG
        assert hot.stats["refused_stale_ring"] == 2
        # in a namespace with hot keys off
        with pytest.raises(CommandError, match="hot keys are off"):
            await mesh.client(holder, "cold", "HOT_PUSH", owner, version, 1.0, [item])
        # malformed items
        for bad in ([key, "v", 5, None], [key, b"v", -1.5, None], [key, b"v"], "x"):
            with pytest.raises(CommandError) as malformed:
                await mesh.client(holder, NS, "HOT_PUSH", owner, version, 1.0, [bad])
            assert malformed.value.code is ErrorCode.BAD_REQUEST
        # the real owner is trusted; its lease is capped by the namespace's
        assert await mesh.client(holder, NS, "HOT_PUSH", owner, version, 60.0, [item]) == [0]
        copy = hot.area.get(NS, key, trio.current_time(), mesh.nodes[holder].wall())
        assert copy is not None and copy.lease_end <= trio.current_time() + 1.0
        assert await mesh.client(holder, NS, "HOT_DROP", owner, version, [[key, 5]]) == 1
        assert (NS, key) not in hot.area
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_pushed_record_is_applied_only_from_the_owner_by_a_write_owner(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An item ``[key, record]`` carries the owner's replica write to a holder that is also
    one of the key's write owners: applied there as ``REPL`` applies it, and the copy taken
    from it. From anyone else, or at a holder that is no write owner, it is refused as not
    applied (``-2``) and nothing is stored; a record of the wrong shape is a bad request."""
    mesh = SimMesh(3, 3, policies={NS: POLICY})
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        key = b"some-key"
        owner, replica, other = [m.node_id for m in mesh.ring.owners(key, 3)]
        version = mesh.config.version
        record = [PLAIN, b"v", None, 7]
        item = [key, record]
        assert await mesh.client(replica, NS, "HOT_PUSH", other, version, 1.0, [item]) == [-2]
        assert mesh.held(replica, NS, key) is None
        assert mesh.nodes[replica].parts.hot.stats["refused_not_owner"] == 1
        # a holder beyond the key's replicas is sent its copy, never the record
        assert await mesh.client(other, NS, "HOT_PUSH", owner, version, 1.0, [item]) == [-2]
        assert mesh.held(other, NS, key) is None
        assert (NS, key) not in mesh.nodes[other].parts.hot.area
        assert mesh.nodes[other].coordinator.stats["repl_refused_not_owner"] == 1
        for bad in (
            [PLAIN, "v", None, 7],
            ["hash", b"v", None, 7],
            [PLAIN, b"v", None, "7"],
            [PLAIN, b"v", "soon", 7],
            [PLAIN, b"v", None],
        ):
            with pytest.raises(CommandError) as malformed:
                await mesh.client(replica, NS, "HOT_PUSH", owner, version, 1.0, [[key, bad]])
            assert malformed.value.code is ErrorCode.BAD_REQUEST
        assert mesh.held(replica, NS, key) is None
        assert await mesh.client(replica, NS, "HOT_PUSH", owner, version, 1.0, [item]) == [0]
        assert mesh.held(replica, NS, key) == (PLAIN, b"v", None, 7)
        hot = mesh.nodes[replica].parts.hot
        copy = hot.area.get(NS, key, trio.current_time(), mesh.nodes[replica].wall())
        assert copy is not None and copy.version == 7 and copy.value == b"v"
        # an older record is stale for the store and older than the copy: not applied anew
        older = [key, [PLAIN, b"old", None, 6]]
        assert await mesh.client(replica, NS, "HOT_PUSH", owner, version, 1.0, [older]) == [-1]
        assert mesh.held(replica, NS, key) == (PLAIN, b"v", None, 7)
        nursery.cancel_scope.cancel()


_ATOMS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.binary(max_size=8)
    | st.text(max_size=8)
)
_ITEMS = st.recursive(_ATOMS, lambda inner: st.lists(inner, max_size=5), max_leaves=12)


@given(items=st.lists(_ITEMS, max_size=4))
@example(items=[[b"k%d" % i, [PLAIN, b"v", None, 5]] for i in range(8)])
@example(items=[[b"k%d" % i, b"v", 5, None] for i in range(8)] + [[b"k", [PLAIN, "v", None, 5]]])
@settings(max_examples=300, deadline=None)
def test_a_push_of_any_items_is_applied_in_full_or_refused_as_a_bad_request(items: Any) -> None:
    """Whatever a push's items are, the holder answers one int per item or refuses with
    ``BAD_REQUEST``; no item of the wrong shape reaches the store or the area."""
    applied: list[Any] = []
    hot = HotKeys(
        Store(clock=lambda: 0.0, hlc=HLC(lambda: 1_000), policies={NS: POLICY}),
        "n1",
        ring=lambda: (RING, 7),
        alive=lambda _: True,
        call=_no_call,
        wall_clock=lambda: 0.0,
        clock=lambda: 0.0,
        apply=lambda ns, records, sender: applied.extend(records) or [0] * len(records),
    )
    hot.tick()  # follows the namespace's policy: hot keys on
    try:
        answer = hot.handle_push(NS, ["n0", 7, 1.0, items])
    except CommandError as exc:
        assert exc.code is ErrorCode.BAD_REQUEST
        return
    assert type(answer) is list and len(answer) == len(items)
    assert all(type(a) is int and a >= -2 for a in answer)
    for key, record in applied:
        assert type(key) is bytes and record[0] == PLAIN and type(record[1]) is bytes
    for (_, key), copy in hot.area.slots():
        assert type(key) is bytes and type(copy.value) is bytes
    # the items of the sender's keys that carry a record are applied and copied
    carried = [i for i in items if len(i) == 2 and RING.owners(i[0], 1)[0].node_id == "n0"]
    assert len(applied) == len(carried)


async def _no_call(*_: Any) -> Any:
    raise AssertionError("a push calls no peer")


RING = Ring([RingMember(node_id="n0", address="n0"), RingMember(node_id="n1", address="n1")], 7)
