"""Replication and repair, sans-I/O: the pieces the node wires (see docs/replication.md).

* :mod:`.tombstones` — a key's record (entry or tombstone) and the
  last-writer-wins order; the tombstones themselves live in the store.
* :mod:`.clamp` — far-future versions on replica writes: clamp, count.
* :mod:`.hints` — hinted hand-off queue, bounded and coalescing.
* :mod:`.digest` — Merkle-style range digests and repair plans.
* :mod:`.consistency` — write consistency tracker and read repair.
* :mod:`.budget` — a byte token bucket for repair bandwidth.
* :mod:`.ownership` — is a peer entitled to the range or keys it sends.

Nothing here does I/O, reads a clock or draws randomness: time is passed in as ``now``.
"""

from __future__ import annotations

from meshcache.node.data.replication.budget import ByteBudget
from meshcache.node.data.replication.clamp import Admitted, VersionClamp
from meshcache.node.data.replication.consistency import (
    Consistency,
    ReadRepair,
    WriteState,
    WriteTracker,
    read_repair,
    required_acks,
)
from meshcache.node.data.replication.digest import (
    KeyVersion,
    RangeDigest,
    RepairPlan,
    check_key_list,
    compare,
    keys_in_buckets,
    plan_repair,
)
from meshcache.node.data.replication.hints import Hint, HintQueue, HintStats
from meshcache.node.data.replication.ownership import foreign_keys, owns_range, range_within
from meshcache.node.data.replication.tombstones import (
    Record,
    Tombstone,
    apply_record,
    lww_order,
    read_record,
    record_from_wire,
)

__all__ = [
    "Admitted",
    "ByteBudget",
    "Consistency",
    "Hint",
    "HintQueue",
    "HintStats",
    "KeyVersion",
    "RangeDigest",
    "ReadRepair",
    "Record",
    "RepairPlan",
    "Tombstone",
    "VersionClamp",
    "WriteState",
    "WriteTracker",
    "apply_record",
    "check_key_list",
    "compare",
    "foreign_keys",
    "keys_in_buckets",
    "lww_order",
    "owns_range",
    "plan_repair",
    "range_within",
    "read_record",
    "read_repair",
    "record_from_wire",
    "required_acks",
]
