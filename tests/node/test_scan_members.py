"""Steps and counts across members: :class:`KeyScan` objects over real stores and one real ring,
each asking the others as ``SCAN_PART`` and ``DBSIZE`` do (the node's routes call the same
methods). What a step gathers from many members stays within its aim, a small frame limit
gives a smaller aim, and a count taken while the ring moves is never short."""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import msgpack
import pytest

from meshcache.errors import UnavailableError
from meshcache.hlc import HLC
from meshcache.node.data.scan import KeyScan, ScanFilter, slice_bytes_for, weight
from meshcache.ring import Ring, RingMember
from meshcache.store.store import Store
from tests.store.conftest import FakeClock

pytestmark = pytest.mark.trio


class Members:
    """``n`` members of one ring, each with its store and its :class:`KeyScan`."""

    def __init__(self, n: int, slice_bytes: int = 1 << 20, first_slice: int | None = None) -> None:
        clock = FakeClock()
        self.ids = [f"n{i}" for i in range(n)]
        members = [
            RingMember(node_id=i, address=f"127.0.0.1:{7000 + k}") for k, i in enumerate(self.ids)
        ]
        self.ring = Ring(members, 1)
        self.rings = dict.fromkeys(self.ids, self.ring)  # each member's own view
        self.answers: list[bytes] = []  # each SCAN_PART answer as msgpack would carry it
        self.stores: dict[str, Store] = {}
        self.scans: dict[str, KeyScan] = {}
        for i in self.ids:
            self.stores[i] = Store(
                clock=clock, hlc=HLC(clock.ms), policies=None, rng=random.Random(1)
            )
            self.scans[i] = KeyScan(
                i,
                self.stores[i],
                ring=partial(self.ring_of, i),
                alive=lambda _: True,
                call=self.call,
                slice_bytes=slice_bytes if first_slice is None or i != "n0" else first_slice,
            )

    async def call(
        self, node_id: str, op: str, namespace: str, args: list[Any], timeout: float
    ) -> Any:
        scan = self.scans[node_id]
        if op == "SCAN_PART":  # as Routes.scan_part
            aim = args[1].get("aim")
            following, keys = await scan.part(
                namespace, args[0], ScanFilter.from_options(args[1]), aim
            )
            self.answers.append(msgpack.packb([following, keys], use_bin_type=True))
            return [following, keys]
        assert op == "DBSIZE"
        answer = scan.owned_count(namespace)
        return answer if isinstance(answer, dict) else await answer

    def ring_of(self, node_id: str) -> Ring:
        return self.rings[node_id]

    def put(self, key: bytes) -> None:
        self.stores[self.ring.primary(key).node_id].execute("default", "SET", [key, b"v", {}])


async def walk(scan: KeyScan, keep: ScanFilter) -> list[list[bytes]]:
    pages: list[list[bytes]] = []
    cursor = -1
    while cursor:
        cursor, page = await scan.step("default", max(cursor, 0), keep)
        pages.append(page)
    return pages


async def test_a_step_over_many_members_stops_gathering_at_its_aim() -> None:
    """20 members, each under the aim alone, all together far over it: a step with a huge
    COUNT goes on to the next member only while what it found weighs less than the aim."""
    members = Members(20, slice_bytes=64 * 1024)
    keys = [b"%06d" % i + b"k" * 250 for i in range(3_000)]  # about 760 KB in all
    for key in keys:
        members.put(key)
    pages = await walk(members.scans["n0"], ScanFilter(count=1_000_000))
    assert sorted(k for page in pages for k in page) == sorted(keys)
    assert len(pages) > 1
    # Below the aim, plus one member's part (itself at most about twice the aim).
    assert max(weight(page) for page in pages) < 3 * 64 * 1024


async def test_under_a_small_frame_limit_every_part_fits_a_frame() -> None:
    """A node whose frames are at most 128 KiB aims at a quarter of that: every member's part
    of a walk of 8,000 keys fits a frame, and the walk gives every key once."""
    frame = 128 * 1024
    members = Members(2, slice_bytes=slice_bytes_for(frame))
    keys = [b"key:%05d:" % i + b"x" * 50 for i in range(8_000)]
    for key in keys:
        members.put(key)
    pages = await walk(members.scans["n0"], ScanFilter())
    found = [k for page in pages for k in page]
    assert sorted(found) == sorted(keys) and len(found) == len(keys)
    assert members.answers and max(map(len, members.answers)) < frame
    assert slice_bytes_for(16 << 20) == 1 << 20 and slice_bytes_for(128 * 1024) == 32 * 1024


async def test_a_member_with_a_larger_frame_limit_answers_within_the_askers() -> None:
    """n0's frames are at most 128 KiB, the others' 16 MiB: the parts they give n0's walk aim
    at n0's quarter of that."""
    frame = 128 * 1024
    members = Members(2, first_slice=slice_bytes_for(frame))
    keys = [b"key:%05d:" % i + b"x" * 50 for i in range(8_000)]
    for key in keys:
        members.put(key)
    pages = await walk(members.scans["n0"], ScanFilter(count=100_000))
    assert sorted(k for page in pages for k in page) == sorted(keys)
    assert members.answers and max(map(len, members.answers)) < frame


async def test_a_count_while_the_ring_moves_is_taken_again_never_short() -> None:
    """The readers are taken from v1; while the first member is asked, every member moves to
    v2, where a fourth member owns a share: answers all at v2 are not a count of v1's readers,
    so the count is taken again, from v2's. A ring that keeps moving is refused."""
    members = Members(4)
    v1 = Ring([m for m in members.ring.members if m.node_id != "n3"], 1)
    v2 = Ring(list(members.ring.members), 2)
    keys = [b"key:%d" % i for i in range(3_000)]
    for store in members.stores.values():  # every member holds every key: any ring counts all
        for key in keys:
            store.execute("default", "SET", [key, b"v", {}])
    members.rings = dict.fromkeys(members.ids, v1)
    counter = members.scans["n2"]
    assert await counter.mesh_count("default") == len(keys)
    asked = members.call
    moves = [v2]  # the rings the mesh moves to, one per call, while any are left

    async def call(node_id: str, op: str, namespace: str, args: list[Any], timeout: float) -> Any:
        if moves:
            members.rings = dict.fromkeys(members.ids, moves.pop(0))
        return await asked(node_id, op, namespace, args, timeout)

    counter._call = call
    assert await counter.mesh_count("default") == len(keys)
    moves.extend(Ring(list(v2.members), version) for version in range(3, 40))
    with pytest.raises(UnavailableError):
        await counter.mesh_count("default")
