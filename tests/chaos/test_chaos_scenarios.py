"""Short fault scenarios against three real nodes in network namespaces, with every checker:
a majority/minority partition, kill -9 and restart, a one-way partition, 20 % loss, SIGSTOP
longer than the suspicion timeout (clock skew: ``test_chaos_clock.py``).

Each test plays one fixed schedule (its seed is in the test) with clients on both sides and in
the harness's hub: per client endpoint a smart and a plain client, writing, reading and
deleting in one namespace per consistency level, with conditional writes (``SET NX``/``XX``,
``GETS`` + ``CAS``, ``INCR``) among them. After the heal every checker must pass: no
acknowledged ``quorum``/``all`` write lost (``one`` losses are counted), nothing resurrected,
every conditional answer explained by the history, every owner converged within 30 s, one
ring and one membership view, config changes only on a Raft majority, hints drained and fds
back. The partition and the loss scenarios add hot keys (``chaos-hot``): read-your-writes
through the node written through, no copy staler than its lease, no deleted key served past
it.

The clients' timeout (4 s) is below the node's forward timeout (5 s): a client gives up on a
forwarded write before the node fails it over to another owner, so the write is *unknown*
and may legitimately apply late. With a longer client timeout the node can acknowledge the
failed-over write and then apply the first forward again when the cut heals, overwriting
newer acknowledged writes: that bug has its own deterministic test
(``test_chaos_late_forward.py``) and must not make these tests flaky.
"""

from __future__ import annotations

import pytest

from meshcache.testing.chaos.cluster import ChaosCluster
from meshcache.testing.chaos.scenarios import Schedule, Step, make_schedule
from tests.chaos.helpers import HOT_WORKLOAD, assert_checks, assert_hot, run

pytestmark = pytest.mark.chaos


def test_majority_minority_partition_and_heal(chaos_cluster: ChaosCluster) -> None:
    schedule = make_schedule(
        "partition", "test:partition", chaos_cluster.node_names, ["c0", "c1"], duration=8.0
    )
    report = run(chaos_cluster, schedule, 1, HOT_WORKLOAD)
    assert_checks(report)
    assert_hot(report)
    during = report.availability["during"]
    assert during["majority"]["writes_ok"] > 0, during
    assert during["hub"]["writes_ok"] > 0, during
    config = report.check("config").counts
    assert not any(k.startswith("minority_ok_during") for k in config), config


def test_kill_9_and_restart(chaos_cluster: ChaosCluster) -> None:
    schedule = make_schedule(
        "kill", "test:kill", chaos_cluster.node_names, ["c0", "c1"], duration=8.0
    )
    report = run(chaos_cluster, schedule, 2)
    assert_checks(report)
    assert report.availability["during"]["hub"]["writes_ok"] > 0


def test_one_way_partition(chaos_cluster: ChaosCluster) -> None:
    schedule = make_schedule(
        "one-way", "test:one-way", chaos_cluster.node_names, ["c0", "c1"], duration=8.0
    )
    report = run(chaos_cluster, schedule, 3)
    assert_checks(report)


def test_twenty_percent_loss(chaos_cluster: ChaosCluster) -> None:
    everyone = [*chaos_cluster.node_names, *chaos_cluster.client_names]
    spec = {"shape": "loss", "endpoints": everyone, "p": 0.2}
    schedule = Schedule(
        kind="loss",
        seed="test:loss",
        duration=8.0,
        steps=(Step(0.0, "faults", spec),),
        sides={"c0": "all", "c1": "all"},
        plain={"c0": "n0", "c1": "n1"},
    )
    report = run(chaos_cluster, schedule, 4, HOT_WORKLOAD)
    assert_checks(report)
    assert_hot(report)  # loss: some updates of the copies are lost, the lease bounds them
    assert report.availability["during"]["all"]["writes_ok"] > 0


def test_sigstop_longer_than_the_suspicion_timeout(chaos_cluster: ChaosCluster) -> None:
    schedule = Schedule(
        kind="pause",
        seed="test:pause",
        duration=6.0,
        steps=(Step(0.0, "pause", {"node": "n1"}), Step(4.0, "resume", {"node": "n1"})),
        sides={"c0": "all", "c1": "all"},
        plain={"c0": "n0", "c1": "n2"},
    )
    report = run(chaos_cluster, schedule, 5)
    assert_checks(report)
