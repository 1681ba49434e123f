"""A simulated database for the loader, for the data-plane simulation.

:class:`SimDatabase` holds rows (key → value) and counts every query; each node gets its own
:class:`SimSource` over it, which answers after ``delay`` seconds of trio time (the mesh's
mock clock), or fails while the database is ``down``. Queries are not parsed: whatever the
loader's query text, a key's value is its row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import trio

from meshcache.node.loader.source import Listening, SourceFailure


class SimDatabase:
    """Rows, a per-key query count and an up/down switch, shared by every node's source."""

    def __init__(self, delay: float = 0.05) -> None:
        self.rows: dict[bytes, bytes] = {}
        self.delay = delay
        self.down = False
        self.queries: Counter[bytes] = Counter()  # key -> times it was queried

    def source(self, name: str = "sim") -> SimSource:
        return SimSource(name, self)


class SimSource:
    """One node's connection to a :class:`SimDatabase` (a loader :class:`~.source.Source`)."""

    def __init__(self, name: str, db: SimDatabase) -> None:
        self.name = name
        self.db = db

    async def check(self, query: str, *, batch: bool) -> None:
        await trio.sleep(self.db.delay)
        if self.db.down:
            raise SourceFailure("the simulated database is down")

    async def fetch_one(self, query: str, key: bytes) -> bytes | None:
        return (await self.fetch_many(query, [key])).get(key)

    async def fetch_many(self, query: str, keys: list[bytes]) -> dict[bytes, bytes]:
        self.db.queries.update(keys)
        await trio.sleep(self.db.delay)
        if self.db.down:
            raise SourceFailure("the simulated database is down")
        return {k: self.db.rows[k] for k in keys if k in self.db.rows}

    async def listen(
        self, channel: str, on_payload: Callable[[str], None], on_lost: Callable[[], None]
    ) -> Listening:
        raise SourceFailure("the simulated database has no channels")


__all__ = ["SimDatabase", "SimSource"]
