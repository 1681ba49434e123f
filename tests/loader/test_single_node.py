"""Read-through on one real node against a real PostgreSQL: load, coalesce, TTL, negative
caching, stale-set protection, MGET with the batch query, bad results, the breaker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from meshcache.errors import CommandError, ErrorCode
from meshcache.store.loader_policy import LoaderPolicy
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.ports import free_port
from tests.loader.helpers import Database, Table, loader_stats, one_node, wait_until

pytestmark = pytest.mark.postgres


@pytest.mark.trio
async def test_a_miss_is_loaded_once_stored_with_its_ttl_and_then_hit(
    tmp_path: Path, database: Database
) -> None:
    table = Table(database)
    table.put("a", "apple")
    async with one_node(tmp_path, database.dsn, {"items": {"loader": table.loader(ttl=30)}}) as (
        node,
        client,
    ):
        assert await client.get("a", namespace="items") == b"apple"
        assert await client.get("a", namespace="items") == b"apple"
        assert table.calls() == 1
        ttl = await client.ttl("a", namespace="items")
        assert 0 < ttl <= 30
        # A namespace without a loader is untouched.
        assert await client.get("a") is None
        assert loader_stats(node)["loaded"] == 1


@pytest.mark.trio
async def test_concurrent_misses_of_one_key_make_one_query(
    tmp_path: Path, database: Database
) -> None:
    table = Table(database, delay=0.3)
    table.put("hot", "value")
    async with one_node(tmp_path, database.dsn, {"items": {"loader": table.loader()}}) as (
        node,
        client,
    ):
        answers: list[bytes | None] = []

        async def get() -> None:
            answers.append(await client.get("hot", namespace="items"))

        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(get)
        assert answers == [b"value"] * 50
        assert table.calls() == 1
        assert loader_stats(node)["coalesced"] == 49


@pytest.mark.trio
async def test_a_missing_row_is_nil_and_negatively_cached(
    tmp_path: Path, database: Database
) -> None:
    table = Table(database)
    policy = {"loader": table.loader(negative_ttl=60)}
    async with one_node(tmp_path, database.dsn, {"items": policy}) as (node, client):
        assert await client.get("nope", namespace="items") is None
        assert await client.get("nope", namespace="items") is None
        assert table.calls() == 1
        assert loader_stats(node)["negative_hits"] == 1


@pytest.mark.trio
async def test_a_set_during_a_load_wins(tmp_path: Path, database: Database) -> None:
    table = Table(database, delay=0.5)
    table.put("k", "from-db")
    async with one_node(tmp_path, database.dsn, {"items": {"loader": table.loader()}}) as (
        node,
        client,
    ):
        assert node.parts is not None
        loader = node.parts.loader
        got: list[bytes | None] = []

        async def reader() -> None:
            got.append(await client.get("k", namespace="items"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            with trio.fail_after(5):
                while not loader.flights:
                    await trio.sleep(0.005)
            await client.set("k", "from-client", namespace="items")
        assert got == [b"from-client"]
        assert await client.get("k", namespace="items") == b"from-client"
        assert loader_stats(node)["stale_sets_prevented"] == 1
        # A delete during a load wins too: the loaded value is not stored.
        await client.delete("k", namespace="items")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            with trio.fail_after(5):
                while not loader.flights:
                    await trio.sleep(0.005)
            await client.delete("k", namespace="items")
        assert node.parts.store.get_entry("items", b"k") is None


@pytest.mark.trio
async def test_mget_loads_its_misses_with_one_batch_query(
    tmp_path: Path, database: Database
) -> None:
    table = Table(database)
    for key in "abc":
        table.put(key, key * 3)
    policy = {"loader": table.loader(batch_query=table.batch_query)}
    async with one_node(tmp_path, database.dsn, {"items": policy}) as (node, client):
        await client.set("a", "cached", namespace="items")
        got = await client.mget("a", "b", "c", "zz", namespace="items")
        assert got == [b"cached", b"bbb", b"ccc", None]
        stats = loader_stats(node)
        assert stats["queries"] == 1 and stats["keys_queried"] == 3
        assert table.calls() == 0  # the batch query does not go through the counting function


@pytest.mark.trio
async def test_bad_results_are_clear_errors_and_leave_the_node_serving(
    tmp_path: Path, database: Database
) -> None:
    table = Table(database)
    table.put("a", "1")
    table.put("b", "2")
    namespaces = {
        "rows": {"loader": {"source": "pg", "query": f"SELECT v FROM {table.name} WHERE id <> $1"}},
        "big": {"loader": {"source": "pg", "query": "SELECT repeat('x', 100000) || $1::text"}},
        "ghost": {"loader": {"source": "nosuch", "query": "SELECT $1::text"}},
        "ints": {"loader": {"source": "pg", "query": "SELECT ($1::int8 * 2)::text"}},
    }
    async with one_node(tmp_path, database.dsn, namespaces) as (node, client):
        node.settings  # noqa: B018 - the node is up
        with pytest.raises(CommandError) as rows:
            await client.get("zzz", namespace="rows")
        assert rows.value.code == ErrorCode.LOADER_UNAVAILABLE and "2 rows" in str(rows.value)
        with pytest.raises(CommandError) as ghost:
            await client.get("x", namespace="ghost")
        assert ghost.value.code == ErrorCode.LOADER_UNAVAILABLE and "nosuch" in str(ghost.value)
        # A key that is not an integer for an int8 parameter is a counted miss.
        assert await client.get("21", namespace="ints") == b"42"
        assert await client.get("not-a-number", namespace="ints") is None
        stats = loader_stats(node)
        assert stats["bad_results"] == 1 and stats["keys_not_loadable"] == 1
        await client.set("still", "fine")
        assert await client.get("still") == b"fine"


@pytest.mark.trio
async def test_keys_of_another_form_or_out_of_range_are_misses_and_leave_the_breaker_closed(
    tmp_path: Path, database: Database
) -> None:
    name = Table(database).name
    database.sql(
        f"CREATE TABLE {name}_i (id int4 PRIMARY KEY, v text);"
        f"INSERT INTO {name}_i VALUES (7, 'seven'), (8, 'eight');"
        f"CREATE TABLE {name}_c (id char(8) PRIMARY KEY, v text);"
        f"INSERT INTO {name}_c VALUES ('abc', 'padded')"
    )
    namespaces = {
        kind: {
            "loader": {
                "source": "pg",
                "query": f"SELECT v FROM {name}_{kind[0]} WHERE id = $1",
                "batch_query": f"SELECT id, v FROM {name}_{kind[0]} WHERE id = ANY($1)",
            }
        }
        for kind in ("ints", "chars")
    }
    async with one_node(tmp_path, database.dsn, namespaces) as (node, client):
        for _ in range(6):  # more than the breaker's threshold
            assert await client.get("3000000000", namespace="ints") is None
        assert await client.get("007", namespace="ints") is None  # the row's key is 7
        # The batch query finds the rows of the keys in PostgreSQL's form, whatever the others.
        got = await client.mget("7", "3000000000", "008", namespace="ints")
        assert got == [b"seven", None, None]
        assert await client.get("8", namespace="ints") == b"eight"
        # char(8) comes back padded from the batch query: still the key "abc".
        assert await client.mget("abc", "abd", namespace="chars") == [b"padded", None]
        stats = loader_stats(node)
        assert stats["keys_not_loadable"] >= 7
        assert stats.get("load_failures", 0) == 0 and stats.get("breaker_opened", 0) == 0


@pytest.mark.trio
async def test_a_query_refused_when_it_loads_is_a_bad_result_and_the_source_serves_on(
    tmp_path: Path, database: Database
) -> None:
    """A namespace's query that PostgreSQL refuses (a value of a type that is not cached, a
    table dropped after the policy was set) fails that namespace's misses with the reason and
    does not count against the source's breaker, which the other namespaces share."""
    table = Table(database)
    table.put("a", "1")
    gone = Table(database)
    gone.put("a", "2")
    namespaces = {
        "items": {"loader": table.loader()},
        "typed": {"loader": {"source": "pg", "query": "SELECT length($1::text)"}},
        "gone": {"loader": {"source": "pg", "query": f"SELECT v FROM {gone.name} WHERE id = $1"}},
    }
    async with one_node(tmp_path, database.dsn, namespaces) as (node, client):
        assert await client.get("a", namespace="gone") == b"2"  # its query is prepared
        database.sql(f"DROP TABLE {gone.name}")
        for _ in range(6):  # more than the breaker's threshold
            for namespace, reason in (("typed", "int4"), ("gone", "does not exist")):
                with pytest.raises(CommandError) as bad:
                    await client.get("b", namespace=namespace)
                assert bad.value.code == ErrorCode.LOADER_UNAVAILABLE
                assert reason in str(bad.value)
        assert await client.get("a", namespace="items") == b"1"
        stats = loader_stats(node)
        assert stats["bad_results"] == 12
        assert stats.get("load_failures", 0) == 0 and stats.get("breaker_opened", 0) == 0


