"""One real node against a real PostgreSQL: the loader's own timing read from ``/metrics``
(load latency per namespace and source, the steps of a miss and of an invalidation), and
invalidation that reloads a key instead of only dropping it, its query started as the NOTIFY
arrives."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
import trio

from meshcache.node.loader.timing import BUCKETS
from meshcache.node.node import Node
from tests.loader.helpers import (
    Database,
    Table,
    histogram,
    listening_node,
    loader_stats,
    one_node,
    scrape,
    wait_until,
)

pytestmark = pytest.mark.postgres

LOAD = "meshcache_loader_load_duration_seconds"
STEP = "meshcache_loader_step_duration_seconds"


async def metrics(node: Node) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    assert node.info is not None
    address = node.info.admin_address
    return await trio.to_thread.run_sync(scrape, address)


@pytest.mark.trio
async def test_metrics_carry_the_load_latency_and_each_step_of_a_miss(
    tmp_path: Path, database: Database
) -> None:
    table = Table(database, delay=0.2)
    table.put("k", "v")
    table.put("j", "w")
    namespaces = {"items": {"loader": table.loader()}, "other": {"loader": table.loader()}}
    async with one_node(tmp_path, database.dsn, namespaces) as (node, client):
        before = await metrics(node)
        assert histogram(before, LOAD, namespace="items", source="pg")[0] == 0
        answers: list[bytes | None] = []

        async def get() -> None:
            answers.append(await client.get("k", namespace="items"))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(get)
        assert answers == [b"v"] * 10
        assert await client.get("j", namespace="other") == b"w"
        assert await client.get("k", namespace="items") == b"v"  # a hit: no load, no step
        samples = await metrics(node)

    count, total, buckets = histogram(samples, LOAD, namespace="items", source="pg")
    assert count == 1
    assert 0.2 <= total < 10  # the load function sleeps 0.2 s
    assert [le for le, _ in buckets] == [*BUCKETS, float("inf")]
    assert [n for le, n in buckets if le < 0.2] == [0] * sum(b < 0.2 for b in BUCKETS)
    assert buckets[-1] == (float("inf"), 1)
    assert histogram(samples, LOAD, namespace="other", source="pg")[0] == 1
    # Each step is timed per request where it happens: two queries (one per namespace) and
    # nine misses that joined the first one's flight.
    steps = {
        step: histogram(samples, STEP, step=step)
        for step in ("query", "query_on_source", "store", "replicate", "coalesce_wait", "forward")
    }
    assert steps["query"][0] == steps["query_on_source"][0] == 2
    assert steps["store"][0] == steps["replicate"][0] == 2
    assert steps["coalesce_wait"][0] == 9 == loader_stats(node)["coalesced"]
    assert steps["forward"][0] == 0  # one node forwards nothing
    # The query through the bridge takes at least as long as the driver's call alone, and
    # both include the load function's 0.2 s.
    assert steps["query"][1] >= steps["query_on_source"][1] >= 0.4
    assert 0 < steps["coalesce_wait"][1] < 9 * 10


@pytest.mark.trio
async def test_notify_reloads_a_held_key_at_once_and_drops_nothing_else(
    tmp_path: Path, database: Database
) -> None:
    async with listening_node(tmp_path, database, rows={"a": "1"}, on_notify="reload") as on:
        table, loader, client = on.table, on.loader, on.client
        store = on.node.parts.store if on.node.parts is not None else None
        assert store is not None and table.calls() == 1
        table.put("a", "10")
        # Reloaded without a read: the store holds the new value. Its query was started on
        # the driver's loop as the NOTIFY arrived.
        await wait_until(lambda: loader.stats["reloaded"] == 1, "the reload")
        entry = store.get_entry("items", b"a")
        assert entry is not None and entry.value == b"10"
        assert table.calls() == 2
        assert loader.stats["early_reloads"] == 1
        # A key this node did not hold is only dropped (nobody was reading it): no query.
        table.put("b", "20")
        await wait_until(lambda: loader.stats["invalidations"] == 2, "the second NOTIFY")
        assert store.get_entry("items", b"b") is None
        assert table.calls() == 2
        assert await client.get("a", namespace="items") == b"10"  # a hit
        assert await client.get("b", namespace="items") == b"20"  # a miss, loaded now
        assert table.calls() == 3
        assert loader.stats["early_reloads"] == 1 and not loader.stats["early_reloads_unused"]
        samples = await metrics(on.node)
    assert histogram(samples, STEP, step="notify_reload")[0] == 1
    assert histogram(samples, STEP, step="notify_drop")[0] == 2
    assert histogram(samples, STEP, step="notify_hop")[0] == 2


@pytest.mark.trio
async def test_misses_during_a_reload_join_it_and_get_the_new_value(
    tmp_path: Path, database: Database
) -> None:
    async with listening_node(
        tmp_path, database, rows={"a": "1"}, on_notify="reload", delay=0.3
    ) as on:
        table, loader, client = on.table, on.loader, on.client
        table.put("a", "2")
        await wait_until(lambda: loader.flights, "the reload in flight")
        answers: list[bytes | None] = []

        async def get() -> None:
            answers.append(await client.get("a", namespace="items"))

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(get)
        assert answers == [b"2"] * 20
        assert table.calls() == 2  # the first load and the one reload
        assert loader_stats(on.node)["reloaded"] == 1
        assert loader_stats(on.node)["early_reloads"] == 1


@pytest.mark.trio
async def test_a_set_landing_during_an_early_reload_wins(
    tmp_path: Path, database: Database
) -> None:
    async with listening_node(
        tmp_path, database, rows={"a": "1"}, on_notify="reload", delay=0.5
    ) as on:
        table, loader, client = on.table, on.loader, on.client
        table.put("a", "from-db")
        await wait_until(lambda: loader.flights, "the reload in flight")
        await client.set("a", "from-client", namespace="items")
        await wait_until(lambda: not loader.flights, "the reload over", 15)
        assert loader.stats["early_reloads"] == 1 and loader.stats["stale_sets_prevented"] == 1
        assert not loader.stats["reloaded"]
        assert await client.get("a", namespace="items") == b"from-client"
        assert table.calls() == 2


@pytest.mark.trio
async def test_without_reload_a_notify_only_drops(tmp_path: Path, database: Database) -> None:
    async with listening_node(tmp_path, database, rows={"a": "1"}) as on:
        table, loader, client = on.table, on.loader, on.client
        table.put("a", "2")
        await wait_until(lambda: loader.stats["invalidations"] == 1, "the NOTIFY")
        assert on.node.parts is not None
        assert on.node.parts.store.get_entry("items", b"a") is None
        assert not loader.flights and table.calls() == 1
        assert not loader.stats["early_reloads"] and not loader.stats["early_reloads_unused"]
        assert await client.get("a", namespace="items") == b"2"
        assert table.calls() == 2 and not loader.stats["reloaded"]


@pytest.mark.trio
async def test_a_notify_payload_that_is_not_a_key_is_counted_and_logged(
    tmp_path: Path, database: Database
) -> None:
    async with listening_node(tmp_path, database, rows={"a": "1"}, on_notify="reload") as on:
        table, loader, client = on.table, on.loader, on.client
        with structlog.testing.capture_logs() as logs:
            database.sql(f"SELECT pg_notify('{on.channel}', '')")
            database.sql(f"SELECT pg_notify('{on.channel}', '')")
            await wait_until(lambda: loader.stats["notify_bad_payload"] == 2, "two bad payloads")
        bad_logs = [e for e in logs if e["event"] == "loader_bad_notify"]
        assert len(bad_logs) == 2 and bad_logs[0]["reason"] == "empty"
        assert bad_logs[0]["channel"] == on.channel
        assert not loader.stats["invalidations"] and table.calls() == 1
        assert await client.get("a", namespace="items") == b"1"  # still served
        samples = await metrics(on.node)
    bad = ("meshcache_mesh_total", frozenset({("part", "loader"), ("what", "notify_bad_payload")}))
    assert samples[bad] == 2
