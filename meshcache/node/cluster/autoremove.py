"""Auto-removal: a ring member that gossip reports dead (or left) for longer than
``auto_remove_after`` is removed from the ring, compare-and-set through Raft, so its ranges are
re-replicated from the survivors by the hand-off.

Only voters run it (one proposal is enough; a conflicting one loses the compare-and-set).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

import structlog
import trio

from meshcache.control import ClusterConfig, Command, RemoveMember
from meshcache.errors import MeshcacheError

log = structlog.get_logger("meshcache.autoremove")

POLL = 1.0


class AutoRemover:
    """Watches ring members' liveness and proposes removing those dead too long.

    Args:
        node_id: this node (never removes itself).
        config: the newest committed config.
        propose: commits a config command (raises on refusal or no quorum).
        dead: whether gossip holds a member dead or left.
        after: seconds a member must stay dead before it is removed.
        stats: where ``auto_removed`` is counted.
    """

    def __init__(
        self,
        node_id: str,
        *,
        config: Callable[[], ClusterConfig],
        propose: Callable[[Command], Awaitable[ClusterConfig]],
        dead: Callable[[str], bool],
        after: float,
        stats: Counter[str],
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.node_id = node_id
        self.after = after
        self.stats = stats
        self._config = config
        self._propose = propose
        self._dead = dead
        self._clock = clock
        self._dead_since: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            await trio.sleep(POLL)
            await self.check()

    async def check(self) -> None:
        """One look at the ring: remove at most one member that has been dead too long."""
        now = self._clock()
        config = self._config()
        for member in config.members:
            if member.node_id == self.node_id or not self._dead(member.node_id):
                self._dead_since.pop(member.node_id, None)
                continue
            since = self._dead_since.setdefault(member.node_id, now)
            if now - since < self.after:
                continue
            try:
                await self._propose(RemoveMember(config.version, member.node_id))
            except MeshcacheError as exc:
                log.info("auto_remove_retry", node_id=member.node_id, error=str(exc))
                return
            log.warning(
                "ring_member_auto_removed", node_id=member.node_id, dead_s=round(now - since)
            )
            self.stats["auto_removed"] += 1
            self._dead_since.pop(member.node_id, None)
            return  # the config changed: re-read it next round


__all__ = ["AutoRemover"]
