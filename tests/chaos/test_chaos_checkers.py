"""The chaos checkers on synthetic histories (no root, no processes): each rule of
``meshcache/testing/chaos/checkers.py`` against a hand-made case whose answer is known."""

from __future__ import annotations

from typing import Any

from meshcache.testing.chaos.checkers import (
    ConfigAttempt,
    FinalState,
    availability,
    check_config,
    check_convergence,
    check_membership,
    check_reads,
    check_resources,
    check_writes,
    percentile,
)
from meshcache.testing.chaos.history import FAIL, OK, UNKNOWN, History, Op, build

LEVELS = {"q": "quorum", "o": "one"}


def op(
    p: str,
    n: int,
    f: str,
    t0: float,
    t1: float | None,
    kind: str = OK,
    *,
    ns: str = "q",
    key: str = "k",
    value: str | None = None,
) -> Op:
    return Op(p, n, f, ns, key, t0, kind, t1, value)


def state(ns: str, key: str, **by_node: Any) -> FinalState:
    s = FinalState()
    s.records[(ns, key)] = dict(by_node)
    s.owners[(ns, key)] = sorted(by_node)
    return s


def rec(value: str, version: int) -> list[Any]:
    return ["bytes", value.encode(), None, version]


def tomb(version: int) -> list[Any]:
    return ["tombstone", None, None, version]


def test_the_last_acknowledged_write_present_is_not_lost() -> None:
    h = History([op("a", 1, "set", 0, 1, value="v1"), op("a", 2, "set", 2, 3, value="v2")])
    c = check_writes(h, state("q", "k", n0=rec("v2", 9), n1=rec("v2", 9)), LEVELS)
    assert c.ok, c.findings
    assert c.counts["quorum_acked"] == 2 and c.counts["quorum_lost"] == 0


def test_an_older_value_surviving_a_later_acknowledged_write_is_a_loss() -> None:
    h = History([op("a", 1, "set", 0, 1, value="v1"), op("a", 2, "set", 2, 3, value="v2")])
    c = check_writes(h, state("q", "k", n0=rec("v1", 5)), LEVELS)
    assert not c.ok
    assert c.counts["quorum_lost"] == 1
    assert "'v2'" in c.findings[0] and "lost" in c.findings[0]


def test_a_concurrent_write_may_supersede_an_acknowledged_one() -> None:
    # v1 was still running when v2 started: either may win last-writer-wins.
    h = History([op("a", 1, "set", 0, 5, value="v1"), op("b", 1, "set", 2, 3, value="v2")])
    assert check_writes(h, state("q", "k", n0=rec("v1", 9)), LEVELS).ok


def test_one_losses_are_counted_not_failed_and_their_window_reported() -> None:
    h = History(
        [
            op("a", 1, "set", 0, 1, ns="o", value="v1"),
            op("a", 2, "set", 10, 11, ns="o", value="v2"),
        ]
    )
    c = check_writes(h, state("o", "k", n0=rec("v1", 5)), LEVELS, origin=10.0)
    assert c.ok
    assert c.counts["one_lost"] == 1
    assert c.counts["one_loss_window"] == "+1.00s..+1.00s"


def test_an_unknown_write_may_apply_after_its_client_gave_up_and_is_counted() -> None:
    # "late" timed out at t=5 but was applied at the heal: it beats "v2", acknowledged at t=7.
    h = History(
        [
            op("a", 1, "set", 0, 5, UNKNOWN, value="late"),
            op("b", 1, "set", 6, 7, value="v2"),
        ]
    )
    c = check_writes(h, state("q", "k", n0=rec("late", 20)), LEVELS)
    assert c.ok, c.findings
    assert c.counts["overwritten_by_late_write"] == 1
    assert "gave up" in c.findings[0]


