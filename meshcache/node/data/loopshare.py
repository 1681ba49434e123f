"""Long background work takes turns with a node's requests on the event loop.

A scan of a big store is cut into slices with a checkpoint between them. A checkpoint alone
lets whatever is ready run once, then the scan takes the loop again at once: on a node whose
clients wait for each answer before they send the next, every request then waits behind a
slice, and the node serves a fraction of its rate for as long as the scan lasts (seen: a third,
on three nodes scanning 70,000-90,000 keys each). :meth:`LoopShare.turn` also looks at whether
anything else ran in the checkpoint, that is whether the loop is busy: then it waits as long as
the slice took before the next one, so the work takes about half of a busy loop and requests
that arrive in the gap are answered at once; and it tells the work (:attr:`LoopShare.busy`) to
cut its slices short, since a request that arrives during one waits for the rest of it. On an
idle loop it goes on at once, after two checkpoints (about 12 us, against a slice of about 500).

The clock is the node's (virtual in the simulation, where work takes no time: there the checks
never see a busy loop, and the order of events does not depend on the host's speed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import trio

#: A checkpoint that took longer than this (s) let other work run: the loop is busy.
BUSY_AFTER: Final = 50e-6


class LoopShare:
    """Turns between the slices of one piece of background work (a scan).

    Args:
        clock: the node's monotonic seconds.
        share: the part of a busy loop's time the work may take (0 < share <= 1).
    """

    __slots__ = ("_clock", "_gap", "_since", "busy", "waited")

    def __init__(self, clock: Callable[[], float] = trio.current_time, share: float = 0.5) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self._clock = clock
        self._gap = (1 - share) / share
        self._since = clock()
        #: Whether the last turn found the loop busy: the work should cut its next slice short
        #: (a request arriving during a slice waits for all of it).
        self.busy = False
        #: Seconds spent waiting for a busy loop (a figure: how much the work was stretched).
        self.waited = 0.0

    async def turn(self) -> None:
        """Between two slices: let other work run and, if any did, wait in proportion to the
        slice just done."""
        clock = self._clock
        before = clock()
        worked = before - self._since
        await trio.lowlevel.checkpoint()
        if clock() - before <= BUSY_AFTER:
            # trio runs each batch of ready tasks in a random order: one woken with us may
            # run after us in the batch we resumed in. A second checkpoint lets it.
            await trio.lowlevel.checkpoint()
        after = clock()
        self.busy = after - before > BUSY_AFTER
        if self.busy and self._gap:
            await trio.sleep(worked * self._gap)
            self.waited += clock() - after
        self._since = clock()


__all__ = ["BUSY_AFTER", "LoopShare"]
