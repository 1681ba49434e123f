"""LoopShare: background work waits for a busy loop, and only for a busy one."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from meshcache.node.data.loopshare import BUSY_AFTER, LoopShare

SLICE = 0.002


async def _work(clock: trio.testing.MockClock, share: LoopShare, slices: int) -> list[float]:
    """``slices`` slices of SLICE seconds each (the mock clock jumps as if they ran), with a turn
    between two; the times at which each slice started."""
    starts = []
    for n in range(slices):
        if n:
            await share.turn()
        starts.append(trio.current_time())
        clock.jump(SLICE)
    return starts


@pytest.mark.trio
async def test_work_on_an_idle_loop_goes_on_at_once(mock_clock: trio.testing.MockClock) -> None:
    clock = mock_clock
    share = LoopShare()
    starts = await _work(clock, share, 10)
    assert starts == pytest.approx([n * SLICE for n in range(10)])
    assert share.waited == 0 and not share.busy


@pytest.mark.trio
@pytest.mark.parametrize("fraction", [0.5, 0.25])
async def test_work_on_a_busy_loop_leaves_it_the_rest_of_its_time(
    fraction: float, mock_clock: trio.testing.MockClock
) -> None:
    clock = mock_clock
    share = LoopShare(share=fraction)
    served: list[float] = []

    async def requests() -> None:
        # Another task that always has work: each of its steps takes twice the threshold.
        while True:
            served.append(trio.current_time())
            clock.jump(2 * BUSY_AFTER)
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(requests)
        starts = await _work(clock, share, 11)
        nursery.cancel_scope.cancel()
    elapsed = starts[-1] - starts[0]
    worked = 10 * SLICE
    # The slices took about `fraction` of the time; the rest went to the other task.
    assert worked / elapsed == pytest.approx(fraction, rel=0.1)
    assert share.waited == pytest.approx(elapsed - worked, rel=0.1)
    assert len(served) >= (elapsed - worked) / (2 * BUSY_AFTER) * 0.9
    assert share.busy


def test_a_share_must_be_a_fraction() -> None:
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match="share"):
            LoopShare(share=bad)
