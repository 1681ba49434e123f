"""The client's circuit breakers: their states on trio's autojump clock, and the engine routing
around a node that stopped answering (a real socket server that holds requests)."""

from __future__ import annotations

import socket

import pytest
import trio

import meshcache
from meshcache.client.breaker import Breakers
from meshcache.client.routing import SeedRouter
from meshcache.errors import MeshcacheTimeout
from meshcache.wire.address import Address
from tests.client.fakeserver import FakeServer

A, B, C = Address("10.0.0.1", 7400), Address("10.0.0.2", 7400), Address("10.0.0.3", 7400)


def _member(name: str, host: str, state: str, data_port: object = 7400) -> dict[str, object]:
    return {"name": name, "address": f"{host}:7400", "state": state, "data_port": data_port}


@pytest.mark.trio
async def test_open_half_open_closed(autojump_clock: trio.testing.MockClock) -> None:
    breakers = Breakers(trio.current_time, first_backoff=1.0, max_backoff=4.0)
    candidates = (A, B, C)
    assert breakers.order(candidates) is candidates  # all closed: the router's own sequence
    assert breakers.state(A) == "closed"

    breakers.failure(A)
    assert breakers.state(A) == "open"
    assert breakers.wants_members
    assert list(breakers.order(candidates)) == [B, C, A]  # never dropped, only last

    await trio.sleep(1.0)
    assert breakers.state(A) == "half-open"
    assert list(breakers.order(candidates)) == [A, B, C]  # this caller is the probe
    assert breakers.probing(A)
    assert list(breakers.order(candidates)) == [B, C, A]  # nobody else probes meanwhile

    breakers.failure(A)  # the probe failed: open again, for twice as long
    assert not breakers.probing(A)
    await trio.sleep(1.5)
    assert breakers.state(A) == "open"
    await trio.sleep(0.5)
    assert breakers.state(A) == "half-open"
    assert breakers.order(candidates)[0] == A
    breakers.failure(A)
    breakers.order(candidates)
    breakers.failure(A)  # 8 s would be next: capped at 4
    await trio.sleep(3.9)
    assert breakers.state(A) == "open"
    await trio.sleep(0.1)
    assert breakers.order(candidates)[0] == A

    breakers.success(A)  # the probe completed a request
    assert breakers.state(A) == "closed"
    assert not breakers.open
    breakers.failure(A)  # a new failure starts from the first back-off again
    await trio.sleep(1.0)
    assert breakers.state(A) == "half-open"


@pytest.mark.trio
async def test_an_abandoned_probe_is_re_armed(autojump_clock: trio.testing.MockClock) -> None:
    breakers = Breakers(trio.current_time, first_backoff=2.0)
    breakers.failure(B)
    await trio.sleep(2.0)
    assert list(breakers.order([B, A])) == [B, A]  # claimed; its caller never reports
    assert breakers.state(B) == "half-open"
    assert list(breakers.order([B, A])) == [A, B]
    await trio.sleep(2.0)  # the lease (one back-off) ran out: a new caller may probe
    assert list(breakers.order([B, A])) == [B, A]


@pytest.mark.trio
async def test_learning_dead_members(autojump_clock: trio.testing.MockClock) -> None:
    breakers = Breakers(trio.current_time, first_backoff=1.0)
    members = [
        _member("n0", "10.0.0.1", "alive"),
        _member("n1", "10.0.0.2", "dead"),
        _member("n2", "10.0.0.3", "left"),
        _member("n3", "10.0.0.4", "suspect"),
        _member("n4", "not an address:", "dead"),
        _member("n5", "10.0.0.6", "dead", data_port="7400"),
        _member("n6", "10.0.0.7", "dead", data_port=0),
        "not a map",
    ]
    assert breakers.learn(members) == [B, C]
    assert breakers.state(B) == breakers.state(C) == "open"
    assert breakers.state(A) == "closed"
    assert not breakers.wants_members  # learning is not a failure of anyone
    assert breakers.learn("not a list") == []
    assert breakers.learn(members) == []  # still open: the back-off is not extended

    # Still dead by the node we reach when the back-off ends: re-armed without a probe.
    assert not breakers.due()
    await trio.sleep(1.0)
    assert breakers.due()  # the engine asks a reachable node before anything probes
    assert breakers.learn(members) == [B, C]
    assert breakers.state(B) == "open"
    assert not breakers.due()
    # A node being probed is left to its probe.
    await trio.sleep(1.0)
    breakers.order([B])
    assert breakers.learn(members) == [C]
    assert breakers.probing(B)


