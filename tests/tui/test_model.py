"""The console's model, actions and data-source helpers, without a terminal or a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from meshcache.errors import ConfigError
from meshcache.ring import Ring, RingMember
from meshcache.tui import text
from meshcache.tui.actions import (
    Refused,
    changes_of,
    check_drain,
    check_edit,
    check_remove,
    describe_changes,
    form_values,
    parse_form,
    remove_member_command,
    update_namespace_command,
)
from meshcache.tui.model import ClusterModel, MemberRow, Snapshot
from meshcache.tui.source import (
    LiveSource,
    NodeReply,
    Poll,
    RecordedSource,
    describe_failure,
    parse_counters,
    read_recording,
    write_recording,
)
from tests.tui.helpers import run
from tests.tui.recording import NODES, POLLS, recorded_polls


def replay(polls: list[Poll] | None = None) -> tuple[ClusterModel, Snapshot]:
    model = ClusterModel(NODES[0], refresh=1.0)
    snapshot = None
    for poll in polls if polls is not None else recorded_polls():
        snapshot = model.update(poll)
    assert snapshot is not None
    return model, snapshot


def member(snapshot: Snapshot, index: int) -> MemberRow:
    found = snapshot.member(NODES[index])
    assert found is not None
    return found


def test_members_states_and_roles_from_the_recording() -> None:
    _, snapshot = replay()
    assert [m.node_id for m in snapshot.members] == NODES
    assert [m.raft for m in snapshot.members] == ["leader", "voter", "voter", "member", "member"]
    assert [m.gossip for m in snapshot.members] == ["alive"] * 4 + ["dead"]
    assert [m.ring_state for m in snapshot.members] == ["active"] * 3 + ["leaving", "active"]
    dead = member(snapshot, 4)
    assert not dead.reachable and dead.keys is None and dead.ops is None
    assert dead.last_seen == pytest.approx(18.0, abs=0.1)  # last answer at t=11.05, poll at 29.05
    assert "Connection refused" in (dead.problem or "")
    assert snapshot.ring_version == 13 and snapshot.config_version == 13
    assert snapshot.reachable == 4 and not snapshot.lost


def test_ops_per_second_counts_client_ops_only() -> None:
    polls = recorded_polls()
    _, snapshot = replay(polls)
    last, before = polls[-1].replies[NODES[0]], polls[-2].replies[NODES[0]]
    assert last.requests is not None and before.requests is not None
    client_ops = sum(last.requests[op] - before.requests[op] for op in ("GET", "SET"))
    expected = client_ops / (last.at - before.at)
    assert member(snapshot, 0).ops == pytest.approx(expected)
    assert len(member(snapshot, 0).trend) == POLLS - 1


def test_latency_is_the_nodes_recent_data_op_figures_in_seconds() -> None:
    polls = recorded_polls()
    _, snapshot = replay(polls)
    info = polls[-1].replies[NODES[1]].info
    assert info is not None
    data = info["latency"]["data"]
    assert member(snapshot, 1).p50 == pytest.approx(data["p50_ms"] / 1000)
    assert member(snapshot, 1).p99 == pytest.approx(data["p99_ms"] / 1000)
    assert member(snapshot, 4).p50 is None  # unreachable: unknown, not stale


@pytest.mark.parametrize(
    "latency",
    [
        {"data": {"count": 0, "p50_ms": None, "p99_ms": None}},  # no client op in the window
        {"data": {"p50_ms": float("nan"), "p99_ms": -1.0}},
        {"data": {"p50_ms": "fast", "p99_ms": True}},
        {"data": [1, 2]},
        "garbage",
    ],
)
def test_latency_a_node_cannot_report_is_unknown(latency: Any) -> None:
    polls = recorded_polls()
    last = polls[-1].replies[NODES[0]]
    assert last.info is not None
    replies = {**polls[-1].replies, NODES[0]: replace(last, info={**last.info, "latency": latency})}
    polls[-1] = replace(polls[-1], replies=replies)
    _, snapshot = replay(polls)
    assert member(snapshot, 0).p50 is None and member(snapshot, 0).p99 is None
    assert text.latency(member(snapshot, 0).p50) == text.UNKNOWN


def test_hit_ratio_and_namespace_rates_are_deltas() -> None:
    _, snapshot = replay()
    rows = {n.name: n for n in snapshot.namespaces}
    assert set(rows) == {"default", "sessions", "pages"}
    sessions = rows["sessions"]
    assert sessions.replicas == 3 and sessions.consistency == "quorum"
    assert sessions.max_bytes == 256 * 1024 * 1024
    assert sessions.hit_ratio == pytest.approx(0.97, abs=0.01)
    assert sessions.evictions is not None and 4 * 3 <= sessions.evictions <= 4 * 7
    assert rows["pages"].expirations is not None and 4 * 20 <= rows["pages"].expirations <= 4 * 30
    assert sessions.applied == sessions.nodes == 4


def test_events_tell_what_changed() -> None:
    _, snapshot = replay()
    lines = [(e.node, e.text) for e in snapshot.events]
    dead = NODES[4]
    assert lines[0][1].startswith("connected: 5 members")
    for expected in [
        (dead, "is suspect (was alive)"),
        (dead, "is dead (was suspect)"),
        (NODES[3], "is leaving on the ring"),
        ("", "config version 12 -> 13 committed"),
        (NODES[3], "handed off 12000 records"),
    ]:
        assert expected in lines
    assert any(n == dead and t.startswith("unreachable: cannot reach") for n, t in lines)
    assert any("WRITE_FAILED errors sent" in t for _, t in lines)
    # Trouble counters are reported at most every 10 s per node, not at every poll.
    per_node = [t for n, t in lines if n == NODES[1] and t.startswith("reports")]
    assert len(per_node) == 2


def _reply(address: str, at: float, members: list[dict[str, Any]], **info: Any) -> NodeReply:
    return NodeReply(
        address,
        at,
        1000 + at,
        info={"node_id": address, "namespaces": {}, **info},
        members=members,
    )


def _gossip(name: str, state: str, incarnation: int) -> dict[str, Any]:
    return {"name": name, "address": name, "state": state, "incarnation": incarnation,
            "data_port": int(name.rsplit(":", 1)[1])}  # fmt: skip


def test_gossip_state_is_swims_newest_news() -> None:
    a, b, c = "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"
    model = ClusterModel(a)
    # a says c is alive at 4, b says c is dead at 4: at one incarnation dead wins.
    poll = Poll(
        1.0,
        1001.0,
        {
            a: _reply(a, 1.0, [_gossip(a, "alive", 1), _gossip(c, "alive", 4)]),
            b: _reply(b, 1.0, [_gossip(b, "alive", 1), _gossip(c, "dead", 4)]),
            c: NodeReply(c, 1.0, 1001.0, problem="cannot reach 10.0.0.3:1"),
        },
    )
    snapshot = model.update(poll)
    assert snapshot.member(c) is not None and snapshot.member(c).gossip == "dead"  # type: ignore[union-attr]
    # c came back and refuted with a higher incarnation: alive wins over the old death.
    poll = Poll(
        2.0,
        1002.0,
        {
            a: _reply(a, 2.0, [_gossip(c, "alive", 5)]),
            b: _reply(b, 2.0, [_gossip(c, "dead", 4)]),
            c: _reply(c, 2.0, [_gossip(c, "alive", 5)]),
        },
    )
    snapshot = model.update(poll)
    row = snapshot.member(c)
    assert row is not None and row.gossip == "alive" and row.reachable
    assert any(e.text == "is alive (was dead)" for e in snapshot.events)


def test_targets_start_at_the_entry_and_cover_every_member() -> None:
    model = ClusterModel(NODES[0])
    assert model.targets() == [NODES[0]]
    model.update(recorded_polls()[0])
    assert model.targets() == sorted(NODES)


def test_a_lost_cluster_and_its_return() -> None:
    polls = recorded_polls()[:3]
    model, _ = replay(polls)
    down = Poll(
        10.0,
        2000.0,
        {n: NodeReply(n, 10.0, 2000.0, problem=f"cannot reach {n}: refused") for n in NODES},
    )
    lost = model.update(down)
    assert lost.lost and lost.lost_since == 2000.0
    assert lost.problem == f"cannot reach {NODES[0]}: refused"
    assert all(not m.reachable for m in lost.members)
    # Everything still polled, the entry included, so a cluster that comes back is found.
    assert set(model.targets()) == set(NODES)
    back = model.update(recorded_polls()[3])
    assert not back.lost and back.lost_since is None
    texts = [e.text for e in back.events]
    assert any(t.startswith("cluster lost: no node answers") for t in texts)
    assert "cluster answers again: 5 nodes reachable" in texts


def test_first_answers_still_on_their_way_are_not_failures() -> None:
    model = ClusterModel(NODES[0])
    pending = NodeReply(NODES[0], 0.0, 0.0, problem="no answer yet", pending=True)
    snapshot = model.update(Poll(0.0, 0.0, {NODES[0]: pending}))
    assert not snapshot.lost and snapshot.members == () and snapshot.events == ()
    snapshot = model.update(recorded_polls()[0])
    assert [e.text for e in snapshot.events] == [
        "connected: 5 members, ring version 12, config version 12"
    ]


def test_an_entry_that_never_answered() -> None:
    model = ClusterModel("127.0.0.1:1")
    snapshot = model.update(
        Poll(0.0, 0.0, {"127.0.0.1:1": NodeReply("127.0.0.1:1", 0.0, 0.0, problem="refused")})
    )
    assert snapshot.lost and snapshot.problem == "refused"
    assert [m.node_id for m in snapshot.members] == ["127.0.0.1:1"]
    assert snapshot.events[0].text == "cannot reach the cluster: refused"


# -- actions ---------------------------------------------------------------------------------


def _row(**changes: Any) -> MemberRow:
    _, snapshot = replay(recorded_polls()[:2])
    from dataclasses import replace

    return replace(snapshot.members[0], **changes)


def test_drain_and_remove_refusals() -> None:
    alive = _row()
    assert check_drain(alive, read_only=False) is alive
    with pytest.raises(Refused, match="read-only"):
        check_drain(alive, read_only=True)
    with pytest.raises(Refused, match="read-only"):
        check_remove(alive, read_only=True)
    with pytest.raises(Refused, match="read-only"):
        check_edit(read_only=True)
    with pytest.raises(Refused, match="not dead: drain it instead"):
        check_remove(alive, read_only=False)
    dead = _row(gossip="dead", reachable=False)
    assert check_remove(dead, read_only=False) is dead
    with pytest.raises(Refused, match="does not answer"):
        check_drain(dead, read_only=False)
    with pytest.raises(Refused, match="already leaving"):
        check_drain(_row(ring_state="leaving"), read_only=False)
    with pytest.raises(Refused, match="select a node"):
        check_drain(None, read_only=False)


def test_commands_are_compare_and_set() -> None:
    assert remove_member_command("n1", 7) == {
        "op": "remove_member",
        "expected_version": 7,
        "node_id": "n1",
    }
    assert update_namespace_command("s", {"max_bytes": 5}, 9) == {
        "op": "update_namespace",
        "expected_version": 9,
        "name": "s",
        "changes": {"max_bytes": 5},
    }


def test_policy_form_round_trip_and_changes() -> None:
    policy = {"eviction": "lfu", "max_bytes": 256 * 1024**2, "default_ttl": 1800, "replicas": 3}
    values = form_values(policy)
    assert values == {
        "eviction": "lfu",
        "max_bytes": "256MiB",
        "max_items": "",
        "default_ttl": "1800",
        "replicas": "3",
        "consistency": "one",
    }
    assert changes_of(policy, parse_form(values)) == {}
    edited = {**values, "max_bytes": "512MiB", "max_items": "1000", "default_ttl": ""}
    changes = changes_of(policy, parse_form(edited))
    assert changes == {"max_bytes": 512 * 1024**2, "max_items": 1000, "default_ttl": None}
    assert describe_changes(policy, changes) == [
        "max_bytes: 256MiB -> 512MiB",
        "max_items: unbounded -> 1000",
        "default_ttl: 30m -> none",
    ]
    for field, bad, message in [
        ("max_bytes", "lots", "max bytes"),
        ("max_items", "-3", "max items"),
        ("default_ttl", "soon", "default TTL"),
        ("replicas", "0", "replicas"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_form({**values, field: bad})


# -- data source -----------------------------------------------------------------------------

METRICS = """# HELP meshcache_requests_total Requests handled, by op.
# TYPE meshcache_requests_total counter
meshcache_requests_total{op="GET"} 120.0
meshcache_requests_total{op="INFO"} 7.0
meshcache_errors_total{code="WRITE_FAILED"} 2.0
meshcache_items{namespace="default"} 3.0
"""


def test_parse_counters() -> None:
    requests, errors = parse_counters(METRICS)
    assert requests == {"GET": 120.0, "INFO": 7.0}
    assert errors == {"WRITE_FAILED": 2.0}


def test_recording_round_trip(tmp_path: Path) -> None:
    polls = recorded_polls()[:3]
    path = tmp_path / "recording.jsonl"
    write_recording(path, polls)
    assert read_recording(path) == polls


def test_recorded_source_refuses_actions() -> None:
    async def body() -> None:
        source = RecordedSource(recorded_polls()[:1])
        await source.poll([])
        assert source.finished
        with pytest.raises(Exception, match="recording"):
            await source.leave(NODES[0], 1.0)
        with pytest.raises(Exception, match="recording"):
            await source.propose([], {"op": "remove_member"})
        assert (await source.config([]))["version"] == 12
        assert source.refused == [f"LEAVE {NODES[0]}", "CONFIG_PROPOSE remove_member"]

    run(body())


def test_failures_say_whose_fault() -> None:
    from meshcache.errors import MeshcacheTimeout, RemoteProtocolError

    assert describe_failure("h:1", MeshcacheTimeout("x"), 3) == "no answer from h:1 within 3 s"
    assert "does not speak the meshcache protocol" in describe_failure(
        "h:1", RemoteProtocolError("bad frame"), 3
    )
    assert describe_failure("h:1", ConnectionRefusedError(111, "Connection refused"), 3) == (
        "cannot reach h:1: Connection refused"
    )


async def _garbage_server() -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\nthis is not meshcache\n" * 10)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_live_source_reports_a_node_answering_garbage() -> None:
    async def body() -> None:
        server, port = await _garbage_server()
        source = LiveSource(f"127.0.0.1:{port}", timeout=2.0, budget=2.0)
        try:
            poll = await source.poll([source.entry])
            reply = poll.replies[source.entry]
            assert reply.problem is not None
            assert "does not speak the meshcache protocol" in reply.problem
        finally:
            await source.aclose()
            server.close()
            await server.wait_closed()

    run(body())


def test_live_source_returns_within_its_budget_when_a_node_hangs() -> None:
    async def body() -> None:
        connections: list[asyncio.StreamWriter] = []

        async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(writer)  # accepts, never answers

        server = await asyncio.start_server(hang, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        source = LiveSource(f"127.0.0.1:{port}", timeout=1.0, budget=0.2)
        loop = asyncio.get_running_loop()
        try:
            started = loop.time()
            poll = await source.poll([source.entry])
            assert loop.time() - started < 0.6
            waiting = poll.replies[source.entry]
            assert waiting.pending and waiting.problem == f"no answer from {source.entry} yet"
            # The node's own deadline ends its poll with a clear message.
            await asyncio.sleep(1.2)
            poll = await source.poll([source.entry])
            assert poll.replies[source.entry].problem == f"no answer from {source.entry} within 1 s"
        finally:
            await source.aclose()
            for writer in connections:
                writer.close()
            server.close()
            await server.wait_closed()

    run(body())


def test_text_cells() -> None:
    assert (
        text.count(12_345) == "12.3k"
        and text.count(999) == "999"
        and text.count(None) == text.UNKNOWN
    )
    assert text.size(512) == "512B" and text.size(3 * 1024**2) == "3.0M"
    assert text.memory(1024, 4096) == "1.0K/4.0K" and text.memory(1024, None) == "1.0K"
    assert text.percent(0.973) == "97%" and text.ago(0.2) == "now" and text.ago(75) == "75s ago"
    assert text.sparkline([0, 1, 2, 3], 4) == "▁▃▆█"
    assert text.sparkline([], 3) == "   "
    assert text.clock(1_700_000_000.0, utc=True) == "22:13:20"


@pytest.mark.parametrize(
    ("policy", "shown"),
    [
        ({"eviction": "lru"}, "off"),
        ({"loader": None}, "off"),
        ({"loader": {"source": "pg", "query": "q"}}, "pg"),
        (
            {"loader": {"source": "pg", "query": "q", "ttl": 60, "channel": "c",
                        "refresh_ahead": 0.9, "stale_if_error": 300}},
            "pg ttl 60s notify refresh 90% stale 5m",
        ),
        ({"loader": {"source": "pg", "ttl": "soon", "refresh_ahead": True}}, "pg"),
        ({"loader": "yes"}, text.UNKNOWN),
        ({"loader": {"query": "q"}}, text.UNKNOWN),
        ("garbage", text.UNKNOWN),
    ],
)  # fmt: skip
def test_loader_in_short(policy: Any, shown: str) -> None:
    assert text.loader(policy) == shown


def test_the_namespaces_view_shows_each_loader() -> None:
    _, snapshot = replay()
    loaders = {n.name: n.loader for n in snapshot.namespaces}
    pages = "pg ttl 10m notify refresh 90%"
    assert loaders == {"default": "off", "sessions": "off", "pages": pages}


def test_ranges_moving_are_summed_over_the_members_that_report_them() -> None:
    polls = recorded_polls()
    _, during = replay(polls[:22])
    assert during.ranges_moving == 6
    assert {r.node_id: r.moving for r in during.ring}[NODES[3]] == 6
    _, after = replay(polls)
    assert after.ranges_moving == 0


# --- distinct keys while members do not answer ----------------------------------------------


def _ring_answer(ring: Ring) -> dict[str, Any]:
    """What RING answers: the members with their share of the key space."""
    shares = ring.shares()
    members = [{**m.to_mapping(), "share": round(shares[m.node_id], 4)} for m in ring.members]
    return {
        "version": ring.version,
        "vnodes_per_weight": ring.vnodes_per_weight,
        "members": members,
    }


def _holding(
    address: str, at: float, ring: Mapping[str, Any], replicas: int, items: int
) -> NodeReply:
    """A node's answer: it holds ``items`` copies of keys in ``default`` (10 bytes each)."""
    policy = {"eviction": "lru", "replicas": replicas, "consistency": "one"}
    figures = {"items": items, "bytes": 10 * items, "policy": policy}
    return NodeReply(
        address,
        at,
        1000 + at,
        info={"node_id": address, "namespaces": {"default": figures}},
        members=[],
        ring=ring,
        config={"version": 1, "namespaces": {"default": policy}},
    )


