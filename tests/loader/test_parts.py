"""The loader's parts on their own: breaker, bridge, key and value conversion, trigger SQL,
the policy's mapping round trip, invalidation decided by the key's coordinator."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from meshcache.errors import ConfigError
from meshcache.node.breaker import Breaker, BreakerState
from meshcache.node.loader.bridge import AsyncioBridge, BridgeClosedError
from meshcache.node.loader.source import BadResult, KeyNotLoadable, key_argument, value_bytes
from meshcache.node.loader.sql import trigger_sql
from meshcache.store.loader_policy import LoaderPolicy


def test_the_breaker_opens_probes_one_at_a_time_and_backs_off() -> None:
    b = Breaker(threshold=3, cooldown=1.0, max_cooldown=4.0)
    for _ in range(2):
        assert b.allow(0.0)
        b.failure(0.0)
    assert b.state is BreakerState.CLOSED
    b.success()  # failures must be consecutive
    for _ in range(3):
        assert b.allow(0.0)
        b.failure(0.0)
    assert b.state is BreakerState.OPEN and not b.allow(0.5) and b.retry_in(0.5) == 0.5
    assert b.allow(1.0) and b.state is BreakerState.HALF_OPEN
    assert not b.allow(1.0)  # one probe at a time
    b.failure(1.0)  # the probe failed: open twice as long
    assert not b.allow(2.9) and b.allow(3.0)
    b.failure(3.0)
    assert not b.allow(6.9) and b.allow(7.0)  # capped at max_cooldown
    b.success()
    assert b.state is BreakerState.CLOSED and b.allow(7.0) and b.opened == 3


@pytest.mark.trio
async def test_the_bridge_runs_coroutines_on_its_loop_and_cancels_them() -> None:
    bridge = AsyncioBridge()
    with pytest.raises(BridgeClosedError):
        await bridge.run(asyncio.sleep, 0)
    bridge.start()
    try:
        loop = bridge.loop

        async def where() -> bool:
            return asyncio.get_running_loop() is loop

        assert await bridge.run(where)

        async def fails() -> None:
            raise ValueError("from asyncio")

        with pytest.raises(ValueError, match="from asyncio"):
            await bridge.run(fails)
        cancelled = trio.Event()
        token = trio.lowlevel.current_trio_token()

        async def forever() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                token.run_sync_soon(cancelled.set)
                raise

        with trio.move_on_after(0.05):
            await bridge.run(forever)
        with trio.fail_after(5):
            await cancelled.wait()
    finally:
        await bridge.aclose()
    assert not bridge.running


def test_keys_become_parameters_of_the_query_type() -> None:
    assert key_argument("text", "é".encode()) == "é"
    assert key_argument("int8", b"-42") == -42
    assert key_argument("bytea", b"\xff") == b"\xff"
    u = uuid.uuid4()
    assert key_argument("uuid", str(u).encode()) == u
    for kind, key in (("int4", b"4x"), ("text", b"\xff"), ("uuid", b"nope"), ("text", b"a\0")):
        with pytest.raises(KeyNotLoadable):
            key_argument(kind, key)


def test_a_key_is_loadable_only_in_the_form_postgresql_writes_it() -> None:
    """Another spelling of a row's key would be cached apart from it, and the batch query's
    key column and the trigger's NOTIFY (PostgreSQL's text of the key) would never match it."""
    assert key_argument("int2", b"-32768") == -32768 and key_argument("int2", b"32767") == 32767
    assert key_argument("int4", b"2147483647") == 2**31 - 1
    assert key_argument("int8", b"-9223372036854775808") == -(2**63)
    assert key_argument("bpchar", b"abc") == "abc" and key_argument("name", b"n" * 63) == "n" * 63
    u = uuid.uuid4()
    refused = [
        ("int2", b"32768"),  # out of the type's range: PostgreSQL would refuse the argument
        ("int4", b"3000000000"),
        ("int8", b"9223372036854775808"),
        ("int4", b"007"),  # the row's key is 7
        ("int4", b"+7"),
        ("int4", b"-0"),
        ("int4", b" 7"),
        ("int4", b"7_000"),
        ("int4", "\u0667".encode()),  # an Arabic-Indic digit: int() takes it, PostgreSQL not
        ("int4", b""),
        ("uuid", str(u).upper().encode()),
        ("uuid", u.hex.encode()),
        ("uuid", f"{{{u}}}".encode()),
        ("bpchar", b"abc "),  # char compares without trailing spaces: the row's key is "abc"
        ("name", b"n" * 64),  # PostgreSQL cuts a name to 63 bytes
    ]
    for kind, key in refused:
        with pytest.raises(KeyNotLoadable):
            key_argument(kind, key)


@given(st.integers(-(2**63), 2**63 - 1))
def test_every_int8_key_in_postgresql_form_is_loadable(number: int) -> None:
    assert key_argument("int8", str(number).encode()) == number
    if number > 0:
        with pytest.raises(KeyNotLoadable):
            key_argument("int8", b"0" + str(number).encode())


def test_values_are_bytes_within_the_limit() -> None:
    assert value_bytes("é", 10) == "é".encode()
    assert value_bytes(b"raw", 10) == b"raw"
    assert value_bytes(None, 10) is None
    with pytest.raises(BadResult, match="over the limit"):
        value_bytes("x" * 11, 10)
    with pytest.raises(BadResult, match="int"):
        value_bytes(5, 10)


def test_the_trigger_sql_quotes_names_and_refuses_others() -> None:
    sql = trigger_sql("items_changes", "shop.items", "id")
    assert 'ON "shop"."items"' in sql
    assert "meshcache_notify('items_changes', 'id')" in sql
    for table, column in (("items; DROP TABLE x", "id"), ("items", "id'--"), ("a.b.c", "id")):
        with pytest.raises(ConfigError):
            trigger_sql("c", table, column)


durations = st.none() | st.floats(0.001, 1e6)


@given(
    ttl=durations,
    negative=durations,
    timeout=st.floats(0.001, 1e6),
    ahead=st.none() | st.floats(0.01, 0.99),
    channel=st.none() | st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True),
    on_notify=st.sampled_from([None, "drop", "reload"]),
)
def test_a_loader_policy_round_trips_through_its_mapping(
    ttl: float | None,
    negative: float | None,
    timeout: float,
    ahead: float | None,
    channel: str | None,
    on_notify: str | None,
) -> None:
    policy = LoaderPolicy(
        "pg", "SELECT $1::text", None, ttl, negative, timeout, ahead, channel, on_notify=on_notify
    ).validate()
    assert LoaderPolicy.from_mapping(policy.to_mapping()) == policy
    assert policy.reloads == (on_notify == "reload")


@given(on_notify=st.text(max_size=20).filter(lambda t: t not in ("drop", "reload")))
def test_an_unknown_on_notify_is_refused(on_notify: str) -> None:
    with pytest.raises(ConfigError, match="on_notify must be one of drop, reload"):
        LoaderPolicy.from_mapping(
            {"source": "pg", "query": "SELECT $1::text", "on_notify": on_notify}
        )


def test_an_invalidation_drops_the_stored_key_and_the_hot_copy() -> None:
    from meshcache.hlc import HLC
    from meshcache.node.loader.loader import Loader
    from meshcache.store.policy import NamespacePolicy
    from meshcache.store.store import Store

    store = Store(
        clock=lambda: 1000.0,
        hlc=HLC(lambda: 1_000_000),
        policies={"items": NamespacePolicy(loader=LoaderPolicy("pg", "SELECT $1::text"))},
        tombstone_grace_s=60.0,
    )
    dropped: list[tuple[str, bytes]] = []
    loader = Loader(
        store,
        "n0",
        sources={},
        replicate=lambda ns, key: None,
        max_key_bytes=64,
        wall_clock=lambda: 1000.0,
        clock=lambda: 0.0,
        drop_copy=lambda ns, key: dropped.append((ns, key)),
    )
    store.execute("items", "SET", [b"k", b"v", {}])
    assert loader.invalidate("items", b"k") is True
    assert store.execute("items", "GET", [b"k"]) is None
    assert dropped == [("items", b"k")]
    assert loader.invalidate("items", b"absent") is False
    assert loader.stats["invalidations"] == 2 and loader.stats["invalidations_dropped"] == 1


@pytest.mark.trio
async def test_a_reload_on_notify_is_decided_by_the_key_coordinator(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from meshcache.hlc import HLC
    from meshcache.node.loader.loader import Loader
    from meshcache.store.policy import NamespacePolicy
    from meshcache.store.store import Store
    from meshcache.testing.simsource import SimDatabase

    policy = LoaderPolicy("sim", "SELECT $1::text", on_notify="reload")
    store = Store(
        clock=lambda: 1000.0,
        hlc=HLC(lambda: 1_000_000),
        policies={"items": NamespacePolicy(loader=policy)},
        tombstone_grace_s=60.0,
    )
    db = SimDatabase(delay=0.05)
    db.rows[b"k"] = b"new"
    replicated: list[bytes] = []
    coordinator = {"k": False}
    loader = Loader(
        store,
        "n0",
        sources={"sim": db.source()},
        replicate=lambda ns, key: replicated.append(key),
        max_key_bytes=64,
        wall_clock=lambda: 1000.0,
        coordinates=lambda ns, key: coordinator["k"],
    )
    loader.install({"items": NamespacePolicy(loader=policy)})
    async with trio.open_nursery() as nursery:
        await nursery.start(loader.run)
        store.execute("items", "SET", [b"k", b"old", {}])
        # Another owner leaves its record to the coordinator's replication.
        assert loader.invalidate("items", b"k") is False
        assert store.execute("items", "GET", [b"k"]) == b"old"
        assert loader.stats["invalidations_left_to_owner"] == 1 and not loader.flights
        # The coordinator drops it and loads it again at once, then replicates it.
        coordinator["k"] = True
        assert loader.invalidate("items", b"k") is True
        assert ("items", b"k") in loader.flights
        await loader.flights[("items", b"k")].done.wait()
        assert store.execute("items", "GET", [b"k"]) == b"new"
        assert replicated == [b"k"] and loader.stats["reloaded"] == 1
        assert db.queries[b"k"] == 1
        # A key the coordinator did not hold is not loaded; its drop is replicated.
        assert loader.invalidate("items", b"other") is False
        assert not loader.flights and replicated == [b"k", b"other"]
        # A reload that fails replicates the drop, so the other owners do not keep the old value.
        db.down = True
        store.execute("items", "SET", [b"k", b"newer", {}])
        assert loader.invalidate("items", b"k") is True
        await loader.flights[("items", b"k")].done.wait()
        assert store.execute("items", "GET", [b"k"]) is None
        assert replicated == [b"k", b"other", b"k"] and loader.stats["reloaded"] == 1
        nursery.cancel_scope.cancel()


def _loader_of(
    policy: LoaderPolicy, coordinator: dict[str, bool], replicated: list[bytes]
) -> tuple[Any, Any]:
    from meshcache.hlc import HLC
    from meshcache.node.loader.loader import Loader
    from meshcache.store.policy import NamespacePolicy
    from meshcache.store.store import Store

    store = Store(
        clock=lambda: 1000.0,
        hlc=HLC(lambda: 1_000_000),
        policies={"items": NamespacePolicy(loader=policy)},
        tombstone_grace_s=60.0,
    )
    loader = Loader(
        store,
        "n0",
        sources={},
        replicate=lambda ns, key: replicated.append(key),
        max_key_bytes=64,
        wall_clock=lambda: 1000.0,
        clock=lambda: 0.0,
        coordinates=lambda ns, key: coordinator["k"],
    )
    loader.install({"items": NamespacePolicy(loader=policy)})
    return store, loader


def test_with_drop_only_the_coordinator_drops_and_replicates_the_drop() -> None:
    replicated: list[bytes] = []
    coordinator = {"k": False}
    policy = LoaderPolicy("pg", "SELECT $1::text", channel="ch")
    store, loader = _loader_of(policy, coordinator, replicated)
    store.execute("items", "SET", [b"k", b"old", {}])
    # Another owner keeps its record: the coordinator's replicated drop (or a value it loads
    # after the change) decides, whatever order they arrive in.
    assert loader.invalidate("items", b"k") is False
    assert store.execute("items", "GET", [b"k"]) == b"old"
    assert store.get_tombstone("items", b"k") is None and not replicated
    assert loader.stats["invalidations_left_to_owner"] == 1
    coordinator["k"] = True
    assert loader.invalidate("items", b"k") is True
    assert store.execute("items", "GET", [b"k"]) is None and replicated == [b"k"]
    # A key it does not hold: its drop is replicated too (another owner may hold it).
    assert loader.invalidate("items", b"absent") is False and replicated == [b"k", b"absent"]


def test_a_reload_query_starts_as_the_notify_arrives_only_where_it_will_reload() -> None:
    from meshcache.node.loader.loader import Flight

    replicated: list[bytes] = []
    coordinator = {"k": True}
    policy = LoaderPolicy("pg", "SELECT v FROM t WHERE id = $1", channel="ch", on_notify="reload")
    store, loader = _loader_of(policy, coordinator, replicated)
    loader.breakers["pg"] = breaker = Breaker()  # a source "pg" (the test has none)
    store.execute("items", "SET", [b"held", b"v", {}])
    early = loader._early_query
    assert early("pg", "ch", "held") == policy.query  # held by the coordinator: reloaded
    assert early("pg", "ch", "absent") is None  # not held: only dropped
    loader.flights[("items", b"absent")] = Flight(None)
    assert early("pg", "ch", "absent") == policy.query  # being loaded: reloaded
    assert early("pg", "other", "held") is None and early("db", "ch", "held") is None
    assert early("pg", "ch", "") is None and early("pg", "ch", "x" * 65) is None
    for _ in range(breaker.threshold):
        breaker.failure(0.0)
    assert breaker.state is BreakerState.OPEN
    assert early("pg", "ch", "held") is None  # the breaker is open: the node's loop decides
    coordinator["k"] = False
    breaker.success()
    assert early("pg", "ch", "held") is None  # another owner: the coordinator reloads
    coordinator["k"] = True
    drop = LoaderPolicy("pg", "SELECT v FROM t WHERE id = $1", channel="ch")
    store2, loader2 = _loader_of(drop, coordinator, replicated)
    loader2.breakers["pg"] = breaker
    store2.execute("items", "SET", [b"held", b"v", {}])
    assert loader2._early_query("pg", "ch", "held") is None  # drop: nothing to load


@given(payload=st.text(max_size=200))
def test_any_notify_payload_is_a_key_or_counted(payload: str) -> None:
    from meshcache.hlc import HLC
    from meshcache.node.loader.loader import Loader
    from meshcache.store.policy import NamespacePolicy
    from meshcache.store.store import Store

    policy = NamespacePolicy(loader=LoaderPolicy("pg", "SELECT $1::text", channel="ch"))
    store = Store(
        clock=lambda: 1000.0,
        hlc=HLC(lambda: 1_000_000),
        policies={"items": policy},
        tombstone_grace_s=60.0,
    )
    loader = Loader(
        store,
        "n0",
        sources={},
        replicate=lambda ns, key: None,
        max_key_bytes=64,
        wall_clock=lambda: 1000.0,
        clock=lambda: 0.0,
    )
    loader.install({"items": policy})
    store.execute("items", "SET", [b"other", b"kept", {}])
    loader._on_payload("pg", "ch", payload)
    key = payload.encode("utf-8", "surrogateescape")
    if 0 < len(key) <= 64:
        assert loader.stats["invalidations"] == 1
    else:
        assert loader.stats["notify_bad_payload"] == 1 and not loader.stats["invalidations"]
    assert key == b"other" or store.execute("items", "GET", [b"other"]) == b"kept"
