"""TrioClient and AsyncClient against the fake server; every scenario runs on both loops."""

from __future__ import annotations

import asyncio
import functools
import gc
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio

import meshcache
from meshcache.client import AsyncClient, TrioClient
from meshcache.client.async_base import AsyncClientBase
from meshcache.wire import encode_ok
from tests.client.fakeserver import FakeServer

Scenario = Callable[[AsyncClientBase[Any], FakeServer], Awaitable[None]]

FLAVORS = ["trio", "asyncio"]


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        yield s


def make_client(flavor: str, address: str, **kwargs: Any) -> AsyncClientBase[Any]:
    cls: type[AsyncClientBase[Any]] = TrioClient if flavor == "trio" else AsyncClient
    kwargs.setdefault("timeout", 2.0)
    return cls(address, **kwargs)


def run(flavor: str, fn: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        await fn()

    if flavor == "trio":
        trio.run(main)
    else:
        asyncio.run(main())


async def gather(flavor: str, fns: list[Callable[[], Awaitable[None]]]) -> None:
    if flavor == "trio":
        async with trio.open_nursery() as nursery:
            for fn in fns:
                nursery.start_soon(fn)
    else:
        await asyncio.gather(*(fn() for fn in fns))


def scenario_test(**client_kwargs: Any) -> Callable[[Scenario], Callable[[str, FakeServer], None]]:
    """Turn ``async def body(client, server)`` into a test run on both event loops."""

    def decorate(body: Scenario) -> Callable[[str, FakeServer], None]:
        @pytest.mark.parametrize("flavor", FLAVORS)
        def test(flavor: str, server: FakeServer) -> None:
            async def main() -> None:
                async with make_client(flavor, server.address, **client_kwargs) as client:
                    await body(client, server)

            run(flavor, main)

        test.__name__ = body.__name__
        test.__doc__ = body.__doc__
        return test

    return decorate


@scenario_test()
async def test_basic_ops(client: AsyncClientBase[Any], server: FakeServer) -> None:
    assert await client.ping() is True
    assert await client.set("k", "v", ttl=10) is True
    assert await client.get("k") == b"v"
    assert await client.get("missing") is None
    assert await client.incr("n", 3) == 3
    assert await client.mget("k", "n") == [b"v", b"3"]
    assert await client.hset("h", {"a": "1"}) == 1
    assert await client.hgetall("h") == {b"a": b"1"}
    assert await client.zadd("z", {"m": 1}) == 1
    assert await client.zrange("z", 0, -1, withscores=True) == [(b"m", 1.0)]
    # A smart client asks for the ring first; the fake node knows no RING, so it routes by seed.
    assert server.stats.ops()[:3] == ["RING", "NS_LIST", "PING"]
    assert server.stats.requests[3] == ("SET", "default", [b"k", b"v", {"ttl": 10}])


@scenario_test()
async def test_error_frames(client: AsyncClientBase[Any], server: FakeServer) -> None:
    await client.hset("h", "f", "v")
    with pytest.raises(meshcache.WrongTypeError):
        await client.get("h")
    assert await client.ping()


@scenario_test()
async def test_pipeline(client: AsyncClientBase[Any], server: FakeServer) -> None:
    await client.hset("h", "f", "v")
    async with client.pipeline() as pipe:
        pipe.set("a", "1").incr("n").get("a")
        assert await pipe.execute() == [True, 1, b"1"]
    pipe = client.pipeline(raise_on_error=False)
    results = await pipe.get("h").get("a").execute()
    assert isinstance(results[0], meshcache.WrongTypeError)
    assert results[1] == b"1"
    with pytest.raises(meshcache.WrongTypeError):
        await client.pipeline().get("h").set("b", "2").execute()
    assert await client.get("b") == b"2"


@scenario_test()
async def test_retry_idempotent_once(client: AsyncClientBase[Any], server: FakeServer) -> None:
    await client.set("k", "v")
    server.inject("drop_before", "GET")
    assert await client.get("k") == b"v"
    assert server.stats.ops().count("GET") == 2
    server.inject("drop_before", "GET")
    server.inject("drop_before", "GET")
    with pytest.raises(meshcache.MeshcacheConnectionError):
        await client.get("k")


@scenario_test()
async def test_no_retry_for_non_idempotent(
    client: AsyncClientBase[Any], server: FakeServer
) -> None:
    server.inject("drop_after", "INCR")
    with pytest.raises(meshcache.MeshcacheConnectionError):
        await client.incr("n")
    assert server.stats.ops().count("INCR") == 1
    assert await client.get("n") == b"1"


@scenario_test()
async def test_stale_idle_connection(client: AsyncClientBase[Any], server: FakeServer) -> None:
    assert await client.ping()
    server.drop_all_connections()
    # Wait (with a deadline) until the client side has seen the close.
    for _ in range(5000):
        if all(not c.reusable for conns in client._idle.values() for c in conns):
            break
        await sleep_a_tick()
    assert await client.incr("n") == 1


async def sleep_a_tick() -> None:
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        await asyncio.sleep(0.001)
    else:
        await trio.sleep(0.001)


@scenario_test(timeout=0.2)
async def test_timeout(client: AsyncClientBase[Any], server: FakeServer) -> None:
    server.inject("hold", "GET")
    with pytest.raises(meshcache.MeshcacheTimeout):
        await client.get("k")
    server.release.set()
    assert await client.ping()
    assert server.stats.connections == 2


@pytest.mark.parametrize("flavor", FLAVORS)
def test_concurrent_tasks_share_a_bounded_pool(flavor: str, server: FakeServer) -> None:
    async def main() -> None:
        async with make_client(flavor, server.address, max_connections=3) as client:

            async def worker(i: int) -> None:
                for j in range(20):
                    assert await client.set(f"{i}:{j}", str(j)) is True
                    assert await client.get(f"{i}:{j}") == str(j).encode()
                    await client.incr("total")

            await gather(flavor, [functools.partial(worker, i) for i in range(10)])
            assert await client.get("total") == b"200"

    run(flavor, main)
    assert 1 <= server.stats.max_open_connections <= 3


@pytest.mark.parametrize("flavor", FLAVORS)
def test_failover_and_close(flavor: str, server: FakeServer) -> None:
    dead = FakeServer()
    dead_address = dead.address
    dead.close()

    async def main() -> None:
        client = make_client(flavor, f"{dead_address},{server.address}")
        async with client:
            assert await client.ping()
        with pytest.raises(meshcache.MeshcacheConnectionError):
            await client.ping()

    run(flavor, main)


@pytest.mark.trio
async def test_trio_cancellation_discards_the_connection(server: FakeServer) -> None:
    async with TrioClient(server.address) as client:
        server.inject("hold", "GET")
        with trio.CancelScope() as scope:

            async def cancel_once_held() -> None:
                await trio.to_thread.run_sync(server.holding.wait, 5)
                scope.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_once_held)
                await client.get("k")
        assert scope.cancelled_caught
        server.release.set()
        assert await client.ping()
        assert server.stats.connections == 2


