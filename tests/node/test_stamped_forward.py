"""A forwarded plain write carries the version its forwarder fixed. Delivered late (its forwarder
may have failed it over) it is applied at that version, only to keys holding older records, so
it cannot overwrite newer writes; delivered on time it is coordinated with a fresh version."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.errors import CommandError, ErrorCode
from meshcache.hlc import MAX_VERSION, make_version
from meshcache.node.data.coordinator import LATE_FORWARD_MS, Coordinator, stampable
from meshcache.node.data.replication import read_record
from meshcache.wire.ops import OPS
from tests.node.test_dataplane import ME, NOW_S, OTHER, make_plane

NOW_MS = int(NOW_S * 1000)
LATE = make_version(NOW_MS - LATE_FORWARD_MS)  # stamped that long ago: late


def fwd(plane: Coordinator, op: str, args: list[Any], stamp: int | None) -> Any:
    payload: list[Any] = [op, args, {} if stamp is None else {"version": stamp}]
    return plane.execute_forwarded("default", payload)


def version_of(plane: Coordinator, key: bytes) -> int | None:
    record = read_record(plane.store, "default", key)
    return None if record is None else record.version


def test_an_on_time_forward_gets_a_fresh_version() -> None:
    plane = make_plane([ME, OTHER], replicas=2)
    stamp = make_version(NOW_MS - LATE_FORWARD_MS + 1, 5)  # just under the limit
    assert fwd(plane, "SET", [b"k", b"new", {}], stamp) is True
    assert fwd(plane, "SET", [b"k", b"newer", {}], stamp - 1) is True  # in arrival order
    assert plane.store.execute("default", "GET", [b"k"]) == b"newer"
    assert version_of(plane, b"k") > stamp
    assert plane.stats["forwards_late"] == 0


def test_a_late_stamped_set_lands_at_its_version() -> None:
    plane = make_plane([ME, OTHER], replicas=2)
    stamp = LATE - 7
    assert fwd(plane, "SET", [b"k", b"v1"], stamp) is True
    assert version_of(plane, b"k") == stamp
    assert plane.stats["forwards_late"] == 1
    assert plane.store.execute("default", "GET", [b"k"]) == b"v1"
    # This node's clock has witnessed it: its next write of the key is newer.
    assert plane.coordinate("default", "SET", OPS["SET"], [b"k", b"v2", {}]) is True
    assert version_of(plane, b"k") > stamp


def test_a_late_forward_does_not_overwrite_a_newer_write() -> None:
    plane = make_plane([ME, OTHER], replicas=2)
    stamp = LATE  # v1's version, fixed when it was first forwarded, seconds ago
    # v2, acknowledged after v1 was failed over elsewhere, reaches this owner first.
    plane.coordinate("default", "SET", OPS["SET"], [b"k", b"v2", {}])
    v2 = version_of(plane, b"k")
    assert v2 is not None and v2 > stamp
    # The forward of v1 arrives when the cut heals: left alone, answered as applied.
    assert fwd(plane, "SET", [b"k", b"v1", {}], stamp) is True
    assert plane.store.execute("default", "GET", [b"k"]) == b"v2"
    assert version_of(plane, b"k") == v2
    assert plane.stats["forwards_superseded"] == 1
    # A late DELETE the same: the newer value stays.
    assert fwd(plane, "DELETE", [b"k"], stamp) == 0
    assert plane.store.execute("default", "GET", [b"k"]) == b"v2"
    # The same forward delivered twice is applied once.
    again = LATE + 1
    assert fwd(plane, "SET", [b"d", b"v3", {}], again) is True
    assert fwd(plane, "SET", [b"d", b"v3", {}], again) is True
    assert version_of(plane, b"d") == again
    assert plane.stats["forwards_superseded"] == 3


def test_many_keys_are_applied_where_older() -> None:
    plane = make_plane([ME, OTHER], replicas=2)
    stamp = LATE - 2
    plane.coordinate("default", "MSET", OPS["MSET"], [b"a", b"new", b"c", b"new"])
    assert fwd(plane, "MSET", [b"a", b"old", b"b", b"old", b"c", b"old"], stamp) is True
    assert plane.store.execute("default", "MGET", [b"a", b"b", b"c"]) == [b"new", b"old", b"new"]
    assert version_of(plane, b"b") == stamp
    # DELETE: keys written after the stamp stay; older ones go.
    later = LATE - 1
    plane.coordinate("default", "SET", OPS["SET"], [b"a", b"newer", {}])
    assert fwd(plane, "DELETE", [b"a", b"b", b"c"], later) == 1
    assert plane.store.execute("default", "MGET", [b"a", b"b", b"c"]) == [b"newer", None, b"new"]
    assert version_of(plane, b"b") == later  # its tombstone carries the stamp


def test_only_plain_writes_carry_a_version() -> None:
    plane = make_plane([ME, OTHER], replicas=2)
    stamp = LATE
    for op, args in (
        ("SET", [b"k", b"v", {"nx": True}]),
        ("SET", [b"k", b"v", {"get": True}]),
        ("INCR", [b"n"]),
        ("GET", [b"k"]),
    ):
        assert not stampable(op, args)
        with pytest.raises(CommandError) as info:
            fwd(plane, op, args, stamp)
        assert info.value.code == ErrorCode.BAD_REQUEST
    for bad in (0, -1, MAX_VERSION + 1, True, 1.5, "1"):
        with pytest.raises(CommandError) as info:
            fwd(plane, "SET", [b"k", b"v"], bad)  # type: ignore[arg-type]
        assert info.value.code == ErrorCode.BAD_REQUEST
    with pytest.raises(CommandError):
        plane.execute_forwarded("default", ["SET", [b"k", b"v"], "not a map"])
    assert stampable("SET", [b"k", b"v", {"ttl": 5}])
    assert stampable("MSET", [b"k", b"v"]) and stampable("DELETE", [b"k"])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([b"a", b"b"]), st.integers(1, 50), st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_any_delivery_order_ends_with_the_newest_stamp(
    writes: list[tuple[bytes, int, bool]],
) -> None:
    """Late stamped SETs and DELETEs delivered in any order leave each key as the greatest
    stamp says (a delete wins a tie), as replicas applying the same records would."""
    plane = make_plane([ME, OTHER], replicas=2)
    newest: dict[bytes, tuple[int, bool]] = {}
    for key, offset, delete in writes:
        stamp = LATE - 100 + offset
        if delete:
            fwd(plane, "DELETE", [key], stamp)
        else:
            fwd(plane, "SET", [key, b"%d" % offset, {}], stamp)
        if key not in newest or (stamp, delete) > newest[key]:
            newest[key] = (stamp, delete)
    for key, (stamp, delete) in newest.items():
        value = plane.store.execute("default", "GET", [key])
        if delete:
            assert value is None
        else:
            assert value == b"%d" % (stamp - LATE + 100)
