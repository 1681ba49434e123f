"""A circuit breaker per peer: stop sending into a cut before gossip has decided.

Gossip is slow to call a peer dead on purpose (suspicion, Lifeguard), and until it does the
node keeps sending to it: a forward into a partition waits out the forward timeout, for every
plain client's request bound for that owner. :class:`PeerBreakers` keeps, per peer data
address, a :class:`~meshcache.node.breaker.Breaker` fed by the peer pool:

* a **request that times out** and a **connection that cannot be made**
  (:class:`~meshcache.node.net.peer_pool.PeerUnreachable`: refused, timed out) count a
  failure. One opens the breaker at once when nothing came from the peer since the request was
  sent (or the connection tried) and for :data:`SILENCE` seconds at least (a cut, a dead or a
  frozen peer: the forward that found it waited out its timeout in silence); otherwise it
  takes :data:`THRESHOLD` failures in a row with no answer between them. A busy peer answers
  *something* on its connection, so latency alone does not open it; a request lost in a cut
  that times out after the peer answered others (an idle peer after a heal) does not either;
  and a peer that is starting (connections refused for a moment) is not shut out;
* an **answer** from the peer closes it.

A busy *node* must not shut out its peers either: a timeout the pool notices more than
:data:`LATE_TIMEOUT` after its deadline (this node's loop was held) is not counted.

A cut rarely takes one peer alone, and a peer nothing was sent to opens nothing. So when a
breaker opens, every other peer not heard from for :data:`SILENCE` seconds is *checked*: one
``PING`` each, at once, within :data:`PROBE_TIMEOUT` (its timeout opens that peer's breaker as
any timeout would). A forward to a peer whose check is out waits for it, and one failing over
to the next owner has that owner checked first (:meth:`check`), rather than sending into the
cut again: the first request that meets a cut waits out one timeout and at most one check,
the requests after it at most a check.

While a peer's breaker is open (or half-open, its probe out), routing treats the peer as gossip
treats a dead one (:meth:`blocked`; the assembly's ``reachable``): requests fail over to the
next owner or this node stands in, and replica writes for it become hints. Nothing else
follows from it: ring, ownership, hand-off and membership stay gossip's and Raft's. After a
back-off (:data:`FIRST_BACKOFF`, doubling per failed probe up to :data:`MAX_BACKOFF`, as
gossip stays the long-run judge) :meth:`run` sends one ``PING`` as a probe; its answer closes
the breaker and :attr:`on_close` is told (the assembly replays the peer's hints). A peer gossip
holds dead is not probed: gossip's ALIVE event asks for a probe at once (:meth:`wake`).

Sans-I/O apart from :meth:`run`: the pool reports with an explicit ``now``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable

import trio

from meshcache.errors import MeshcacheError
from meshcache.node.breaker import Breaker, BreakerState
from meshcache.wire.address import Address

#: Timeouts in a row, with no answer from the peer between them, that open its breaker.
THRESHOLD = 3
#: Seconds with nothing from the peer after which one timeout opens its breaker.
SILENCE = 1.0
#: Seconds a peer's breaker stays open the first time.
FIRST_BACKOFF = 0.5
#: The longest back-off, after failed probes.
MAX_BACKOFF = 4.0
#: Seconds a probe (``PING``) may take.
PROBE_TIMEOUT = 1.0
#: A timeout noticed this long after its deadline is not counted against the peer: this node's
#: own loop did not run in time (its answer may be waiting unread in the kernel).
LATE_TIMEOUT = 0.25

Probe = Callable[[Address], Awaitable[None]]
"""Sends one probe to a peer (raises :class:`MeshcacheError` when it gets no answer)."""


class PeerBreakers:
    """The breakers of one node's peers, keyed by data address.

    Args:
        threshold: timeouts in a row that open a breaker while the peer still says something.
        silence: seconds without a word from the peer after which one timeout opens it.
        first_backoff: seconds open the first time.
        max_backoff: the cap of the doubling back-off.

    ``stats`` counts ``failures`` (timeouts and connections that could not be made),
    ``opened``, ``closed``, ``probes`` and ``probe_failures`` (of half-open peers), ``checks``
    and ``check_failures`` (of silent peers, after another opened) and ``steered`` (a routing
    decision passed over a peer gossip holds alive because its breaker is open).
    """

    def __init__(
        self,
        *,
        threshold: int = THRESHOLD,
        silence: float = SILENCE,
        first_backoff: float = FIRST_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.threshold = threshold
        self.silence = silence
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        #: The peers whose breaker is open or half-open (routing asks :meth:`blocked`).
        self.open: dict[Address, Breaker] = {}
        # Breakers with failures counted or not closed; a peer with a clean record has none.
        self._failing: dict[Address, Breaker] = {}
        # When each peer last answered (trio's clock), or, for one that never did, when the
        # first failure with it was counted.
        self._heard: dict[Address, float] = {}
        self.stats: Counter[str] = Counter()
        #: Told the address of a peer whose breaker closed again.
        self.on_close: Callable[[Address], None] | None = None
        self._wakeup = trio.Event()
        #: The checks out, by peer: each event is set when its check ends.
        self.checking: dict[Address, trio.Event] = {}
        self._nursery: trio.Nursery | None = None  # while :meth:`run` runs
        self._ping: Probe | None = None

    # --- what the peer pool reports ---------------------------------------------------------

    def answered(self, address: Address, now: float) -> None:
        """Something came from the peer: it is reachable; close its breaker."""
        self._heard[address] = now
        if self._failing:
            breaker = self._failing.pop(address, None)
            if breaker is not None:
                was_open = breaker.state is not BreakerState.CLOSED
                breaker.success()
                if was_open:
                    del self.open[address]
                    self.stats["closed"] += 1
                    if self.on_close is not None:
                        self.on_close(address)

    def failed(self, address: Address, now: float, sent: float) -> None:
        """A request to the peer, sent at ``sent``, timed out at ``now``, or no connection to
        it could be made (tried from ``sent``)."""
        self.stats["failures"] += 1
        breaker = self._failing.get(address)
        if breaker is None:
            breaker = self._failing[address] = Breaker(
                threshold=self.threshold,
                cooldown=self.first_backoff,
                max_cooldown=self.max_backoff,
            )
        opened = breaker.opened
        heard = self._heard.get(address)
        if heard is None:  # never answered: its silence is counted from this first failure
            self._heard[address] = now
            silent = False
        else:
            silent = heard <= sent and now - heard >= self.silence
        breaker.failure(now, decisive=silent)
        if breaker.opened != opened:
            self.open[address] = breaker
            self.stats["opened"] += 1
            self._wakeup.set()
            for other in list(self._heard):
                if other != address:
                    self.check(other)

    # --- what routing asks ------------------------------------------------------------------

    def blocked(self, address: Address | None) -> bool:
        """Whether requests should go elsewhere: the peer's breaker is open or half-open."""
        return address is not None and address in self.open

    def state(self, address: Address) -> BreakerState:
        breaker = self._failing.get(address)
        return BreakerState.CLOSED if breaker is None else breaker.state

    # --- probes and checks ------------------------------------------------------------------

    def check(self, address: Address) -> trio.Event | None:
        """Ask a peer not heard from for :data:`SILENCE` seconds whether it is there (a
        ``PING``; one check per peer at a time). The event is set when the check ends (its
        outcome is then in :meth:`blocked`); None when there is nothing to check: the peer
        was heard from lately, never tried, or its breaker is open already."""
        nursery, ping = self._nursery, self._ping
        if nursery is None or ping is None or address in self.open:
            return None
        event = self.checking.get(address)
        if event is not None:
            return event
        now = trio.current_time()
        if now - self._heard.get(address, now) < self.silence:
            return None
        event = self.checking[address] = trio.Event()
        self.stats["checks"] += 1
        nursery.start_soon(self._check, ping, address, event)
        return event

    async def _check(self, ping: Probe, address: Address, event: trio.Event) -> None:
        try:
            await ping(address)
        except MeshcacheError:
            self.stats["check_failures"] += 1  # the pool counted the failure against it
        finally:
            del self.checking[address]
            event.set()

    def wake(self, address: Address | None = None) -> None:
        """Look at the open breakers now; with ``address`` (gossip holds that peer alive
        again), probe it at once, whatever is left of its back-off."""
        if address is not None:
            breaker = self.open.get(address)
            if breaker is not None:
                breaker.hurry()
        self._wakeup.set()

    async def run(
        self,
        probe: Probe,
        held_dead: Callable[[Address], bool],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Probe every open peer once its back-off is over (one probe at a time per peer),
        except those gossip holds dead, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery, self._ping = nursery, probe
            task_status.started()
            try:
                await self._probe_when_due(nursery, probe, held_dead)
            finally:
                self._nursery = self._ping = None

    async def _probe_when_due(
        self, nursery: trio.Nursery, probe: Probe, held_dead: Callable[[Address], bool]
    ) -> None:
        while True:
            self._wakeup = trio.Event()
            now = trio.current_time()
            next_at = math.inf
            for address, breaker in list(self.open.items()):
                if breaker.state is not BreakerState.OPEN:
                    continue  # its probe is out
                wait = breaker.retry_in(now)
                if wait > 0:
                    next_at = min(next_at, now + wait)
                elif not held_dead(address) and breaker.allow(now):
                    nursery.start_soon(self._probe, probe, address, breaker)
            with trio.move_on_at(next_at):
                await self._wakeup.wait()

    async def _probe(self, probe: Probe, address: Address, breaker: Breaker) -> None:
        self.stats["probes"] += 1
        sent = trio.current_time()
        try:
            await probe(address)
        except MeshcacheError:
            self.stats["probe_failures"] += 1
            # The pool counted a timeout or a refused connection already (that re-opened the
            # breaker); a broken connection it does not count.
            if breaker.state is BreakerState.HALF_OPEN:
                self.failed(address, trio.current_time(), sent)
        else:
            self.answered(address, trio.current_time())
        finally:
            self._wakeup.set()

    def forget(self, address: Address) -> None:
        """The peer left the ring: drop what is known of it."""
        self._failing.pop(address, None)
        self._heard.pop(address, None)
        if self.open.pop(address, None) is not None:
            self.stats["closed"] += 1

    def figures(self) -> tuple[dict[str, int], int]:
        """The counters (every name, zeros included) and the peers open now."""
        names = (
            "failures",
            "opened",
            "closed",
            "probes",
            "probe_failures",
            "checks",
            "check_failures",
            "steered",
        )
        return {name: self.stats[name] for name in names}, len(self.open)


__all__ = [
    "FIRST_BACKOFF",
    "LATE_TIMEOUT",
    "MAX_BACKOFF",
    "PROBE_TIMEOUT",
    "SILENCE",
    "THRESHOLD",
    "PeerBreakers",
]
