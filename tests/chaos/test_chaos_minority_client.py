"""A client on the minority side of a partition keeps writing: a smart client routes around
the nodes it cannot reach, and a node routes its plain clients' requests around them.

Three nodes in separate network namespaces; ``n0`` and client endpoint ``c0`` are cut off from
``n1``, ``n2`` and ``c1``. A smart client (``meshcache.Client``, default 5 s timeout) on each
side writes fresh keys at ``one``, at most 100/s. For two keys in three the minority client's
first owner by the ring is a node it cannot reach. Without a way around, it waited its whole
timeout there and failed, again and again (about 1 write/s), although ``n0``, which it reaches,
takes the write (it stands in for owners its gossip holds dead). The client's circuit breakers
(``meshcache/client/breaker.py``) open on the first timed-out request; the client then checks
every node at once (a connection within 0.5 s, and ``MEMBERS``), opens every node it cannot
reach, and sends every later write to ``n0``.

``n0`` itself forwards a write to the key's first owner until its gossip holds that owner dead
or its circuit breaker for that owner opens (on the first timeout there), and a forward into
the cut waits out the node's 5 s forward timeout; under load (15-20 on two cores) it took
``n0`` up to 8 s to declare the others dead. So the cut lasts until ``n0`` holds ``n1`` and
``n2`` dead (polled from the hub, at most 30 s), then :data:`HOLD` seconds more, and the
client's promise is measured from there: once the node it talks to knows, and the call it had
in flight then has returned, its writes go at its pace before the cut (rate at least
:data:`RATE_RATIO` of it) with a p99 under 50 ms (or, on a machine so loaded that the p99
before the cut was already above 25 ms, twice that p99). A write sent to an unreachable node,
or to a node that forwards into the cut, waits 5 s: one is enough to fail the test. The
figures from the cut to the heal, and the majority client's, are printed (``pytest -s``);
docs/chaos.md records them.

A plain client (RESP, the CLI, a plain msgpack client) reaches one node only: on the minority
side every write it sends is routed by ``n0``. ``n0``'s per-peer circuit breakers
(``meshcache/node/net/breakers.py``) stop it forwarding into the cut before its gossip decides.
To keep gossip undecided for the whole cut, whatever the load, that test cuts TCP only (client,
data and Raft connections) and lets gossip's UDP through: ``n0`` holds ``n1`` and ``n2`` alive
throughout. Its plain client's first write into the cut may wait out a forward timeout; every
write after that one must be acknowledged without such a wait.
"""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest

from meshcache.node.data.coordinator import FORWARD_TIMEOUT
from meshcache.testing.chaos.checkers import side_figures
from meshcache.testing.chaos.cluster import ChaosCluster
from meshcache.testing.chaos.history import OK
from meshcache.testing.chaos.scenarios import Schedule, Step, Workload, history_of, run_cycle

pytestmark = pytest.mark.chaos

#: Seconds the cut lasts once n0 holds the other nodes dead: a call in flight then may still
#: wait out its 5 s timeout; 3 s or more are left to measure.
HOLD = 8.0
RATE_RATIO = 0.8
P99_MS = 50.0
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
    setnx=0.0,
    setxx=0.0,
    cas=0.0,
    incr=0.0,
)


#: The TCP-only cut of the plain-client test, in seconds.
PLAIN_CUT = 8.0
#: A write that took this long waited on a peer in the cut (a forward timeout, less slack).
STALL = FORWARD_TIMEOUT - 1.0


class MinorityStarved(AssertionError):
    """Once the node it talks to held the unreachable nodes dead, the minority side's client
    wrote at under :data:`RATE_RATIO` of its rate before the cut, or slowly."""


