"""The data port never holds the loop for a whole pipelined burst: it answers a bounded turn
of frames per connection and returns to trio once a wake-up has used its time budget."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import trio

from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.net.dataport import TURN_FRAMES, DataPort, open_listener
from meshcache.security.guard import Guard, Session
from meshcache.settings import LimitSettings
from meshcache.testing.instrument import longest_step
from meshcache.wire.frame import HEADER
from tests.node.burst_client import burst_client

WORK_S = 0.00002  # each request holds the loop this long (real CPU time: a mesh SET)
BURST = 30_000  # requests sent in one write: 0.6 s of work


class EchoDispatcher:
    """Answers every frame with its own body after ``WORK_S`` of busy work."""

    def __init__(self) -> None:
        self.counters = NodeCounters()
        self.guard = Guard()  # the data port asks it for each connection's session
        self.handled = 0

    def handle(self, body: bytes, session: Session | None = None) -> bytes:
        end = time.thread_time() + WORK_S
        while time.thread_time() < end:  # CPU work, as a store op does
            pass
        self.handled += 1
        return HEADER.pack(len(body)) + body

    def frame_too_large(self, message: str) -> bytes:
        raise AssertionError(message)


@pytest.mark.trio
async def test_a_pipelined_burst_is_answered_in_slices() -> None:
    dispatcher = EchoDispatcher()
    port = DataPort(
        open_listener("127.0.0.1", 0),
        dispatcher,  # type: ignore[arg-type]
        replace(LimitSettings(), max_buffered_bytes=1 << 20),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(port.serve)
        # CPU time of each step: on a loaded machine wall time also counts preemption.
        with longest_step(cpu=True) as probe:
            await burst_client(port.address, "request", BURST)  # answered in order
        nursery.cancel_scope.cancel()
    assert dispatcher.handled == BURST
    reactor = probe.of("Reactor.serve")
    # Before slicing the whole burst was answered in a handful of steps of 100+ ms each.
    assert reactor.total >= BURST * WORK_S * 0.9, probe.describe()
    assert reactor.steps >= BURST // TURN_FRAMES // 2, probe.describe()
    assert reactor.longest <= 0.05, probe.describe()


@pytest.mark.trio
async def test_two_bulk_clients_take_turns_and_others_still_run() -> None:
    dispatcher = EchoDispatcher()
    port = DataPort(open_listener("127.0.0.1", 0), dispatcher, LimitSettings())  # type: ignore[arg-type]
    ticks: list[int] = []  # requests handled when a gossip-like 5 ms timer ran

    async def ticker() -> None:
        while True:
            await trio.sleep(0.005)
            ticks.append(dispatcher.handled)

    async with trio.open_nursery() as nursery:
        await nursery.start(port.serve)
        nursery.start_soon(ticker)
        with longest_step(cpu=True) as probe:
            async with trio.open_nursery() as clients:
                clients.start_soon(burst_client, port.address, "a", BURST // 2)
                clients.start_soon(burst_client, port.address, "b", BURST // 2)
        nursery.cancel_scope.cancel()
    assert dispatcher.handled == BURST
    during = {n for n in ticks if 0 < n < BURST}
    assert len(during) >= 20, f"the timer ran {len(during)} times during the burst"
    assert probe.of("Reactor.serve").longest <= 0.05, probe.describe()
