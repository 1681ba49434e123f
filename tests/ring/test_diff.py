"""Ring diffs cover exactly the keys whose owners change, and say from whom to whom."""

from __future__ import annotations

import itertools
import random
from bisect import bisect_left
from collections.abc import Callable

import pytest

from meshcache.ring import (
    PENDING_STATES,
    READ_STATES,
    Ring,
    RingMember,
    RingState,
    diff,
    handoff,
    key_token,
    range_changes,
)

_rng = random.Random(11)
TOKENS = [key_token(_rng.randbytes(16)) for _ in range(20_000)]


def member(
    node_id: str, zone: str, weight: int = 1, state: RingState = RingState.ACTIVE
) -> RingMember:
    return RingMember(node_id, f"{node_id}:7400", zone=zone, weight=weight, state=state)


BASE = Ring([member(f"n{i}", "abc"[i % 3]) for i in range(6)], 1, vnodes_per_weight=32)

CHANGES: dict[str, Callable[[Ring], Ring]] = {
    "add": lambda r: r.with_member(member("new", "b")),
    "add-new-zone": lambda r: r.with_member(member("new", "z")),
    "remove": lambda r: r.without_member("n2"),
    "reweight": lambda r: r.with_member(member("n4", "b", weight=3)),
    "rezone": lambda r: r.with_member(member("n0", "c")),
    "leaving": lambda r: r.with_member(member("n1", "b", state=RingState.LEAVING)),
}


def node_ids(owners: tuple[RingMember, ...]) -> frozenset[str]:
    return frozenset(m.node_id for m in owners)


def check_exact_cover(
    old: Ring, new: Ring, replicas: int, old_include: tuple[str, ...], new_include: tuple[str, ...]
) -> None:
    changes = range_changes(old, new, replicas, old_include=old_include, new_include=new_include)
    # The ranges are disjoint; at most one wraps past token 0.
    ordered = sorted(changes, key=lambda c: c.range.start)
    for a, b in itertools.pairwise(ordered):
        assert not a.range.wraps and a.range.end <= b.range.start
    starts = [c.range.start for c in ordered]
    for token in TOKENS:
        before = old.owners_for_token(token, replicas, include=old_include)
        after = new.owners_for_token(token, replicas, include=new_include)
        candidates = ordered[max(bisect_left(starts, token) - 1, 0) :][:1] + ordered[-1:]
        hits = list({id(c): c for c in candidates if token in c.range}.values())
        if node_ids(before) == node_ids(after):
            assert not hits
        else:
            assert hits, f"token {token} changed owners but no range covers it"
            (change,) = hits
            assert node_ids(change.old_owners) == node_ids(before)
            assert node_ids(change.new_owners) == node_ids(after)
    for transfer in diff(old, new, replicas, old_include=old_include, new_include=new_include):
        change = next(c for c in changes if c.range == transfer.range)
        assert transfer.target in change.gained
        assert transfer.source == change.old_owners[0] and transfer.holders == change.old_owners


@pytest.mark.parametrize("name", list(CHANGES))
@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_diff_covers_exactly_the_changed_keys(name: str, replicas: int) -> None:
    check_exact_cover(BASE, CHANGES[name](BASE), replicas, READ_STATES, READ_STATES)


def test_join_transfers_go_only_to_the_new_node() -> None:
    new = BASE.with_member(member("new", "b"))
    transfers = diff(BASE, new, 2)
    assert transfers and {t.target.node_id for t in transfers} == {"new"}
    assert all(t.source.node_id != "new" for t in transfers)
    moved = sum(any(tok in t.range for t in transfers) for tok in TOKENS) / len(TOKENS)
    # About 2 copies in 7 land on the newcomer; a loose bound catches gross over-movement.
    assert moved < 0.45


def test_handoff_streams_to_joining_and_from_leaving() -> None:
    ring = BASE.with_member(member("joiner", "a", state=RingState.JOINING)).with_member(
        member("n5", "c", state=RingState.LEAVING)
    )
    check_exact_cover(ring, ring, 2, READ_STATES, PENDING_STATES)
    transfers = handoff(ring, 2)
    assert {t.target.node_id for t in transfers} - {"joiner"} <= {f"n{i}" for i in range(5)}
    assert any(t.target.node_id == "joiner" for t in transfers)
    assert all(t.target.node_id != "n5" for t in transfers)
    changes = range_changes(ring, ring, 2, new_include=PENDING_STATES)
    lost = {m.node_id for c in changes for m in c.lost}
    assert "n5" in lost and "joiner" not in lost


def test_no_change_no_transfer_and_empty_old_ring() -> None:
    assert diff(BASE, BASE, 2) == []
    assert range_changes(BASE, BASE.with_member(member("n0", "a")), 3) == []  # same members
    empty = Ring()
    changes = range_changes(empty, BASE, 1)
    assert changes and all(not c.old_owners for c in changes)
    assert diff(empty, BASE, 1) == []