def test_asyncio_cancellation_discards_the_connection(server: FakeServer) -> None:
    async def main() -> None:
        async with AsyncClient(server.address) as client:
            server.inject("hold", "GET")
            task = asyncio.ensure_future(client.get("k"))
            await asyncio.get_running_loop().run_in_executor(None, server.holding.wait, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            server.release.set()
            assert await client.ping()
            assert server.stats.connections == 2

    asyncio.run(main())


def test_asyncio_a_discarded_connection_is_closed_before_the_loop_ends() -> None:
    """A call that times out with its request still in the transport's buffer (the node reads
    nothing) closes the socket at once: it is not left closing, waiting for a write that never
    completes, to be found by the garbage collector after the loop is gone."""
    listener = socket.create_server(("127.0.0.1", 0))
    transports: list[asyncio.BaseTransport] = []

    async def main() -> None:
        port = listener.getsockname()[1]
        async with AsyncClient(f"127.0.0.1:{port}", timeout=0.3, smart=False) as client:
            with pytest.raises(meshcache.MeshcacheTimeout):
                await client.set("big", b"x" * (8 << 20))
            transports.extend(obj for obj in gc.get_objects() if isinstance(obj, asyncio.Transport))

    try:
        asyncio.run(main())
        peer, _ = listener.accept()
        peer.close()
    finally:
        listener.close()
    assert transports and all(t.get_extra_info("socket").fileno() == -1 for t in transports)


# -- paths the fast pool and socket handling must keep ---------------------------------------


@scenario_test()
async def test_values_larger_than_one_read(
    client: AsyncClientBase[Any], server: FakeServer
) -> None:
    big = bytes(range(256)) * 1200  # 300 KiB: several reads for one reply
    assert await client.set("big", big) is True
    assert await client.get("big") == big
    assert await client.pipeline().get("big").get("big").execute() == [big, big]


@scenario_test(timeout=0.3)
async def test_timeout_after_part_of_the_reply(
    client: AsyncClientBase[Any], server: FakeServer
) -> None:
    await client.set("k", "v" * 1000)
    server.inject("partial", "GET")
    with pytest.raises(meshcache.MeshcacheTimeout):
        await client.get("k")
    server.release.set()
    assert await client.get("k") == b"v" * 1000
    assert server.stats.connections == 2


@scenario_test(timeout=0.2, max_connections=1)
async def test_exhausted_pool_times_out_then_recovers(
    client: AsyncClientBase[Any], server: FakeServer
) -> None:
    held = await client._acquire(None)
    with pytest.raises(meshcache.MeshcacheTimeout, match="no free connection"):
        await client.ping()
    client._release(held)
    assert await client.ping()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_waiting_task_gets_the_connection_given_back(flavor: str, server: FakeServer) -> None:
    async def main() -> None:
        async with make_client(flavor, server.address, max_connections=1) as client:
            held = await client._acquire(None)
            outcome: list[object] = []

            async def waiter() -> None:
                outcome.append(await client.ping())

            async def give_back() -> None:
                for _ in range(5000):  # wait, with a bound, until the other task is waiting
                    if client._waiters:
                        break
                    await sleep_a_tick()
                client._release(held)

            await gather(flavor, [waiter, give_back])
            assert outcome == [True]
            assert server.stats.connections == 1

    run(flavor, main)


@scenario_test()
async def test_unasked_bytes_on_an_idle_connection_retire_it(
    client: AsyncClientBase[Any], server: FakeServer
) -> None:
    assert await client.ping()
    idle = [conn for conns in client._idle.values() for conn in conns]
    server.push_all(encode_ok(999, "PONG"))
    for _ in range(5000):
        if not any(conn.reusable for conn in idle):
            break
        await sleep_a_tick()
    # INCR is not retried: this passes only if the polluted connection is never lent.
    assert await client.incr("n") == 1
    assert server.stats.connections == 2


@scenario_test()
async def test_a_retry_never_takes_a_pooled_connection_to_the_node_that_failed(
    client: AsyncClientBase[Any], server: FakeServer
) -> None:
    await client.set("k", "v")
    held = [await client._acquire(None) for _ in range(3)]
    for conn in held:
        client._release(conn)
    await wait_for(lambda: server.stats.connections == 3)  # the server has accepted them all
    server.inject("drop_before", "GET")
    assert await client.get("k") == b"v"
    # The retry opened a connection of its own; the pooled ones to that node were closed.
    assert server.stats.connections == 4
    await wait_for(lambda: server.stats.open_connections == 1)


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Check ``condition`` every tick until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await sleep_a_tick()


@scenario_test(timeout=0.5)
async def test_the_timeout_bounds_the_whole_call_retry_included(
    client: AsyncClientBase[Any], server: FakeServer
) -> None:
    await client.set("k", "v")
    server.inject("drop_before", "GET")  # the first attempt breaks at once...
    server.inject("hold", "GET")  # ...and the retry gets no answer
    start = time.monotonic()
    with pytest.raises(meshcache.MeshcacheTimeout, match=r"within 0\.5 s"):
        await client.get("k")
    assert time.monotonic() - start < 0.5 + 0.2
    server.release.set()
