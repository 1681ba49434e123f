"""Read-through across three real node processes and a real PostgreSQL: one query per key
cluster-wide (counted by PostgreSQL), replication of loaded values, fail-over of a waiting
load, NOTIFY invalidation, and loaders refused by the node that receives them."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

from meshcache.errors import CommandError, ErrorCode
from meshcache.node.loader.sql import trigger_sql
from meshcache.testing.mesh import Direct, Mesh
from meshcache.wire.frame import FrameReader, decode_response, encode_request
from tests.loader.helpers import Database, Table, histogram, scrape
from tests.mesh.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def mesh(database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mesh]:
    monkeypatch.setenv("MESHCACHE_SOURCE_PG_DSN", database.dsn)
    with ExitStack() as stack:
        yield Mesh(stack, tmp_path, 3)


def record(mesh: Mesh, node: Any, key: bytes, namespace: str) -> Any:
    """The node's own record of ``key`` (RECORDS never loads)."""
    return mesh.call(node, "RECORDS", [[key]], namespace)[0]


async def _burst(addresses: list[tuple[str, int]], key: bytes, per_conn: int, conns: int) -> list:
    answers: list[Any] = []

    async def one(address: tuple[str, int]) -> None:
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(
                b"".join(encode_request(i + 1, "GET", "items", [key]) for i in range(per_conn))
            )
            reader = FrameReader()
            got = 0
            while got < per_conn:
                while (body := reader.next_body()) is not None:
                    answers.append(decode_response(body).result())
                    got += 1
                if got < per_conn:
                    data = await stream.receive_some(65536)
                    assert data, "the node closed the connection"
                    reader.feed(data)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(conns):
                nursery.start_soon(one, addresses[i % len(addresses)])
    return answers


def test_a_thousand_concurrent_misses_over_three_nodes_make_one_query(
    mesh: Mesh, database: Database
) -> None:
    table = Table(database, delay=0.5)
    table.put("popular", "loaded-once")
    mesh.wait_namespace("items", {"loader": table.loader(ttl=60)})
    addresses = [n.data_address for n in mesh.nodes]
    answers = trio.run(_burst, addresses, b"popular", 17, 60)  # 1020 GETs on 60 connections
    assert answers == [b"loaded-once"] * 1020
    assert table.calls() == 1  # counted by PostgreSQL itself
    # The loaded value is replicated like a write: both owners hold it.
    owners = mesh.owners(b"popular", 2)
    wait_for(
        lambda: all(
            (record(mesh, mesh.by_id(o), b"popular", "items") or [None, None])[1] == b"loaded-once"
            for o in owners
        ),
        10,
        "the loaded value on both owners",
    )
    counters = [mesh.mesh_info(n)["counters"].get("loader", {}) for n in mesh.nodes]
    assert sum(c.get("queries", 0) for c in counters) == 1
    assert sum(c.get("coalesced", 0) for c in counters) >= 1
    # An MGET's misses are loaded by each key's owner, with one batch query per owner.
    keys = [f"b{i}" for i in range(12)]
    for key in keys:
        table.put(key, key.upper())
    mesh.wait_namespace("batch", {"loader": table.loader(batch_query=table.batch_query)})
    asked = [*keys, "none"]
    got = mesh.call(mesh.nodes[0], "MGET", [k.encode() for k in asked], "batch")
    assert got == [k.upper().encode() for k in keys] + [None]
    owners = {mesh.owners(k.encode(), 2)[0] for k in asked}
    after = [mesh.mesh_info(n)["counters"].get("loader", {}) for n in mesh.nodes]
    pairs = zip(after, counters, strict=True)
    batches = sum(a.get("queries", 0) - c.get("queries", 0) for a, c in pairs)
    assert batches == len(owners), f"{batches} batch queries for {len(owners)} owners"
    assert sum(a.get("keys_queried", 0) for a in after) == 1 + 13
    # A SET through another node while the owner loads the key wins over the loaded value.
    table.put("raced", "from-db")
    owner = mesh.by_id(mesh.owners(b"raced", 2)[0])
    other = next(n for n in mesh.nodes if n is not owner)
    answer: list[Any] = []
    reader = threading.Thread(
        target=lambda: answer.append(mesh.call(owner, "GET", [b"raced"], "items"))
    )
    reader.start()
    wait_for(
        lambda: mesh.mesh_info(owner)["gauges"].get("loader_loads_in_flight") == 1,
        10,
        "the load in flight",
    )
    mesh.call(other, "SET", [b"raced", b"from-client", {}], "items")
    reader.join(timeout=30)
    assert answer == [b"from-client"]
    for node in mesh.nodes:
        assert mesh.call(node, "GET", [b"raced"], "items") == b"from-client"


