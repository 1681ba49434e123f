"""The reactor's turn budget with heavy frames: a wake-up answers about its budget's worth of
them, plus one per other connection that was ready, never a fixed count of frames that may each
cost milliseconds (a BULK apply, a REPL batch, a large MSET)."""

from __future__ import annotations

import time

import pytest
import trio

from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.net.dataport import TURN_CHECK, DataPort, open_listener
from meshcache.node.net.reactor import HEAVY_FRAME, ROUND_BUDGET
from meshcache.security.guard import Guard, Session
from meshcache.settings import LimitSettings
from meshcache.testing.instrument import longest_step
from meshcache.wire.frame import HEADER
from meshcache.wire.pending import Later, Pending
from tests.node.burst_client import burst_client

WORK_S = 0.001  # CPU a heavy frame costs (a BULK of ~700 values)
# Heavy frames one wake-up may answer on its own: each takes at least WORK_S of the clock, and
# the turn ends after the one that spends the budget.
WITHIN_BUDGET = int(ROUND_BUDGET / WORK_S) + 1


class HeavyDispatcher:
    """Answers each frame with the first 16 bytes of its body; a frame of ``HEAVY_FRAME``
    bytes or more costs ``WORK_S`` of CPU first. A body starting with ``wait`` is answered by
    callback once ``release_after`` heavy frames were answered behind it (ordered mode)."""

    def __init__(self, release_after: int = 0) -> None:
        self.counters = NodeCounters()
        self.guard = Guard()
        self.heavy = 0
        self.release_after = release_after
        self.later: Later | None = None
        self.later_answer = b""

    def handle(self, body: bytes, session: Session | None = None) -> bytes | Pending:
        head = body[:16]
        answer = HEADER.pack(len(head)) + head
        if body.startswith(b"wait"):
            self.later, self.later_answer = Later(), answer
            return Pending(None, later=self.later)
        if len(body) >= HEAVY_FRAME:
            end = time.thread_time() + WORK_S
            while time.thread_time() < end:  # CPU work, as an apply does
                pass
            self.heavy += 1
            if self.later is not None and self.heavy == self.release_after:
                self.later.resolve(self.later_answer)
        return answer

    def frame_too_large(self, message: str, request_id: int | None = None) -> bytes:
        raise AssertionError(message)


async def heaviest_wake_up(dispatcher: HeavyDispatcher, *clients: tuple[str, int]) -> float:
    """Serve ``clients`` (prefix, frames) at once; the most heavy frames one step of the
    reactor answered."""
    port = DataPort(open_listener("127.0.0.1", 0), dispatcher, LimitSettings())  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(port.serve)
        # The probe's "clock" counts heavy frames: a step's length is the frames it answered.
        with longest_step(clock=lambda: float(dispatcher.heavy)) as probe:
            async with trio.open_nursery() as running:
                for prefix, n in clients:
                    running.start_soon(burst_client, port.address, prefix, n, 2 * HEAVY_FRAME)
        nursery.cancel_scope.cancel()
    assert dispatcher.heavy == sum(n for _, n in clients)
    reactor = probe.of("Reactor.serve")
    assert reactor.total == dispatcher.heavy  # every heavy frame was answered by the reactor
    return reactor.longest


@pytest.mark.trio
async def test_a_burst_of_heavy_frames_is_answered_a_budget_at_a_time() -> None:
    most = await heaviest_wake_up(HeavyDispatcher(), ("bulk", 48))
    # Checked every TURN_CHECK frames only, a turn answered TURN_CHECK of them (48 ms here).
    assert WITHIN_BUDGET < TURN_CHECK
    assert most <= WITHIN_BUDGET, f"{most:.0f} heavy frames in one reactor step"


@pytest.mark.trio
async def test_past_the_budget_each_ready_connection_answers_one_heavy_frame() -> None:
    clients = [("a", 24), ("b", 24), ("c", 24)]
    most = await heaviest_wake_up(HeavyDispatcher(), *clients)
    assert most <= WITHIN_BUDGET + len(clients) - 1, f"{most:.0f} heavy frames in one step"


@pytest.mark.trio
async def test_ordered_mode_ends_a_turn_after_a_heavy_frame_too() -> None:
    # The first frame waits until every heavy frame behind it is answered: they are all
    # answered in ordered mode, queued behind it.
    n = 40
    dispatcher = HeavyDispatcher(release_after=n)
    port = DataPort(open_listener("127.0.0.1", 0), dispatcher, LimitSettings())  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(port.serve)
        with longest_step(clock=lambda: float(dispatcher.heavy)) as probe:
            await burst_client(port.address, "h", n, pad=2048, first="wait")
        nursery.cancel_scope.cancel()
    assert dispatcher.heavy == n
    most = probe.of("Reactor.serve").longest
    assert most <= WITHIN_BUDGET, f"{most:.0f} heavy frames in one reactor step"