def test_a_smart_client_on_the_minority_side_keeps_writing(chaos_cluster: ChaosCluster) -> None:
    schedule = Schedule(
        kind="minority-client",
        seed="test:minority-client",
        duration=1.0,  # the cut ends when the await_dead step has held it long enough
        steps=(
            Step(0.0, "faults", {"shape": "partition", "sides": [["n0", "c0"],
                                                                  ["n1", "n2", "c1"]]}),
            Step(0.0, "await_dead", {"node": "n0", "dead": ["n1", "n2"], "timeout": 30.0,
                                     "hold": HOLD}),
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
    assert not failed, failed

    history = history_of(report)
    seen = next(e for e in history.events if e.get("f") == "dead_seen")
    assert seen["seen"], f"n0's gossip never held n1 and n2 dead during the cut: {seen}"
    minority = [op for op in history.ops if op.process.endswith("c0-smart")]
    cut = [op for op in minority if report.started <= op.invoke < report.healed]
    failures = [op for op in cut if op.type != OK]
    in_flight = [op for op in cut if op.invoke < seen["t"]]
    start = max([seen["t"], *(op.complete or seen["t"] for op in in_flight)])
    window = [op for op in cut if op.invoke >= start]
    figures = side_figures(window, report.healed - start)
    before = report.availability["before"]["minority"]
    print(
        f"cut at {report.started:.2f}; n0 held n1, n2 dead {seen['after']} s into it; "
        f"minority client's failures in the cut: {len(failures)} (first at "
        f"{(failures[0].invoke - report.started) if failures else 0:+.2f} s); measured "
        f"{report.healed - start:.2f} s from {start - report.started:+.2f} s: {figures}"
    )
    assert report.healed - start >= 2.0, "too little of the cut left to measure: raise HOLD"
    assert before["writes_per_s"] and before["write_p99_any_ms"] is not None, before
    p99_bound = max(P99_MS, 2 * before["write_p99_any_ms"])
    rate = figures["writes_per_s"] or 0.0
    p99 = figures["write_p99_any_ms"]
    if rate < RATE_RATIO * before["writes_per_s"] or p99 is None or p99 > p99_bound:
        majority = report.availability["during"]["majority"]
        raise MinorityStarved(
            f"minority client: {before['writes_per_s']}/s before the cut (p99 "
            f"{before['write_p99_any_ms']} ms); once n0 knew and its call in flight returned: "
            f"{figures['writes_ok']} writes in {report.healed - start:.2f} s ({rate}/s, p99 "
            f"{p99} ms, bound {p99_bound:g} ms); majority client in the cut: "
            f"{majority['writes_ok']} writes ({majority['writes_per_s']}/s, p99 "
            f"{majority['write_p99_any_ms']} ms)"
        )


class NodeForwardsIntoTheCut(AssertionError):
    """After its first failure, a write of the minority node's plain client waited out a
    forward timeout (or failed): the node went on sending into the cut."""


def test_a_plain_client_of_the_minority_node_keeps_writing_before_gossip_decides(
    chaos_cluster: ChaosCluster,
) -> None:
    schedule = Schedule(
        kind="minority-plain-client",
        seed="test:minority-plain-client",
        duration=PLAIN_CUT,
        steps=(
            Step(0.0, "faults", {"shape": "partition", "proto": "tcp",
                                 "sides": [["n0", "c0"], ["n1", "n2", "c1"]]}),
            # Watches n0's gossip through the cut: it must not call n1 or n2 dead.
            Step(0.0, "await_dead", {"node": "n0", "dead": ["n1"], "timeout": PLAIN_CUT - 0.5}),
        ),
        sides={"c0": "minority", "c1": "majority"},
        plain={"c0": "n0", "c1": "n1"},
    )  # fmt: skip
    workload = dataclasses.replace(WORKLOAD, plain_clients=True)
    report = run_cycle(
        chaos_cluster, schedule, cycle=11, workload=workload, after_heal=3.0, baseline=3.0
    )
    print(report.summary())
    failed = {c.name: c.findings[:5] for c in report.checks if not c.ok}
    assert not failed, failed

    history = history_of(report)
    seen = next(e for e in history.events if e.get("f") == "dead_seen" and e["t"] >= report.started)
    assert not seen["seen"], f"n0's gossip held n1 dead in a TCP-only cut: {seen}"
    plain = [op for op in history.ops if op.process.endswith("c0-plain")]
    before = side_figures(
        [op for op in plain if report.started - 3.0 <= op.invoke < report.started], 3.0
    )
    cut = [op for op in plain if report.started <= op.invoke < report.healed]
    stalled = [op for op in cut if op.type != OK or (op.latency or 0.0) >= STALL]
    first = stalled[0] if stalled else None
    start = report.started if first is None else (first.complete or report.healed)
    window = [op for op in cut if op.invoke >= start]
    figures = side_figures(window, report.healed - start)
    at = 0.0 if first is None else first.invoke - report.started
    gaps = [
        (b.invoke - (a.complete or b.invoke), a.invoke - report.started)
        for a, b in itertools.pairwise(window)
    ]
    gap = max(gaps, default=(0.0, 0.0))
    print(
        f"plain client of n0: before the cut {before}; in the cut {len(cut)} ops, first failure "
        f"{'none' if first is None else f'{first.type} after {first.latency}s'} at {at:+.2f} s;"
        f" from {start - report.started:+.2f} s to the heal ({report.healed - start:.2f} s): "
        f"{figures}; rate ratio "
        f"{(figures['writes_per_s'] or 0) / (before['writes_per_s'] or 1):.2f}; longest pause "
        f"between its writes {gap[0]:.3f} s after the one at {gap[1]:+.2f} s"
    )
    assert report.healed - start >= 2.0, "too little of the cut left after the first failure"
    late = [op for op in window if op in stalled]
    if late or not figures["writes_ok"]:
        raise NodeForwardsIntoTheCut(
            f"{len(late)} writes of n0's plain client after its first failure failed or waited "
            f">= {STALL:g} s ({[(op.type, op.latency) for op in late[:5]]}); "
            f"{figures['writes_ok']} acknowledged in {report.healed - start:.2f} s"
        )
