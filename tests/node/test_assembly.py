"""The node and the data-plane simulation share one assembly, one op table, one set of constants."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from meshcache.errors import CommandError
from meshcache.node import Assembly, Node, NodeInfo, serve
from meshcache.node.assembly import AE_MIN_RATE, AE_RATE_SHARE, HINT_SHARE_PER_TARGET
from meshcache.node.net.dispatch import Dispatcher, _unrouted
from meshcache.node.net.oneshot import call_once
from meshcache.node.routes import Routes
from meshcache.settings import NodeSettings
from meshcache.testing.simdata import SimMesh
from meshcache.wire.ops import (
    DATA_HANDLER,
    OPS,
    RELAY_HANDLER,
    SESSION_HANDLER,
    OpKind,
    Permission,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_every_op_has_exactly_one_route() -> None:
    # the data plane's, the session's (AUTH), and the dispatcher's own (RELAY's frames)
    local = (DATA_HANDLER, SESSION_HANDLER, RELAY_HANDLER)
    routed = {name for name, spec in OPS.items() if spec.handler not in local}
    handlers = {spec.handler for spec in OPS.values() if spec.handler not in local}
    public = {
        name
        for name in vars(Routes)
        if not name.startswith("_") and callable(getattr(Routes, name)) and name != "table"
    }
    assert handlers == public, "a route without an op, or an op naming no route"
    assert len(handlers) == len(routed), "two ops share one route"
    # Data ops are coordinated by the data plane and run by the store; nothing else is.
    for name, spec in OPS.items():
        if spec.handler == DATA_HANDLER:
            assert spec.kind is not OpKind.META or name in ("DBSIZE",), name


def test_the_table_says_who_may_send_each_op() -> None:
    assert OPS["GET"].permission is Permission.READ
    assert OPS["SET"].permission is Permission.WRITE
    assert {n for n, s in OPS.items() if s.permission is Permission.ADMIN} == {
        "FLUSH",
        "CONFIG_PROPOSE",
        "NS_SET",
        "NS_DROP",
        "RAFT_ADD",
        "RAFT_REMOVE",
        "LEAVE",
        "JOIN",
    }
    assert {n for n, s in OPS.items() if s.permission is Permission.PEER} == {
        "GOSSIP",
        "FWD",
        "RELAY",
        "REPL",
        "BULK",
        "RECORDS",
        "HANDOFF",
        "AE_DIGEST",
        "AE_KEYS",
        "AE_PULL",
        "AE_PUSH",
        "HOT_PUSH",
        "HOT_DROP",
        "CLOCK",
        "SCAN_PART",
    }
    assert {n for n, s in OPS.items() if s.multi_key} == {"MGET", "MSET", "DELETE", "EXISTS"}


def test_docs_list_every_op_with_its_signature() -> None:
    """docs/protocol.md's op tables and the op table agree, row for row."""
    documented: dict[str, str] = {}
    for line in DOCS.read_text().splitlines():
        match = re.match(r"\| (`[A-Z_]+`(?:(?: / |, )`[A-Z_]+`)*) \| `([^`]*)`", line)
        if match:
            for name in re.findall(r"`([A-Z_]+)`", match.group(1)):
                documented[name] = match.group(2)
    assert set(documented) == set(OPS), (set(OPS) - set(documented), set(documented) - set(OPS))
    for name, signature in documented.items():
        assert signature == OPS[name].signature, name


def _settings(tmp_path: Path) -> NodeSettings:
    return NodeSettings(port=0, admin_port=0, data_dir=tmp_path, profile="local")


def _routed(dispatcher: Dispatcher) -> set[str]:
    """The ops the dispatcher has a handler for (data ops go to the coordinator)."""
    return {name for name, (_, route, _, _) in dispatcher._ops.items() if route is not _unrouted}


@pytest.mark.trio
async def test_the_node_and_the_simulation_build_the_same_parts(tmp_path: Path) -> None:
    node = Node(_settings(tmp_path))
    mesh = SimMesh(1, 3)
    sim = mesh.nodes["n0"].parts
    async with trio.open_nursery() as nursery:
        await nursery.start(node.serve)
        real = node.parts
        assert isinstance(real, Assembly) and isinstance(sim, Assembly)
        assert _routed(real.dispatcher) == _routed(sim.dispatcher)
        for parts in (real, sim):
            s = parts.settings
            rate = max(AE_MIN_RATE, s.handoff_rate // AE_RATE_SHARE)
            assert parts.antientropy._budget.rate == rate
            assert parts.hints.max_bytes_per_target == max(
                1, s.hint_max_bytes // HINT_SHARE_PER_TARGET
            )
            assert parts.replicator._ring_version() == parts.coordinator.ring_version
            assert parts.handoff.dataplane is parts.coordinator
        nursery.cancel_scope.cancel()


SCENARIO: list[tuple[str, list[Any]]] = [
    ("PING", []),
    ("SET", [b"user:1", b"alice", {}]),
    ("GET", [b"user:1"]),
    ("INCR", [b"hits"]),
    ("INCRBY", [b"hits", 41]),
    ("HSET", [b"profile", b"name", b"alice", b"plan", b"pro"]),
    ("HGETALL", [b"profile"]),
    ("RPUSH", [b"log", b"a", b"b", b"c"]),
    ("LRANGE", [b"log", 0, -1]),
    ("SADD", [b"tags", b"x", b"y"]),
    ("SMEMBERS", [b"tags"]),
    ("ZADD", [b"board", 2.0, b"bob", 1.0, b"amy"]),
    ("ZRANGE", [b"board", 0, -1, {"withscores": True}]),
    ("MSET", [b"a", b"1", b"b", b"2", b"c", b"3"]),
    ("MGET", [b"a", b"b", b"c", b"nope"]),
    ("EXISTS", [b"a", b"b", b"nope"]),
    ("DELETE", [b"a", b"b", b"nope"]),
    ("GET", [b"a"]),
    ("SET", [b"user:1", b"bob", {"nx": True}]),
    ("LPUSH", [b"user:1", b"x"]),
    ("NS_LIST", []),
]


def _comparable(result: Any) -> Any:
    if isinstance(result, dict):
        return {k: _comparable(v) for k, v in result.items()}
    if isinstance(result, list):
        return [_comparable(v) for v in result]
    return result


@pytest.mark.trio
async def test_one_scenario_gives_the_same_answers_on_the_node_and_in_the_simulation(
    tmp_path: Path,
) -> None:
    """A one-node mesh answers a scenario of data and node ops alike, real or simulated."""

    real_answers: list[Any] = []
    async with trio.open_nursery() as nursery:
        info: NodeInfo = await nursery.start(serve, _settings(tmp_path))
        for op, args in SCENARIO:
            try:
                answer = await call_once(info.data_address, op, list(args), namespace="default")
                real_answers.append(_comparable(answer))
            except CommandError as exc:
                real_answers.append(("error", exc.code.value))
        nursery.cancel_scope.cancel()

    sim_answers: list[Any] = []

    async def simulated() -> None:
        mesh = SimMesh(7, 1)
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            for op, args in SCENARIO:
                try:
                    sim_answers.append(_comparable(await mesh.client("n0", "default", op, *args)))
                except CommandError as exc:
                    sim_answers.append(("error", exc.code.value))
            nursery.cancel_scope.cancel()

    await trio.to_thread.run_sync(
        lambda: trio.run(simulated, clock=trio.testing.MockClock(autojump_threshold=0))
    )
    assert sim_answers == real_answers
