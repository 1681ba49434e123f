"""Users and permissions on a real node: clients over real sockets, /metrics over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from meshcache.client.trio_client import TrioClient
from meshcache.errors import NoAuthError, NoPermError, WrongPassError
from meshcache.node import Node, NodeInfo
from meshcache.security.hashing import hash_password
from meshcache.security.users import parse_users
from meshcache.wire.frame import FrameReader, Response, decode_response, encode_request
from meshcache.wire.ops import OPS, Permission
from tests.security.secured import CHEAP, USERS, secured


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
    assert sample(text, 'meshcache_auth_failing_addresses{port="data"}') == 1
    assert sample(text, 'meshcache_auth_failing_addresses{port="resp"}') == 0
    assert 'meshcache_auth_failing_addresses{port="resp"} 0.0' in text  # both ports shown
    async with client(info, "app", "app-pw") as right:  # the record slows, it does not lock out
        assert await right.set("k", b"v")


@pytest.mark.trio
async def test_the_url_carries_the_credentials(node: tuple[Node, NodeInfo]) -> None:
    _, info = node
    url = f"meshcache://app:app-pw@127.0.0.1:{info.data_address[1]}/default?smart=false"
    async with TrioClient.from_url(url) as c:
        assert await c.set("u", b"1") and await c.get("u") == b"1"


async def exchange(info: NodeInfo, frames: list[bytes], n: int) -> list[Response]:
    """Send ``frames`` in one write on a fresh connection; the first ``n`` answers."""
    stream = await trio.open_tcp_stream(*info.data_address)
    async with stream:
        await stream.send_all(b"".join(frames))
        reader = FrameReader()
        answers: list[Response] = []
        with trio.fail_after(10):
            while len(answers) < n:
                while (body := reader.next_body()) is not None:
                    answers.append(decode_response(body))
                if len(answers) < n:
                    reader.feed(await stream.receive_some(65536))
    return answers


# Every op that changes the cluster (what `meshcache top`'s drain, remove and policy edits
# send, the CLI's ns/raft/leave/join/flush), written out here rather than read from the op
# table, so a row that loses its `admin` permission fails this test.
ADMIN_OPS = {
    "FLUSH": [],
    "NS_SET": ["new-ns", {"max_bytes": 1000}],
    "NS_DROP": ["tenant-a"],
    "CONFIG_PROPOSE": [{"op": "remove_member", "name": "n9", "version": 1}],
    "RAFT_ADD": ["127.0.0.1:9"],
    "RAFT_REMOVE": ["127.0.0.1:9"],
    "LEAVE": [{}],
    "JOIN": [{}],
}


def test_the_admin_ops_are_those_of_the_op_table() -> None:
    assert {name for name, spec in OPS.items() if spec.permission is Permission.ADMIN} == set(
        ADMIN_OPS
    )


@pytest.mark.trio
async def test_admin_ops_need_admin(node: tuple[Node, NodeInfo]) -> None:
    """A user with read and write gets NOPERM naming 'admin' for every cluster change, and
    nothing changes; each refusal is counted."""
    _, info = node
    ops = list(ADMIN_OPS.items())
    frames = [
        encode_request(1, "AUTH", "default", ["app", "app-pw"]),
        encode_request(2, "SET", "default", [b"kept", b"v", {}]),
        *(encode_request(i, op, "default", args) for i, (op, args) in enumerate(ops, 3)),
        encode_request(99, "GET", "default", [b"kept"]),
    ]
    answers = await exchange(info, frames, len(frames))
    assert answers[0].ok and answers[1].ok
    for (op, _), answer in zip(ops, answers[2:-1], strict=True):
        assert not answer.ok and answer.value[0] == "NOPERM", (op, answer)
        assert "'admin' permission, which user 'app' lacks" in answer.value[1], op
    assert answers[-1].value == b"v"  # FLUSH was refused
    text = await metrics(info)
    assert sample(text, 'meshcache_auth_total{outcome="noperm"}') == len(ops)
    assert sample(text, 'meshcache_errors_total{code="NOPERM"}') == len(ops)
    async with client(info, "ops", "ops-pw") as admin:
        namespaces = await admin.ns_list()
    assert "tenant-a" in namespaces and "new-ns" not in namespaces


@pytest.mark.trio
async def test_a_replayed_auth_frame(node: tuple[Node, NodeInfo]) -> None:
    """An AUTH frame captured on the wire: replayed on its own connection it changes nothing;
    once the user's password changed it is refused and counted, and what follows it gets
    NOAUTH."""
    n, info = node
    auth = encode_request(1, "AUTH", "default", ["app", "app-pw"])
    then = encode_request(9, "SET", "default", [b"r", b"1", {}])
    answers = await exchange(info, [auth, auth, auth, then], 4)
    assert [a.value for a in answers] == ["OK", "OK", "OK", True]
    users = dict(USERS, app={**USERS["app"], "password": hash_password("new-pw", n=CHEAP)})
    n.parts.dispatcher.guard.set_users(parse_users(users, "test"))
    answers = await exchange(info, [auth, then], 2)
    assert answers[0].value[0] == "WRONGPASS" and answers[1].value[0] == "NOAUTH"
    text = await metrics(info)
    assert sample(text, 'meshcache_auth_total{outcome="failed"}') == 1
    assert sample(text, 'meshcache_auth_total{outcome="noauth"}') == 1