def _keys_row(
    ring: Ring | Mapping[str, Any], replicas: int, items: Mapping[str, int], down: set[str]
) -> tuple[int | None, bool]:
    """The Namespaces view's keys of ``default`` when the nodes in ``down`` do not answer."""
    answer = _ring_answer(ring) if isinstance(ring, Ring) else ring
    model = ClusterModel(next(iter(items)))
    replies = {
        a: NodeReply(a, 1.0, 1001.0, problem=f"cannot reach {a}")
        if a in down
        else _holding(a, 1.0, answer, replicas, n)
        for a, n in items.items()
    }
    (row,) = model.update(Poll(1.0, 1001.0, replies)).namespaces
    return row.keys, row.keys_estimated


def _placed(ring: Ring, replicas: int, keys: int) -> dict[str, list[bytes]]:
    """The keys ``key:0``.. each node holds a copy of, by the ring."""
    held: dict[str, list[bytes]] = {m.node_id: [] for m in ring.members}
    for i in range(keys):
        key = f"key:{i}".encode()
        for owner in ring.owners(key, replicas):
            held[owner.node_id].append(key)
    return held


def test_keys_do_not_count_the_copies_of_a_member_that_does_not_answer() -> None:
    a, b = "10.0.0.1:7400", "10.0.0.2:7400"
    ring = Ring([RingMember(a, a), RingMember(b, b)], 3)
    # Replicas 2 on two members: each holds every key; b was killed.
    assert _keys_row(ring, 2, {a: 140, b: 140}, down={b}) == (140, True)
    assert _keys_row(ring, 2, {a: 140, b: 140}, down=set()) == (140, False)


