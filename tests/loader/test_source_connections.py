"""A source's connections: a load takes the connection kept out of the pool when it is free
(no acquire, no reset between loads), loads beside it run on pooled connections, a pool of
one keeps nothing, and a kept connection the server closed costs at most one load."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from meshcache.node.loader.bridge import AsyncioBridge
from meshcache.node.loader.source import PgSource, SourceFailure
from meshcache.settings import SourceSettings
from tests.loader.helpers import Database

pytestmark = [pytest.mark.trio, pytest.mark.postgres]

#: A load whose value names the server process that answered it.
WHO = "SELECT pg_backend_pid()::text || ':' || $1::text"
#: The same, answered after 0.2 s.
SLOW_WHO = "SELECT pg_backend_pid()::text || ':' || $1::text FROM pg_sleep(0.2)"


@asynccontextmanager
async def source_of(database: Database, pool_size: int) -> AsyncIterator[PgSource]:
    bridge = AsyncioBridge()
    bridge.start()
    try:
        settings = SourceSettings(dsn=database.dsn, pool_size=pool_size)
        yield PgSource("pg", settings, bridge, max_value_bytes=1 << 20)
    finally:
        await bridge.aclose()


async def backend(source: PgSource, query: str, key: bytes) -> int:
    """The pid of the server process that answered one load of ``key``."""
    value = await source.start_one(query, key).result()
    assert value is not None
    pid, _, echoed = value.partition(b":")
    assert echoed == key
    return int(pid)


async def concurrently(source: PgSource, n: int) -> list[int]:
    pids: list[int] = []

    async def one(i: int) -> None:
        pids.append(await backend(source, SLOW_WHO, str(i).encode()))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
    return pids


async def test_one_load_at_a_time_keeps_one_connection_and_loads_beside_it_use_the_pool(
    database: Database,
) -> None:
    async with source_of(database, pool_size=2) as source:
        with trio.fail_after(10):
            first = {await backend(source, WHO, f"k{i}".encode()) for i in range(5)}
        assert len(first) == 1
        # Three at once with a pool of two: the kept connection and the pooled one, the
        # third load waits for one of them; none waits for ever on a connection kept idle.
        assert len(set(await concurrently(source, 3))) == 2
        with trio.fail_after(10):
            again = {await backend(source, WHO, f"k{i}".encode()) for i in range(5)}
        assert len(again) == 1


async def test_a_pool_of_one_keeps_no_connection_out_of_it(database: Database) -> None:
    async with source_of(database, pool_size=1) as source:
        with trio.fail_after(10):
            assert len({await backend(source, WHO, b"a") for _ in range(3)}) == 1
        assert len(set(await concurrently(source, 3))) == 1


async def test_a_kept_connection_the_server_closed_costs_at_most_one_load(
    database: Database,
) -> None:
    async with source_of(database, pool_size=2) as source:
        with trio.fail_after(10):
            kept = await backend(source, WHO, b"a")
        database.sql(f"SELECT pg_terminate_backend({kept})")
        with trio.fail_after(10):
            with contextlib.suppress(SourceFailure):  # it found the connection closed
                await backend(source, WHO, b"b")
            assert await backend(source, WHO, b"c") != kept
