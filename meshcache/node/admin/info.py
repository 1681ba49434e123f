"""What a node says about itself and the ring: the answers of INFO and RING.

Pure functions over the node's parts' figures; the node and the simulation call them alike.
The field names are part of the protocol (docs/protocol.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from meshcache._version import __version__
from meshcache.control import ClusterConfig
from meshcache.node.admin.metrics import NodeCounters
from meshcache.ring import Ring
from meshcache.ring.ring import DEFAULT_VNODES_PER_WEIGHT
from meshcache.store.store import Store
from meshcache.wire.ops import OPS, OpKind

#: The ops INFO's ``latency.data`` summarises: every op of kind read or write (client data
#: requests; node ops, admin ops and node-to-node traffic are left out).
DATA_OPS = frozenset(name for name, spec in OPS.items() if spec.kind is not OpKind.META)


def describe(
    *,
    node_id: str,
    uptime: float,
    connections: int,
    store: Store,
    gossip: dict[str, Any],
    mesh: dict[str, Any],
    counters: NodeCounters | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """INFO: identity, uptime, connections, every namespace's figures, gossip and mesh; with
    ``counters``, the requests answered by op since start and the recent latency by op.

    ``extra`` adds sections (e.g. the event loop's figures) after the fixed ones.
    """
    namespaces = {}
    for name, st in store.stats().items():
        figures = dataclasses.asdict(st) if dataclasses.is_dataclass(st) else dict(st)
        namespaces[name] = plain(figures)
    return {
        "version": __version__,
        "node_id": node_id,
        "uptime_s": round(uptime, 3),
        "connections": connections,
        "namespaces": namespaces,
        "gossip": gossip,
        "mesh": mesh,
        **(request_sections(counters) if counters is not None else {}),
        **(extra or {}),
    }


def request_sections(counters: NodeCounters) -> dict[str, Any]:
    """INFO's ``requests`` (op -> answered since start) and ``latency`` sections."""
    return {
        "requests": dict(sorted(counters.requests.items())),
        "latency": counters.latency.figures(DATA_OPS),
    }


def describe_ring(config: ClusterConfig, ring: Ring | None = None) -> dict[str, Any]:
    """RING: the committed ring with each member's share of the key space (as primary).
    ``ring`` is the node's ring, used when it is ``config``'s (building one costs
    milliseconds)."""
    members = list(config.members)
    shares: dict[str, float] = {}
    if members:
        if ring is None or ring.version != config.version:
            ring = Ring(members, config.version)
        shares = ring.shares()
    return {
        "version": config.version,
        "vnodes_per_weight": DEFAULT_VNODES_PER_WEIGHT,
        "members": [
            {**m.to_mapping(), "share": round(shares.get(m.node_id, 0.0), 4)} for m in members
        ],
    }


def plain(value: Any) -> Any:
    """Turn statistics into msgpack/JSON-able values (enums and dataclasses to text)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    return str(value)


__all__ = ["DATA_OPS", "describe", "describe_ring", "plain", "request_sections"]