def test_keys_while_a_member_is_down_match_the_keys_the_others_hold() -> None:
    nodes = [f"10.0.0.{i}:7400" for i in range(1, 6)]
    ring = Ring([RingMember(n, n, zone="ab"[i % 2]) for i, n in enumerate(nodes)], 7)
    for replicas, down in [(2, {nodes[4]}), (3, {nodes[1], nodes[3]}), (1, {nodes[0]})]:
        held = _placed(ring, replicas, 20_000)
        visible = {k for n, keys in held.items() if n not in down for k in keys}
        keys, estimated = _keys_row(ring, replicas, {n: len(k) for n, k in held.items()}, down)
        assert estimated
        assert keys == pytest.approx(len(visible), rel=0.03), (replicas, down)
        everyone, estimated = _keys_row(ring, replicas, {n: len(k) for n, k in held.items()}, set())
        assert (everyone, estimated) == (20_000, False)


def test_keys_without_a_usable_ring_count_a_copy_per_answering_owner() -> None:
    a, b, c = "10.0.0.1:7400", "10.0.0.2:7400", "10.0.0.3:7400"
    # An answer the model cannot place keys by (a member without an address).
    ring = {"version": 2, "members": [{"node_id": n, "state": "active"} for n in (a, b, c)]}
    assert _keys_row(ring, 3, {a: 90, b: 90, c: 90}, down=set()) == (90, False)
    # Two answer: each key has at most two copies on them.
    assert _keys_row(ring, 3, {a: 90, b: 90, c: 90}, down={c}) == (90, True)
