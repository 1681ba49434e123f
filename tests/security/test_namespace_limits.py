"""A user limited to some namespaces (``namespaces = ["tenant-*"]``): which ops that limit
covers, on a real node's data port and RESP port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from meshcache.node import Node, NodeInfo
from meshcache.security.acl import grant
from meshcache.security.hashing import hash_password
from meshcache.wire.frame import FrameReader, Response, decode_response, encode_request
from meshcache.wire.ops import OPS, Permission
from tests.resp.helpers import RawConn
from tests.security.secured import CHEAP, USERS, secured

# Written out here rather than read from the op table: an op that reads or changes one
# namespace's keys must be limited to the user's namespaces; a new op that lands in neither
# list fails the table test below.
LIMITED_OPS_OUTSIDE_THE_STORE = {"SCAN", "DBSIZE", "NS_SET", "NS_DROP"}
# Ops that show or change keys or policies of every namespace at once: refused to such a user.
EVERY_NAMESPACE_OPS = {"HOTKEYS", "CONFIG_PROPOSE"}
# Node and cluster ops: they show figures, members and policies, never a key name or value.
NODE_OPS = {
    "PING",
    "INFO",
    "MEMBERS",
    "CONFIG_GET",
    "NS_LIST",
    "RING",
    "RAFT_STATUS",
    "RAFT_ADD",
    "RAFT_REMOVE",
    "LEAVE",
    "JOIN",
}

LIMITED_USERS: dict[str, dict[str, Any]] = {
    **USERS,
    "tenant-ops": {
        "password": hash_password("tenant-ops-pw", n=CHEAP),
        "permissions": ["read", "write", "admin"],
        "namespaces": ["tenant-*"],
    },
}


def test_a_limited_user_may_send_only_node_ops_everywhere() -> None:
    user_permissions = {Permission.READ, Permission.WRITE, Permission.ADMIN}
    limited = grant("t", user_permissions, ("tenant-*",))
    assert limited.allowed == NODE_OPS
    # every op on keys that the store runs, FLUSH included
    store_ops = {name for name, spec in OPS.items() if spec.handler == "data"}
    assert limited.scoped == store_ops | LIMITED_OPS_OUTSIDE_THE_STORE
    refused = {
        name
        for name, spec in OPS.items()
        if spec.permission in user_permissions
        and name not in limited.allowed
        and name not in limited.scoped
    }
    assert refused == EVERY_NAMESPACE_OPS
    unlimited = grant("u", user_permissions)
    assert not unlimited.scoped
    assert unlimited.allowed >= NODE_OPS | EVERY_NAMESPACE_OPS | LIMITED_OPS_OUTSIDE_THE_STORE


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeInfo]:
    async with trio.open_nursery() as nursery:
        n = Node(secured(tmp_path, LIMITED_USERS, resp_port=0))
        info = await nursery.start(n.serve)
        yield info
        nursery.cancel_scope.cancel()


async def exchange(info: NodeInfo, frames: list[bytes]) -> list[Response]:
    """Send ``frames`` in one write on a fresh connection; an answer for each."""
    stream = await trio.open_tcp_stream(*info.data_address)
    async with stream:
        await stream.send_all(b"".join(frames))
        reader = FrameReader()
        answers: list[Response] = []
        with trio.fail_after(10):
            while len(answers) < len(frames):
                while (body := reader.next_body()) is not None:
                    answers.append(decode_response(body))
                if len(answers) < len(frames):
                    reader.feed(await stream.receive_some(65536))
    return answers


@pytest.mark.trio
async def test_a_limited_user_cannot_list_or_count_keys_elsewhere(node: NodeInfo) -> None:
    info = node
    answers = await exchange(
        info,
        [
            encode_request(1, "AUTH", "default", ["ops", "ops-pw"]),
            encode_request(2, "SET", "default", [b"secret-key-name", b"v", {}]),
            encode_request(3, "AUTH", "default", ["tenant", "tenant-pw"]),
            encode_request(4, "SET", "tenant-a", [b"mine", b"v", {}]),
            encode_request(5, "SCAN", "default", [0, {}]),
            encode_request(6, "DBSIZE", "default", [{}]),
            encode_request(7, "HOTKEYS", "default", []),
            encode_request(8, "SCAN", "tenant-a", [0, {}]),
            encode_request(9, "DBSIZE", "tenant-a", [{}]),
        ],
    )
    assert [a.ok for a in answers[:4]] == [True] * 4
    for answer in answers[4:6]:
        assert not answer.ok and answer.value[0] == "NOPERM"
        assert "not in namespace 'default'" in answer.value[1]
    assert not answers[6].ok and answers[6].value[0] == "NOPERM"
    assert "HOTKEYS covers every namespace" in answers[6].value[1]
    assert answers[7].ok and answers[7].value == [0, [b"mine"]]
    assert answers[8].ok and answers[8].value == 1


@pytest.mark.trio
async def test_a_limited_admin_changes_only_its_namespaces(node: NodeInfo) -> None:
    info = node
    answers = await exchange(
        info,
        [
            encode_request(1, "AUTH", "default", ["tenant-ops", "tenant-ops-pw"]),
            # the namespace an NS_SET or NS_DROP acts on is its argument's, not the frame's
            encode_request(2, "NS_DROP", "tenant-a", ["default"]),
            encode_request(3, "NS_SET", "tenant-a", ["default", {"max_bytes": 1000}]),
            encode_request(4, "NS_DROP", "tenant-a", [b"\xff"]),
            encode_request(5, "NS_DROP", "tenant-a", [7]),
            encode_request(6, "CONFIG_PROPOSE", "tenant-a", [{"op": "drop_namespace"}]),
            encode_request(7, "NS_SET", "default", ["tenant-b", {"max_bytes": 1000}]),
        ],
    )
    assert answers[0].ok
    for answer in answers[1:6]:
        assert not answer.ok and answer.value[0] == "NOPERM", answer
    assert "not in namespace 'default'" in answers[1].value[1]
    assert "CONFIG_PROPOSE covers every namespace" in answers[5].value[1]
    # its own namespace passes the gate (this node has no config voter to apply it)
    assert answers[6].value[0] != "NOPERM", answers[6]


def resp_calls(port: int, *commands: tuple[str, ...]) -> list[bytes]:
    conn = RawConn(port)
    try:
        return [conn.call(*args) for args in commands]
    finally:
        conn.close()


@pytest.mark.trio
async def test_keys_and_scan_on_the_resp_port(node: NodeInfo) -> None:
    info = node
    assert info.resp_address is not None
    port = info.resp_address[1]
    setup = await trio.to_thread.run_sync(
        lambda: resp_calls(
            port,
            ("AUTH", "ops", "ops-pw"),
            ("SET", "secret-key-name", "v"),
            ("AUTH", "tenant", "tenant-pw"),
            ("KEYS", "*"),
            ("SCAN", "0"),
            ("DBSIZE",),
            ("SELECT", "tenant-a"),
            ("SET", "mine", "v"),
            ("KEYS", "*"),
        )
    )
    assert setup[:3] == [b"+OK\r\n"] * 3
    for reply in setup[3:6]:
        assert reply.startswith(b"-NOPERM ") and b"in namespace 'default'" in reply, reply
        assert b"secret-key-name" not in reply
    assert setup[6:8] == [b"+OK\r\n"] * 2
    assert setup[8] == b"*1\r\n$4\r\nmine\r\n"
