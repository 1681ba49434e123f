"""The loader plane: read-through from a database on a miss, one query per key cluster-wide.

* :mod:`.loader` — the node's part: singleflight at the key's owner, stale-set protection,
  negative caching, refresh-ahead, invalidation from LISTEN/NOTIFY, figures.
* :mod:`.source` — what a source is, and PostgreSQL through asyncpg (:class:`PgSource`).
* :mod:`.bridge` — the asyncio loop in one thread that asyncpg runs on.
* :mod:`.sql` — the trigger SQL that announces changed keys (``meshcache loader sql``).

The namespace's side of it, :class:`~meshcache.store.loader_policy.LoaderPolicy`, is part of
the namespace policy; sources are node settings (``[sources.NAME]``). docs/loader.md
describes the whole.
"""

from __future__ import annotations

from meshcache.node.loader.loader import Loader
from meshcache.node.loader.source import PgSource, Source

__all__ = ["Loader", "PgSource", "Source"]
