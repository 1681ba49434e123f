"""The node's adapters to the cluster planes.

* :mod:`.membership` — SWIM gossip on UDP (push/pull over the data port).
* :mod:`.config` — the config service: Raft voter or follower, config pull, config ops.
* :mod:`.autoremove` — voters remove ring members that stayed dead too long.
"""

from __future__ import annotations

from meshcache.node.cluster.autoremove import AutoRemover
from meshcache.node.cluster.config import ConfigService
from meshcache.node.cluster.membership import Membership

__all__ = ["AutoRemover", "ConfigService", "Membership"]
