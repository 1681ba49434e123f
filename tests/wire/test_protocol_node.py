"""docs/protocol.md against a running node: every field INFO and RAFT_STATUS answer is
documented, the ops said to ignore the namespace field do, and DBSIZE's owned count."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshcache.errors import BadRequestError, NoSuchNamespaceError
from meshcache.ring import RingState
from meshcache.testing.mesh import Direct, wait_for
from meshcache.testing.nodes import NodeProcess

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
INFO_DOC = DOC[DOC.index("#### INFO") : DOC.index("### Cluster config")]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node alone on its ring: the single config voter, active."""
    with NodeProcess(tmp_path_factory.mktemp("protocol"), "--profile", "local", "--bootstrap") as n:

        def active() -> bool:
            members = call(n, "RING")["members"]
            return len(members) == 1 and members[0]["state"] == RingState.ACTIVE

        wait_for(active, 30, "the node active on its ring")
        yield n


def call(node: NodeProcess, op: str, *args: Any, namespace: str = "default") -> Any:
    with Direct(node.data_address) as direct:
        return direct.call(op, list(args), namespace)


def _names(value: Any, depth: int) -> set[str]:
    """Every map key of ``value`` down to ``depth`` levels of maps."""
    if depth == 0 or not isinstance(value, dict):
        return set()
    names = {str(k) for k in value}
    for inner in value.values():
        names |= _names(inner, depth - 1)
    return names


def test_every_field_info_answers_is_documented(node: NodeProcess) -> None:
    call(node, "SET", b"k", b"v")
    info = call(node, "INFO")
    top = set(info) - {"namespaces"}
    figures = info["namespaces"]["default"]
    names = top | _names(figures, 2) | _names(info["gossip"], 1) | _names(info["mesh"], 2)
    undocumented = sorted(name for name in names if f"`{name}`" not in INFO_DOC)
    assert not undocumented
    assert {"namespaces", "gossip", "mesh"} <= set(info)
    assert set(info["mesh"]["counters"]) == {
        "dataplane",
        "replicator",
        "hints",
        "rebalance",
        "peers",
        "breakers",
        "clamp",
        "antientropy",
        "loader",
        "hot",
    }


def test_raft_status_sends_the_documented_fields(node: NodeProcess) -> None:
    status = call(node, "RAFT_STATUS")
    [row] = [line for line in DOC.splitlines() if line.startswith("| `RAFT_STATUS` |")]
    assert "self" in status and not [f for f in status if f"`{f}`" not in row]


def test_the_ops_said_to_ignore_the_namespace_answer_for_any_namespace(node: NodeProcess) -> None:
    sentence = re.search(r"\*\*ignores the namespace field\*\* — (.*?) —", DOC, re.S)
    assert sentence
    ignoring = set(re.findall(r"`([A-Z_]+)`", sentence.group(1)))
    # The ones that change nothing; the others need arguments or change the cluster.
    for op in sorted(ignoring & {"PING", "CONFIG_GET", "NS_LIST", "RING"}):
        assert call(node, op, namespace="no-such") == call(node, op), op
    for op in sorted(ignoring & {"INFO", "MEMBERS", "RAFT_STATUS"}):
        assert type(call(node, op, namespace="no-such")) is type(call(node, op)), op
    for op, args in [("DBSIZE", []), ("FLUSH", []), ("GET", [b"k"])]:
        with pytest.raises(NoSuchNamespaceError):
            call(node, op, *args, namespace="no-such")


def test_scan_walks_a_one_member_ring_and_refuses_bad_options(node: NodeProcess) -> None:
    call(node, "FLUSH")
    keys = {b"w:%d" % i for i in range(50)}
    call(node, "MSET", *(part for key in sorted(keys) for part in (key, b"v")))
    call(node, "RPUSH", b"w-list", b"x")
    walked: list[bytes] = []
    cursor = 0
    while True:
        cursor, page = call(node, "SCAN", cursor, {"count": 7})
        walked += page
        if cursor == 0:
            break
    assert sorted(walked) == sorted(keys | {b"w-list"})
    cursor, page = call(node, "SCAN", 0, {"match": "w:4?", "count": 1000})
    assert cursor == 0 and sorted(page) == [b"w:4%d" % i for i in range(10)]
    assert call(node, "SCAN", 0, {"type": "list", "count": 1000}) == [0, [b"w-list"]]
    assert call(node, "DBSIZE", {"mesh": True}) == len(keys) + 1
    for options in ({"count": 0}, {"count": "5"}, {"match": 5}, {"type": 1}, {"bogus": 1}):
        with pytest.raises(BadRequestError):
            call(node, "SCAN", 0, options)
    for args in ([-1], ["0"], [1.5]):
        with pytest.raises(BadRequestError):
            call(node, "SCAN", *args)
    with pytest.raises(NoSuchNamespaceError):
        call(node, "SCAN", 0, namespace="no-such")


def test_dbsize_owned_counts_every_key_of_a_one_member_ring(node: NodeProcess) -> None:
    call(node, "FLUSH")
    call(node, "MSET", b"a", b"1", b"b", b"2", b"c", b"3")
    version = call(node, "RING")["version"]
    assert call(node, "DBSIZE") == 3
    assert call(node, "DBSIZE", {"owned": False}) == 3
    assert call(node, "DBSIZE", {"owned": True}) == {"count": 3, "ring_version": version}
