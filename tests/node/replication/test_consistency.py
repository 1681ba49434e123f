from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.errors import ConfigError
from meshcache.node.data.replication.consistency import (
    Consistency,
    WriteState,
    WriteTracker,
    read_repair,
    required_acks,
)

OWNERS = ("a", "b", "c")


def test_required_acks() -> None:
    assert [required_acks(c, 3) for c in Consistency] == [1, 2, 3]
    assert [required_acks(c, 2) for c in Consistency] == [1, 2, 2]
    assert required_acks(Consistency.QUORUM, 1) == 1
    with pytest.raises(ConfigError):
        required_acks(Consistency.ONE, 0)
    with pytest.raises(ConfigError):
        WriteTracker(("a", "a"), Consistency.ONE, 1.0)


def test_one_acks_on_the_first_ack() -> None:
    t = WriteTracker(OWNERS, Consistency.ONE, deadline=5.0)
    assert t.fail("b") is WriteState.PENDING
    assert t.ack("a") is WriteState.ACKED
    assert t.unacked() == ("b", "c") and t.waiting() == ("c",)
    assert t.fail("c") is WriteState.ACKED  # decided for good
    assert t.tick(10.0) is WriteState.ACKED


def test_quorum_fails_as_soon_as_it_cannot_be_reached() -> None:
    t = WriteTracker(OWNERS, Consistency.QUORUM, deadline=5.0)
    assert t.ack("a") is WriteState.PENDING
    assert t.fail("b") is WriteState.PENDING
    assert t.fail("c") is WriteState.FAILED
    assert t.ack("c") is WriteState.FAILED  # a late answer changes nothing


def test_all_and_the_deadline() -> None:
    t = WriteTracker(OWNERS, Consistency.ALL, deadline=5.0)
    t.ack("a")
    t.ack("b")
    assert t.tick(4.99) is WriteState.PENDING
    assert t.tick(5.0) is WriteState.FAILED
    assert t.unacked() == ("c",)


def test_duplicates_and_strays() -> None:
    t = WriteTracker(OWNERS, Consistency.QUORUM, deadline=5.0)
    assert t.ack("a") is t.ack("a") is WriteState.PENDING
    assert t.ack("zz") is WriteState.PENDING and t.strays == 1
    assert t.ack("b") is WriteState.ACKED
    assert t.acked == {"a", "b"}


@settings(max_examples=300, deadline=None)
@given(
    level=st.sampled_from(list(Consistency)),
    n=st.integers(1, 5),
    events=st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=12),
)
def test_outcome_matches_counts(level: Consistency, n: int, events: list[tuple[int, bool]]) -> None:
    owners = [f"n{i}" for i in range(n)]
    t = WriteTracker(owners, level, deadline=1.0)
    first: dict[str, bool] = {}
    decided: WriteState | None = None
    for i, ok in events:
        node = f"n{i}"
        state = t.ack(node) if ok else t.fail(node)
        if node in owners:
            first.setdefault(node, ok)
        acks = sum(first.values())
        fails = len(first) - acks
        need = required_acks(level, n)
        if decided is None:
            if acks >= need:
                decided = WriteState.ACKED
            elif n - fails < need:
                decided = WriteState.FAILED
        assert state is (decided or WriteState.PENDING)


def test_read_repair() -> None:
    assert read_repair({"a": None, "b": None}) is None
    rr = read_repair({"a": (5, False), "b": (7, False), "c": None, "d": (7, False)})
    assert rr is not None
    assert (rr.winner, rr.version, rr.deleted, rr.stale) == ("b", 7, False, ("a", "c"))
    # A delete wins a tie; an empty replica gets the tombstone too.
    rr = read_repair({"a": (7, False), "b": (7, True), "c": None})
    assert rr is not None and (rr.winner, rr.deleted, rr.stale) == ("b", True, ("a", "c"))
    rr = read_repair({"a": (3, False), "b": (3, False)})
    assert rr is not None and rr.stale == ()
