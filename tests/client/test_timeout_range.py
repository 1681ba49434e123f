"""The range of ``timeout`` and ``connect_timeout``: the constructor and URLs of every front end
refuse what the OS's waits cannot take, and the longest accepted one works on real sockets."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest
import trio

import meshcache
from meshcache import AsyncClient, Client, TrioClient
from meshcache.client.engine import MAX_TIMEOUT
from meshcache.client.url import parse_url
from tests.client.fakeserver import FakeServer

FRONT_ENDS: list[type[Any]] = [Client, TrioClient, AsyncClient]
TOO_LONG: list[Any] = [math.inf, -math.inf, math.nan, 1e300, 9999999999, MAX_TIMEOUT * 2]


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        yield s


@pytest.mark.parametrize("front_end", FRONT_ENDS)
@pytest.mark.parametrize("name", ["timeout", "connect_timeout"])
@pytest.mark.parametrize("value", [*TOO_LONG, 0, -1, "5", True])
def test_the_constructor_refuses_what_is_not_a_timeout(
    front_end: type[Any], name: str, value: Any
) -> None:
    with pytest.raises(meshcache.ConfigError, match=name):
        front_end("127.0.0.1:7400", **{name: value})


@pytest.mark.parametrize("name", ["timeout", "connect_timeout"])
@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e300", "9999999999", "infinity"])
def test_a_url_refuses_a_timeout_the_os_cannot_take(name: str, text: str) -> None:
    url = f"meshcache://127.0.0.1:7400?{name}={text}"
    with pytest.raises(meshcache.ConfigError, match=f"{name}='{text}'"):
        parse_url(url)
    for front_end in FRONT_ENDS:
        with pytest.raises(meshcache.ConfigError, match=name):
            front_end.from_url(url)


def test_the_longest_timeout_is_accepted_everywhere() -> None:
    options = parse_url(f"meshcache://h:1?timeout={int(MAX_TIMEOUT)}&connect_timeout=none")
    assert (options["timeout"], options["connect_timeout"]) == (MAX_TIMEOUT, None)


def test_the_blocking_client_works_with_the_longest_timeout(server: FakeServer) -> None:
    with Client(
        server.address, timeout=MAX_TIMEOUT, connect_timeout=MAX_TIMEOUT, smart=False
    ) as client:
        assert client.set("c1", b"v")
        assert client.get("c1") == b"v"
    url = f"meshcache://{server.address}?timeout={int(MAX_TIMEOUT)}&smart=false"
    with meshcache.from_url(url) as client:
        assert client.get("c1") == b"v"


def test_the_trio_client_works_with_the_longest_timeout(server: FakeServer) -> None:
    async def scenario() -> None:
        async with TrioClient(
            server.address, timeout=MAX_TIMEOUT, connect_timeout=MAX_TIMEOUT, smart=False
        ) as client:
            assert await client.set("c1", b"v")
            assert await client.get("c1") == b"v"

    trio.run(scenario)


def test_the_asyncio_client_works_with_the_longest_timeout(server: FakeServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(
            server.address, timeout=MAX_TIMEOUT, connect_timeout=MAX_TIMEOUT, smart=False
        ) as client:
            assert await client.set("c1", b"v")
            assert await client.get("c1") == b"v"

    asyncio.run(scenario())