@pytest.mark.trio
async def test_keys_remembered_as_missing_are_forgotten_when_the_loader_changes(
    tmp_path: Path, database: Database
) -> None:
    wrong, right = Table(database), Table(database)
    right.put("k", "found")
    policy = {"loader": wrong.loader(negative_ttl=1800)}
    async with one_node(tmp_path, database.dsn, {"items": policy}) as (node, client):
        assert node.parts is not None
        loader = node.parts.loader
        assert await client.get("k", namespace="items") is None  # remembered as missing
        # As a committed NS_SET installs it (a node of its own has no config voter here).
        loader.install({"items": NamespacePolicy(loader=LoaderPolicy.from_mapping(right.loader()))})
        assert await client.get("k", namespace="items") == b"found"
        assert right.calls() == 1


@pytest.mark.trio
async def test_a_value_over_the_size_limit_is_refused(tmp_path: Path, database: Database) -> None:
    settings_ns = {"big": {"loader": {"source": "pg", "query": "SELECT repeat('x', 5000) || $1"}}}
    async with one_node(tmp_path, database.dsn, settings_ns) as (node, client):
        assert node.parts is not None
        # The node's limit is large; the source's own check uses it: shrink it for the test.
        node.parts.loader.sources["pg"]._max_value = 1000  # type: ignore[attr-defined]
        with pytest.raises(CommandError) as big:
            await client.get("k", namespace="big")
        assert big.value.code == ErrorCode.LOADER_UNAVAILABLE and "over the limit" in str(big.value)


