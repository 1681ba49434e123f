"""Placement properties of the ring: distinct owners, zones, minimal movement, weights, states."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
from bisect import bisect_left
from collections import Counter

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.errors import ConfigError
from meshcache.ring import (
    ALL_STATES,
    PENDING_STATES,
    TOKEN_SPACE,
    NoOwnerError,
    Ring,
    RingMember,
    RingState,
    key_token,
)
from meshcache.ring.tokens import label_runs

SMALL_VNODES = 16  # properties hold for any vnode count; small rings keep hypothesis fast


def member(
    node_id: str, zone: str = "", weight: int = 1, state: RingState = RingState.ACTIVE
) -> RingMember:
    return RingMember(node_id, f"{node_id}:7400", zone=zone, weight=weight, state=state)


def six_nodes() -> list[RingMember]:
    return [member(f"node-{i}", zone="abc"[i % 3]) for i in range(1, 7)]


def with_states(members: list[RingMember], states: list[RingState]) -> list[RingMember]:
    return [dataclasses.replace(m, state=s) for m, s in zip(members, states, strict=False)]


def ids(owners: tuple[RingMember, ...]) -> tuple[str, ...]:
    return tuple(m.node_id for m in owners)


_rng = random.Random(5)
KEYS = [_rng.randbytes(12) for _ in range(2000)]
assert len(set(KEYS)) == len(KEYS)

ring_members = st.lists(
    st.builds(
        member,
        node_id=st.text("abcdefgh0123", min_size=1, max_size=6),
        zone=st.sampled_from(["", "z1", "z2", "z3", "z4"]),
        weight=st.integers(0, 3),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda m: m.node_id,
)


GOLDEN = {
    b"alpha": ("node-2", "node-1", "node-3"),
    b"beta": ("node-6", "node-5", "node-1"),
    b"user:42": ("node-2", "node-3", "node-1"),
    b"": ("node-4", "node-6", "node-2"),
}


def test_golden_placement() -> None:
    ring = Ring(six_nodes(), 1)
    for key, expected in GOLDEN.items():
        assert ids(ring.owners(key, 3)) == expected


def test_placement_is_the_same_in_another_process() -> None:
    code = (
        "from meshcache.ring import Ring, RingMember\n"
        "ms = [RingMember(f'node-{i}', f'node-{i}:7400', zone='abc'[i % 3]) for i in range(1, 7)]\n"
        "r = Ring(ms, 1)\n"
        "for k in (b'alpha', b'beta', b'user:42', b''):\n"
        "    print(','.join(m.node_id for m in r.owners(k, 3)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert out == [",".join(v) for v in GOLDEN.values()]


@settings(max_examples=60, deadline=None)
@given(ring_members, st.integers(1, 7))
def test_owners_are_distinct_zone_spread_and_prefixes(
    members: list[RingMember], replicas: int
) -> None:
    ring = Ring(members, 1, vnodes_per_weight=SMALL_VNODES, preference_depth=3)
    owning = [m for m in members if m.weight > 0]
    zones = {m.zone for m in owning}
    for key in KEYS[:100]:
        owners = ring.owners(key, replicas)
        assert len(owners) == min(replicas, len(owning))
        assert len(set(ids(owners))) == len(owners)
        owner_zones = [m.zone for m in owners]
        if replicas <= len(zones):
            assert len(set(owner_zones)) == len(owners)
        else:
            assert set(owner_zones) == zones
        # Asking for more owners never changes the first ones (the primary in particular).
        assert ring.owners(key, replicas + 1)[:replicas] == owners
        if owners:
            assert ring.primary(key) == owners[0]


@settings(max_examples=30, deadline=None)
@given(ring_members, st.sampled_from(["", "z1", "z9"]), st.integers(1, 3), st.integers(1, 3))
def test_adding_a_node_moves_keys_only_to_it(
    members: list[RingMember], zone: str, weight: int, replicas: int
) -> None:
    old = Ring(members, 1, vnodes_per_weight=SMALL_VNODES)
    new = old.with_member(member("newcomer", zone=zone, weight=weight))
    assert new.version == 2
    for key in KEYS[:1000]:
        before = set(ids(old.owners(key, replicas)))
        after = set(ids(new.owners(key, replicas)))
        assert after - before <= {"newcomer"}
        if before:
            assert ids(new.owners(key))[0] in (ids(old.owners(key))[0], "newcomer")


def test_weights_are_roughly_proportional() -> None:
    weights = {"w1": 1, "w2": 2, "w3": 3, "w4": 2}
    ring = Ring([member(n, weight=w) for n, w in weights.items()], 1, vnodes_per_weight=256)
    rng = random.Random(9)
    counts = Counter(ring.primary(rng.randbytes(10)).node_id for _ in range(40_000))
    total_weight = sum(weights.values())
    for node_id, weight in weights.items():
        share = counts[node_id] / 40_000
        assert share == pytest.approx(weight / total_weight, rel=0.15)


def test_joining_leaving_views_and_write_owners() -> None:
    members = [
        *six_nodes(),
        member("joiner", zone="a", state=RingState.JOINING),
        member("node-9", zone="b", state=RingState.LEAVING),
    ]
    ring = Ring(members, 3, vnodes_per_weight=64)
    assert not ring.stable
    saw_joiner_write = saw_leaver_read = False
    for key in KEYS:
        read = ids(ring.owners(key, 2))
        pending = ids(ring.pending_owners(key, 2))
        write = ids(ring.write_owners(key, 2))
        assert "joiner" not in read and "node-9" not in pending
        assert write[: len(read)] == read
        assert set(write) == set(read) | set(pending) and len(set(write)) == len(write)
        assert ids(ring.owners(key, 2, include=PENDING_STATES)) == pending
        saw_joiner_write |= "joiner" in write
        saw_leaver_read |= "node-9" in read
    assert saw_joiner_write and saw_leaver_read
    all_view = ring.owners(KEYS[0], 20, include=ALL_STATES)
    assert len(all_view) == 8


@pytest.mark.parametrize("stable", [True, False])
def test_write_ranges_hold_exactly_the_tokens_a_node_write_owns(stable: bool) -> None:
    members = six_nodes()
    if not stable:
        members += [member("joiner", zone="a", state=RingState.JOINING)]
        members[0] = member(members[0].node_id, zone=members[0].zone, state=RingState.LEAVING)
    ring = Ring(members, 3, vnodes_per_weight=32)
    for m in members:
        ranges = ring.write_ranges(m.node_id, 2)
        assert ring.write_ranges(m.node_id, 2) is ranges  # built once per ring
        for key in KEYS:
            expected = m.node_id in ids(ring.write_owners(key, 2))
            assert (key_token(key) in ranges) == expected


def test_stable_ring_write_owners_are_owners() -> None:
    ring = Ring(six_nodes(), 1)
    assert ring.stable
    for key in KEYS[:200]:
        assert ring.write_owners(key, 3) == ring.owners(key, 3) == ring.pending_owners(key, 3)


def test_more_replicas_than_the_precomputed_depth() -> None:
    members = [member(f"n{i}", zone=f"z{i % 4}") for i in range(10)]
    ring = Ring(members, 1, vnodes_per_weight=32, preference_depth=2)
    for key in KEYS[:200]:
        owners = ring.owners(key, 7)
        assert owners[:2] == ring.owners(key, 2)
        assert len({m.zone for m in owners[:4]}) == 4
        assert len(set(ids(owners))) == 7
    assert ring.owners(b"k", 0) == () and ring.owners(b"k", -1) == ()


@settings(max_examples=60, deadline=None)
@given(members=ring_members, replicas=st.integers(1, 10), depth=st.integers(1, 6))
def test_asking_for_more_owners_than_a_view_has_is_every_member_in_walk_order(
    members: list[RingMember], replicas: int, depth: int
) -> None:
    # A view whose lists already hold every member answers from them; the answer is what
    # walking the whole ring from the key's vnode gives.
    ring = Ring(members, 1, vnodes_per_weight=SMALL_VNODES, preference_depth=depth)
    view = ring._view(("active", "leaving"))
    if not view.tokens:
        return
    for key in KEYS[:100]:
        pos = bisect_left(view.tokens, key_token(key)) % len(view.tokens)
        walked = tuple(view.members[i] for i in view.walk(pos, replicas))
        assert ring.owners(key, replicas) == walked
        assert ring.owners_for_token(key_token(key), replicas) == walked


@settings(max_examples=150, deadline=None)
@given(
    members=ring_members,
    states=st.lists(st.sampled_from(list(RingState)), min_size=8, max_size=8),
    depth=st.integers(1, 6),
    vnodes=st.sampled_from([1, 3, 16]),
)
def test_every_precomputed_preference_list_is_the_walk_from_its_position(
    members: list[RingMember], states: list[RingState], depth: int, vnodes: int
) -> None:
    members = with_states(members, states)
    ring = Ring(members, 1, vnodes_per_weight=vnodes, preference_depth=depth)
    for include in (("active", "leaving"), ("active", "joining"), ("active",)):
        view = ring._view(include)
        assert len(view.prefs) == (len(view.tokens) + 1 if view.tokens else 0)
        for pos in range(len(view.tokens)):
            walked = tuple(view.members[i] for i in view.walk(pos, view.depth))
            assert view.prefs[pos] == walked, pos


@settings(max_examples=100, deadline=None)
@given(
    members=ring_members,
    states=st.lists(st.sampled_from(list(RingState)), min_size=8, max_size=8),
    depth=st.integers(1, 6),
    replicas=st.integers(0, 8),
)
def test_owned_ranges_are_the_boundaries_whose_owners_hold_the_node(
    members: list[RingMember], states: list[RingState], depth: int, replicas: int
) -> None:
    members = with_states(members, states)
    ring = Ring(members, 1, vnodes_per_weight=SMALL_VNODES, preference_depth=depth)
    for include in (("active", "leaving"), ("active", "joining")):
        bounds = ring.boundaries(include)
        for m in [*ring, member("not-a-member")]:
            labels = [
                m.node_id in ids(ring.owners_for_token(b, replicas, include=include))
                for b in bounds
            ]
            expected = [r for r, owned in label_runs(bounds, labels) if owned]
            assert ring.owned_ranges(m.node_id, replicas, include=include) == expected


def test_range_of_and_owned_ranges_agree_with_owners() -> None:
    ring = Ring(six_nodes(), 1, vnodes_per_weight=32)
    owned = {m.node_id: ring.owned_ranges(m.node_id, 2) for m in ring}
    merged = ring.ranges(2)
    for key in KEYS:
        token = key_token(key)
        assert token in ring.range_of(key)
        assert ring.owners_for_token(ring.range_of(key).end, 2) == ring.owners(key, 2)
        owners = set(ids(ring.owners(key, 2)))
        assert {n for n, ranges in owned.items() if any(token in r for r in ranges)} == owners
        assert [o for r, o in merged if token in r] == [ring.owners(key, 2)]


@given(
    members=ring_members,
    vnodes=st.integers(1, 8),
    joining=st.sets(st.integers(0, 7), max_size=3),
)
def test_shares_are_the_sizes_of_each_members_owned_ranges(
    members: list[RingMember], vnodes: int, joining: set[int]
) -> None:
    members = [
        member(m.node_id, m.zone, m.weight, RingState.JOINING) if i in joining else m
        for i, m in enumerate(members)
    ]
    ring = Ring(members, 1, vnodes_per_weight=vnodes)
    shares = ring.shares()
    assert set(shares) == {m.node_id for m in members}
    for m in members:
        size = sum(r.size for r in ring.owned_ranges(m.node_id, 1))
        assert shares[m.node_id] == size / TOKEN_SPACE
    assert sum(shares.values()) in (0.0, pytest.approx(1.0))


def test_empty_ring_and_all_joining() -> None:
    empty = Ring()
    assert empty.owners(b"k", 2) == ()
    with pytest.raises(NoOwnerError):
        empty.primary(b"k")
    with pytest.raises(NoOwnerError):
        empty.range_of(b"k")
    joining = Ring([member("j", state=RingState.JOINING)], 1, vnodes_per_weight=8)
    assert joining.owners(b"k") == ()
    assert ids(joining.write_owners(b"k")) == ("j",)


def test_single_vnode_owns_the_whole_ring() -> None:
    ring = Ring([member("only")], 1, vnodes_per_weight=1)
    assert ring.range_of(b"x").size == 2**32
    assert ids(ring.owners(b"x", 3)) == ("only",)


def test_mapping_round_trip_through_msgpack() -> None:
    ring = Ring([*six_nodes(), member("j", zone="b", weight=2, state=RingState.JOINING)], 7)
    data = msgpack.unpackb(msgpack.packb(ring.to_mapping()))
    again = Ring.from_mapping(data)
    assert again == ring and hash(again) == hash(ring)
    assert again.version == 7 and again.member("j") == ring.member("j")
    for key in KEYS[:100]:
        assert again.write_owners(key, 2) == ring.write_owners(key, 2)


@pytest.mark.parametrize(
    "data",
    [
        "not a mapping",
        {"scheme": 99, "version": 1, "vnodes_per_weight": 8, "members": []},
        {"scheme": 1, "version": "1", "vnodes_per_weight": 8, "members": []},
        {"scheme": 1, "version": 1, "vnodes_per_weight": 8, "members": {}},
        {"scheme": 1, "version": -1, "vnodes_per_weight": 8, "members": []},
        {"scheme": 1, "version": 1, "vnodes_per_weight": 0, "members": []},
        {"scheme": 1, "version": 1, "vnodes_per_weight": 8, "members": [{"node_id": "a"}]},
        {"scheme": 1, "version": 1, "vnodes_per_weight": 8, "members": ["x"]},
        {
            "scheme": 1,
            "version": 1,
            "vnodes_per_weight": 8,
            "members": [{"node_id": "a", "address": "a:1", "colour": "red"}],
        },
        {
            "scheme": 1,
            "version": 1,
            "vnodes_per_weight": 8,
            "members": [{"node_id": "a", "address": "a:1", "state": "gone"}],
        },
        {
            "scheme": 1,
            "version": 1,
            "vnodes_per_weight": 8,
            "members": [{"node_id": "a", "address": "a:1"}, {"node_id": "a", "address": "b:1"}],
        },
        {
            "scheme": 1,
            "version": 1,
            "vnodes_per_weight": 65536,
            "members": [{"node_id": "a", "address": "a:1", "weight": 1000}],
        },
    ],
)
def test_from_mapping_rejects_malformed_input(data: object) -> None:
    with pytest.raises(ConfigError):
        Ring.from_mapping(data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"node_id": ""},
        {"address": ""},
        {"weight": -1},
        {"weight": True},
        {"weight": 1001},
        {"state": "dead"},
        {"zone": 3},
    ],
)
def test_member_validation(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"node_id": "a", "address": "a:1", **kwargs}
    with pytest.raises(ConfigError):
        RingMember(**fields)  # type: ignore[arg-type]


def test_ring_state_values_are_the_wire_strings() -> None:
    assert [s.value for s in RingState] == ["joining", "active", "leaving"]
    from_text = RingMember("a", "a:1", state="leaving")  # type: ignore[arg-type]
    assert from_text.state is RingState.LEAVING and from_text.state == "leaving"
    data = from_text.to_mapping()
    assert type(data["state"]) is str and data["state"] == "leaving"
    assert RingMember.from_mapping(data) == from_text
    assert RingMember.from_mapping({"node_id": "a", "address": "a:1"}).state is RingState.ACTIVE


def test_without_member_and_unknown_states() -> None:
    ring = Ring(six_nodes(), 4, vnodes_per_weight=8)
    smaller = ring.without_member("node-3")
    assert smaller.version == 5 and "node-3" not in smaller and len(smaller) == 5
    with pytest.raises(ValueError):
        ring.owners(b"k", include=("active", "dead"))
