"""What a node answers on the wire, request by request, through the node's own request path
(the dispatcher over a real store, no sockets): ids of malformed requests, versions of 64 bits
in GETS and CAS, the types TTL answers, NOT_FLOAT, and the values of SET's consistency."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest

from meshcache.hlc import HLC
from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.net.dispatch import Dispatcher
from meshcache.store import Store
from meshcache.wire import Limits, Response, decode_response, encode_request
from meshcache.wire.ops import OPS, normalize_args
from meshcache.wire.pending import Pending

NOW = 1_700_000_000.0


class Node:
    """A dispatcher over a store, as a node without a mesh runs them."""

    def __init__(self, wall_ms: int = int(NOW * 1000)) -> None:
        self.store = Store(clock=lambda: NOW, hlc=HLC(lambda: wall_ms))
        self.counters = NodeCounters()
        self.dispatcher = Dispatcher(
            execute=self.store.execute, routes={}, limits=Limits(), counters=self.counters
        )

    def send(self, body: bytes) -> Response:
        out = self.dispatcher.handle(body)
        assert not isinstance(out, Pending)
        return decode_response(out[4:])

    def call(self, op: str, *args: Any, rid: int = 1) -> Response:
        return self.send(encode_request(rid, op, "default", list(args))[4:])

    def result(self, op: str, *args: Any) -> Any:
        return self.call(op, *args).result()


# --- request ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        [41, "GET", "default"],
        [41, "GET", "default", [b"k"], "extra"],
        [41, 2, "default", [b"k"]],
        [41, "GET", None, [b"k"]],
        [41, "GET", "default", {"k": 1}],
    ],
)
def test_a_malformed_request_is_answered_with_its_id(obj: list[Any]) -> None:
    node = Node()
    answer = node.send(msgpack.packb(obj))
    assert (answer.id, answer.ok, answer.value[0]) == (41, False, "BAD_REQUEST")
    assert node.counters.bad_input["bad_request"] == 1


@pytest.mark.parametrize("body", [b"\xc1", msgpack.packb(["41", "GET", "default", [b"k"]])])
def test_a_request_without_a_readable_id_is_answered_with_id_0(body: bytes) -> None:
    answer = Node().send(body)
    assert (answer.id, answer.ok, answer.value[0]) == (0, False, "BAD_REQUEST")


@pytest.mark.parametrize("rid", [0, -5])
def test_ids_below_1_are_refused_with_the_id_they_carried(rid: int) -> None:
    answer = Node().send(msgpack.packb([rid, "PING", "default", []]))
    assert (answer.id, answer.ok, answer.value[0]) == (rid, False, "BAD_REQUEST")


# --- versions ------------------------------------------------------------------------------------


def test_cas_takes_every_unsigned_64_bit_version() -> None:
    cas = OPS["CAS"]
    for version in (0, 2**53 + 1, 2**63, 2**64 - 1):
        assert normalize_args(cas, [b"k", version, b"v"], Limits())[1] == version
    for bad in (-1, 2**64, True, 1.0, "1"):
        with pytest.raises(Exception, match="BAD_REQUEST"):
            normalize_args(cas, [b"k", bad, b"v"], Limits())


def test_a_version_from_gets_of_2_to_the_63_or_more_works_in_cas() -> None:
    """A clock far enough ahead makes versions of 2**63 and more (uint64 on the wire)."""
    node = Node(wall_ms=2**47 + 12345)
    assert node.result("SET", b"k", b"old") is True
    value, version = node.result("GETS", b"k")
    assert value == b"old" and version >= 2**63
    assert node.result("CAS", b"k", version - 1, b"new") is False
    assert node.result("CAS", b"k", version, b"new") is True
    assert node.result("GET", b"k") == b"new"
    assert node.result("GETS", b"k")[1] > version
    assert node.result("CAS", b"k", version, b"newer") is False  # the version moved on


# --- TTL -----------------------------------------------------------------------------------------


def test_ttl_is_a_float_of_seconds_or_the_ints_minus_1_and_minus_2() -> None:
    node = Node()
    node.result("SET", b"whole", b"v", {"ttl": 5})
    node.result("SET", b"part", b"v", {"ttl": 2.5})
    node.result("SET", b"forever", b"v")
    answers = {k: node.result("TTL", k) for k in (b"whole", b"part", b"forever", b"absent")}
    assert answers == {b"whole": 5.0, b"part": 2.5, b"forever": -1, b"absent": -2}
    assert [type(v) for v in answers.values()] == [float, float, int, int]
    node.result("EXPIRE", b"whole", math.inf)
    assert node.result("TTL", b"whole") == -1


# --- NOT_FLOAT and scores that are not numbers ---------------------------------------------------


def test_not_float_is_a_zincrby_that_would_leave_nan() -> None:
    node = Node()
    assert node.result("ZADD", b"z", -math.inf, b"m") == 1
    answer = node.call("ZINCRBY", b"z", math.inf, b"m")
    assert (answer.ok, answer.value[0]) == (False, "NOT_FLOAT")
    assert node.result("ZSCORE", b"z", b"m") == -math.inf  # unchanged


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("ZADD", [b"z", "1.5", b"m"]),
        ("ZADD", [b"z", math.nan, b"m"]),
        ("ZADD", [b"z", True, b"m"]),
        ("ZINCRBY", [b"z", "1", b"m"]),
        ("ZRANGEBYSCORE", [b"z", "-inf", 5]),
    ],
)
def test_a_score_argument_that_is_not_a_number_is_a_bad_request(op: str, args: list[Any]) -> None:
    node = Node()
    answer = node.call(op, *args)
    assert (answer.ok, answer.value[0]) == (False, "BAD_REQUEST")
    assert node.result("EXISTS", b"z") == 0


# --- SET consistency -----------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["one", "quorum", "all", None])
def test_set_takes_the_consistency_levels(level: str | None) -> None:
    assert Node().result("SET", b"k", b"v", {"consistency": level}) is True


@pytest.mark.parametrize("level", ["most", "ONE", 2])
def test_another_consistency_is_refused_before_anything_is_written(level: object) -> None:
    node = Node()
    answer = node.call("SET", b"k", b"v", {"consistency": level})
    assert (answer.ok, answer.value[0]) == (False, "BAD_REQUEST")
    assert node.result("EXISTS", b"k") == 0
