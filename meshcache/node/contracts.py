"""What a node's parts need from their host, as protocols.

The :class:`~meshcache.node.assembly.Assembly` is built from these; the real node implements
them with gossip and Raft, the simulation with an oracle and a committed config.
"""

from __future__ import annotations

from typing import Any, Protocol

from meshcache.control import ClusterConfig, Command


class Liveness(Protocol):
    """What the node knows of other nodes' health (gossip, or the simulation's oracle)."""

    def alive(self, node_id: str) -> bool:
        """Worth sending to: alive or suspect, or not known yet (this node always is)."""

    def dead(self, node_id: str) -> bool:
        """Declared dead or gone (left)."""

    def config_version_of(self, node_id: str) -> int:
        """The config version ``node_id`` says it runs (0: not known)."""


class ConfigSource(Protocol):
    """The committed cluster config and the config-plane ops (Raft, or the simulation's)."""

    @property
    def config(self) -> ClusterConfig: ...

    async def propose(self, command: Command) -> ClusterConfig: ...

    async def handle_propose(self, mapping: Any) -> dict[str, Any]: ...

    async def set_namespace(self, name: str, fields: dict[str, Any]) -> dict[str, Any]: ...

    async def drop_namespace(self, name: str) -> bool: ...

    async def raft(self, action: str, address: str | None = None) -> Any: ...

    async def register_self(self) -> None:
        """Put this node on the ring (``joining``, or ``active`` when no other member is)."""


class MembershipView(Protocol):
    """The membership ops a node answers (SWIM, or the simulation's oracle)."""

    def members(self) -> list[dict[str, Any]]: ...

    def handle_push_pull(self, payload: bytes) -> Any: ...


__all__ = ["ConfigSource", "Liveness", "MembershipView"]
