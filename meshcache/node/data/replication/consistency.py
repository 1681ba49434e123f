"""Write consistency (one / quorum / all) and read repair, as small pure decisions.

What callers may rely on:

* :class:`WriteTracker` answers one question per event: is the write acknowledged, failed, or
  still pending? It is acknowledged as soon as ``required_acks`` distinct owners acked, failed
  as soon as that can no longer happen (too many owners failed) or when :meth:`WriteTracker.tick`
  sees the deadline pass first. Once decided, the outcome never changes; later answers are
  still recorded (a write that "failed" may have been applied by some owners, like any
  timed-out write: last-writer-wins makes a retry safe).
* Hints do not count as acks (unlike Cassandra's ``ANY``): an owner that failed or did not
  answer is in :meth:`WriteTracker.unacked`, which is what the node turns into hints.
* :func:`read_repair` picks the winning answer by ``(version, deleted)`` (a delete wins a tie,
  like the store) and lists the replicas whose answer is older or missing; replicas that did
  not answer at all are not listed (anti-entropy covers them).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from meshcache.errors import ConfigError


class Consistency(enum.StrEnum):
    """How many owners must apply a write before the client is answered."""

    ONE = "one"
    QUORUM = "quorum"
    ALL = "all"


def required_acks(level: Consistency, owners: int) -> int:
    """Acks needed from ``owners`` owners: 1, a majority, or all of them."""
    if owners < 1:
        raise ConfigError("a write needs at least one owner")
    if level is Consistency.ONE:
        return 1
    if level is Consistency.QUORUM:
        return owners // 2 + 1
    return owners


class WriteState(enum.Enum):
    PENDING = "pending"
    ACKED = "acked"
    FAILED = "failed"


class WriteTracker:
    """One replicated write's progress towards its consistency level.

    Args:
        owners: the key's write owners (distinct node ids; the coordinator among them if it
            owns the key).
        level: the namespace's write consistency.
        deadline: when the write fails if not yet acknowledged (same clock as ``tick``'s
            ``now``).
    """

    __slots__ = ("_acked", "_failed", "deadline", "level", "needed", "owners", "state", "strays")

    def __init__(self, owners: Sequence[str], level: Consistency, deadline: float) -> None:
        if len(set(owners)) != len(owners):
            raise ConfigError("write owners must be distinct")
        self.owners = tuple(owners)
        self.level = level
        self.needed = required_acks(level, len(owners))
        self.deadline = deadline
        self.state = WriteState.PENDING
        self._acked: set[str] = set()
        self._failed: set[str] = set()
        #: Answers from nodes that are not owners of this write (ignored, counted).
        self.strays = 0

    @property
    def acked(self) -> frozenset[str]:
        return frozenset(self._acked)

    @property
    def failed(self) -> frozenset[str]:
        return frozenset(self._failed)

    def unacked(self) -> tuple[str, ...]:
        """Owners that failed or have not answered, in owner order (hint candidates)."""
        return tuple(o for o in self.owners if o not in self._acked)

    def waiting(self) -> tuple[str, ...]:
        """Owners with no answer yet."""
        return tuple(o for o in self.owners if o not in self._acked and o not in self._failed)

    def ack(self, node: str) -> WriteState:
        """``node`` applied the write, or already held this very record. (An answer that it
        holds a *newer* record is no ack of a write just made: its coordinator takes that record
        and writes again above it, see ``Coordinator._await_acks``.)"""
        if node not in self.owners:
            self.strays += 1
        elif node not in self._failed:
            self._acked.add(node)
        return self._decide()

    def fail(self, node: str) -> WriteState:
        """``node`` refused the write, its connection failed, or gossip says it is dead."""
        if node not in self.owners:
            self.strays += 1
        elif node not in self._acked:
            self._failed.add(node)
        return self._decide()

    def tick(self, now: float) -> WriteState:
        """Fail a write still pending at or after its deadline."""
        if self.state is WriteState.PENDING and now >= self.deadline:
            self.state = WriteState.FAILED
        return self.state

    def _decide(self) -> WriteState:
        if self.state is WriteState.PENDING:
            if len(self._acked) >= self.needed:
                self.state = WriteState.ACKED
            elif len(self.owners) - len(self._failed) < self.needed:
                self.state = WriteState.FAILED
        return self.state


@dataclass(frozen=True, slots=True)
class ReadRepair:
    """The outcome of comparing replicas' answers for one key.

    ``winner`` is a node whose answer wins (the first in the mapping's order among equals),
    ``version``/``deleted`` its record's order; ``stale`` the nodes that need the winner's
    record, in the mapping's order.
    """

    winner: str
    version: int
    deleted: bool
    stale: tuple[str, ...]


def read_repair(answers: Mapping[str, tuple[int, bool] | None]) -> ReadRepair | None:
    """Which replicas need which record, from each replica's ``(version, deleted)`` or
    ``None`` (it holds nothing). ``None`` when no replica holds anything."""
    best: tuple[int, bool] | None = None
    winner = ""
    for node, answer in answers.items():
        if answer is not None and (best is None or answer > best):
            best, winner = answer, node
    if best is None:
        return None
    stale = tuple(n for n, a in answers.items() if a is None or a < best)
    return ReadRepair(winner, best[0], best[1], stale)


__all__ = [
    "Consistency",
    "ReadRepair",
    "WriteState",
    "WriteTracker",
    "read_repair",
    "required_acks",
]
