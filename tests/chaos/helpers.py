"""Helpers of the chaos tests."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest

from meshcache.testing.chaos.cluster import ChaosCluster
from meshcache.testing.chaos.netns import missing_privileges
from meshcache.testing.chaos.scenarios import CycleReport, Schedule, Workload, run_cycle

#: The scenarios' clients: 20 ops/s each over 30 keys per namespace (conditional writes among
#: them), and a 4 s timeout, below the node's 5 s forward timeout (see test_chaos_scenarios.py).
WORKLOAD = Workload(rate=20.0, keys=30, timeout=4.0)
#: The same with two hot keys: a smart reader per endpoint at 150 reads/s, a writer per key
#: reading its writes back through every node.
HOT_WORKLOAD = dataclasses.replace(WORKLOAD, hot_keys=2)


def require_chaos(*, faketime: bool = False) -> None:
    """Skip (fail under ``CI=true``) unless this machine can run the chaos harness."""
    problem = missing_privileges(faketime=faketime)
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"chaos tests never skip under CI=true: {problem}", pytrace=False)
    pytest.skip(f"chaos: {problem}")


def run(
    cluster: ChaosCluster,
    schedule: Schedule,
    cycle: int,
    workload: Workload = WORKLOAD,
    **options: Any,
) -> CycleReport:
    """Run one cycle (with :data:`WORKLOAD` unless told); print its summary and availability
    figures."""
    report = run_cycle(cluster, schedule, cycle=cycle, workload=workload, **options)
    print(report.summary())
    for name, sides in report.availability.items():
        print(f"  {name}: {sides}")
    return report


def assert_checks(report: CycleReport) -> None:
    """Every checker passed, and writes at ``one`` and ``quorum`` were acknowledged."""
    failed = {c.name: c.findings[:10] for c in report.checks if not c.ok}
    assert not failed, f"{report.summary()}\n{failed}"
    writes = report.check("writes").counts
    assert writes["quorum_acked"] > 0 and writes["one_acked"] > 0, writes
    conditional = report.check("conditional").counts
    assert any(k.endswith("_incr_ok") for k in conditional), conditional
    assert any(k.endswith("_stored_True") for k in conditional), conditional


def assert_hot(report: CycleReport) -> None:
    """The hot keys were hot: copies served reads that the hot checker judged."""
    hot = report.check("hot").counts
    print(f"  hot: {hot}")
    assert hot["reads_from_copies"] > 0 and hot["keys_turned_hot"] > 0, hot
    assert hot["reads"] > 0, hot
