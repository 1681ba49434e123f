"""``gained_ranges`` answers exactly what a token-by-token comparison of the views answers.

The reference below asks the ring for the owners at every range end, one lookup at a time, and
labels each elementary range on its own: slow and obviously right. The implementation under test
must return the same ranges with the same holders, for rings in every state mix, with and
without a held ring, for replica counts within and beyond the precomputed preference depth.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.ring import (
    PENDING_STATES,
    READ_STATES,
    Ring,
    RingMember,
    RingState,
    TokenRange,
    gained_ranges,
)
from meshcache.ring.tokens import label_runs


def reference(
    held: Ring | None, current: Ring, node_id: str, replicas: int
) -> list[tuple[TokenRange, tuple[RingMember, ...]]]:
    rings = [current] if held is None else [current, held]
    bounds = sorted(
        {b for ring in rings for inc in (READ_STATES, PENDING_STATES) for b in ring.boundaries(inc)}
    )
    labels: list[tuple[bool, tuple[RingMember, ...]]] = []
    for b in bounds:
        now_owners = current.owners_for_token(b, replicas, include=READ_STATES)
        pending = current.owners_for_token(b, replicas, include=PENDING_STATES)
        mine_now = any(m.node_id == node_id for m in (*now_owners, *pending))
        mine_before = held is not None and any(
            m.node_id == node_id
            for inc in (READ_STATES, PENDING_STATES)
            for m in held.owners_for_token(b, replicas, include=inc)
        )
        if not mine_now or mine_before:
            labels.append((False, ()))
            continue
        sources = list(held.owners_for_token(b, replicas, include=READ_STATES)) if held else []
        sources += [m for m in now_owners if m not in sources]
        labels.append((True, tuple(m for m in sources if m.node_id != node_id)))
    return [(r, label[1]) for r, label in label_runs(bounds, labels) if label[0]]


STATES = [RingState.ACTIVE, RingState.ACTIVE, RingState.JOINING, RingState.LEAVING]


@st.composite
def members(draw: st.DrawFn) -> list[RingMember]:
    n = draw(st.integers(1, 6))
    return [
        RingMember(
            f"n{i}",
            f"h:{i}",
            zone=draw(st.sampled_from(["a", "b", "c"])),
            weight=draw(st.integers(0, 3)),
            state=draw(st.sampled_from(STATES)),
        )
        for i in range(n)
    ]


@st.composite
def ring_pairs(draw: st.DrawFn) -> tuple[Ring | None, Ring, str, int]:
    vnodes = draw(st.integers(1, 24))
    depth = draw(st.integers(1, 5))
    current = Ring(draw(members()), 2, vnodes_per_weight=vnodes, preference_depth=depth)
    held: Ring | None = None
    if draw(st.booleans()):
        held = Ring(draw(members()), 1, vnodes_per_weight=vnodes, preference_depth=depth)
    node_id = draw(st.sampled_from([m.node_id for m in current.members] + ["absent"]))
    return held, current, node_id, draw(st.integers(0, 7))


@settings(max_examples=300, deadline=None)
@given(ring_pairs())
def test_gained_ranges_match_a_lookup_per_range_end(
    case: tuple[Ring | None, Ring, str, int],
) -> None:
    held, current, node_id, replicas = case
    assert gained_ranges(held, current, node_id, replicas) == reference(
        held, current, node_id, replicas
    )


def test_a_joining_node_gains_what_it_will_own_from_the_old_owners() -> None:
    """A case with real sizes, where most answers are non-trivial."""
    old = Ring([RingMember(f"n{i}", f"h:{i}", zone="abc"[i]) for i in range(3)], 1)
    joining = RingMember("n3", "h:3", state=RingState.JOINING)
    current = old.with_member(joining)
    for replicas in (1, 2, 3):
        got = gained_ranges(old, current, "n3", replicas)
        assert got, replicas
        assert got == reference(old, current, "n3", replicas)
        assert all(holders and all(m.node_id != "n3" for m in holders) for _, holders in got)
    # Nothing to gain for a node that already held its ranges.
    assert gained_ranges(current, current, "n3", 2) == []
