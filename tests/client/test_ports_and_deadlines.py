"""A client pointed at a node's other ports, and a timeout that bounds the whole call.

One real node process (a Raft voter, so its Raft port listens). Its admin port answers HTTP, its
Raft port answers nothing at all: every front end must say which it found, and never take more
than its ``timeout`` to do so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import meshcache
from meshcache.testing.nodes import NodeProcess
from tests.client.cluster import FLAVORS, free_port, run_flavor


@dataclass
class Ports:
    data: str
    admin: str
    raft: str


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    raft = free_port()
    tmp: Path = tmp_path_factory.mktemp("voter")
    with NodeProcess(tmp, "--bootstrap", "--raft-port", str(raft)) as node:
        host, admin = node.admin_address
        yield Ports(node.data, f"{host}:{admin}", f"127.0.0.1:{raft}")


def outcome(flavor: str, address: str, **kwargs: Any) -> tuple[BaseException, float]:
    """What ``get("k")`` through a client of ``flavor`` raised, and how long it took."""

    async def body(client: Any) -> None:
        await client.get("k")

    start = time.monotonic()
    with pytest.raises(meshcache.MeshcacheError) as info:
        run_flavor(flavor, address, body, **kwargs)
    return info.value, time.monotonic() - start


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_admin_port_is_named_at_once(ports: Ports, flavor: str) -> None:
    error, took = outcome(flavor, ports.admin, timeout=5.0)
    assert isinstance(error, meshcache.RemoteProtocolError)
    assert str(error) == (
        f"{ports.admin} answered HTTP: that is a node's admin port (or another web server);"
        " use its data port"
    )
    assert took < 1.0


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("smart", [True, False])
def test_a_silent_port_times_out_once_within_the_timeout(
    ports: Ports, flavor: str, smart: bool
) -> None:
    timeout = 1.0
    error, took = outcome(flavor, ports.raft, timeout=timeout, smart=smart)
    assert isinstance(error, meshcache.MeshcacheTimeout) and isinstance(error, TimeoutError)
    assert f"no answer from {ports.raft} within 1 s" in str(error)
    assert "sent nothing back" in str(error) and "data port" in str(error)
    # The smart client asks for the ring before the request: both share the one deadline.
    assert timeout <= took < timeout + 0.5


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_data_port_answers(ports: Ports, flavor: str) -> None:
    async def body(client: Any) -> Any:
        return await client.ping()

    assert run_flavor(flavor, ports.data, body, timeout=5.0) is True