@pytest.mark.trio
async def test_an_unreachable_source_opens_the_breaker_and_hits_still_answer(
    tmp_path: Path,
) -> None:
    dsn = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    policy = {"loader": {"source": "pg", "query": "SELECT $1::text", "load_timeout": 1.0}}
    async with one_node(tmp_path, dsn, {"items": policy}, connect_timeout=0.5) as (node, client):
        await client.set("cached", "yes", namespace="items")
        for _ in range(5):
            with pytest.raises(CommandError) as down:
                await client.get("missing", namespace="items")
            assert down.value.code == ErrorCode.LOADER_UNAVAILABLE
        with pytest.raises(CommandError) as fast:
            await client.get("missing", namespace="items")
        assert "circuit breaker is open" in str(fast.value)
        assert await client.get("cached", namespace="items") == b"yes"
        stats = loader_stats(node)
        assert stats["breaker_opened"] == 1 and stats["fast_failures"] == 1
        assert stats["load_failures"] == 5


@pytest.mark.trio
async def test_refresh_ahead_reloads_a_key_being_read_before_it_expires(
    tmp_path: Path, database: Database
) -> None:
    table = Table(database)
    table.put("r", "old")
    # A TTL of 4 s leaves 2 s for the two psql calls and the GET below on a loaded machine.
    policy = {"loader": table.loader(ttl=4.0, refresh_ahead=0.5)}
    async with one_node(tmp_path, database.dsn, {"items": policy}) as (node, client):
        assert node.parts is not None
        store = node.parts.store
        assert await client.get("r", namespace="items") == b"old"
        table.put("r", "new")
        # Before half the TTL has gone, a hit is only a hit.
        assert store.execute("items", "TTL", [b"r"]) > 2.0
        assert await client.get("r", namespace="items") == b"old"
        assert table.calls() == 1
        await wait_until(
            lambda: store.execute("items", "TTL", [b"r"]) < 2.0, "half the TTL gone", 10
        )
        assert await client.get("r", namespace="items") == b"old"  # served while it refreshes
        await wait_until(lambda: store.execute("items", "GET", [b"r"]) == b"new", "refreshed")
        assert table.calls() == 2
        assert loader_stats(node)["refreshes"] == 1
        assert store.execute("items", "TTL", [b"r"]) > 2.0  # a fresh TTL


