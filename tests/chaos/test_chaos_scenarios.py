"""Short fault scenarios against three real nodes in network namespaces, with every checker.

Each test plays one fixed schedule (its seed is in the test) with clients on both sides and in
the harness's hub: per client endpoint a smart and a plain client, writing, reading and
deleting in one namespace per consistency level. After the heal every checker must pass: no
acknowledged ``quorum``/``all`` write lost (``one`` losses are counted), nothing resurrected,
every owner converged within 30 s, one ring and one membership view, config changes only on
a Raft majority, hints drained and fds back.

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
from meshcache.testing.chaos.scenarios import (
    CycleReport,
    Schedule,
    Step,
    Workload,
    make_schedule,
    run_cycle,
)

pytestmark = pytest.mark.chaos

WORKLOAD = Workload(rate=20.0, keys=30, timeout=4.0)


def _run(cluster: ChaosCluster, schedule: Schedule, cycle: int) -> CycleReport:
    report = run_cycle(cluster, schedule, cycle=cycle, workload=WORKLOAD)
    print(report.summary())
    for name, sides in report.availability.items():
        print(f"  {name}: {sides}")
    return report


def _assert_checks(report: CycleReport) -> None:
    failed = {c.name: c.findings[:10] for c in report.checks if not c.ok}
    assert not failed, f"{report.summary()}\n{failed}"
    writes = report.check("writes").counts
    assert writes["quorum_acked"] > 0 and writes["one_acked"] > 0, writes


def test_majority_minority_partition_and_heal(chaos_cluster: ChaosCluster) -> None:
    schedule = make_schedule(
        "partition", "test:partition", chaos_cluster.node_names, ["c0", "c1"], duration=8.0
    )
    report = _run(chaos_cluster, schedule, 1)
    _assert_checks(report)
    during = report.availability["during"]
    assert during["majority"]["writes_ok"] > 0, during
    assert during["hub"]["writes_ok"] > 0, during
    config = report.check("config").counts
    assert not any(k.startswith("minority_ok_during") for k in config), config


def test_kill_9_and_restart(chaos_cluster: ChaosCluster) -> None:
    schedule = make_schedule(
        "kill", "test:kill", chaos_cluster.node_names, ["c0", "c1"], duration=8.0
    )
    report = _run(chaos_cluster, schedule, 2)
    _assert_checks(report)
    assert report.availability["during"]["hub"]["writes_ok"] > 0


def test_one_way_partition(chaos_cluster: ChaosCluster) -> None:
    schedule = make_schedule(
        "one-way", "test:one-way", chaos_cluster.node_names, ["c0", "c1"], duration=8.0
    )
    report = _run(chaos_cluster, schedule, 3)
    _assert_checks(report)


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
    report = _run(chaos_cluster, schedule, 4)
    _assert_checks(report)
    assert report.availability["during"]["all"]["writes_ok"] > 0
