"""The shape redis-py users know: a client-wide namespace, from_url, decode_responses, desc=.

Against one real node process (a Raft voter, so namespaces can be created), through every
front end.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import meshcache
from meshcache.client import AsyncClient, Client, TrioClient
from meshcache.client.commands import Commands
from meshcache.testing.nodes import NodeProcess
from tests.client.cluster import FLAVORS, free_port, run_flavor, run_pipeline

NAMESPACE = "sessions"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("voter")
    with NodeProcess(tmp, "--bootstrap", "--raft-port", str(free_port())) as process:
        with Client(process.data, smart=False) as client:
            client.ns_set(NAMESPACE, {"replicas": 1})
        yield process.data


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_client_wide_namespace(node: str, flavor: str) -> None:
    key = f"wide:{flavor}"

    async def body(client: Any) -> None:
        assert client.namespace == NAMESPACE
        assert await client.set(key, "v") is True
        assert await client.get(key) == b"v"
        assert await client.get(key, namespace="default") is None
        assert await client.set(key, "d", namespace="default") is True
        assert await run_pipeline(client, lambda p: p.get(key).get(key, namespace="default")) == [
            b"v",
            b"d",
        ]
        assert await client.dbsize() >= 1

    run_flavor(flavor, node, body, namespace=NAMESPACE)
    with Client(node) as plain:
        assert plain.get(key, namespace=NAMESPACE) == b"v"
        assert plain.get(key) == b"d"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_decode_responses_gives_str(node: str, flavor: str) -> None:
    k = f"text:{flavor}:"

    async def body(c: Any) -> None:
        assert c.decode_responses is True
        assert await c.set(k + "s", "é") is True
        assert await c.get(k + "s") == "é"
        assert await c.get(k + "none") is None
        assert await c.set(k + "s", "x", get=True) == "é"
        assert await c.mget([k + "s", k + "none"]) == ["x", None]
        got = await c.gets(k + "s")
        assert got is not None and got[0] == "x" and isinstance(got[1], int)
        assert await c.hset(k + "h", mapping={"f": "1", "g": "2"}) == 2
        assert await c.hget(k + "h", "f") == "1"
        assert await c.hgetall(k + "h") == {"f": "1", "g": "2"}
        assert await c.rpush(k + "l", "a", "b") == 2
        assert await c.lrange(k + "l", 0, -1) == ["a", "b"]
        assert await c.lpop(k + "l") == "a"
        assert await c.sadd(k + "set", "m") == 1
        assert await c.smembers(k + "set") == {"m"}
        assert await c.zadd(k + "z", {"low": 1, "high": 2}) == 2
        assert await c.zrange(k + "z", 0, -1, withscores=True) == [("low", 1.0), ("high", 2.0)]
        assert await c.zrangebyscore(k + "z", 2, math.inf) == ["high"]
        assert await run_pipeline(c, lambda p: p.get(k + "s").incr(k + "n")) == ["x", 1]
        assert await c.set(k + "bin", b"\xff\xfe") is True
        with pytest.raises(meshcache.RemoteProtocolError, match="not UTF-8"):
            await c.get(k + "bin")

    run_flavor(flavor, node, body, decode_responses=True)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_zrange_desc(node: str, flavor: str) -> None:
    z = f"z:{flavor}"

    async def body(c: Any) -> None:
        assert await c.zadd(z, {"a": 1, "b": 2, "c": 3}) == 3
        assert await c.zrange(z, 0, 0, desc=True) == [b"c"]
        assert await c.zrange(z, 0, 1, True, True) == [(b"c", 3.0), (b"b", 2.0)]  # redis-py order
        assert await c.zrange(z, 0, 0, rev=True) == [b"c"]  # the deprecated name
        assert await c.zrangebyscore(z, 1, 3, 1, 1) == [b"b"]  # offset, count as redis-py's
        assert await c.zrangebyscore(z, 1, 3, offset=0, count=1, withscores=True) == [(b"a", 1.0)]

    run_flavor(flavor, node, body)


def test_from_url_for_every_front_end(node: str) -> None:
    url = f"meshcache://{node}/{NAMESPACE}?timeout=2&decode_responses=true&max_connections=3"
    with meshcache.from_url(url) as client:
        assert isinstance(client, Client)
        assert (client.namespace, client.timeout, client.max_connections) == (NAMESPACE, 2.0, 3)
        assert client.decode_responses is True
        assert client.set("url", "v") is True
        assert client.get("url") == "v"
    with Client.from_url(url, timeout=None, namespace="default") as client:
        assert client.timeout is None and client.namespace == "default"
        assert client.get("url") is None
    for cls in (TrioClient, AsyncClient):
        client = cls.from_url(url)
        assert isinstance(client, cls)
        assert (client.namespace, client.timeout, client.decode_responses) == (NAMESPACE, 2.0, True)

    async def body(c: Any) -> Any:
        return await c.get("url")

    for flavor in ("trio", "asyncio"):
        assert run_flavor(flavor, node, body, namespace=NAMESPACE, decode_responses=True) == "v"


def test_namespace_is_keyword_only_everywhere() -> None:
    methods = {
        name: inspect.signature(getattr(Commands, name))
        for name in dir(Commands)
        if not name.startswith("_") and callable(getattr(Commands, name))
    }
    with_namespace = {n: s for n, s in methods.items() if "namespace" in s.parameters}
    assert len(with_namespace) > 30
    for name, signature in with_namespace.items():
        parameter = signature.parameters["namespace"]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert parameter.default is None, name
    with Client("127.0.0.1:1") as client, pytest.raises(TypeError):
        client.get("k", "sessions")  # type: ignore[misc]


def test_errors_people_catch_are_exported() -> None:
    assert meshcache.WriteFailedError is meshcache.errors.WriteFailedError
    assert meshcache.UnavailableError is meshcache.errors.UnavailableError
    assert issubclass(meshcache.WriteFailedError, meshcache.CommandError)
    assert issubclass(meshcache.UnavailableError, meshcache.CommandError)


def test_a_meshcache_timeout_is_a_timeout_error() -> None:
    assert issubclass(meshcache.MeshcacheTimeout, TimeoutError)
    try:
        raise meshcache.MeshcacheTimeout("no answer")
    except TimeoutError as exc:
        assert isinstance(exc, meshcache.MeshcacheError)
        assert str(exc) == "no answer" and exc.args == ("no answer",)