@pytest.mark.trio
async def test_notify_drops_the_key_and_a_lost_listener_resyncs(tmp_path: Path) -> None:
    from meshcache.node.loader.sql import trigger_sql
    from meshcache.testing.postgres import PostgresServer

    with PostgresServer() as server:  # its own server: this test stops and starts it
        db = Database(server.dsn, server)
        table = Table(db)
        table.put("a", "1")
        table.put("b", "2")
        channel = f"{table.name}_changes"
        db.sql(trigger_sql(channel, table.name, "id"))
        policy = {"loader": table.loader(channel=channel, negative_ttl=60)}
        async with one_node(tmp_path, server.dsn, {"items": policy}) as (node, client):
            assert node.parts is not None
            loader = node.parts.loader
            await wait_until(lambda: loader.listening, "listening")
            assert await client.get("a", namespace="items") == b"1"
            assert await client.get("c", namespace="items") is None  # remembered as missing
            table.put("a", "10")
            table.put("c", "3")  # an INSERT forgets the negative entry
            await wait_until(lambda: loader.stats["invalidations"] >= 2, "two NOTIFYs")
            assert await client.get("a", namespace="items") == b"10"
            assert await client.get("c", namespace="items") == b"3"
            # The database goes away and comes back: what was announced meanwhile is unknown,
            # so the namespace's keys are dropped once the listener is back.
            assert await client.get("b", namespace="items") == b"2"
            await trio.to_thread.run_sync(server.pause)
            await wait_until(lambda: not loader.listening, "the listener lost", 15)
            await trio.to_thread.run_sync(server.resume)
            await wait_until(lambda: loader.stats["resyncs"] >= 1, "resync", 30)
            assert node.parts.store.get_entry("items", b"b") is None
            assert await client.get("b", namespace="items") == b"2"
            assert loader.stats["listener_lost"] >= 1


@pytest.mark.trio
async def test_a_listener_that_connects_only_after_failing_resyncs(tmp_path: Path) -> None:
    """The database is down when the node starts: loads resume as soon as it is back, while
    the listener is still backing off, so what was announced before it connected is unknown."""
    from meshcache.node.loader.sql import trigger_sql
    from meshcache.testing.postgres import PostgresServer

    with PostgresServer() as server:  # its own server: this test stops and starts it
        db = Database(server.dsn, server)
        table = Table(db)
        table.put("a", "1")
        channel = f"{table.name}_changes"
        db.sql(trigger_sql(channel, table.name, "id"))
        policy = {"loader": table.loader(channel=channel)}
        await trio.to_thread.run_sync(server.pause)
        async with one_node(tmp_path, server.dsn, {"items": policy}, connect_timeout=0.5) as (
            node,
            client,
        ):
            assert node.parts is not None
            loader = node.parts.loader
            await wait_until(lambda: loader.stats["listen_failures"] >= 1, "a failed LISTEN", 15)
            await trio.to_thread.run_sync(server.resume)
            await wait_until(lambda: loader.listening, "listening", 30)
            assert loader.stats["resyncs"] == 1
            assert await client.get("a", namespace="items") == b"1"


