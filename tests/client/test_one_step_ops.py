"""The client methods of the one-step ops (GETDEL, APPEND, STRLEN, INCRBYFLOAT, TYPE, SPOP,
ZPOPMIN/ZPOPMAX, LPOP/RPOP with a count, EXPIRE's conditions) against a real node, written once
for the blocking, trio and asyncio clients."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import meshcache
from tests.client.test_against_node import Blocking, NodeThread, node_settings


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    n = NodeThread(node_settings(tmp_path_factory.mktemp("node"))).start()
    yield n
    n.stop()


async def scenario(c: Any, ns: str) -> None:
    await c.delete("s", "l", "z", "set", "f", "h", namespace=ns)
    assert await c.append("s", "ab", namespace=ns) == 2
    assert await c.append("s", b"c", namespace=ns) == 3
    assert await c.strlen("s", namespace=ns) == 3
    assert await c.type("s", namespace=ns) == "string"
    assert await c.getdel("s", namespace=ns) == b"abc"
    assert await c.getdel("s", namespace=ns) is None
    assert await c.type("s", namespace=ns) == "none"
    assert await c.incrbyfloat("f", 0.1, namespace=ns) == 0.1
    assert await c.incrbyfloat("f", 0.2, namespace=ns) == 0.3
    assert await c.get("f", namespace=ns) == b"0.3"
    await c.rpush("l", "a", "b", "c", namespace=ns)
    assert await c.lpop("l", namespace=ns) == b"a"
    assert await c.rpop("l", 5, namespace=ns) == [b"c", b"b"]
    assert await c.lpop("l", 2, namespace=ns) is None
    await c.zadd("z", {"a": 1, "b": 2, "c": 3}, namespace=ns)
    assert await c.type("z", namespace=ns) == "zset"
    assert await c.zpopmin("z", namespace=ns) == [(b"a", 1.0)]
    assert await c.zpopmax("z", 2, namespace=ns) == [(b"c", 3.0), (b"b", 2.0)]
    await c.sadd("set", "x", "y", "z", namespace=ns)
    one = await c.spop("set", namespace=ns)
    rest = await c.spop("set", 5, namespace=ns)
    assert sorted([one, *rest]) == [b"x", b"y", b"z"]
    assert await c.spop("set", namespace=ns) is None
    await c.set("f", "1", namespace=ns)
    assert await c.expire("f", 100, xx=True, namespace=ns) is False
    assert await c.expire("f", 100, nx=True, namespace=ns) is True
    assert await c.expire("f", 50, gt=True, namespace=ns) is False
    assert await c.expire("f", 50, lt=True, namespace=ns) is True
    assert 49 < await c.ttl("f", namespace=ns) <= 50
    await c.hset("h", "f", "v", namespace=ns)
    with pytest.raises(meshcache.WrongTypeError):
        await c.getdel("h", namespace=ns)


def test_blocking_client(node: NodeThread) -> None:
    with meshcache.Client(node.address, timeout=10) as client:
        asyncio.run(scenario(Blocking(client), "default"))


@pytest.mark.trio
async def test_trio_client(node: NodeThread) -> None:
    async with meshcache.TrioClient(node.address, timeout=10) as client:
        await scenario(client, "default")


def test_asyncio_client(node: NodeThread) -> None:
    async def main() -> None:
        async with meshcache.AsyncClient(node.address, timeout=10) as client:
            await scenario(client, "default")

    asyncio.run(main())
