"""Fixtures of the RESP tests: a meshcache node serving RESP in this process (its own
``resp_port`` setting), and a redis-server to compare with."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import trio

from meshcache.node.net.resp_port import RespPort
from meshcache.node.node import Node
from meshcache.settings import LimitSettings, NodeSettings
from meshcache.store.policy import NamespacePolicy
from tests.resp.helpers import redis_server


@dataclass
class RespNode:
    """A node serving in this process, with its RESP port on."""

    node: Node

    @property
    def port(self) -> RespPort:
        assert self.node.resp is not None
        return self.node.resp

    @property
    def resp_port(self) -> int:
        return self.port.address[1]

    @property
    def counters(self) -> Any:
        return self.node.counters

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the node's ``/metrics`` (its registry), 0 when it is absent."""
        assert self.node.registry is not None
        value = self.node.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


def node_settings(tmp_path: Path, **limits: Any) -> NodeSettings:
    return NodeSettings(
        port=0,
        admin_port=0,
        resp_port=0,
        data_dir=tmp_path,
        limits=replace(LimitSettings(), **limits),
        namespaces={
            "default": NamespacePolicy(),
            "db1": NamespacePolicy(),
            "sessions": NamespacePolicy(),
        },
    )


async def start_resp_node(nursery: trio.Nursery, settings: NodeSettings) -> RespNode:
    node = Node(settings)
    await nursery.start(node.serve)
    return RespNode(node)


@pytest.fixture
async def resp_node(tmp_path: Path) -> AsyncIterator[RespNode]:
    async with trio.open_nursery() as nursery:
        yield await start_resp_node(nursery, node_settings(tmp_path))
        nursery.cancel_scope.cancel()


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with redis_server(tmp_path_factory.mktemp("redis")) as port:
        yield port
