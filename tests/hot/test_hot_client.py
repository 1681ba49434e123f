"""The client's side of hot keys: the hints of a response, the hot-set version that makes the
router ask a node's HOTKEYS, the versions of its writes it demands of copies (HOT_GET)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshcache.client import results
from meshcache.client.core import ClientProtocol, Command, Exchange
from meshcache.client.engine import _demand_versions, _written_keys
from meshcache.client.ring_router import (
    ANY_COPY_OLDER,
    WRITTEN_FOR,
    WRITTEN_MAX,
    RingRouter,
    RingSnapshot,
)
from meshcache.errors import RemoteProtocolError
from meshcache.ring import Ring, RingMember
from meshcache.wire.address import Address
from meshcache.wire.frame import HEADER, decode_response

A, B, C = Address("127.0.0.1", 1), Address("127.0.0.1", 2), Address("127.0.0.1", 3)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _router(clock: Clock) -> RingRouter:
    router = RingRouter([A], clock=clock)
    members = [RingMember(f"n{i}", f"127.0.0.1:{i}") for i in (1, 2, 3)]
    router.snapshot = RingSnapshot.build(Ring(members, 5), {"default": 1})
    return router


def _frame(*items: object) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


def test_a_response_may_carry_hints_as_a_fifth_element() -> None:
    assert decode_response(_frame(7, 0, b"v", 3)).hints is None
    response = decode_response(_frame(7, 0, True, 3, {"hot": 9, "version": 12}))
    assert response.value is True and response.ring_version == 3
    assert response.hints == {"hot": 9, "version": 12}


NOT_MAPS = st.one_of(
    st.integers(-(2**63), 2**64 - 1), st.text(), st.lists(st.integers(0, 9)), st.binary()
)


@given(NOT_MAPS)
def test_hints_that_are_not_a_map_are_refused(hints: object) -> None:
    with pytest.raises(RemoteProtocolError, match="hints"):
        decode_response(_frame(7, 0, b"v", 3, hints))


def test_six_elements_are_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="hints"):
        decode_response(_frame(7, 0, b"v", 3, {}, 1))


def test_an_exchange_says_the_version_each_write_left() -> None:
    protocol = ClientProtocol()
    commands = [
        Command.build("SET", [b"k", b"v"], "default", results.any_value),
        Command.build("GET", [b"k"], "default", results.any_value),
        Command.build("DELETE", [b"a", b"b"], "default", results.any_value),
    ]
    exchange = Exchange(protocol, commands)
    first = 0x0D0A0D0A
    body = b"".join(
        HEADER.pack(len(f)) + f
        for f in (
            _frame(first, 0, True, 1, {"hot": 4, "version": 77}),
            _frame(first + 1, 0, b"v", 1, {"hot": 5}),
            _frame(first + 2, 0, 2, 1),
        )
    )
    assert exchange.receive_data(body)
    assert exchange.hinted and protocol.hot_version == 5
    assert [(c.op, v, k) for c, v, k in exchange.write_versions()] == [
        ("SET", 77, None),
        ("DELETE", None, None),
    ]
    assert _written_keys(commands[0]) == [b"k"] and _written_keys(commands[2]) == [b"a", b"b"]


def test_a_changed_hot_set_version_makes_the_router_ask_that_node() -> None:
    clock = Clock()
    router = _router(clock)
    assert router.hot_due() is not None  # the first poll, in turn
    assert router.hot_due() is None  # not again within HOT_EVERY
    router.hot_hint(B, 10)
    assert router.hot_due() == B
    assert router.hot_due() is None
    router.hot_hint(B, 10)  # the same version: nothing to ask
    assert router.hot_due() is None
    router.hot_hint(B, 11)
    router.hot_hint(C, 3)
    assert {router.hot_due(), router.hot_due()} == {B, C}
    router.hot_hint(Address("10.0.0.1", 9), 1)  # not on the ring: never asked
    assert router.hot_due() is None


def test_a_write_of_several_keys_demands_each_hot_key_its_own_version() -> None:
    """The owner names the keys of a multi-key write that are hot there: the client demands
    each its own version, whatever their order in the write and whether it knew them hot."""
    protocol = ClientProtocol()
    command = Command.build("MSET", [b"cold", b"1", b"hot", b"2"], "default", results.any_value)
    exchange = Exchange(protocol, [command])
    rid = 0x0D0A0D0A
    hints = {"hot": 4, "version": 77, "versions": [[b"hot", 77]]}
    assert exchange.receive_data(HEADER.pack(len(f := _frame(rid, 0, True, 1, hints))) + f)
    assert exchange.write_versions() == [(command, 77, [(b"hot", 77)])]
    router = _router(Clock())
    router.wrote(_written_keys(command), 77, [(b"hot", 77)])
    assert router.min_version(b"hot") == 77 and router.min_version(b"cold") is None
    # From a node that does not name them: the first key stands for the write, as before.
    router.wrote([b"a", b"b"], 9)
    assert router.min_version(b"a") == 9


def test_the_router_remembers_the_versions_of_its_writes_for_a_while() -> None:
    clock = Clock()
    router = _router(clock)
    router.wrote([b"k"], 50)
    assert router.min_version(b"k") == 50
    router.wrote([b"k"], 40)  # an answer that arrived late does not lower it
    assert router.min_version(b"k") == 50
    router.wrote([b"cold"], None)  # no version, and not known to be hot: nothing to demand
    assert router.min_version(b"cold") is None
    router._hot = {b"hot": (A, B)}
    router.wrote([b"hot"], None)  # through a node that is not its owner: demand the owner
    assert router.min_version(b"hot") == ANY_COPY_OLDER
    clock.now += WRITTEN_FOR + 0.01
    assert router.min_version(b"k") is None and router.min_version(b"hot") is None
    assert not router.written


def test_a_version_answered_later_neither_ends_nor_prolongs_a_demand_of_the_owner() -> None:
    clock = Clock()
    router = _router(clock)
    router._hot = {b"hot": (A, B)}
    router.wrote([b"hot"], None)  # through a node that is not its owner
    assert router.min_version(b"hot") == ANY_COPY_OLDER
    clock.now += WRITTEN_FOR / 2
    router.wrote([b"hot"], 70)  # its owner answered the next write with a version
    assert router.min_version(b"hot") == ANY_COPY_OLDER  # the answers may have crossed
    clock.now += WRITTEN_FOR / 2 + 0.01
    assert router.min_version(b"hot") == 70  # the owner's demand ended; the version's has not
    router.wrote([b"hot"], 90)
    router.wrote([b"hot"], 80)  # late
    assert router.min_version(b"hot") == 90
    clock.now += WRITTEN_FOR + 0.01
    assert router.min_version(b"hot") is None and not router.written


def test_a_longer_lease_makes_the_router_remember_longer() -> None:
    clock = Clock()
    router = _router(clock)
    answer = {"node_id": "n1", "hot": [{"key": b"k", "holders": ["n2"], "lease": 30.0}]}
    router.hot_fetched(A, [answer])
    router.wrote([b"k"], 5)
    clock.now += 59
    assert router.min_version(b"k") == 5
    clock.now += 1.01
    assert router.min_version(b"k") is None


def test_the_written_table_is_bounded() -> None:
    router = _router(Clock())
    for i in range(WRITTEN_MAX + 10):
        router.wrote([b"k%d" % i], i + 1)
    assert len(router.written) == WRITTEN_MAX
    assert router.min_version(b"k0") is None
    assert router.min_version(b"k%d" % (WRITTEN_MAX + 9)) == WRITTEN_MAX + 10


def test_gets_of_written_keys_are_sent_as_hot_get() -> None:
    router = _router(Clock())
    router.wrote([b"mine"], 99)
    get = Command.build("GET", [b"mine"], "ns", results.any_value)
    other = Command.build("GET", [b"other"], "ns", results.any_value)
    out = _demand_versions(router, [other, get])
    assert out[0] is other
    assert (out[1].op, out[1].args, out[1].namespace) == ("HOT_GET", [b"mine", 99], "ns")
    assert out[1].key == b"mine" and out[1].decode is get.decode
    assert _demand_versions(router, [other])[0] is other
