"""What a node tells operators: the admin HTTP port, Prometheus metrics, INFO and RING.

* :mod:`.http` — ``GET /metrics`` and ``GET /health``.
* :mod:`.metrics` — the node's counters and its Prometheus collector (one registry per node).
* :mod:`.info` — the answers of INFO and RING.
"""

from __future__ import annotations

from meshcache.node.admin.http import AdminHandler
from meshcache.node.admin.info import describe, describe_ring
from meshcache.node.admin.metrics import NodeCollector, NodeCounters, make_registry

__all__ = [
    "AdminHandler",
    "NodeCollector",
    "NodeCounters",
    "describe",
    "describe_ring",
    "make_registry",
]
