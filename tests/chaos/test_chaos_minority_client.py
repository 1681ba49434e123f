"""A smart client on the minority side of a partition keeps writing: it routes around the nodes
it cannot reach.

Three nodes in separate network namespaces; ``n0`` and client endpoint ``c0`` are cut off from
``n1``, ``n2`` and ``c1`` for 8 s. A smart client (``meshcache.Client``, default 5 s timeout)
on each side writes fresh keys at ``one``, at most 100/s. For two keys in three the minority
client's first owner by the ring is a node it cannot reach. Without a way around, it waited its
whole timeout there and failed, again and again (about 1 write/s), although ``n0``, which it
reaches, takes the write (it stands in for unreachable owners). The client's circuit breakers
(``meshcache/client/breaker.py``) open on the first timed-out request, learn from ``n0``'s
gossip that the other nodes are dead, and send every later write to ``n0`` at once. The test
passes when, during the cut, the minority client writes at least a quarter as fast as it did
before the cut (the first write after the cut still waits its 5 s timeout), with a median
write under 250 ms. The figures before, during and after the cut, and the majority client's,
are printed (``pytest -s``) and docs/chaos.md records them.
"""

from __future__ import annotations

import json

import pytest

from meshcache.testing.chaos.cluster import ChaosCluster
from meshcache.testing.chaos.scenarios import Schedule, Step, Workload, run_cycle

pytestmark = pytest.mark.chaos

CUT = 8.0
WORKLOAD = Workload(
    rate=100.0,
    keys=1_000_000,  # every write a fresh key, as in the report
    timeout=5.0,  # meshcache.Client's default
    levels=("one",),
    hub_client=False,
    plain_clients=False,
    writes=1.0,
    reads=0.0,
    deletes=0.0,
)


class MinorityStarved(AssertionError):
    """During the cut the minority side's client wrote at under a quarter of its own rate
    before the cut, or its median write took over 250 ms."""


def test_a_smart_client_on_the_minority_side_keeps_writing(chaos_cluster: ChaosCluster) -> None:
    schedule = Schedule(
        kind="minority-client",
        seed="test:minority-client",
        duration=CUT,
        steps=(
            Step(0.0, "faults", {"shape": "partition", "sides": [["n0", "c0"],
                                                                  ["n1", "n2", "c1"]]}),
        ),
        sides={"c0": "minority", "c1": "majority"},
        plain={"c0": "n0", "c1": "n1"},
    )  # fmt: skip
    report = run_cycle(
        chaos_cluster, schedule, cycle=10, workload=WORKLOAD, after_heal=3.0, baseline=3.0
    )
    print(report.summary())
    print(json.dumps(report.availability, indent=1))
    failed = {c.name: c.findings[:5] for c in report.checks if not c.ok}
    assert not failed, failed  # the invariants hold either way: a plain failure, not the xfail
    before = report.availability["before"]["minority"]
    during = report.availability["during"]["minority"]
    after = report.availability["after"]["minority"]
    majority = report.availability["during"]["majority"]
    assert before["writes_per_s"], report.availability
    ratio = (during["writes_per_s"] or 0.0) / before["writes_per_s"]
    if ratio < 0.25 or (during["write_p50_ms"] or 1e9) > 250.0:
        raise MinorityStarved(
            f"minority client: {before['writes_per_s']}/s before the cut (p99 "
            f"{before['write_p99_any_ms']} ms), {during['writes_ok']} writes in the {CUT:g} s "
            f"cut ({during['writes_per_s']}/s, p50 {during['write_p50_ms']} ms, p99 "
            f"{during['write_p99_any_ms']} ms), {after['writes_per_s']}/s after the heal (p99 "
            f"{after['write_p99_any_ms']} ms); "
            f"majority client in the cut: {majority['writes_ok']} writes "
            f"({majority['writes_per_s']}/s, p99 {majority['write_p99_any_ms']} ms)"
        )