@pytest.mark.trio
async def test_stale_if_error_serves_the_kept_value_while_the_source_fails(
    tmp_path: Path, database: Database
) -> None:
    table = Table(database)
    table.put("s", "kept")
    policy = {"loader": table.loader(ttl=0.3, stale_if_error=30)}
    async with one_node(tmp_path, database.dsn, {"items": policy}) as (node, client):
        assert node.parts is not None
        store = node.parts.store
        assert await client.get("s", namespace="items") == b"kept"
        assert 30 < store.execute("items", "TTL", [b"s"]) <= 30.3  # kept past its ttl
        table.fail(True)
        await wait_until(lambda: store.execute("items", "TTL", [b"s"]) < 30, "stale", 5)
        assert await client.get("s", namespace="items") == b"kept"  # the load failed
        assert loader_stats(node)["stale_served"] == 1
        with pytest.raises(CommandError) as fresh_miss:  # a key never loaded has no stale value
            await client.get("other", namespace="items")
        assert fresh_miss.value.code == ErrorCode.LOADER_UNAVAILABLE
        table.fail(False)
        table.put("s", "new")
        assert await client.get("s", namespace="items") == b"new"  # reloaded once it works
        database.sql(f"DELETE FROM {table.name} WHERE id = 's'")
        await wait_until(lambda: store.execute("items", "TTL", [b"s"]) < 30, "stale again", 5)
        assert await client.get("s", namespace="items") is None  # the row is gone: so is the key
        assert store.get_entry("items", b"s") is None


@pytest.mark.trio
async def test_pipelined_misses_answered_after_the_load_do_not_load_again(
    tmp_path: Path, database: Database
) -> None:
    table = Table(database)
    for key in ("warm", "k1", "k2", "k3"):
        table.put(key, key.upper())
    async with one_node(tmp_path, database.dsn, {"items": {"loader": table.loader()}}) as (
        node,
        _,
    ):
        assert node.parts is not None
        address = node.info.data_address if node.info else ("", 0)
        await _pipelined(address, b"warm", 1, 1)  # the pool is open: loads are fast now
        for key in (b"k1", b"k2", b"k3"):
            answers = await _pipelined(address, key, 17, 60)
            assert answers == [key.upper()] * 17 * 60
        assert table.calls() == 4  # one load per key, however late a request was answered


async def _pipelined(address: Any, key: bytes, per_conn: int, conns: int) -> list[Any]:
    from meshcache.wire.frame import FrameReader, decode_response, encode_request

    answers: list[Any] = []

    async def one() -> None:
        async with await trio.open_tcp_stream(*address) as stream:
            requests = [encode_request(i + 1, "GET", "items", [key]) for i in range(per_conn)]
            await stream.send_all(b"".join(requests))
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

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(conns):
                nursery.start_soon(one)
    return answers


@pytest.mark.trio
async def test_a_wrong_password_is_a_clear_error_and_hits_still_answer(
    tmp_path: Path, database: Database
) -> None:
    server = database.server
    if server is not None and server.root is not None:
        hba = server.root / "data" / "pg_hba.conf"
        if "locked" not in hba.read_text():
            database.sql("CREATE ROLE locked LOGIN PASSWORD 'right'")
            hba.write_text("host all locked 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
            database.sql("SELECT pg_reload_conf()")
        dsn = f"postgresql://locked:wrong@127.0.0.1:{server.port}/{server.database}"
        expected = 'password authentication failed for user "locked"'
    else:  # a server the tests do not own: a role it does not have
        from urllib.parse import urlsplit

        parts = urlsplit(database.dsn)
        where = parts.netloc.rpartition("@")[2]
        dsn = parts._replace(netloc=f"meshcache_no_such_role:wrong@{where}").geturl()
        expected = "meshcache_no_such_role"
    policy = {"loader": {"source": "pg", "query": "SELECT $1::text"}}
    async with one_node(tmp_path, dsn, {"items": policy}) as (node, client):
        await client.set("cached", "yes", namespace="items")
        with pytest.raises(CommandError) as refused:
            await client.get("missing", namespace="items")
        assert refused.value.code == ErrorCode.LOADER_UNAVAILABLE
        assert expected in str(refused.value)
        assert await client.get("cached", namespace="items") == b"yes"
        assert node.parts is not None
        with pytest.raises(CommandError, match=expected):
            await node.parts.loader.check(LoaderPolicy.from_mapping(policy["loader"]))
