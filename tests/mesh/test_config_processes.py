"""The config plane across real processes: voters, non-voters, failover, journals, CAS."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from meshcache import Client, CommandError
from meshcache.ring import RingState
from meshcache.testing.nodes import NodeProcess
from meshcache.testing.ports import free_port_pairs
from tests.mesh.helpers import wait_for

pytestmark = pytest.mark.slow


def call(node: NodeProcess, method: str, *args: Any) -> Any:
    with Client(node.data, timeout=15) as c:
        return getattr(c, method)(*args)


def safe_call(node: NodeProcess, method: str, *args: Any) -> Any:
    try:
        return call(node, method, *args)
    except Exception:
        return None


class Cluster:
    """Three voters and two non-voters on loopback, all in their own processes."""

    def __init__(self, stack: ExitStack, tmp_path: Path) -> None:
        self.stack = stack
        self.tmp = tmp_path
        self.password = tmp_path / "raft.password"
        self.password.write_text("correct horse battery staple\n")
        self.ports = free_port_pairs(3)
        self.peers = ",".join(f"127.0.0.1:{p + 1}" for p in self.ports)
        self.voters = [self.start_voter(i) for i in range(3)]
        self.others = [
            stack.enter_context(
                NodeProcess(tmp_path / f"o{i}", "--profile", "local", "--join", self.voters[0].data)
            )
            for i in range(2)
        ]

    def start_voter(self, i: int) -> NodeProcess:
        node = NodeProcess(
            self.tmp / f"v{i}",
            "--profile",
            "local",
            "--raft-peers",
            self.peers,
            "--raft-password-file",
            str(self.password),
            *(["--join", f"127.0.0.1:{self.ports[0]}"] if i else []),
            port=self.ports[i],
        )
        return self.stack.enter_context(node)

    @property
    def all(self) -> list[NodeProcess]:
        return [*self.voters, *self.others]

    def leader(self, among: list[NodeProcess] | None = None) -> NodeProcess:
        holder: list[NodeProcess] = []

        def found() -> bool:
            for v in among or self.voters:
                status = safe_call(v, "raft_status")
                if status and status["role"] == "leader" and status["has_quorum"]:
                    holder[:] = [v]
                    return True
            return False

        wait_for(found, 20, "a Raft leader")
        return holder[0]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with ExitStack() as stack:
        c = Cluster(stack, tmp_path)

        def settled() -> bool:
            rings = [safe_call(n, "ring") or {} for n in c.all]
            return len({r.get("version") for r in rings}) == 1 and all(
                len(r.get("members", [])) == 5
                and all(m.get("state") == RingState.ACTIVE for m in r["members"])
                for r in rings
            )

        # Every member active and every node on the same version: no registration or
        # promotion still under way to change the config under a test.
        wait_for(settled, 40, "all five nodes active on one ring version, everywhere")
        yield c


def policy_everywhere(c: Cluster, name: str, expected: dict[str, Any]) -> Callable[[], bool]:
    def check() -> bool:
        for n in c.all:
            policies = safe_call(n, "ns_list") or {}
            policy = policies.get(name)
            if policy is None or any(policy.get(k) != v for k, v in expected.items()):
                return False
            info = safe_call(n, "info") or {}
            applied = info.get("namespaces", {}).get(name, {}).get("policy", {})
            if any(applied.get(k) != v for k, v in expected.items()):
                return False
        return True

    return check


def test_config_changes_through_any_node_reach_every_node(cluster: Cluster) -> None:
    c = cluster
    # Through a non-voter: forwarded to a voter, committed, pulled by everyone, applied.
    call(c.others[0], "ns_set", "sessions", {"eviction": "lfu", "max_bytes": 1 << 20})
    wait_for(
        policy_everywhere(c, "sessions", {"eviction": "lfu", "max_bytes": 1 << 20}),
        10,
        "the new namespace on every node",
    )
    with Client(c.others[1].data) as client:
        assert client.set("k", "v", namespace="sessions")
        assert client.get("k", namespace="sessions") == b"v"
    # Live change: shrinking max_bytes evicts down to the bound on the node holding data.
    with Client(c.others[1].data) as client:
        for i in range(200):
            client.set(f"key{i}", b"x" * 1000, namespace="sessions")
    call(c.voters[1], "ns_set", "sessions", {"max_bytes": 50_000})
    wait_for(
        lambda: (safe_call(c.others[1], "info") or {})["namespaces"]["sessions"]["bytes"] <= 50_000,
        10,
        "the shrunk namespace to be evicted down to its bound",
    )
    # Dropping it removes it everywhere.
    assert call(c.others[1], "ns_drop", "sessions") is True
    wait_for(
        lambda: all("sessions" not in (safe_call(n, "ns_list") or {"sessions": 1}) for n in c.all),
        10,
        "the namespace to disappear everywhere",
    )


def test_invalid_changes_are_refused_and_change_nothing(cluster: Cluster) -> None:
    before = call(cluster.others[0], "config")
    for fields, code in [
        ({"eviction": "fifo"}, "INVALID_COMMAND"),
        ({"max_bytes": -1}, "INVALID_COMMAND"),
        ({"replicas": 0}, "INVALID_COMMAND"),
        ({"colour": "blue"}, "INVALID_COMMAND"),
    ]:
        with pytest.raises(CommandError) as err:
            call(cluster.others[0], "ns_set", "default", fields)
        assert err.value.code == code, fields
    with pytest.raises(CommandError) as err:
        call(cluster.voters[0], "ns_drop", "nope")
    assert err.value.code == "NO_SUCH_NAMESPACE"
    with pytest.raises(CommandError) as err:
        call(cluster.voters[0], "ns_drop", "default")
    assert err.value.code == "INVALID_COMMAND"
    assert call(cluster.voters[0], "config")["version"] == before["version"]


def test_conflicting_compare_and_set_changes_exactly_one_wins(cluster: Cluster) -> None:
    version = call(cluster.voters[0], "config")["version"]

    def propose(node: NodeProcess, ttl: int) -> Any:
        command = {
            "op": "update_namespace",
            "expected_version": version,
            "name": "default",
            "changes": {"default_ttl": ttl},
        }
        try:
            return call(node, "config_propose", command)
        except CommandError as exc:
            return str(exc.code)

    # Sent at the same time, through a non-voter and through a voter, both based on `version`.
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(propose, (cluster.others[0], cluster.voters[2]), (10, 20)))
    committed = [r for r in results if isinstance(r, dict)]
    assert len(committed) == 1, results
    assert [r for r in results if not isinstance(r, dict)] == ["VERSION_CONFLICT"]
    assert committed[0]["version"] == version + 1
    ttl = committed[0]["namespaces"]["default"]["default_ttl"]
    wait_for(
        lambda: all(
            (safe_call(n, "ns_list") or {}).get("default", {}).get("default_ttl") == ttl
            for n in cluster.all
        ),
        10,
        "the winner's policy everywhere",
    )


def test_leader_failover_and_a_voter_restarted_from_its_journal(cluster: Cluster) -> None:
    c = cluster
    leader = c.leader()
    index = c.voters.index(leader)
    leader.kill()
    survivors = [v for v in c.voters if v is not leader]
    start = time.monotonic()
    wait_for(
        lambda: safe_call(c.others[0], "ns_set", "after_failover", {"max_items": 10}) is not None,
        15,
        "a commit under a new leader",
    )
    assert time.monotonic() - start < 15
    assert c.leader(survivors) in survivors
    # The old leader comes back from its journal and catches up, as a follower.
    c.voters[index] = c.start_voter(index)
    wait_for(
        policy_everywhere(c, "after_failover", {"max_items": 10}),
        20,
        "the restarted voter to catch up",
    )

    def same_version() -> bool:
        mine = safe_call(c.voters[index], "raft_status")  # None until its first Raft tick
        theirs = safe_call(survivors[0], "raft_status")
        return bool(mine and theirs and mine["config_version"] == theirs["config_version"])

    wait_for(same_version, 20, "the restarted voter's Raft state to match the leader's")


def test_a_minority_cannot_commit_and_says_so_while_data_keeps_working(cluster: Cluster) -> None:
    c = cluster
    c.voters[1].kill()
    c.voters[2].kill()
    started = time.monotonic()
    with pytest.raises(CommandError) as err:
        call(c.voters[0], "ns_set", "minority", {"max_items": 5})
    assert err.value.code in ("NO_QUORUM", "PROPOSAL_TIMEOUT")
    assert time.monotonic() - started < 12
    assert "minority" not in call(c.voters[0], "ns_list")
    # AP: data reads and writes never touch Raft.
    with Client(c.voters[0].data) as client:
        assert client.set("still", "works") and client.get("still") == b"works"