def test_a_waiting_load_fails_over_when_its_owner_hangs(mesh: Mesh, database: Database) -> None:
    table = Table(database, delay=0.1)
    table.put("k", "v")
    # The timeout bounds the next owner's own load too: 2 s leaves a 0.1 s query room on a
    # busy machine.
    mesh.wait_namespace("items", {"loader": table.loader(load_timeout=2.0)})
    first, second = mesh.owners(b"k", 2)
    asker = next(n for n in mesh.nodes if n.node_id not in (first, second))
    owner = mesh.by_id(first)
    os.kill(owner.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with Direct(asker.data_address, timeout=30) as d:
            assert d.call("GET", [b"k"], "items") == b"v"
        waited = time.monotonic() - start
        # The forward waited about the load timeout (plus its margin), then the next owner
        # loaded: one query (the hung owner may load once more when it runs again).
        assert 2.0 < waited < 15
        assert table.calls() == 1
    finally:
        os.kill(owner.pid, signal.SIGCONT)


def test_an_update_in_postgres_is_dropped_on_every_node_via_notify(
    mesh: Mesh, database: Database
) -> None:
    table = Table(database)
    table.put("n", "v1")
    mesh.wait_namespace("items", {"loader": table.loader(channel=f"{table.name}_changes")})
    database.sql(trigger_sql(f"{table.name}_changes", table.name, "id"))
    wait_for(
        lambda: all(mesh.mesh_info(n)["gauges"].get("loader_listening") == 1 for n in mesh.nodes),
        20,
        "every node listening",
    )
    assert mesh.call(mesh.nodes[0], "GET", [b"n"], "items") == b"v1"
    owners = [mesh.by_id(o) for o in mesh.owners(b"n", 2)]
    wait_for(
        lambda: all((record(mesh, o, b"n", "items") or [None, None])[1] == b"v1" for o in owners),
        10,
        "v1 on both owners",
    )
    table.put("n", "v2")
    wait_for(
        lambda: all(
            (record(mesh, o, b"n", "items") or ["tombstone"])[0] == "tombstone" for o in owners
        ),
        10,
        "the key dropped on both owners",
    )
    for node in mesh.nodes:
        assert mesh.call(node, "GET", [b"n"], "items") == b"v2"
    # A payload that is not a key is counted and harms nothing.
    database.sql(f"SELECT pg_notify('{table.name}_changes', '')")
    wait_for(
        lambda: all(
            mesh.mesh_info(n)["counters"].get("loader", {}).get("notify_bad_payload") == 1
            for n in mesh.nodes
        ),
        10,
        "the empty payload counted on every node",
    )
    assert mesh.call(mesh.nodes[1], "GET", [b"n"], "items") == b"v2"


def test_a_loader_whose_query_does_not_prepare_is_refused_with_postgres_message(
    mesh: Mesh,
) -> None:
    node = mesh.nodes[1]  # not the voter: the node that receives the change checks it
    bad = {"loader": {"source": "pg", "query": "SELECT v FROM no_such_table WHERE id = $1"}}
    with pytest.raises(CommandError) as refused:
        mesh.call(node, "NS_SET", ["bad", bad])
    assert refused.value.code == ErrorCode.INVALID_COMMAND
    assert 'relation "no_such_table" does not exist' in str(refused.value)
    shape = {"loader": {"source": "pg", "query": "SELECT 1, 2 WHERE $1::text IS NOT NULL"}}
    with pytest.raises(CommandError, match="returns 2 columns"):
        mesh.call(node, "NS_SET", ["bad", shape])
    unknown = {"loader": {"source": "elsewhere", "query": "SELECT $1::text"}}
    with pytest.raises(CommandError, match="no source 'elsewhere'"):
        mesh.call(node, "NS_SET", ["bad", unknown])
    assert "bad" not in mesh.call(node, "NS_LIST", [])


def test_with_reload_an_update_is_loaded_once_by_the_owner_and_replicated(
    mesh: Mesh, database: Database
) -> None:
    table = Table(database)
    table.put("n", "v1")
    channel = f"{table.name}_changes"
    mesh.wait_namespace("items", {"loader": table.loader(channel=channel, on_notify="reload")})
    database.sql(trigger_sql(channel, table.name, "id"))
    wait_for(
        lambda: all(mesh.mesh_info(n)["gauges"].get("loader_listening") == 1 for n in mesh.nodes),
        20,
        "every node listening",
    )
    owners = [mesh.by_id(o) for o in mesh.owners(b"n", 2)]
    [other] = [n for n in mesh.nodes if n not in owners]
    assert mesh.call(other, "GET", [b"n"], "items") == b"v1"  # forwarded to the owner
    wait_for(
        lambda: all((record(mesh, o, b"n", "items") or [None, None])[1] == b"v1" for o in owners),
        10,
        "v1 on both owners",
    )
    assert table.calls() == 1
    table.put("n", "v2")
    # Nobody reads: the owner reloads the key once and replicates it to the other owner.
    wait_for(
        lambda: all((record(mesh, o, b"n", "items") or [None, None])[1] == b"v2" for o in owners),
        10,
        "v2 on both owners without a read",
    )
    assert table.calls() == 2
    counters = [mesh.mesh_info(n)["counters"]["loader"] for n in mesh.nodes]
    assert sorted(c.get("reloaded", 0) for c in counters) == [0, 0, 1]
    # Its query started as the NOTIFY arrived, at the coordinator only.
    assert sorted(c.get("early_reloads", 0) for c in counters) == [0, 0, 1]
    assert not any(c.get("early_reloads_unused") for c in counters)
    for node in mesh.nodes:
        assert mesh.call(node, "GET", [b"n"], "items") == b"v2"
    assert table.calls() == 2
    # Each node's /metrics carries its own steps: the non-owner timed its two forwards, the
    # owner its two loads, every node the NOTIFY's hop and drop.
    samples = {n.node_id: scrape(n.admin_address) for n in mesh.nodes}
    step = "meshcache_loader_step_duration_seconds"
    assert histogram(samples[other.node_id], step, step="forward")[0] == 2
    coordinator = owners[0]
    assert histogram(samples[coordinator.node_id], step, step="query")[0] == 2
    assert histogram(samples[coordinator.node_id], step, step="notify_reload")[0] == 1
    for node in mesh.nodes:
        assert histogram(samples[node.node_id], step, step="notify_hop")[0] == 1
        assert histogram(samples[node.node_id], step, step="notify_drop")[0] == 1
    load = "meshcache_loader_load_duration_seconds"
    assert histogram(samples[coordinator.node_id], load, namespace="items", source="pg")[0] == 2


def test_with_drop_a_value_loaded_after_the_change_is_not_dropped_by_a_late_notify(
    mesh: Mesh, database: Database
) -> None:
    table = Table(database)
    table.put("n", "v1")
    channel = f"{table.name}_changes"
    mesh.wait_namespace("items", {"loader": table.loader(channel=channel)})  # on_notify: drop
    database.sql(trigger_sql(channel, table.name, "id"))
    wait_for(
        lambda: all(mesh.mesh_info(n)["gauges"].get("loader_listening") == 1 for n in mesh.nodes),
        20,
        "every node listening",
    )
    coordinator, second = (mesh.by_id(o) for o in mesh.owners(b"n", 2))
    [other] = [n for n in mesh.nodes if n not in (coordinator, second)]
    assert mesh.call(other, "GET", [b"n"], "items") == b"v1"
    wait_for(
        lambda: all(
            (record(mesh, o, b"n", "items") or [None, None])[1] == b"v1"
            for o in (coordinator, second)
        ),
        10,
        "v1 on both owners",
    )

    def invalidations(node: Any) -> int:
        return int(mesh.mesh_info(node)["counters"].get("loader", {}).get("invalidations", 0))

    # The second owner hears the NOTIFY only after the coordinator has dropped the key and a
    # read has loaded the new value: a drop of its own then, versioned by its clock, would win
    # over that value.
    os.kill(second.pid, signal.SIGSTOP)
    try:
        table.put("n", "v2")
        wait_for(
            lambda: (record(mesh, coordinator, b"n", "items") or ["tombstone"])[0] == "tombstone",
            10,
            "the coordinator's drop",
        )
        assert mesh.call(other, "GET", [b"n"], "items") == b"v2"
    finally:
        os.kill(second.pid, signal.SIGCONT)
    wait_for(lambda: invalidations(second) == 1, 10, "the second owner's NOTIFY")
    wait_for(
        lambda: (record(mesh, second, b"n", "items") or [None, None])[1] == b"v2",
        10,
        "v2 on the second owner",
    )
    second_counters = mesh.mesh_info(second)["counters"]["loader"]
    assert second_counters.get("invalidations_left_to_owner") == 1
    assert not second_counters.get("invalidations_dropped")
    assert table.calls() == 2
