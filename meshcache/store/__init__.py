"""The local storage engine: namespaces, TTL, LRU/LFU/TTL eviction, byte accounting, types.

Public names: :class:`Store` (what the node calls), :class:`NamespacePolicy`,
:class:`NamespaceStats`, :class:`EntryView`, :func:`tie_break`.
"""

from __future__ import annotations

from meshcache.store.entry import EntryView, tie_break
from meshcache.store.policy import DEFAULT_POLICY, NamespacePolicy
from meshcache.store.store import DEFAULT_NAMESPACE, HANDLERS, NamespaceStats, Store

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_POLICY",
    "HANDLERS",
    "EntryView",
    "NamespacePolicy",
    "NamespaceStats",
    "Store",
    "tie_break",
]
