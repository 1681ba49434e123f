"""Member states, node metadata, the public member snapshot and membership events.

Everything here is a small frozen value; the state machine (``swim.py``) keeps its own
mutable records and hands out these snapshots, so callers may keep them as long as they like.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from meshcache.gossip.endpoint import Address


class MemberState(enum.IntEnum):
    """A member's liveness as seen by this node. The values are the wire codes."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


MAX_ZONE_CHARS = 64
MAX_U63 = 2**63 - 1


@dataclass(frozen=True, slots=True)
class NodeMeta:
    """What a node tells the cluster about itself; gossiped with every alive update.

    ``load`` is a free-form figure (e.g. a 0..1 utilisation); ``config_version`` is the
    Raft-committed config version the node holds.
    """

    zone: str = ""
    data_port: int = 0
    raft_port: int = 0
    admin_port: int = 0
    config_version: int = 0
    load: float = 0.0

    def __post_init__(self) -> None:
        if len(self.zone) > MAX_ZONE_CHARS:
            raise ValueError(f"zone longer than {MAX_ZONE_CHARS} characters")
        for port in (self.data_port, self.raft_port, self.admin_port):
            if not 0 <= port <= 65535:
                raise ValueError("port out of range")
        if not 0 <= self.config_version <= MAX_U63:
            raise ValueError("config_version out of range")
        if not math.isfinite(self.load):
            raise ValueError("load must be finite")


@dataclass(frozen=True, slots=True)
class Member:
    """A snapshot of one member. ``state_since`` is the local ``now`` of the last change."""

    name: str
    address: Address
    state: MemberState
    incarnation: int
    meta: NodeMeta
    state_since: float


class EventKind(enum.Enum):
    """What happened to a member (never emitted about the local node itself).

    * ``JOINED`` — first seen, or back after it had ``LEFT`` (or been reaped).
    * ``SUSPECT`` — stopped answering; may still refute.
    * ``ALIVE`` — back to alive after ``SUSPECT`` or ``DEAD`` (refuted, or a partition healed).
    * ``DEAD`` — declared failed.
    * ``LEFT`` — left gracefully.
    * ``UPDATED`` — alive member changed its metadata or address.
    * ``REAPED`` — a dead or left member was forgotten.
    """

    JOINED = "joined"
    SUSPECT = "suspect"
    ALIVE = "alive"
    DEAD = "dead"
    LEFT = "left"
    UPDATED = "updated"
    REAPED = "reaped"


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """One membership change, in the order the node observed them."""

    kind: EventKind
    member: Member
    at: float