def test_a_refused_write_cannot_explain_the_final_value() -> None:
    h = History([op("a", 1, "set", 0, 1, FAIL, value="nope")])
    c = check_writes(h, state("q", "k", n0=rec("nope", 3)), LEVELS)
    assert not c.ok and c.counts["phantom"] == 1


def test_a_value_nobody_wrote_is_a_phantom() -> None:
    c = check_writes(History(), state("q", "k", n0=rec("ghost", 3)), LEVELS)
    assert c.ok  # no op touched the key, so the checker never looks at it
    h = History([op("a", 1, "set", 0, 1, value="v1")])
    c = check_writes(h, state("q", "k", n0=rec("ghost", 3)), LEVELS)
    assert not c.ok and c.counts["phantom"] == 1


def test_an_older_value_back_after_an_acknowledged_delete_is_a_resurrection() -> None:
    h = History([op("a", 1, "set", 0, 1, value="v1"), op("a", 2, "delete", 2, 3)])
    assert check_writes(h, state("q", "k", n0=tomb(9), n1=tomb(9)), LEVELS).ok
    c = check_writes(h, state("q", "k", n0=rec("v1", 5), n1=tomb(4)), LEVELS)
    assert not c.ok and c.counts["resurrected"] == 1


def test_an_acknowledged_write_deleted_by_an_older_delete_is_lost() -> None:
    h = History([op("a", 1, "delete", 0, 1), op("a", 2, "set", 2, 3, value="v1")])
    assert not check_writes(h, state("q", "k", n0=tomb(5)), LEVELS).ok
    assert not check_writes(h, state("q", "k", n0=None), LEVELS).ok


def test_reads_must_return_something_written_before_they_completed() -> None:
    h = History(
        [
            op("a", 1, "set", 0, 1, value="v1"),
            op("b", 1, "get", 2, 3, value="v1"),
            op("b", 2, "get", 2, 3, value=None),
            op("b", 3, "get", 0.5, 0.6, key="other", value="v1"),
        ]
    )
    c = check_reads(h)
    assert not c.ok and c.counts == {"reads_ok": 3, "impossible": 1}


def test_convergence_needs_every_owner_alike_within_the_bound() -> None:
    same = state("q", "k", n0=rec("v", 1), n1=rec("v", 1))
    assert check_convergence(same, 2.0, 30.0).ok
    assert not check_convergence(same, None, 30.0).ok
    differ = state("q", "k", n0=rec("v", 1), n1=None)
    c = check_convergence(differ, 2.0, 30.0)
    assert not c.ok and c.counts["divergent"] == 1
    # A node that does not own the key may hold anything.
    differ.owners[("q", "k")] = ["n0"]
    assert check_convergence(differ, 2.0, 30.0).ok


def test_membership_needs_one_ring_version_and_everyone_alive() -> None:
    ring = {"version": 7, "members": [{"node_id": x, "state": "active"} for x in ("a", "b")]}
    view = [{"name": "a", "state": "alive"}, {"name": "b", "state": "alive"}]
    assert check_membership({"n0": ring, "n1": ring}, {"n0": view, "n1": view}, ["a", "b"]).ok
    old = {**ring, "version": 6}
    assert not check_membership({"n0": ring, "n1": old}, {"n0": view}, ["a", "b"]).ok
    suspect = [{"name": "a", "state": "alive"}, {"name": "b", "state": "suspect"}]
    assert not check_membership({"n0": ring}, {"n0": suspect}, ["a", "b"]).ok
    # With a bound: agreed in time, too late, never.
    agreed = ({"n0": ring}, {"n0": view}, ["a", "b"])
    assert check_membership(*agreed, 3.5, 10.0).counts["seconds"] == 3.5
    assert check_membership(*agreed, 3.5, 10.0).ok
    late = check_membership(*agreed, 12.0, 10.0)
    assert not late.ok and "within 10s" in late.findings[0]
    assert not check_membership(*agreed, None, 10.0).ok


