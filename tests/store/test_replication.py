from __future__ import annotations

import pytest

from meshcache.errors import RemoteProtocolError
from meshcache.hlc import make_version, physical_ms
from meshcache.store import EntryView

from .conftest import FakeClock, Harness


def test_get_entry_of_every_type(h: Harness, clock: FakeClock) -> None:
    assert h.store.get_entry("default", b"nope") is None
    h.run("SET", b"p", b"v", {"ttl": 10})
    h.run("HSET", b"h", b"f", b"v")
    h.run("RPUSH", b"l", b"a", b"b")
    h.run("SADD", b"s", b"y", b"x")
    h.run("ZADD", b"z", 2, b"b", 1, b"a")
    p = h.store.get_entry("default", b"p")
    assert p is not None
    assert (p.type, p.value, p.expires_at) == ("bytes", b"v", clock.now + 10)
    assert physical_ms(p.version) == clock.ms()
    views = {k: h.store.get_entry("default", k) for k in (b"h", b"l", b"s", b"z")}
    assert {k: (v.type, v.value) for k, v in views.items() if v} == {
        b"h": ("hash", {b"f": b"v"}),
        b"l": ("list", [b"a", b"b"]),
        b"s": ("set", [b"x", b"y"]),
        b"z": ("zset", [[b"a", 1.0], [b"b", 2.0]]),
    }


def test_apply_entry_last_writer_wins(clock: FakeClock) -> None:
    a = Harness(clock)
    b = Harness(clock)
    a.run("SET", b"k", b"from-a")
    clock.advance(0.01)
    b.run("SET", b"k", b"from-b")
    view_a = a.store.get_entry("default", b"k")
    view_b = b.store.get_entry("default", b"k")
    assert view_a is not None and view_b is not None
    assert a.store.apply_entry("default", b"k", view_b) is True
    assert b.store.apply_entry("default", b"k", view_a) is False
    assert a.run("GET", b"k") == b.run("GET", b"k") == b"from-b"
    assert a.store.get_entry("default", b"k") == view_b
    assert a.store.apply_entry("default", b"k", view_b) is False  # same version: no-op
    # A later local write on a gets a greater version than the one it observed.
    a.run("SET", b"k", b"again")
    again = a.store.get_entry("default", b"k")
    assert again is not None and again.version > view_b.version
    a.check_accounting()


def test_apply_typed_entries_and_roundtrip(clock: FakeClock) -> None:
    a = Harness(clock)
    b = Harness(clock)
    b.run("SET", b"h", b"older plain value")
    clock.advance(0.01)
    a.run("HSET", b"h", b"f", b"v", b"g", b"w")
    a.run("RPUSH", b"l", b"1", b"2")
    a.run("SADD", b"s", b"m")
    a.run("ZADD", b"z", 1.5, b"m", float("inf"), b"n")
    a.run("SET", b"p", b"v", {"ttl": 5})
    for key in (b"h", b"l", b"s", b"z", b"p"):
        view = a.store.get_entry("default", key)
        assert view is not None
        wire = EntryView.from_wire(view.to_wire())
        assert b.store.apply_entry("default", key, wire) is True
        assert b.store.get_entry("default", key) == view
    assert b.run("ZRANGE", b"z", 0, -1, {"withscores": True}) == [[b"m", 1.5], [b"n", float("inf")]]
    assert b.run("TTL", b"p") == 5.0
    b.check_accounting()


def test_apply_expired_entry_deletes_older_local(h: Harness, clock: FakeClock) -> None:
    h.run("SET", b"k", b"v")
    _, version = h.run("GETS", b"k")
    view = EntryView("bytes", b"new", clock.now - 1, version + 1)
    assert h.store.apply_entry("default", b"k", view) is True
    assert h.run("GET", b"k") is None
    h.check_accounting()


def test_apply_entry_clamps_far_future_versions(h: Harness, clock: FakeClock) -> None:
    far = make_version(clock.ms() + 10 * 3600 * 1000)
    assert h.store.apply_entry("default", b"k", EntryView("bytes", b"v", None, far)) is True
    _, version = h.run("GETS", b"k")
    assert version < far
    assert physical_ms(version) <= clock.ms() + 60_000
    assert h.hlc.clamped == 1


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        ["bytes", b"v", None],
        ["blob", b"v", None, 1],
        ["bytes", "v", None, 1],
        ["bytes", b"v", "soon", 1],
        ["bytes", b"v", None, -1],
    ],
)
def test_from_wire_refuses_malformed(bad: object) -> None:
    with pytest.raises(RemoteProtocolError):
        EntryView.from_wire(bad)
