"""A meshcache node, arranged by plane.

* :mod:`~meshcache.node.node` — the node process: :class:`Node`, :func:`serve`, :func:`run`.
* :mod:`~meshcache.node.assembly` — :class:`Assembly`, the one wiring of a node's data parts,
  shared by the node and the simulation.
* :mod:`~meshcache.node.contracts` — what the parts need from their host (liveness, config,
  membership), as protocols.
* :mod:`~meshcache.node.routes` — the handlers of the node ops the op table names.
* :mod:`~meshcache.node.breaker` — the circuit breaker state machine (sources, peers).
* ``net/`` — the data port reactor, frame dispatch, the peer pool and one-shot peer calls.
* ``data/`` — the coordinator, replication cores and drivers, anti-entropy and hand-off.
* ``cluster/`` — the membership (SWIM) and config (Raft) adapters, auto-removal.
* ``admin/`` — the HTTP admin port, metrics, INFO and RING.
"""

from __future__ import annotations

from meshcache.node.assembly import Assembly
from meshcache.node.contracts import ConfigSource, Liveness, MembershipView
from meshcache.node.node import READY_FILE, Node, NodeInfo, run, serve

__all__ = [
    "READY_FILE",
    "Assembly",
    "ConfigSource",
    "Liveness",
    "MembershipView",
    "Node",
    "NodeInfo",
    "run",
    "serve",
]
