"""A real three-node mesh for the smart-client tests; one scenario runner for every client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import trio

import meshcache
from meshcache.ring import Ring, RingMember
from meshcache.testing.nodes import NodeProcess
from tests.mesh.helpers import wait_for

FLAVORS = ["sync", "trio", "asyncio"]


@contextlib.contextmanager
def mesh(tmp: Path, size: int = 3) -> Iterator[list[NodeProcess]]:
    """``size`` nodes (the first bootstraps, the others join it), every one active on the ring."""
    with contextlib.ExitStack() as stack:
        # The Raft port defaults to the data port + 1, which with a kernel-chosen data port is
        # sometimes taken already; a port the kernel just handed out is far less likely to be.
        first = stack.enter_context(
            NodeProcess(
                tmp / "n0", "--profile", "local", "--bootstrap", "--raft-port", str(free_port())
            )
        )
        nodes = [first]
        for i in range(1, size):
            nodes.append(
                stack.enter_context(
                    NodeProcess(tmp / f"n{i}", "--profile", "local", "--join", first.data)
                )
            )

        def all_active() -> bool:
            members = ring_reply(first)["members"]
            return len(members) == size and all(m["state"] == "active" for m in members)

        wait_for(all_active, 30, f"{size} active ring members")
        yield nodes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ring_reply(node: NodeProcess) -> dict[str, Any]:
    with meshcache.Client(node.data, smart=False, timeout=5) as client:
        return client.ring()


def ring_of(node: NodeProcess) -> Ring:
    """The ring as ``node`` describes it (built here, independently of the client's router)."""
    reply = ring_reply(node)
    members = [
        RingMember.from_mapping({k: v for k, v in m.items() if k != "share"})
        for m in reply["members"]
    ]
    return Ring(members, reply["version"])


def make_namespace(nodes: list[NodeProcess], name: str, replicas: int) -> None:
    """Create the namespace with ``NS_SET`` and wait until every node has it."""
    with meshcache.Client(nodes[0].data, smart=False, timeout=5) as client:
        client.ns_set(name, {"replicas": replicas})

    def everywhere() -> bool:
        for node in nodes:
            with meshcache.Client(node.data, smart=False, timeout=5) as client:
                if name not in client.ns_list():
                    return False
        return True

    wait_for(everywhere, 20, f"namespace {name} on every node")


def node_client(node: NodeProcess) -> meshcache.Client:
    """A client that talks to exactly this node."""
    return meshcache.Client(node.data, smart=False, timeout=5)


class Blocking:
    """The blocking client behind awaitable methods, so a scenario is written once."""

    def __init__(self, client: meshcache.Client) -> None:
        self.client = client
        self.router = client.router

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method):  # a setting (namespace, timeout, ...): as it is
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call

    async def run_pipeline(self, build: Callable[[Any], Any]) -> list[Any]:
        pipe = self.client.pipeline()
        build(pipe)
        return pipe.execute()


async def run_pipeline(client: Any, build: Callable[[Any], Any]) -> list[Any]:
    """Queue with ``build(pipe)`` on a pipeline of ``client``, execute it, return the results."""
    if isinstance(client, Blocking):
        return await client.run_pipeline(build)
    pipe = client.pipeline()
    build(pipe)
    result: list[Any] = await pipe.execute()
    return result


def run_flavor(
    flavor: str, addresses: str, body: Callable[[Any], Awaitable[Any]], **kwargs: Any
) -> Any:
    """Run ``body(client)`` with a client of the given front end; its result."""
    if flavor == "sync":
        with meshcache.Client(addresses, **kwargs) as client:
            return trio.run(body, Blocking(client))
    if flavor == "trio":

        async def on_trio() -> Any:
            async with meshcache.TrioClient(addresses, **kwargs) as client:
                return await body(client)

        return trio.run(on_trio)

    async def on_asyncio() -> Any:
        async with meshcache.AsyncClient(addresses, **kwargs) as client:
            return await body(client)

    return asyncio.run(on_asyncio())