@pytest.mark.trio
async def test_a_node_alive_again_is_left_to_a_probe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breakers = Breakers(trio.current_time, first_backoff=1.0)
    breakers.failure(A)
    await trio.sleep(1.0)
    assert breakers.due()
    assert breakers.learn([_member("n0", "10.0.0.1", "alive")]) == []
    assert not breakers.due()  # asked once: no MEMBERS per call while it waits for a probe
    assert breakers.state(A) == "half-open"
    assert breakers.order([A, B])[0] == A and breakers.probing(A)


def test_bad_settings() -> None:
    for kwargs in (
        {"first_backoff": 0},
        {"first_backoff": 5, "max_backoff": 1},
        {"probe_timeout": 0},
    ):
        with pytest.raises(ValueError):
            Breakers(lambda: 0.0, **kwargs)  # type: ignore[arg-type]


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FixedRouter(SeedRouter):
    """Always the seeds in the order given (a seed router moves to the one that answered)."""

    def connected(self, address: Address) -> None:
        pass

    def failed(self, address: Address) -> None:
        pass


def test_the_client_routes_around_a_node_that_stopped_answering() -> None:
    with FakeServer() as first, FakeServer() as second:
        a, b = (Address("127.0.0.1", s.port) for s in (first, second))
        with meshcache.Client(router=FixedRouter([a, b]), timeout=0.5) as client:
            clock = ManualClock()
            client.breakers = Breakers(clock, first_backoff=1.0)
            assert client.set("k", b"v") is True
            assert first.stats.requests[-1][0] == "SET"

            first.inject("hold")  # the write, and the check that follows it
            first.inject("hold")
            with pytest.raises(MeshcacheTimeout):
                client.set("k", b"w")
            assert client.breakers.state(a) == "open"

            # Open: the next call first checks every node (a connection, then MEMBERS: this
            # server does not know the op, and any answer shows a node serves); the first
            # node accepts but does not answer, so it stays open and the calls go to the other
            # node at once.
            seen = len(first.stats.requests)
            assert client.set("k2", b"x") is True
            assert client.get("k2") == b"x"
            assert [r[0] for r in first.stats.requests[seen:]] == ["MEMBERS"]
            assert [r[0] for r in second.stats.requests] == ["MEMBERS", "SET", "GET"]
            assert client.breakers.state(a) == "open"

            # The back-off ends: the check finds the first node answering again and closes its
            # breaker; the call goes to it.
            first.release.set()
            clock.now += 1.0
            assert client.set("k3", b"y") is True
            assert first.stats.requests[-1][2][:2] == [b"k3", b"y"]
            assert client.breakers.state(a) == "closed"


def test_after_one_failure_every_unreachable_node_is_routed_around() -> None:
    """A node that accepts no connection is opened by the check after the first failure, not
    by a timed-out call of its own; a node that answers closes again."""
    with FakeServer() as first, FakeServer() as third:
        a, c = (Address("127.0.0.1", s.port) for s in (first, third))
        gone = socket.socket()  # a bound port nobody accepts on: connecting fails at once
        gone.bind(("127.0.0.1", 0))
        b = Address("127.0.0.1", gone.getsockname()[1])
        try:
            with meshcache.Client(router=FixedRouter([a, b, c]), timeout=0.5) as client:
                clock = ManualClock()
                client.breakers = Breakers(clock, first_backoff=1.0)
                first.inject("hold")
                with pytest.raises(MeshcacheTimeout):
                    client.set("k", b"v")
                assert client.set("k2", b"x") is True
                # The check opened b (refused) without a call of its own to it; a answered
                # MEMBERS, so it serves and its breaker closed; the write went to a.
                assert client.breakers.state(b) == "open"
                assert client.breakers.state(a) == "closed"
                assert first.stats.requests[-1][0] == "SET"
                assert [r[0] for r in third.stats.requests] == ["MEMBERS"]
        finally:
            gone.close()
