"""The per-peer circuit breakers (``meshcache/node/net/breakers.py``): what opens one and what
does not, the probes' back-off, gossip's say in probing, and the real peer pool feeding them
from a peer socket the test controls."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from meshcache.errors import MeshcacheTimeout
from meshcache.node.breaker import BreakerState
from meshcache.node.net.breakers import (
    FIRST_BACKOFF,
    LATE_TIMEOUT,
    MAX_BACKOFF,
    THRESHOLD,
    PeerBreakers,
)
from meshcache.node.net.peer_pool import Address, PeerPool
from meshcache.wire.frame import encode_ok
from tests.node.test_peer_batching import connected, peer, running, wait_until

A = Address("10.0.0.1", 7000)
B = Address("10.0.0.2", 7000)


def test_a_busy_peer_is_opened_only_by_timeouts_in_a_row_with_no_answer_between() -> None:
    b = PeerBreakers()
    b.answered(A, 10.0)
    for t in (10.2, 10.4):  # sent before its last answer: latency, not a cut
        b.failed(A, t, t - 2.0)
    assert not b.blocked(A)
    b.answered(A, 10.5)  # an answer in between: the count starts again
    for t in (10.6, 10.7):
        b.failed(A, t, t - 2.0)
    assert not b.blocked(A) and b.state(A) is BreakerState.CLOSED
    b.failed(A, 10.8, 8.8)
    assert b.blocked(A) and b.stats["opened"] == 1 and b.stats["failures"] == 2 * 2 + 1
    assert THRESHOLD == 3


def test_one_timeout_after_a_second_of_silence_opens_at_once_and_an_answer_closes() -> None:
    closed: list[Address] = []
    b = PeerBreakers()
    b.on_close = closed.append
    b.answered(A, 0.0)
    b.answered(B, 0.0)
    b.failed(A, 5.0, 0.0)  # a forward that waited out its timeout, nothing heard meanwhile
    assert b.blocked(A) and not b.blocked(B) and not b.blocked(None)
    assert b.figures() == (
        {
            "failures": 1,
            "opened": 1,
            "closed": 0,
            "probes": 0,
            "probe_failures": 0,
            "checks": 0,  # not running: nothing checks B
            "check_failures": 0,
            "steered": 0,
        },
        1,
    )
    b.answered(A, 5.1)
    assert not b.blocked(A) and closed == [A] and b.figures()[1] == 0


def test_a_peer_never_heard_from_is_not_shut_out_by_one_refused_connection() -> None:
    b = PeerBreakers()
    b.failed(A, 0.0, 0.0)  # e.g. it is still starting: connection refused
    assert not b.blocked(A)
    b.failed(A, 1.0, 1.0)  # a second of trying and never an answer
    assert b.blocked(A)


def test_a_request_lost_in_a_cut_that_times_out_after_the_peer_answered_opens_nothing() -> None:
    """An idle peer after a heal: a call sent into the cut times out once the peer has answered
    a probe and then had nothing to say for a while."""
    b = PeerBreakers()
    b.answered(A, 21.7)  # the probe after the heal
    b.failed(A, 25.2, 15.2)  # sent during the cut, 10 s timeout
    assert not b.blocked(A) and b.stats["failures"] == 1
    b.failed(A, 27.0, 25.5)  # sent after the last answer, 1.5 s of silence: a cut again
    assert b.blocked(A)


@pytest.mark.trio
async def test_probes_back_off_skip_a_peer_gossip_holds_dead_and_go_at_once_when_alive(
    autojump_clock: trio.testing.MockClock,
) -> None:
    b = PeerBreakers()
    closed: list[Address] = []
    b.on_close = closed.append
    dead: set[Address] = set()
    probes: list[float] = []
    answering = False

    async def probe(address: Address) -> None:
        assert address == A
        probes.append(trio.current_time())
        await trio.sleep(0.01)
        if not answering:
            raise MeshcacheTimeout("no answer")

    async with trio.open_nursery() as nursery:
        await nursery.start(b.run, probe, lambda address: address in dead)
        b.answered(A, trio.current_time())
        await trio.sleep(2.0)
        opened_at = trio.current_time()
        b.failed(A, opened_at, opened_at - 1.0)
        assert b.blocked(A)
        await wait_until(lambda: len(probes) == 5, timeout=30.0)
        gaps = [round(t - s, 2) for s, t in zip([opened_at, *probes], probes, strict=False)]
        # The back-off doubles after each failed probe (counted from its failure), capped.
        assert gaps == [FIRST_BACKOFF, 1.01, 2.01, MAX_BACKOFF + 0.01, MAX_BACKOFF + 0.01]
        assert b.stats["probe_failures"] >= 4 and b.blocked(A)
        dead.add(A)  # gossip calls it dead: no probe, however long
        await trio.sleep(30.0)
        assert len(probes) == 5 and b.blocked(A)
        dead.clear()
        answering = True
        b.wake(A)  # gossip's ALIVE event: probed at once, whatever is left of the back-off
        await wait_until(lambda: not b.blocked(A), timeout=0.1)
        assert closed == [A] and b.stats["probes"] == 6 and b.state(A) is BreakerState.CLOSED
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_the_pool_opens_a_silent_peer_and_its_probe_closes_it_once_the_peer_answers() -> None:
    """Real pool, real socket: a request that times out with nothing from the peer opens its
    breaker; the probes are PINGs on the pooled connection; the first one answered closes it."""
    pool = PeerPool()
    pool.breakers = breakers = PeerBreakers(silence=0.1, first_backoff=0.1, max_backoff=0.4)
    closed: list[Address] = []
    breakers.on_close = closed.append

    async def probe(address: Address) -> None:
        await pool.request(address, "PING", "default", [], timeout=0.2)

    async with peer() as (p, address), running(pool):
        sock = await connected(pool, p, address)
        async with trio.open_nursery() as nursery:
            await nursery.start(breakers.run, probe, lambda address: False)
            with pytest.raises(MeshcacheTimeout):
                await pool.request(address, "GET", "default", [b"k"], timeout=0.2)
            assert breakers.blocked(address) and breakers.stats["opened"] == 1
            get, first = await p.requests(sock, 2)  # the peer stays silent: the probe fails
            assert (get.op, first.op) == ("GET", "PING")
            (second,) = await p.requests(sock, 1)
            assert second.op == "PING" and breakers.stats["probe_failures"] == 1
            assert breakers.blocked(address)
            await sock.send(encode_ok(second.id, "PONG"))
            await wait_until(lambda: not breakers.blocked(address))
            assert closed == [address] and breakers.stats["probes"] == 2
            assert pool.stats["timeouts"] == 2  # the GET and the first probe
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_timeout_noticed_late_is_not_counted_against_the_peer() -> None:
    """This node's loop held past a request's deadline (its answer might be waiting unread):
    the timeout is the node's, not the peer's. The same silence noticed in time counts."""
    pool = PeerPool()
    pool.breakers = breakers = PeerBreakers(silence=0.05)
    async with peer() as (p, address), running(pool):
        await connected(pool, p, address)
        async with trio.open_nursery() as nursery:

            async def ask() -> None:
                with pytest.raises(MeshcacheTimeout):
                    await pool.request(address, "GET", "default", [b"k"], timeout=0.05)

            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            time.sleep(0.05 + 2 * LATE_TIMEOUT)  # the loop held: a long synchronous stretch
        assert pool.stats["timeouts"] == 1 and breakers.stats["failures"] == 0
        assert not breakers.blocked(address)
        with pytest.raises(MeshcacheTimeout):
            await pool.request(address, "GET", "default", [b"k"], timeout=0.1)
        assert breakers.blocked(address) and breakers.stats["failures"] == 1
