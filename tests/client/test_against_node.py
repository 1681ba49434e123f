"""The three clients against a real node (meshcache.node.node.serve) on real sockets.

The node runs on its own trio loop in a background thread, so the blocking client, a trio
program and an asyncio program can all talk to it from the test's thread. One scenario, written
once as async code, runs through every front end (the blocking client behind a thin adapter).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

import meshcache
from meshcache.errors import BadRequestError
from meshcache.node.node import NodeInfo, serve
from meshcache.settings import LimitSettings, NodeSettings


class NodeThread:
    """A node serving on a trio loop in a daemon thread until :meth:`stop`."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.info: NodeInfo | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> NodeThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError("the node did not start within 10 s")
        if self.error is not None:
            raise self.error
        return self

    @property
    def address(self) -> str:
        assert self.info is not None
        host, port = self.info.data_address
        return f"{host}:{port}"

    def _run(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._cancel = nursery.cancel_scope
                self.info = await nursery.start(serve, self.settings)
                self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:  # handed to the test thread by start()/stop()
            self.error = exc
        finally:
            self._ready.set()

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None:
            cancel = self._cancel
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(cancel.cancel)
        self._thread.join(10)
        if self.error is not None:
            raise self.error


def node_settings(tmp_path: Path, **limits: Any) -> NodeSettings:
    return NodeSettings(
        port=0,
        admin_port=0,
        data_dir=tmp_path,
        log_level="warning",
        limits=replace(LimitSettings(), **limits),
    )


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    n = NodeThread(node_settings(tmp_path_factory.mktemp("node"))).start()
    yield n
    n.stop()


class Blocking:
    """The blocking client behind awaitable methods, so the scenario is written once."""

    def __init__(self, client: meshcache.Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call

    async def run_pipeline(self, build: Callable[[Any], Any], **kwargs: Any) -> list[Any]:
        pipe = self.client.pipeline(**kwargs)
        build(pipe)
        return pipe.execute()


async def run_pipeline(client: Any, build: Callable[[Any], Any], **kwargs: Any) -> list[Any]:
    if isinstance(client, Blocking):
        return await client.run_pipeline(build, **kwargs)
    pipe = client.pipeline(**kwargs)
    build(pipe)
    result: list[Any] = await pipe.execute()
    return result


async def scenario(c: Any, ns: str) -> None:
    """Every client method once, checked against docs/protocol.md."""
    assert await c.flush(namespace=ns) is True
    assert await c.ping() is True
    info = await c.info()
    assert info["version"] == meshcache.__version__ and "default" in info["namespaces"]
    # plain values
    assert await c.set("k", "v", namespace=ns) is True
    assert await c.get("k", namespace=ns) == b"v"
    assert await c.get(b"k", namespace=ns) == b"v"
    assert await c.get("k") is None or ns == "default"
    assert await c.set("k", "v2", namespace=ns, nx=True) is False
    assert await c.set("k", b"v2", namespace=ns, xx=True, get=True) == b"v"
    assert await c.set("k2", "x", namespace=ns, xx=True) is False
    assert await c.set("t", "x", 100, namespace=ns) is True
    assert 99 < await c.ttl("t", namespace=ns) <= 100
    assert await c.persist("t", namespace=ns) is True
    assert await c.ttl("t", namespace=ns) == -1
    assert await c.ttl("nope", namespace=ns) == -2
    assert await c.expire("t", 50, namespace=ns) is True
    assert await c.expire("nope", 50, namespace=ns) is False
    assert await c.set("t", "y", namespace=ns, keepttl=True) is True
    assert 49 < await c.ttl("t", namespace=ns) <= 50
    assert await c.exists("k", "t", "nope", "k", namespace=ns) == 3
    assert await c.delete("t", "nope", namespace=ns) == 1
    assert await c.incr("n", namespace=ns) == 1
    assert await c.incr("n", 10, namespace=ns) == 11
    assert await c.decr("n", namespace=ns) == 10
    assert await c.decr("n", 4, namespace=ns) == 6
    assert await c.get("n", namespace=ns) == b"6"
    with pytest.raises(meshcache.NotIntegerError):
        await c.incr("k", namespace=ns)
    assert await c.mset({"a": "1", b"b": b"2"}, namespace=ns) is True
    assert await c.mget(["a", "b", "zz"], namespace=ns) == [b"1", b"2", None]
    assert await c.mget("a", "b", namespace=ns) == [b"1", b"2"]
    got = await c.gets("a", namespace=ns)
    assert got is not None and got[0] == b"1" and got[1] > 0
    assert await c.cas("a", "new", got[1], namespace=ns) is True
    assert await c.cas("a", "newer", got[1], namespace=ns) is False
    assert await c.get("a", namespace=ns) == b"new"
    assert await c.gets("nope", namespace=ns) is None
    # hashes
    assert await c.hset("h", {"f1": "a", "f2": "b"}, namespace=ns) == 2
    assert await c.hset("h", "f3", "c", namespace=ns) == 1
    assert await c.hget("h", "f1", namespace=ns) == b"a"
    assert await c.hget("h", "zz", namespace=ns) is None
    assert await c.hgetall("h", namespace=ns) == {b"f1": b"a", b"f2": b"b", b"f3": b"c"}
    assert await c.hdel("h", "f2", "zz", namespace=ns) == 1
    assert await c.hincrby("h", "cnt", 5, namespace=ns) == 5
    assert await c.hlen("h", namespace=ns) == 3
    assert await c.hgetall("nope", namespace=ns) == {}
    with pytest.raises(meshcache.WrongTypeError):
        await c.get("h", namespace=ns)
    # lists
    assert await c.lpush("l", "b", "a", namespace=ns) == 2
    assert await c.rpush("l", "c", namespace=ns) == 3
    assert await c.lrange("l", 0, -1, namespace=ns) == [b"a", b"b", b"c"]
    assert await c.llen("l", namespace=ns) == 3
    assert await c.lpop("l", namespace=ns) == b"a"
    assert await c.rpop("l", namespace=ns) == b"c"
    assert await c.rpop("nope", namespace=ns) is None
    # sets
    assert await c.sadd("s", "x", "y", "x", namespace=ns) == 2
    assert await c.sismember("s", "x", namespace=ns) is True
    assert await c.sismember("s", "q", namespace=ns) is False
    assert await c.smembers("s", namespace=ns) == {b"x", b"y"}
    assert await c.srem("s", "x", "q", namespace=ns) == 1
    assert await c.scard("s", namespace=ns) == 1
    # sorted sets
    assert await c.zadd("z", {"a": 1, "b": 2.5, "c": -1}, namespace=ns) == 3
    assert await c.zscore("z", "b", namespace=ns) == 2.5
    assert await c.zscore("z", "q", namespace=ns) is None
    assert await c.zincrby("z", 2, "a", namespace=ns) == 3.0
    assert await c.zrange("z", 0, -1, namespace=ns) == [b"c", b"b", b"a"]
    assert await c.zrange("z", 0, 0, namespace=ns, desc=True) == [b"a"]
    assert await c.zrange("z", 0, 1, namespace=ns, withscores=True) == [(b"c", -1.0), (b"b", 2.5)]
    assert await c.zrangebyscore("z", 0, math.inf, namespace=ns) == [b"b", b"a"]
    assert await c.zrangebyscore(
        "z", -math.inf, math.inf, namespace=ns, withscores=True, offset=1, count=1
    ) == [(b"b", 2.5)]
    assert await c.zrank("z", "a", namespace=ns) == 2
    assert await c.zrank("z", "q", namespace=ns) is None
    assert await c.zadd("z", {"a": 0, "n": 1}, nx=True, namespace=ns) == 1
    assert await c.zadd("z", {"a": 9, "m": 1}, xx=True, ch=True, namespace=ns) == 1
    assert await c.zadd("z", {"a": 1, "b": 5}, gt=True, ch=True, namespace=ns) == 1
    assert await c.zadd("nope", {"a": 1}, xx=True, namespace=ns) == 0
    assert await c.zadd_incr("z", 1, "a", namespace=ns) == 10.0
    assert await c.zadd_incr("z", -1, "a", gt=True, namespace=ns) is None
    assert await c.zadd_incr("z", 1, "a", nx=True, namespace=ns) is None
    with pytest.raises(BadRequestError):
        await c.zadd("z", {"a": 1}, nx=True, gt=True, namespace=ns)
    assert await c.zrange("z", 0, -1, namespace=ns, withscores=True) == [
        (b"c", -1.0), (b"n", 1.0), (b"b", 5.0), (b"a", 10.0)
    ]  # fmt: skip
    assert await c.zrem("z", "c", namespace=ns) == 1
    assert await c.zcard("z", namespace=ns) == 3
    # pipelines
    results = await run_pipeline(
        c, lambda p: p.set("p", "1", namespace=ns).incr("pn", namespace=ns).get("p", namespace=ns)
    )
    assert results == [True, 1, b"1"]
    results = await run_pipeline(
        c,
        lambda p: p.get("h", namespace=ns).get("p", namespace=ns),
        raise_on_error=False,
    )
    assert isinstance(results[0], meshcache.WrongTypeError) and results[1] == b"1"
    with pytest.raises(meshcache.WrongTypeError):
        await run_pipeline(c, lambda p: p.get("h", namespace=ns).set("q", "2", namespace=ns))
    assert await c.get("q", namespace=ns) == b"2"
    # k n a b h l s z p pn q
    assert await c.dbsize(namespace=ns) == 11
    assert await c.delete("k", "a", namespace=ns) == 2


def test_blocking_client_every_method(node: NodeThread) -> None:
    with meshcache.Client(node.address) as client:
        asyncio.run(scenario(Blocking(client), "default"))


@pytest.mark.trio
async def test_trio_client_every_method(node: NodeThread) -> None:
    async with meshcache.TrioClient(node.address) as client:
        await scenario(client, "default")


def test_asyncio_client_every_method(node: NodeThread) -> None:
    async def main() -> None:
        async with meshcache.AsyncClient(node.address) as client:
            await scenario(client, "default")

    asyncio.run(main())


def test_unknown_namespace_error(node: NodeThread) -> None:
    with meshcache.Client(node.address) as client, pytest.raises(meshcache.NoSuchNamespaceError):
        client.get("k", namespace="no-such-namespace")


def test_too_large_value(tmp_path: Path) -> None:
    n = NodeThread(node_settings(tmp_path, max_value_bytes=100)).start()
    try:
        with meshcache.Client(n.address) as client:
            with pytest.raises(meshcache.TooLargeError):
                client.set("k", b"x" * 101)
            assert client.set("k", b"x" * 100) is True
    finally:
        n.stop()


def test_threads_share_the_pool(node: NodeThread) -> None:
    errors: list[BaseException] = []
    with meshcache.Client(node.address, max_connections=4) as client:
        client.delete("threads:total")

        def work() -> None:
            try:
                for _ in range(100):
                    client.incr("threads:total")
            except BaseException as exc:  # reported in the test's thread below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert client.get("threads:total") == b"800"


def test_failover_past_a_dead_seed(node: NodeThread, tmp_path: Path) -> None:
    dead = NodeThread(node_settings(tmp_path)).start()
    dead_address = dead.address
    dead.stop()
    with meshcache.Client(f"{dead_address},{node.address}", connect_timeout=2) as client:
        assert client.ping()


def test_node_restart_idempotent_retry(tmp_path: Path) -> None:
    """A pooled connection broken by a node restart: reads retry; the pool heals."""
    first = NodeThread(node_settings(tmp_path / "a")).start()
    port = first.info.data_address[1] if first.info else 0
    with meshcache.Client(first.address) as client:
        assert client.set("k", "v") is True
        first.stop()
        second = NodeThread(replace(node_settings(tmp_path / "b"), port=port)).start()
        try:
            # The pooled connection is dead; the client notices before use (or retries GET).
            assert client.get("k") is None  # a fresh node: data is not persisted
            assert client.incr("n") == 1
        finally:
            second.stop()


def test_too_many_connections_is_raised(tmp_path: Path) -> None:
    n = NodeThread(node_settings(tmp_path, max_connections=1)).start()
    try:
        with meshcache.Client(n.address) as one, meshcache.Client(n.address) as two:
            assert one.ping()
            with pytest.raises(
                (meshcache.errors.TooManyConnectionsError, meshcache.MeshcacheConnectionError)
            ):
                two.ping()
            assert one.ping()
    finally:
        n.stop()
