"""A circuit breaker per node: route around the nodes a client cannot reach, try them again later.

A client that waits its whole timeout on every request for a node it cannot reach starves (on
the minority side of a partition, two keys in three). :class:`Breakers` keeps, per node
address, one of three states, sans-I/O over an injected clock:

* **closed** — the node answers; requests go to it as the router says.
* **open** — a connection to it failed or timed out, a request on it timed out or broke, or
  a node the client reaches holds it dead (``MEMBERS``): it goes to the end of every
  candidate list, so requests go to the next owner (or any node, which forwards or stands in)
  at once. It stays open for a back-off, :data:`FIRST_BACKOFF` doubling per failure up to
  :data:`MAX_BACKOFF`.
* **half-open** — the back-off is over: exactly one caller (the *probe*) gets the node back in
  its place; its connection attempt is bounded by ``probe_timeout``. A completed request closes
  the breaker; a failure opens it again with the next back-off. While the probe is out the
  node stays last for everybody else.

What callers may rely on: :meth:`Breakers.order` never drops a candidate (an open node is
tried last rather than never: when nothing else answers it is still a way in), returns the
router's own sequence untouched while every breaker is closed (one attribute test on the hot
path), and is safe to call from many threads (one lock guards the table; mutations replace
entries).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshcache.errors import ConfigError
from meshcache.wire.address import Address, parse_address

FIRST_BACKOFF = 1.0
"""Seconds a node stays open after its first failure."""
MAX_BACKOFF = 30.0
"""The longest back-off, reached after repeated failures."""
DEFAULT_PROBE_TIMEOUT = 0.5
"""Seconds a probe may take to connect to a half-open node before the next candidate is tried."""

#: Gossip states (``MEMBERS``) in which a node is certainly not serving.
DOWN_STATES = frozenset({"dead", "left"})


@dataclass(frozen=True, slots=True)
class _Open:
    until: float  # when the back-off ends (or the probe's lease, while probing)
    backoff: float  # the back-off that opened it
    probing: bool = False
    checked: bool = False  # back-off over and not held dead by the node asked: probe it


class Breakers:
    """The circuit breakers of one client, keyed by node address.

    Args:
        clock: monotonic seconds (the client's deadline clock; tests inject one).
        first_backoff: seconds open after a first failure.
        max_backoff: the cap of the doubling back-off.
        probe_timeout: seconds a probe may take to connect.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        first_backoff: float = FIRST_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
    ) -> None:
        if not 0 < first_backoff <= max_backoff or not probe_timeout > 0:
            raise ValueError("need 0 < first_backoff <= max_backoff and probe_timeout > 0")
        self._clock = clock
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.probe_timeout = probe_timeout
        self._lock = threading.Lock()
        #: Open (or half-open) breakers; a closed node has no entry. Read without the lock.
        self.open: dict[Address, _Open] = {}
        #: Set when a breaker opened on a failure: the engine asks a reachable node which
        #: other nodes it holds dead (:meth:`learn`) before its next request.
        self.wants_members = False

    def state(self, address: Address) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` (back-off over, or a probe is out)."""
        entry = self.open.get(address)
        if entry is None:
            return "closed"
        if entry.probing or self._clock() >= entry.until:
            return "half-open"
        return "open"

    def order(self, candidates: Sequence[Address]) -> Sequence[Address]:
        """``candidates`` with the open nodes moved to the end (their order kept).

        A half-open node whose probe nobody holds, when it comes first, keeps its place for
        this caller alone: the caller is its probe and must report :meth:`failure` or
        :meth:`success` (a probe that never reports is re-armed after a back-off).
        """
        if not self.open:
            return candidates
        now = self._clock()
        ready: list[Address] = []
        held: list[Address] = []
        with self._lock:
            table = self.open
            for address in candidates:
                entry = table.get(address)
                if entry is None:
                    ready.append(address)
                elif not ready and now >= entry.until:
                    # Back-off over (or an abandoned probe's lease) and first in line: this
                    # caller probes it.
                    table[address] = _Open(now + entry.backoff, entry.backoff, True)
                    ready.append(address)
                else:
                    held.append(address)
        if not held:
            return candidates if len(ready) == len(candidates) else ready
        return [*ready, *held]

    def due(self) -> bool:
        """Whether a back-off has ended with no probe out: the engine first asks a reachable
        node's gossip (:meth:`learn` re-arms the nodes it still holds dead, sparing them a
        probe that would only time out)."""
        now = self._clock()
        return any(not (e.probing or e.checked) and e.until <= now for e in self.open.values())

    def probing(self, address: Address) -> bool:
        """Whether a probe of ``address`` is out (connect to it within ``probe_timeout``)."""
        entry = self.open.get(address)
        return entry is not None and entry.probing

    def failure(self, address: Address, *, learn: bool = True) -> None:
        """Connecting to ``address`` failed, or a request on it timed out or broke: open it
        (again, with the next back-off when it was already open or probed). ``learn``: the
        engine is to check the other nodes (:attr:`wants_members`) before its next request;
        False when the failure was found by that check itself."""
        now = self._clock()
        with self._lock:
            entry = self.open.get(address)
            backoff = (
                self.first_backoff if entry is None else min(entry.backoff * 2, self.max_backoff)
            )
            self.open[address] = _Open(now + backoff, backoff)
            if learn:
                self.wants_members = True

    def success(self, address: Address) -> None:
        """A request to ``address`` completed: close its breaker."""
        if address in self.open:
            with self._lock:
                self.open.pop(address, None)

    def learn(self, members: Any) -> list[Address]:
        """Open the breakers of the nodes a ``MEMBERS`` answer holds dead or left; the
        addresses opened. A node whose back-off is over is opened for another one while the
        node the client reached still holds it dead (no probe is spent on it), and is left to
        a probe otherwise. Malformed entries are skipped.
        """
        now = self._clock()
        opened: list[Address] = []
        down = set(_down_addresses(members))
        with self._lock:
            for address in down:
                entry = self.open.get(address)
                if entry is None:
                    self.open[address] = _Open(now + self.first_backoff, self.first_backoff)
                elif not entry.probing and entry.until <= now:
                    self.open[address] = _Open(now + entry.backoff, entry.backoff)
                else:
                    continue
                opened.append(address)
            for address, entry in list(self.open.items()):
                if address not in down and entry.until <= now and not entry.probing:
                    self.open[address] = _Open(entry.until, entry.backoff, False, True)
        return sorted(opened)


def _down_addresses(members: Any) -> Iterable[Address]:
    """The data addresses of the members a ``MEMBERS`` answer holds down."""
    if not isinstance(members, list):
        return
    for member in members:
        if not isinstance(member, Mapping) or member.get("state") not in DOWN_STATES:
            continue
        gossip, port = member.get("address"), member.get("data_port")
        if type(gossip) is not str or type(port) is not int or not 0 < port < 65536:
            continue
        try:
            host = parse_address(gossip, default_port=None).host
        except ConfigError:  # a malformed answer opens nothing
            continue
        yield Address(host, port)


__all__ = ["DEFAULT_PROBE_TIMEOUT", "DOWN_STATES", "FIRST_BACKOFF", "MAX_BACKOFF", "Breakers"]
