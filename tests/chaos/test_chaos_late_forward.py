"""A forwarded write that timed out and was failed over reaches its first owner again when the cut
heals: it must not overwrite the newer write acknowledged meanwhile.

Found by the soak (an ``isolate`` cycle lost an acknowledged write). The sequence, made
deterministic here, in namespace ``chaos-quorum`` (3 owners, quorum 2):

1. key K's first owner X is cut off from the other nodes (the harness still reaches all);
2. at once, before gossip calls X dead, ``SET K v1`` goes to node V, which forwards it to X on
   its pooled connection; the frame is stuck in TCP's retransmission queue; after the forward
   timeout (5 s) V fails over to the next owner and the write is acknowledged (quorum);
3. ``SET K v2`` through V is acknowledged (quorum) — the newer write;
4. the cut heals; TCP retransmits the old forward to X.

X used to coordinate it as a new write with a fresh version, newer than v2's, and every owner
ended with v1. A forwarded plain write now carries the version V gave it when it first routed
it; arriving 4 s or more after that, X applies it at that version (older than v2's), so
last-writer-wins keeps v2 (``Coordinator._execute_stamped``).

A write that reads the key (``SET ... XX``, ``HSET``, ``INCR`` ...) carries no version: its
stuck forward is coordinated afresh when it arrives. So it is never failed over once sent: its
client is told ``UNAVAILABLE`` (it may still apply), not OK (second test).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from meshcache.errors import CommandError, ErrorCode
from meshcache.testing.chaos import faults
from meshcache.testing.chaos.cluster import DATA_PORT, ChaosCluster, Control
from meshcache.testing.chaos.history import now

pytestmark = pytest.mark.chaos

NS = "chaos-quorum"


class LateForwardApplied(AssertionError):
    """The first forward of a failed-over write overwrote a newer acknowledged write."""


def _owners_value(cluster: ChaosCluster, key: str, owners: list[str]) -> set[bytes | None]:
    values: set[bytes | None] = set()
    for name in owners:
        raw = cluster.records(name, NS, [key])[0]
        values.add(None if raw is None else raw[1])
    return values


def _send_v1(
    cluster: ChaosCluster, via: str, key: str, *options: dict[str, object]
) -> tuple[object, float]:
    """SET key v1 through ``via`` from the hub, waiting up to 30 s: the result (or the
    exception raised) and the seconds it took."""
    started = now()
    outcome: object
    try:
        control = Control(cluster.network.hub, (cluster.node(via).address, DATA_PORT), 30.0)
        try:
            outcome = control.call("SET", [key.encode(), b"v1", *options], NS, 30.0)
        finally:
            control.close()
    except Exception as exc:  # shown by the caller's assertion
        outcome = exc
    return outcome, now() - started


def _key_first_owned_by_n2(cluster: ChaosCluster, prefix: str) -> tuple[str, list[str]]:
    ring = cluster.current_ring()
    return next(
        (k, o)
        for k, o in ((f"{prefix}:k{i}", cluster.owners(ring, f"{prefix}:k{i}")) for i in range(999))
        if o[0] == "n2"
    )


def _watch(cluster: ChaosCluster, key: str, owners: list[str]) -> list[tuple[float, set[Any]]]:
    """The owners' values of ``key`` for 20 s after the heal (TCP's retransmission back-off
    after a cut of ~5 s delivers a stuck frame within a few seconds), each change with its
    time; the watch ends early when they all hold v1."""
    healed = now()
    seen: list[tuple[float, set[bytes | None]]] = []
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        values = _owners_value(cluster, key, owners)
        if not seen or seen[-1][1] != values:
            seen.append((now() - healed, values))
        if values == {b"v1"}:
            break
        time.sleep(0.25)  # the poll interval; the deadline bounds the watch
    print(f"owners of {key} after the heal: {seen}")
    return seen


def test_a_failed_over_forward_does_not_apply_again_after_the_heal(
    chaos_cluster: ChaosCluster,
) -> None:
    cluster = chaos_cluster
    key, owners = _key_first_owned_by_n2(cluster, "late-fwd")
    x, via = owners[0], owners[1]
    # V's pooled connection to X exists before the cut (a write V forwards to X).
    assert cluster.call(via, "SET", [key.encode(), b"v0"], NS) is True

    cluster.set_faults(faults.isolate(x, cluster.node_names))
    try:
        outcome, took = _send_v1(cluster, via, key)
        print(f"v1 through {via} (first owner {x} cut off): {outcome!r} after {took:.2f}s")
        assert outcome is True, outcome
        assert took >= 4.0, f"the forward did not wait on {x}: the sequence did not happen"
        assert cluster.call(via, "SET", [key.encode(), b"v2"], NS) is True
        acked_v2 = now()
    finally:
        cluster.heal()
    healed = now()
    seen = _watch(cluster, key, owners)
    final = seen[-1][1]
    if b"v1" in final:
        raise LateForwardApplied(
            f"{key}: v2 acknowledged {healed - acked_v2:.2f}s before the heal; "
            f"{seen[-1][0]:.2f}s after it the owners hold {sorted(map(repr, final))}"
        )
    assert final == {b"v2"}, seen


def test_a_conditional_write_whose_forward_timed_out_is_not_acknowledged(
    chaos_cluster: ChaosCluster,
) -> None:
    """``SET K v1 XX`` through V with K's first owner X cut off: V's forward to X times out.
    Failed over and acknowledged, its stuck copy would still apply on X at the heal, fresh,
    above the ``SET K v2`` acknowledged after it. It must be answered as an unknown outcome."""
    cluster = chaos_cluster
    key, owners = _key_first_owned_by_n2(cluster, "late-cond")
    x, via = owners[0], owners[1]
    assert cluster.call(via, "SET", [key.encode(), b"v0"], NS) is True

    cluster.set_faults(faults.isolate(x, cluster.node_names))
    try:
        outcome, took = _send_v1(cluster, via, key, {"xx": True})
        print(f"v1 XX through {via} (first owner {x} cut off): {outcome!r} after {took:.2f}s")
        assert took >= 4.0, f"the forward did not wait on {x}: the sequence did not happen"
        assert cluster.call(via, "SET", [key.encode(), b"v2"], NS) is True
    finally:
        cluster.heal()
    seen = _watch(cluster, key, owners)
    if outcome is True:
        raise LateForwardApplied(
            f"{key}: SET XX acknowledged after its forward to {x} timed out (it may still "
            f"apply there, above v2); owners after the heal: {seen}"
        )
    assert isinstance(outcome, CommandError) and outcome.code is ErrorCode.UNAVAILABLE, outcome
    # Unknown, so it may have applied late; the owners agree either way.
    deadline = time.monotonic() + 30.0
    while len(_owners_value(cluster, key, owners)) != 1:
        assert time.monotonic() < deadline, _owners_value(cluster, key, owners)
        time.sleep(0.25)  # the poll interval; the deadline bounds the wait
