"""The consistent-hash ring, sans-I/O: members, placement, lookups and hand-off diffs.

Imports nothing of the node; the config plane (``control``), the node and smart clients share
it. See :mod:`meshcache.ring.ring` for placement and the joining/leaving semantics, and
:mod:`meshcache.ring.tokens` for the token functions every implementation must match.
"""

from __future__ import annotations

from meshcache.ring.diff import (
    RangeChange,
    Transfer,
    diff,
    gained_ranges,
    handoff,
    range_changes,
    replacements,
    transfers,
)
from meshcache.ring.member import RING_STATES, RingMember, RingState
from meshcache.ring.ring import (
    ALL_STATES,
    DEFAULT_VNODES_PER_WEIGHT,
    PENDING_STATES,
    READ_STATES,
    NoOwnerError,
    Ring,
)
from meshcache.ring.tokens import TOKEN_SPACE, TokenRange, key_token, vnode_token

__all__ = [
    "ALL_STATES",
    "DEFAULT_VNODES_PER_WEIGHT",
    "PENDING_STATES",
    "READ_STATES",
    "RING_STATES",
    "TOKEN_SPACE",
    "NoOwnerError",
    "RangeChange",
    "Ring",
    "RingMember",
    "RingState",
    "TokenRange",
    "Transfer",
    "diff",
    "gained_ranges",
    "handoff",
    "key_token",
    "range_changes",
    "replacements",
    "transfers",
    "vnode_token",
]
