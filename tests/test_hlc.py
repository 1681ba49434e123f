from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshcache.hlc import HLC, LOGICAL_MASK, logical, make_version, physical_ms


class Wall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_now_uses_wall_clock_then_counts() -> None:
    wall = Wall(1_000)
    hlc = HLC(wall)
    a = hlc.now()
    b = hlc.now()
    assert physical_ms(a) == 1_000 and logical(a) == 0
    assert physical_ms(b) == 1_000 and logical(b) == 1
    wall.ms = 2_000
    assert hlc.now() == make_version(2_000)


def test_wall_clock_going_back_keeps_versions_growing() -> None:
    wall = Wall(5_000)
    hlc = HLC(wall)
    first = hlc.now()
    wall.ms = 4_000
    second = hlc.now()
    assert second > first
    assert physical_ms(second) == 5_000


def test_logical_overflow_spills_into_milliseconds() -> None:
    hlc = HLC(Wall(10))
    versions = [hlc.now() for _ in range(LOGICAL_MASK + 3)]
    assert versions == sorted(set(versions))
    assert physical_ms(versions[-1]) == 11


def test_observe_merges_remote_version() -> None:
    wall = Wall(1_000)
    hlc = HLC(wall)
    remote = make_version(1_500, 7)
    assert hlc.observe(remote) == remote
    assert hlc.now() > remote
    assert hlc.clamped == 0


def test_observe_clamps_a_remote_clock_far_ahead() -> None:
    wall = Wall(1_000)
    hlc = HLC(wall, max_drift_ms=100)
    remote = make_version(1_000_000)
    got = hlc.observe(remote)
    assert got < remote
    assert physical_ms(got) == 1_100
    assert hlc.clamped == 1
    assert physical_ms(hlc.now()) <= 1_101


def test_drift_limit_is_what_observe_admits_and_witness_merges_like_observe() -> None:
    wall = Wall(1_000)
    hlc = HLC(wall, max_drift_ms=100)
    limit = hlc.drift_limit()
    assert hlc.observe(limit) == limit and hlc.clamped == 0
    assert hlc.observe(limit + 1) == limit and hlc.clamped == 1
    other = HLC(Wall(1_000), max_drift_ms=100)
    other.witness(make_version(1_050, 3))
    other.witness(make_version(900))  # older: changes nothing
    assert other.last == make_version(1_050, 3)
    assert other.now() > make_version(1_050, 3)


def test_observe_of_an_old_version_changes_nothing() -> None:
    wall = Wall(1_000)
    hlc = HLC(wall)
    v = hlc.now()
    assert hlc.observe(make_version(10)) == make_version(10)
    assert hlc.now() == v + 1


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("now"), st.integers(0, 2**40)),
            st.tuples(st.just("observe"), st.integers(0, 2**56)),
        ),
        max_size=200,
    )
)
def test_monotonic_under_any_wall_readings(steps: list[tuple[str, int]]) -> None:
    wall = Wall(0)
    hlc = HLC(wall, max_drift_ms=1_000)
    last = 0
    for kind, number in steps:
        if kind == "now":
            wall.ms = number
            version = hlc.now()
            assert version > last
            assert physical_ms(version) >= wall.ms
            last = version
        else:
            got = hlc.observe(number)
            assert got <= number
            assert physical_ms(got) <= wall.ms + 1_000
            last = max(last, got)
            assert hlc.now() > got
            last = hlc.last


def test_a_pinned_clock_issues_the_pinned_version_then_moves_past_it() -> None:
    wall = Wall(1_000)
    hlc = HLC(wall)
    issued = hlc.now()
    older, ahead = make_version(900, 3), make_version(1_500, 7)
    for pinned in (older, ahead):
        hlc.pin(pinned)
        try:
            assert hlc.now() == hlc.now() == pinned
        finally:
            hlc.unpin()
    after = hlc.now()
    assert after > ahead > issued  # witnessed the pinned versions, never went back
    for bad in (0, -1, 1 << 64):
        with pytest.raises(ValueError):
            hlc.pin(bad)
