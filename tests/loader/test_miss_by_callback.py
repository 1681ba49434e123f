"""A GET's miss is answered by callback when its load ends, with no task per request: the
loader's guarantees hold for such answers, and a forwarded miss (``FWD``) reaches the port as
a :class:`Pending` that waits on no task."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
import trio
import trio.testing

from meshcache.errors import LoaderUnavailableError
from meshcache.hlc import HLC
from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.loader.loader import Loader
from meshcache.node.net.dispatch import Dispatcher
from meshcache.store.loader_policy import LoaderPolicy
from meshcache.store.policy import NamespacePolicy
from meshcache.store.store import Store
from meshcache.testing.simsource import SimDatabase
from meshcache.wire import Limits, decode_response, encode_request
from meshcache.wire.pending import Later, Pending

POLICY = LoaderPolicy("sim", "SELECT $1::text", load_timeout=1.0)


def _node(db: SimDatabase) -> tuple[Store, Loader, list[bytes]]:
    store = Store(
        clock=lambda: 1000.0,
        hlc=HLC(lambda: 1_000_000),
        policies={"items": NamespacePolicy(loader=POLICY)},
        tombstone_grace_s=60.0,
    )
    replicated: list[bytes] = []
    loader = Loader(
        store,
        "n0",
        sources={"sim": db.source()},
        replicate=lambda ns, key: replicated.append(key),
        max_key_bytes=64,
        wall_clock=lambda: 1000.0,
    )
    loader.install({"items": NamespacePolicy(loader=POLICY)})
    return store, loader, replicated


def _miss(loader: Loader, key: bytes) -> Later:
    later = loader.on_read("items", "GET", [key], None)
    assert type(later) is Later
    return later


class _Answer(list[tuple[Any, BaseException | None]]):
    """What a :class:`Later` was settled with (empty until then)."""

    def __init__(self, later: Later) -> None:
        super().__init__()
        self.arrived = trio.Event()

        def settled(value: Any, error: BaseException | None) -> None:
            self.append((value, error))
            self.arrived.set()

        later.then(settled)


def _settled(later: Later) -> _Answer:
    return _Answer(later)


async def _until(answer: _Answer) -> None:
    with trio.fail_after(10):
        await answer.arrived.wait()


@pytest.mark.trio
async def test_misses_are_answered_by_callback_once_per_load(
    autojump_clock: trio.testing.MockClock,
) -> None:
    db = SimDatabase(delay=0.05)
    db.rows[b"k"] = b"v"
    store, loader, replicated = _node(db)
    async with trio.open_nursery() as nursery:
        await nursery.start(loader.run)
        firsts = [_settled(_miss(loader, b"k")) for _ in range(5)]
        assert not any(firsts) and loader.stats["coalesced"] == 4
        for answer in firsts:
            await _until(answer)
        assert all(box == [(b"v", None)] for box in firsts)
        assert db.queries[b"k"] == 1 and replicated == [b"k"]
        assert store.execute("items", "GET", [b"k"]) == b"v" and not loader.flights
        assert sum(loader.timings.steps["coalesce_wait"].counts) == 4
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_write_during_the_load_wins_and_is_the_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    db = SimDatabase(delay=0.05)
    db.rows[b"k"] = b"from the database"
    store, loader, replicated = _node(db)
    async with trio.open_nursery() as nursery:
        await nursery.start(loader.run)
        box = _settled(_miss(loader, b"k"))
        store.execute("items", "SET", [b"k", b"written", {}])
        loader.on_write("items", "SET", [b"k", b"written", {}])
        await _until(box)
        assert box == [(b"written", None)]
        assert store.execute("items", "GET", [b"k"]) == b"written" and not replicated
        assert loader.stats["stale_sets_prevented"] == 1
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_failed_or_cancelled_load_fails_its_waiters_and_wedges_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    db = SimDatabase(delay=0.05)
    db.rows[b"k"] = b"v"
    db.down = True
    _, loader, _ = _node(db)
    async with trio.open_nursery() as nursery:
        await nursery.start(loader.run)
        box = _settled(_miss(loader, b"k"))
        await _until(box)
        assert box[0][0] is None and isinstance(box[0][1], LoaderUnavailableError)
        assert not loader.flights  # the next miss loads again
        db.down = False
        again = _settled(_miss(loader, b"k"))
        await _until(again)
        assert again == [(b"v", None)] and db.queries[b"k"] == 2
        # A load that outlives the source's answer time fails its waiters at the load timeout.
        db.delay = 5.0
        slow = _settled(_miss(loader, b"slow"))
        await _until(slow)
        assert isinstance(slow[0][1], LoaderUnavailableError) and "within" in str(slow[0][1])
        # The loader stopping cancels its loads: their waiters are answered, not left behind.
        cancelled = _settled(_miss(loader, b"gone"))
        nursery.cancel_scope.cancel()
    assert isinstance(cancelled[0][1], LoaderUnavailableError) and not loader.flights


@pytest.mark.trio
async def test_a_forwarded_miss_reaches_the_port_with_no_task_to_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    db = SimDatabase(delay=0.05)
    db.rows[b"k"] = b"v"
    _, loader, _ = _node(db)

    def forwarded(namespace: str, args: list[Any]) -> Any:
        op, raw = args[0], args[1]
        assert op == "GET"
        return loader.on_read(namespace, op, raw, None)

    counters = NodeCounters()
    dispatcher = Dispatcher(
        execute=lambda ns, op, args: None,
        routes={"FWD": forwarded},
        limits=Limits(),
        counters=counters,
        ring_version=7,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(loader.run)
        frame = encode_request(4, "FWD", "items", ["GET", [b"k"]])
        pending = dispatcher.handle(frame[4:])
        assert isinstance(pending, Pending)
        assert pending.answer is None and pending.later is not None
        assert pending.key is None and not pending.fans_out  # FWD is never forwarded again
        with trio.fail_after(5):
            data = await pending.reply()
        response = decode_response(data[4:])
        assert (response.id, response.ok, response.value) == (4, True, b"v")
        assert len(msgpack.unpackb(data[4:])) == 4  # a forward's answer carries no hot hints
        assert counters.requests["FWD"] == 1
        nursery.cancel_scope.cancel()
