"""A member's part of a SCAN step on a real store: tables walked in order, expired keys left
out, and a table whose keys weigh more than an answer may carry walked a slice a step."""

from __future__ import annotations

import random

import pytest

from meshcache.hlc import HLC
from meshcache.node.data.scan import ScanFilter, position, scan_tables
from meshcache.ring.tokens import RangeSet, TokenRange
from meshcache.store.store import Store
from tests.store.conftest import FakeClock

pytestmark = pytest.mark.trio


def store_with(keys: list[bytes], clock: FakeClock) -> Store:
    store = Store(clock=clock, hlc=HLC(clock.ms), policies=None, rng=random.Random(1))
    for key in keys:
        store.execute("default", "SET", [key, b"v", {}])
    return store


async def walk(
    store: Store, keep: ScanFilter, owned: RangeSet | None = None, slice_bytes: int = 1 << 20
) -> list[list[bytes]]:
    pages: list[list[bytes]] = []
    where = 0
    while where >= 0:
        where, page = await scan_tables(store, "default", where, keep, owned, slice_bytes)
        pages.append(page)
    return pages


@pytest.mark.parametrize("n", [100, 20_000])  # one table; 61 of them
async def test_a_walk_gives_each_key_once_in_steps_of_at_least_count(n: int) -> None:
    keys = [b"key:%d" % i for i in range(n)]
    store = store_with(keys, FakeClock())
    pages = await walk(store, ScanFilter(count=50))
    walked = [k for page in pages for k in page]
    assert sorted(walked) == sorted(keys)
    assert all(len(page) >= 50 for page in pages[:-1])


async def test_expired_keys_and_keys_owned_elsewhere_are_left_out() -> None:
    clock = FakeClock()
    keys = [b"k%d" % i for i in range(300)]
    store = store_with(keys, clock)
    for key in keys[:100]:
        store.execute("default", "EXPIRE", [key, 5.0, {}])
    clock.advance(10)
    half = RangeSet([TokenRange(0, 2**31)])
    pages = await walk(store, ScanFilter(count=1000), owned=half)
    walked = sorted(k for page in pages for k in page)
    assert walked == sorted(k for k in keys[100:] if half.mask([k])[0])


@pytest.mark.parametrize("n", [3_000, 12_000])
async def test_a_heavy_table_is_walked_a_slice_a_step(n: int) -> None:
    """Keys of 200 bytes and answers of 40 kB: each step carries at most about one slice's
    share of a table, and the walk still gives every key once."""
    keys = [b"%05d" % i + b"x" * 195 for i in range(n)]
    store = store_with(keys, FakeClock())
    pages = await walk(store, ScanFilter(count=10), slice_bytes=40_000)
    walked = [k for page in pages for k in page]
    assert sorted(walked) == sorted(keys)
    assert max(sum(map(len, page)) for page in pages) < 2 * 40_000
    assert len(pages) > n * 200 // 40_000
    # A count that would take many tables at once stops at the bytes too.
    pages = await walk(store, ScanFilter(count=n), slice_bytes=40_000)
    assert sorted(k for page in pages for k in page) == sorted(keys)
    assert max(sum(map(len, page)) for page in pages) < 2 * 40_000


async def test_any_position_is_answered() -> None:
    store = store_with([b"a", b"b"], FakeClock())
    for where in (position(60), position(0, 15, 1023), position(63, 3, 7), -1, 2**20 - 1):
        following, keys = await scan_tables(store, "default", where, ScanFilter(), None)
        assert following == -1 or following > where
        assert set(keys) <= {b"a", b"b"}
