"""The data plane of a node: where keys go, how copies stay in step, how ranges move.

* :mod:`.coordinator` — runs client ops on the key's owners: here, or forwarded (``FWD``).
* :mod:`.replicator` — ships records to the other owners; hints for those it cannot reach.
* :mod:`.antientropy` — periodic digest exchanges that repair what hints missed.
* :mod:`.handoff` — pulls gained ranges on ring changes, drains a leaving node.
* :mod:`.replication` — the sans-I/O cores they drive (records, hints, digests, budgets).
"""

from __future__ import annotations

from meshcache.node.data.antientropy import AntiEntropy, SyncResult
from meshcache.node.data.coordinator import Coordinator
from meshcache.node.data.handoff import HandOff
from meshcache.node.data.replicator import Replicator

__all__ = ["AntiEntropy", "Coordinator", "HandOff", "Replicator", "SyncResult"]
