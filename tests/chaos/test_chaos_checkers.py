"""The chaos checkers on synthetic histories (no root, no processes): each rule of
``meshcache/testing/chaos/checkers.py`` against a hand-made case whose answer is known."""

from __future__ import annotations

from typing import Any

from meshcache.testing.chaos.checkers import (
    ConfigAttempt,
    FinalState,
    availability,
    check_conditional,
    check_config,
    check_convergence,
    check_hot,
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


# --- conditional writes ------------------------------------------------------------------------


def cop(
    p: str,
    n: int,
    f: str,
    t0: float,
    t1: float | None,
    kind: str = OK,
    *,
    key: str = "k",
    value: str | None = None,
    stored: bool | None = None,
    result: int | None = None,
    seen: str | None = None,
    seen_at: float | None = None,
    cas_at: float | None = None,
) -> Op:
    o = Op(p, n, f, "q", key, t0, kind, t1, value)
    o.stored, o.result, o.seen, o.seen_at, o.cas_at = stored, result, seen, seen_at, cas_at
    return o


def conditional(
    ops: list[Op], healthy_until: float = 100.0, final: FinalState | None = None
) -> Any:
    return check_conditional(
        History(ops), final or FinalState(), LEVELS, healthy_until=healthy_until
    )


def test_increments_are_bounded_by_the_incrs_invoked_and_rise_while_healthy() -> None:
    good = [
        cop("a", 1, "incr", 0, 1, key="i", result=1),
        cop("b", 1, "incr", 0.5, None, UNKNOWN, key="i"),  # may have applied
        cop("a", 2, "incr", 2, 3, key="i", result=3),
    ]
    c = conditional(good, final=state("q", "i", n0=rec("3", 9)))
    assert c.ok, c.findings
    # 3 with only two INCRs invoked: one was applied twice.
    twice = [good[0], cop("a", 2, "incr", 2, 3, key="i", result=3)]
    c = conditional(twice)
    assert not c.ok and "2 incr(s) invoked" in c.findings[0]
    # A regression while healthy fails; during a fault it is counted.
    back = [cop("a", 1, "incr", 0, 1, key="i", result=2), cop("b", 1, "incr", 0, 0.5, key="i"),
            cop("a", 2, "incr", 2, 3, key="i", result=1)]  # fmt: skip
    back[1].result = 1
    assert not conditional(back).ok
    c = conditional(back, healthy_until=2.5)
    assert c.ok and c.counts["incr_regressions"] == 2  # below both earlier results
    # A counter cannot end above the INCRs invoked.
    c = conditional(good[:1], final=state("q", "i", n0=rec("5", 9)))
    assert not c.ok and "ends at 5" in c.findings[0]


def test_set_nx_and_xx_answers_are_explained_by_the_history() -> None:
    first = cop("a", 1, "set", 0, 1, value="v1")
    # NX stored over an acknowledged value: fails while healthy, counted during a fault.
    nx = cop("b", 1, "setnx", 2, 3, value="v2", stored=True)
    assert not conditional([first, nx]).ok
    c = conditional([first, nx], healthy_until=2.5)
    assert c.ok and c.counts["nx_over_value"] == 1
    # ... unless a delete may have come between.
    gone = cop("c", 1, "delete", 1.5, None, UNKNOWN)
    assert conditional([first, gone, nx]).ok
    # XX refused on an acknowledged value while healthy; XX stored on a key never written.
    assert not conditional([first, cop("b", 1, "setxx", 2, 3, value="v2", stored=False)]).ok
    assert not conditional([cop("b", 1, "setxx", 2, 3, value="v2", stored=True)], 0.0).ok
    assert not conditional([cop("b", 1, "setnx", 2, 3, value="v2", stored=False)], 0.0).ok
    # NX first on a fresh key, XX after it: what a healthy cache answers.
    fine = [cop("a", 1, "setnx", 0, 1, value="v1", stored=True),
            cop("b", 1, "setxx", 2, 3, value="v2", stored=True),
            cop("c", 1, "setnx", 4, 5, value="v3", stored=False)]  # fmt: skip
    assert conditional(fine).ok


def test_cas_swaps_exactly_when_nothing_wrote_since_its_gets() -> None:
    first = cop("a", 1, "set", 0, 1, value="v1")
    swapped = cop("b", 1, "cas", 2, 5, "ok", value="v2", stored=True, seen="v1", seen_at=2.5,
                  cas_at=3.0)  # fmt: skip
    assert conditional([first, swapped]).ok
    between = cop("c", 1, "set", 2.6, 2.8, value="v3")
    assert not conditional([first, between, swapped]).ok
    assert conditional([first, between, swapped], healthy_until=4).counts["cas_over_write"] == 1
    refused = cop("b", 1, "cas", 2, 5, value="v2", stored=False, seen="v1", seen_at=2.5,
                  cas_at=3.0)  # fmt: skip
    assert not conditional([first, refused]).ok  # nothing wrote the key: the swap had to hold
    assert conditional([first, between, refused]).ok
    # Its GETS is a read: a value nobody wrote is caught by the reads checker.
    ghost = cop("b", 1, "cas", 2, 5, value="v2", stored=False, seen="nobody", seen_at=2.5)
    assert not check_reads(History([first, ghost])).ok


def test_writes_ignore_conditional_writes_that_did_not_store_and_counters() -> None:
    h = History(
        [
            cop("a", 1, "set", 0, 1, value="v1"),
            cop("b", 1, "setnx", 2, 3, value="v2", stored=False),
            cop("b", 2, "setxx", 4, 5, value="v3", stored=True),
            cop("c", 1, "incr", 0, 1, key="i", result=1),
        ]
    )
    final = state("q", "k", n0=rec("v3", 9))
    final.records[("q", "i")] = {"n0": rec("1", 3)}
    c = check_writes(h, final, LEVELS)
    assert c.ok, c.findings
    assert c.counts["quorum_acked"] == 2  # the SET and the XX that stored
    # The XX's value lost to the earlier SET: a loss like any acknowledged write's.
    final = state("q", "k", n0=rec("v1", 9))
    assert not check_writes(h, final, LEVELS).ok


def test_the_history_records_conditional_answers() -> None:
    h = build(
        [
            {"type": "invoke", "p": "a", "n": 1, "f": "setnx", "ns": "q", "key": "k",
             "value": "a:1", "t": 1.0},
            {"type": "ok", "p": "a", "n": 1, "f": "setnx", "stored": False, "t": 2.0},
            {"type": "invoke", "p": "a", "n": 2, "f": "cas", "ns": "q", "key": "k",
             "value": "a:2", "t": 3.0},
            {"type": "ok", "p": "a", "n": 2, "f": "cas", "stored": True, "seen": "x:1",
             "seen_at": 3.5, "t": 4.0},
            {"type": "invoke", "p": "a", "n": 3, "f": "incr", "ns": "q", "key": "i", "t": 5.0},
            {"type": "ok", "p": "a", "n": 3, "f": "incr", "result": 7, "t": 6.0},
        ]
    )  # fmt: skip
    nx, cas, incr = h.ops
    assert nx.value == "a:1" and nx.stored is False and not nx.may_write_value
    assert cas.stored and cas.seen == "x:1" and cas.seen_at == 3.5 and cas.may_write_value
    assert incr.result == 7 and incr.is_write and not incr.may_write_value


# --- hot keys ----------------------------------------------------------------------------------


def hop(p: str, n: int, f: str, t0: float, t1: float | None, kind: str = OK, *,
        value: str | None = None, node: str | None = None) -> Op:  # fmt: skip
    return Op(p, n, f, "hot", "h0", t0, kind, t1, value, None, node)


def test_hot_reads_through_the_node_written_through_see_the_writes() -> None:
    w = [hop("w", 1, "set", 0, 0.1, value="w:1", node="n0"),
         hop("w", 2, "get", 0.2, 0.3, value="w:1", node="n0"),
         hop("w", 3, "set", 1, 1.1, value="w:3", node="n0"),
         hop("w", 4, "get", 1.2, 1.3, value="w:3", node="n0"),
         hop("w", 5, "get", 1.3, 1.4, value="w:1", node="n1")]  # fmt: skip
    c = check_hot(History(w), "hot", lease=1.0, delta=0.5)
    assert c.ok, c.findings
    assert c.counts["ryw_elsewhere_within_lease"] == 1  # n1's copy missed its update
    back = [*w[:3], hop("w", 4, "get", 1.2, 1.3, value="w:1", node="n0")]
    c = check_hot(History(back), "hot", lease=1.0, delta=0.5)
    assert not c.ok and c.counts["ryw_violations"] == 1
    assert "read-your-writes" in c.findings[0]
    assert check_hot(History(back), "hot", lease=1.0, delta=0.5, strict=False).ok


def test_hot_copies_are_stale_at_most_a_lease_and_deletes_hold() -> None:
    w = [
        hop("w", 1, "set", 0, 0.1, value="w:1", node="n0"),
        hop("w", 2, "set", 1, 1.1, value="w:2", node="n0"),
        hop("r", 1, "get", 2.0, 2.1, value="w:1"),  # 0.9 s stale: within 1 + 0.5
        hop("r", 2, "get", 2.5, 2.6, value="w:1"),
    ]  # 1.4 s
    assert check_hot(History(w), "hot", lease=1.0, delta=0.5).ok
    late = [*w, hop("r", 3, "get", 2.7, 2.8, value="w:1")]  # 1.6 s: beyond
    c = check_hot(History(late), "hot", lease=1.0, delta=0.5)
    assert not c.ok and c.counts["stale"] == 1 and c.counts["max_staleness_ms"] == 1600
    deleted = [
        *w[:2],
        hop("w", 3, "delete", 3, 3.1, node="n0"),
        hop("r", 3, "get", 3.2, 3.3),  # a miss: right
        hop("r", 4, "get", 5.0, 5.1, value="w:2"),
    ]  # served 1.9 s after the delete
    c = check_hot(History(deleted), "hot", lease=1.0, delta=0.5)
    assert not c.ok and c.counts["deleted_served"] == 1
    # A miss explained by a delete whose outcome is unknown.
    maybe = [*w[:2], hop("w", 3, "delete", 3, 8, UNKNOWN, node="n0"),
             hop("r", 3, "get", 6.0, 6.1)]  # fmt: skip
    assert check_hot(History(maybe), "hot", lease=1.0, delta=0.5).ok


def test_an_owner_older_than_a_write_taken_in_a_cut_is_not_held_to_the_lease() -> None:
    # w:2 is acknowledged during a cut (stand-ins took it for the owner); until the hints
    # arrive, the owner's own record is older, and a reader there sees w:1.
    w = [
        hop("w", 1, "set", 0, 0.1, value="w:1", node="n0"),
        hop("w", 2, "set", 1, 1.1, value="w:2", node="n0"),
        hop("r", 1, "get", 4.0, 4.1, value="w:1"),  # 2.9 s after w:2, before the hints
    ]
    c = check_hot(History(w), "hot", lease=1.0, delta=0.5)
    assert not c.ok and c.counts["stale"] == 1
    c = check_hot(History(w), "hot", lease=1.0, delta=0.5, unsettled=(0.5, 5.0))
    assert c.ok, c.findings
    assert c.counts["stale_after_cut"] == 1 and c.counts["max_staleness_after_cut_ms"] == 2900
    # Once the hints are drained the bound holds again.
    c = check_hot(History(w), "hot", lease=1.0, delta=0.5, unsettled=(0.5, 3.5))
    assert not c.ok and c.counts["stale"] == 1
    # A write acknowledged before the fault is on every owner: the bound holds in it too.
    c = check_hot(History(w), "hot", lease=1.0, delta=0.5, unsettled=(2.0, 5.0))
    assert not c.ok and c.counts["stale"] == 1
    # A plain writer reading through its node, which stood in for the owner: counted.
    mine = [*w[:2], hop("w", 3, "get", 4.0, 4.1, value="w:1", node="n0")]
    c = check_hot(History(mine), "hot", lease=1.0, delta=0.5, unsettled=(0.5, 5.0))
    assert c.ok and c.counts["ryw_after_cut"] == 1 and c.counts["ryw_violations"] == 0
    # A smart writer is held to read-your-writes throughout.
    smart = [hop("s", 1, "set", 0, 0.1, value="s:1"), hop("s", 2, "set", 1, 1.1, value="s:2"),
             hop("s", 3, "get", 4.0, 4.1, value="s:1")]  # fmt: skip
    c = check_hot(History(smart), "hot", lease=1.0, delta=0.5, unsettled=(0.5, 5.0))
    assert not c.ok and c.counts["ryw_violations"] == 1


def test_a_smart_writer_reads_its_hot_writes_wherever_its_client_routes() -> None:
    w = [
        hop("s", 1, "set", 0, 0.1, value="s:1"),
        hop("s", 2, "get", 0.2, 0.3, value="s:1"),
        hop("s", 3, "set", 1, 1.1, value="s:3"),
        hop("s", 4, "get", 1.2, 1.3, value="s:3"),
    ]
    assert check_hot(History(w), "hot", lease=1.0, delta=0.5).ok
    w[3] = hop("s", 4, "get", 1.2, 1.3, value="s:1")  # a copy older than its write
    c = check_hot(History(w), "hot", lease=1.0, delta=0.5)
    assert not c.ok and c.counts["ryw_violations"] == 1
