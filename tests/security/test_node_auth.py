"""Users and permissions on a real node: clients over real sockets, /metrics over HTTP."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from meshcache.client.trio_client import TrioClient
from meshcache.errors import NoAuthError, NoPermError, WrongPassError
from meshcache.node import Node, NodeInfo
from meshcache.security.hashing import hash_password
from meshcache.settings import load_settings
from meshcache.wire.frame import FrameReader, decode_response, encode_request

CHEAP = 1024


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.key"
    path.write_text(base64.b64encode(b"s" * 32).decode() + "\n")
    return path


def secured(tmp_path: Path, **extra: Any) -> Any:
    users = {
        "app": {"password": hash_password("app-pw", n=CHEAP), "permissions": ["read", "write"]},
        "viewer": {"password": hash_password("view-pw", n=CHEAP), "permissions": ["read"]},
        "ops": {
            "password": hash_password("ops-pw", n=CHEAP),
            "permissions": ["read", "write", "admin"],
        },
        "tenant": {
            "password": hash_password("tenant-pw", n=CHEAP),
            "permissions": ["read", "write"],
            "namespaces": ["tenant-*"],
        },
    }
    return load_settings(
        overrides={
            "port": 0,
            "admin_port": 0,
            "data_dir": str(tmp_path / "data"),
            "cluster_key_file": str(key_file(tmp_path)),
            "users": users,
            "namespaces": {"tenant-a": {}},
            **extra,
        },
        environ={},
    )


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Node, NodeInfo]]:
    async with trio.open_nursery() as nursery:
        n = Node(secured(tmp_path))
        info = await nursery.start(n.serve)
        yield n, info
        nursery.cancel_scope.cancel()


def client(info: NodeInfo, user: str | None = None, password: str | None = None) -> TrioClient:
    return TrioClient(
        f"127.0.0.1:{info.data_address[1]}", smart=False, username=user, password=password
    )


async def metrics(info: NodeInfo) -> str:
    stream = await trio.open_tcp_stream(*info.admin_address)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
    return data.decode()


def sample(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.trio
async def test_without_auth_only_ping_answers(node: tuple[Node, NodeInfo]) -> None:
    _, info = node
    async with client(info) as anonymous:
        assert await anonymous.ping()
        with pytest.raises(NoAuthError, match="AUTH"):
            await anonymous.get("k")
        with pytest.raises(NoAuthError):
            await anonymous.info()
    text = await metrics(info)
    assert sample(text, 'meshcache_auth_total{outcome="noauth"}') >= 2
    assert sample(text, 'meshcache_errors_total{code="NOAUTH"}') >= 2


@pytest.mark.trio
async def test_users_get_what_their_permissions_allow(node: tuple[Node, NodeInfo]) -> None:
    _, info = node
    async with client(info, "app", "app-pw") as app, client(info, "viewer", "view-pw") as viewer:
        assert await app.set("k", b"v")
        assert await viewer.get("k") == b"v"
        with pytest.raises(NoPermError, match="'write' permission, which user 'viewer' lacks"):
            await viewer.set("k", b"w")
        with pytest.raises(NoPermError, match="'admin'"):
            await app.flush()
        assert await app.get("k") == b"v"  # the refusals changed nothing
    async with client(info, "ops", "ops-pw") as ops:
        assert await ops.flush()


@pytest.mark.trio
async def test_namespace_patterns(node: tuple[Node, NodeInfo]) -> None:
    _, info = node
    tenant = TrioClient(
        f"127.0.0.1:{info.data_address[1]}",
        smart=False,
        namespace="tenant-a",
        username="tenant",
        password="tenant-pw",
    )
    async with tenant:
        assert await tenant.set("k", b"mine")
        assert await tenant.get("k") == b"mine"
    outside = client(info, "tenant", "tenant-pw")
    async with outside:
        with pytest.raises(NoPermError, match="not in namespace 'default'"):
            await outside.get("k")


@pytest.mark.trio
async def test_a_user_cannot_send_node_to_node_ops(node: tuple[Node, NodeInfo]) -> None:
    _, info = node
    stream = await trio.open_tcp_stream(*info.data_address)
    async with stream:
        await stream.send_all(
            encode_request(1, "AUTH", "default", ["ops", "ops-pw"])
            + encode_request(2, "FWD", "default", ["SET", [b"k", b"forged", {}]])
        )
        reader = FrameReader()
        answers = []
        with trio.fail_after(10):
            while len(answers) < 2:
                while (body := reader.next_body()) is not None:
                    answers.append(decode_response(body))
                if len(answers) < 2:
                    reader.feed(await stream.receive_some(65536))
    assert answers[0].ok and answers[0].value == "OK"
    assert not answers[1].ok and answers[1].value[0] == "NOPERM"
    assert "'peer'" in answers[1].value[1]


@pytest.mark.trio
async def test_wrong_passwords_are_counted_and_refused(node: tuple[Node, NodeInfo]) -> None:
    _, info = node
    for password in ("nope", "app-pw "):
        async with client(info, "app", password) as wrong:
            with pytest.raises(WrongPassError, match="invalid user name or password"):
                await wrong.get("k")
    async with client(info, "ghost", "app-pw") as ghost:
        with pytest.raises(WrongPassError):
            await ghost.get("k")
    text = await metrics(info)
    assert sample(text, 'meshcache_auth_total{outcome="failed"}') == 3
    assert sample(text, 'meshcache_bad_input_total{kind="wrongpass"}') == 3
    assert sample(text, "meshcache_auth_failing_addresses") == 1
    async with client(info, "app", "app-pw") as right:  # the record slows, it does not lock out
        assert await right.set("k", b"v")


@pytest.mark.trio
async def test_the_url_carries_the_credentials(node: tuple[Node, NodeInfo]) -> None:
    _, info = node
    url = f"meshcache://app:app-pw@127.0.0.1:{info.data_address[1]}/default?smart=false"
    async with TrioClient.from_url(url) as c:
        assert await c.set("u", b"1") and await c.get("u") == b"1"
