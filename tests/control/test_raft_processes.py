"""Real pysyncobj voters, each in its own OS process on loopback ports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshcache.control._voter_main import VoterProcess
from meshcache.testing.ports import free_port

pytestmark = pytest.mark.slow

#: Bound on leader failover in these tests (the issue's target is 3 s; CI machines are busy).
FAILOVER_BOUND = 6.0


def create(version: int, name: str) -> dict[str, Any]:
    return {"op": "create_namespace", "expected_version": version, "name": name}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[VoterProcess]]:
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    voters = [
        VoterProcess(a, [p for p in addresses if p != a], tmp_path / f"v{i}")
        for i, a in enumerate(addresses)
    ]
    try:
        for voter in voters:
            voter.launch()
        for voter in voters:
            voter.wait_ready()
        yield voters
    finally:
        for voter in voters:
            voter.kill()


def propose_until_ok(voter: VoterProcess, command: dict[str, Any], bound: float) -> dict[str, Any]:
    """Propose through ``voter`` until it commits or ``bound`` seconds pass."""
    deadline = time.monotonic() + bound
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no commit through {voter.address} within {bound} s"
        answer = voter.request("propose", command=command, timeout=min(left, 2.0))
        if answer["ok"]:
            return answer
        assert answer["error"] in ("NoQuorumError", "ProposalTimeoutError"), answer


def leader_of(voters: list[VoterProcess]) -> VoterProcess:
    leader = voters[0].request("status")["status"]["leader"]
    return next(v for v in voters if v.address == leader)


def test_commit_read_everywhere_failover_and_restart(cluster: list[VoterProcess]) -> None:
    first = propose_until_ok(cluster[0], create(0, "users"), bound=10)
    assert first["config"]["version"] == 1
    for voter in cluster:
        answer = voter.request("wait_version", version=1, timeout=5)
        assert "users" in answer["config"]["namespaces"]

    # Commit through a follower as well as the leader.
    leader = leader_of(cluster)
    follower = next(v for v in cluster if v is not leader)
    assert propose_until_ok(follower, create(1, "sessions"), bound=5)["config"]["version"] == 2

    # kill -9 the leader: a survivor commits within the bound.
    leader.kill()
    survivor = next(v for v in cluster if v.running)
    killed_at = time.monotonic()
    propose_until_ok(survivor, create(2, "after-failover"), bound=FAILOVER_BOUND)
    assert time.monotonic() - killed_at < FAILOVER_BOUND

    # The killed voter restarts from its journal and catches up.
    leader.start()
    caught_up = leader.request("wait_version", version=3, timeout=10)
    assert caught_up["ok"], caught_up
    assert set(caught_up["config"]["namespaces"]) == {
        "default",
        "users",
        "sessions",
        "after-failover",
    }


def test_minority_cannot_commit_and_says_so(cluster: list[VoterProcess]) -> None:
    propose_until_ok(cluster[0], create(0, "users"), bound=10)
    lone = cluster[0]
    for voter in cluster[1:]:
        voter.kill()
    started = time.monotonic()
    answer = lone.request("propose", command=create(1, "nope"), timeout=1.5)
    assert not answer["ok"]
    assert answer["error"] == "NoQuorumError", answer
    assert "no Raft quorum" in answer["message"]
    assert time.monotonic() - started < 3.0  # the 1.5 s timeout plus the pipe round trip
    assert lone.request("config")["config"]["version"] == 1


def test_wrong_password_does_not_join(tmp_path: Path) -> None:
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    voters = [
        VoterProcess(
            a,
            [p for p in addresses if p != a],
            tmp_path / f"v{i}",
            password="wrong" if i == 2 else "secret",
        )
        for i, a in enumerate(addresses)
    ]
    try:
        for voter in voters:
            voter.launch()
        for voter in voters:
            voter.wait_ready()
        good, intruder = voters[0], voters[2]
        propose_until_ok(good, create(0, "users"), bound=10)
        answer = intruder.request("propose", command=create(0, "evil"), timeout=1.5)
        assert answer["error"] == "NoQuorumError", answer
        status = intruder.request("status")["status"]
        assert status["connected"] == [] and status["leader"] is None
        assert intruder.request("config")["config"]["version"] == 0
        assert intruder.address not in good.request("status")["status"]["connected"]
        assert "evil" not in good.request("config")["config"]["namespaces"]
    finally:
        for voter in voters:
            voter.kill()


def test_replace_a_dead_voter(cluster: list[VoterProcess], tmp_path: Path) -> None:
    propose_until_ok(cluster[0], create(0, "users"), bound=10)
    dead = cluster[2]
    dead.kill()
    alive = cluster[:2]
    answer = alive[0].request("remove_voter", address=dead.address, timeout=5)
    assert answer["ok"], answer
    fresh_address = f"127.0.0.1:{free_port()}"
    fresh = VoterProcess(fresh_address, [v.address for v in alive], tmp_path / "fresh")
    try:
        fresh.start()
        answer = alive[1].request("add_voter", address=fresh_address, timeout=5)
        assert answer["ok"], answer
        assert fresh.request("wait_version", version=1, timeout=10)["ok"]
        voters = alive[0].request("status")["status"]["voters"]
        assert sorted(voters) == sorted([*(v.address for v in alive), fresh_address])
        # The group of three commits again with the new voter.
        propose_until_ok(fresh, create(1, "sessions"), bound=5)
    finally:
        fresh.kill()
