"""A history of reads and writes of hot keys, and checkers apart from any scenario.

A scenario records into a :class:`HotHistory`: every acknowledged write of a key (by one writer
per key, values numbered in order: :func:`value_of` / :func:`seq_of`, a delete is ``None``) and
every read (who read, through which node, when it started and what it returned). The checkers
then say, for any run:

* :meth:`HotHistory.ryw_violations` — a writer read an older value of its key than one it had
  been acknowledged (read-your-writes), whatever node it wrote and read through; of
  :meth:`HotHistory.writer_reads` reads judged;
* :meth:`HotHistory.max_staleness` — the longest any read lagged behind the newest write
  acknowledged before the read started (the hot-key layer bounds it by one lease);
* :meth:`HotHistory.deleted_served` — reads that returned a value although a delete of the key
  had been acknowledged more than ``bound`` seconds before the read started.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def value_of(key: bytes, seq: int) -> bytes:
    """The value a scenario writes as ``key``'s ``seq``-th write."""
    return key + b"#" + str(seq).encode()


def seq_of(value: bytes | None) -> int | None:
    """The write number a value carries (None for a miss)."""
    if value is None:
        return None
    return int(value.rsplit(b"#", 1)[1])


@dataclass(frozen=True, slots=True)
class Read:
    reader: str
    via: str
    key: bytes
    started: float
    seq: int | None


@dataclass(slots=True)
class HotHistory:
    """Acknowledged writes (``key -> [(seq, acked_at, deleted)]`` in seq order) and reads."""

    writers: dict[bytes, str] = field(default_factory=dict)
    writes: dict[bytes, list[tuple[int, float, bool]]] = field(default_factory=dict)
    reads: list[Read] = field(default_factory=list)

    def acked(self, writer: str, key: bytes, seq: int, at: float, *, deleted: bool = False) -> None:
        owner = self.writers.setdefault(key, writer)
        if owner != writer:
            raise ValueError(f"{key!r} has one writer ({owner}), not {writer}")
        self.writes.setdefault(key, []).append((seq, at, deleted))

    def read(self, reader: str, via: str, key: bytes, started: float, value: bytes | None) -> None:
        self.reads.append(Read(reader, via, key, started, seq_of(value)))

    def _newest_before(self, key: bytes, t: float) -> tuple[int, float, bool] | None:
        newest = None
        for write in self.writes.get(key, []):
            if write[1] <= t:
                newest = write
        return newest

    def _first_newer(self, key: bytes, seq: int | None) -> tuple[int, float, bool] | None:
        """The first acknowledged write newer than what a read returned (``None``: a miss,
        which every write is newer than unless the key was deleted)."""
        for write in self.writes.get(key, []):
            if seq is None or write[0] > seq:
                return write
        return None

    def ryw_violations(self) -> list[Read]:
        out = []
        for r in self.reads:
            if self.writers.get(r.key) != r.reader:
                continue
            newest = self._newest_before(r.key, r.started)
            if newest is None:
                continue
            seq, _, deleted = newest
            if deleted and r.seq is None:
                continue
            if r.seq is None or r.seq < seq:
                out.append(r)
        return out

    def writer_reads(self) -> int:
        """How many reads :meth:`ryw_violations` judges: a writer's reads of its own key after
        one of its writes was acknowledged."""
        return sum(
            1
            for r in self.reads
            if self.writers.get(r.key) == r.reader and self._newest_before(r.key, r.started)
        )

    def max_staleness(self) -> float:
        """Seconds: the largest ``read start - ack of the first write newer than what it
        returned`` (0 when every read returned the newest acknowledged value)."""
        return self.stalest()[0]

    def stalest(self) -> tuple[float, Read | None]:
        """:meth:`max_staleness` and the read that lagged that much (None: no read lagged)."""
        worst, which = 0.0, None
        for r in self.reads:
            newest = self._newest_before(r.key, r.started)
            if newest is None or newest[0] == r.seq or (newest[2] and r.seq is None):
                continue
            if r.seq is not None and r.seq > newest[0]:
                continue  # a write acknowledged after the read started
            if r.seq is None and any(d and seq > newest[0] for seq, _, d in self.writes[r.key]):
                continue  # a miss while a delete was on its way
            newer = self._first_newer(r.key, r.seq)
            if newer is not None and newer[1] <= r.started and r.started - newer[1] > worst:
                worst, which = r.started - newer[1], r
        return worst, which

    def deleted_served(self, bound: float) -> list[Read]:
        out = []
        for r in self.reads:
            if r.seq is None:
                continue
            for seq, at, deleted in self.writes.get(r.key, []):
                if deleted and seq > r.seq and at + bound < r.started:
                    out.append(r)
                    break
        return out


__all__ = ["HotHistory", "Read", "seq_of", "value_of"]