def test_config_changes_commit_only_on_a_majority_side() -> None:
    good = [
        ConfigAttempt("cfg-maj", "n1", True, OK, 0.0, 0.1, 10.0),
        ConfigAttempt("cfg-min", "n0", False, UNKNOWN, 0.0, 5.0, 10.0),
    ]
    assert check_config(good, {"n0": ["cfg-maj"], "n1": ["cfg-maj"]}).ok
    # Held by the minority node and committed once healed: allowed.
    late = [ConfigAttempt("cfg-min", "n0", False, OK, 0.0, 10.7, 10.0)]
    assert check_config(late, {"n0": ["cfg-min"], "n1": ["cfg-min"]}).ok
    bad = [ConfigAttempt("cfg-min", "n0", False, OK, 0.0, 0.2, 10.0)]
    assert not check_config(bad, {"n0": ["cfg-min"], "n1": ["cfg-min"]}).ok
    lost = [ConfigAttempt("cfg-maj", "n1", True, OK, 0.0, 0.1, 10.0)]
    assert not check_config(lost, {"n0": [], "n1": []}).ok
    assert not check_config([], {"n0": ["x"], "n1": []}).ok


def test_resources_bound_hints_and_fds() -> None:
    run = {"node": "n0", "phase": "run", "hints": 5, "hint_bytes": 100, "fds": 30}
    final = {"node": "n0", "phase": "final", "hints": 0, "fds": 31, "fds_at_start": 30}
    assert check_resources([run, final], hint_max_bytes=1000, drained_after=1.0).ok
    assert not check_resources([run, final], hint_max_bytes=50, drained_after=1.0).ok
    assert not check_resources([run, final], hint_max_bytes=1000, drained_after=None).ok
    leak = {**final, "fds": 200}
    assert not check_resources([run, leak], hint_max_bytes=1000, drained_after=1.0).ok


def test_availability_per_side_and_percentiles() -> None:
    h = History(
        [
            op("min", 1, "set", 1.0, 6.0, UNKNOWN, value="a"),
            op("maj", 1, "set", 1.0, 1.01, value="b"),
            op("maj", 2, "set", 2.0, 2.02, value="c"),
            op("maj", 3, "set", 20.0, 20.01, value="d"),
        ]
    )
    figures = availability(h, {"min": "minority", "maj": "majority"}, 0.0, 10.0)
    assert figures["minority"]["writes_ok"] == 0
    assert figures["minority"]["write_p99_any_ms"] == 5000.0
    assert figures["majority"]["writes_ok"] == 2
    assert figures["majority"]["writes_per_s"] == 0.2
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([], 0.99) is None


def test_history_pairs_invocations_with_completions_and_keeps_unfinished_ones() -> None:
    h = build(
        [
            {
                "type": "invoke",
                "p": "a",
                "n": 1,
                "f": "set",
                "ns": "q",
                "key": "k",
                "value": "v",
                "t": 1.0,
            },
            {"type": "invoke", "p": "a", "n": 2, "f": "get", "ns": "q", "key": "k", "t": 2.0},
            {"type": "ok", "p": "a", "n": 2, "f": "get", "value": "v", "t": 2.5},
            {"type": "ok", "p": "a", "n": 1, "f": "set", "t": 1.5},
            {"type": "info", "p": "nemesis", "f": "heal", "value": "healthy", "t": 3.0},
        ]
    )
    first, second = h.ops
    assert (first.type, first.complete, first.value) == (OK, 1.5, "v")
    assert (second.type, second.value, second.latency) == (OK, "v", 0.5)
    assert [e["f"] for e in h.events] == ["heal"]
    unfinished = build(
        [
            {
                "type": "invoke",
                "p": "a",
                "n": 1,
                "f": "set",
                "ns": "q",
                "key": "k",
                "value": "v",
                "t": 1.0,
            }
        ]
    )
    assert unfinished.ops[0].type == UNKNOWN and unfinished.ops[0].end == float("inf")
