"""A deterministic recording of a 5-node cluster for the snapshot tests and docs/top.svg.

Thirty polls, one a second, shaped like real nodes' answers (INFO, MEMBERS, RING, RAFT_STATUS,
CONFIG_GET and the /metrics counters). What happens in them:

* t=0..29: steady traffic on every live node (about 1,200 client ops/s each, a slow wave),
  answered in about 0.1 ms (p50) and 1 ms (p99), slower when the wave is high;
* t=12: node 5 stops answering (connection refused); its peers see it suspect at t=13 and
  dead at t=17, and keep hints for it;
* t=20: node 4 is drained: config version 12 -> 13 puts it ``leaving``, and it hands records
  off from then on;
* hot keys are on in ``sessions``: from t=5 node 1 copies ``user:42:profile`` to every other
  node, from t=8 node 2 copies ``cart:7`` to two; node 5 held copies (HOTKEYS) until it died;
  the other namespaces have hot keys off.

Nothing here is random (one seeded ``random.Random``), so every run yields the same polls.
"""

from __future__ import annotations

import math
import random
from typing import Any

from meshcache.tui.source import NodeReply, Poll

START_WALL = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
NODES = [f"10.0.1.{i}:7400" for i in range(1, 6)]
ZONES = ["eu-1a", "eu-1b", "eu-1c", "eu-1a", "eu-1b"]
RAFT = {0: "10.0.1.1:7401", 1: "10.0.1.2:7401", 2: "10.0.1.3:7401"}
SHARES = [0.2031, 0.1968, 0.2012, 0.1994, 0.1995]
DEAD_FROM = 12
SUSPECT_AT = 13
DEAD_AT = 17
LEAVE_AT = 20
POLLS = 30

POLICIES: dict[str, dict[str, Any]] = {
    "default": {"eviction": "lru", "replicas": 2, "consistency": "one"},
    "sessions": {
        "eviction": "lfu",
        "max_bytes": 256 * 1024 * 1024,
        "default_ttl": 1800,
        "replicas": 3,
        "consistency": "quorum",
        "hot": {"enabled": True, "share": 0.02, "rate": 200.0, "copies": None, "lease": 2.0},
    },
    "pages": {
        "eviction": "ttl",
        "max_items": 1_000_000,
        "default_ttl": 300,
        "replicas": 2,
        "consistency": "one",
        "loader": {
            "source": "pg",
            "query": "SELECT body FROM pages WHERE path = $1",
            "ttl": 600,
            "channel": "pages_changed",
            "refresh_ahead": 0.9,
        },
    },
}


def _policy_full(policy: dict[str, Any]) -> dict[str, Any]:
    return {"max_bytes": None, "max_items": None, "default_ttl": None, "hot": None, **policy}


HOT_AT = {"user:42:profile": 5, "cart:7": 8}


def _hotkeys(i: int, t: int) -> dict[str, Any]:
    """Node ``i``'s HOTKEYS answer at ``t``."""
    alive = [NODES[j] for j in range(5) if not (j == 4 and t >= DEAD_AT)]
    hot = []
    if i == 0 and t >= HOT_AT["user:42:profile"]:
        hot.append(
            {
                "namespace": "sessions",
                "key": "user:42:profile",
                "share": round(0.21 + 0.001 * (t % 7), 5),
                "rate": round(2410.0 + 37.5 * (t % 5), 1),
                "holders": [n for n in alive if n != NODES[0]],
                "hot_for": float(t - HOT_AT["user:42:profile"]),
            }
        )
    if i == 1 and t >= HOT_AT["cart:7"]:
        hot.append(
            {
                "namespace": "sessions",
                "key": "cart:7",
                "share": 0.046,
                "rate": 512.5,
                "holders": [NODES[2], NODES[3]],
                "hot_for": float(t - HOT_AT["cart:7"]),
            }
        )
    copies = []
    if i != 0 and t >= HOT_AT["user:42:profile"]:
        copies.append({"namespace": "sessions", "key": "user:42:profile", "version": 7})
    if i in (2, 3) and t >= HOT_AT["cart:7"]:
        copies.append({"namespace": "sessions", "key": "cart:7", "version": 3})
    return {
        "node_id": NODES[i],
        "ring_version": 13 if t >= LEAVE_AT else 12,
        "hot": hot,
        "copies": copies,
        "area_bytes": 2_600 * len(copies),
    }


def _config(version: int, t: int) -> dict[str, Any]:
    return {
        "version": version,
        "members": [_ring_member(i, t)[0] for i in range(5)],
        "namespaces": POLICIES,
    }


def _ring_member(i: int, t: int) -> tuple[dict[str, Any], float]:
    state = "leaving" if i == 3 and t >= LEAVE_AT else "active"
    return (
        {
            "node_id": NODES[i],
            "address": NODES[i],
            "zone": ZONES[i],
            "weight": 1,
            "state": state,
        },
        SHARES[i],
    )


def _ring(t: int) -> dict[str, Any]:
    return {
        "version": 13 if t >= LEAVE_AT else 12,
        "vnodes_per_weight": 512,
        "members": [{**m, "share": share} for m, share in (_ring_member(i, t) for i in range(5))],
    }


def _gossip_state(i: int, t: int) -> tuple[str, int]:
    if i == 4 and t >= DEAD_AT:
        return "dead", 9
    if i == 4 and t >= SUSPECT_AT:
        return "suspect", 9
    return "alive", [14, 11, 12, 8, 9][i]


def _members(t: int) -> list[dict[str, Any]]:
    out = []
    for i, node in enumerate(NODES):
        port = node.rsplit(":", 1)[1]
        state, incarnation = _gossip_state(i, t)
        out.append(
            {
                "name": node,
                "address": node,
                "state": state,
                "incarnation": incarnation,
                "zone": ZONES[i],
                "data_port": int(port),
                "admin_port": 9400,
                "raft_port": 7401 if i in RAFT else 0,
                "config_version": 13 if t >= LEAVE_AT else 12,
                "load": 0.0,
            }
        )
    return out


def _raft(t: int) -> dict[str, Any]:
    return {
        "self": RAFT[0],
        "role": "leader",
        "leader": RAFT[0],
        "voters": list(RAFT.values()),
        "connected": [RAFT[1], RAFT[2]],
        "term": 3,
        "commit_index": 40 + t // 10,
        "last_applied": 40 + t // 10,
        "is_ready": True,
        "has_quorum": True,
        "config_version": 13 if t >= LEAVE_AT else 12,
    }


class _NodeCounters:
    """Cumulative counters of one node, advanced one second at a time."""

    def __init__(self, i: int, rng: random.Random) -> None:
        self.i = i
        self.rng = rng
        self.requests = {"GET": 100_000.0 * (i + 1), "SET": 20_000.0 * (i + 1), "INFO": 50.0}
        self.hits = {"default": 50_000 * (i + 1), "sessions": 30_000 * (i + 1), "pages": 9_000}
        self.misses = {"default": 4_000 * (i + 1), "sessions": 900 * (i + 1), "pages": 3_000}
        self.evictions = {"default": 0, "sessions": 1_200 + i, "pages": 0}
        self.expirations = {"default": 0, "sessions": 300, "pages": 25_000 + 10 * i}
        self.items = {"default": 41_000 + 1_000 * i, "sessions": 12_500 + 300 * i, "pages": 8_000}
        self.bytes = {
            n: items * (180 if n == "sessions" else 120) for n, items in self.items.items()
        }
        self.hints = 0
        self.handoff_out = 0
        self.handoff_in = 0
        self.connect_errors = 0
        self.window: dict[str, int] = {"GET": 0, "SET": 0}  # requests in the latency window
        self.wave = 1.0

    def advance(self, t: int) -> None:
        wave = 1 + 0.35 * math.sin((t + 3 * self.i) / 4)
        gets = int(1000 * wave) + self.rng.randint(0, 80)
        sets = int(200 * wave) + self.rng.randint(0, 20)
        self.requests["GET"] += gets
        self.requests["SET"] += sets
        self.wave = wave
        if t % 10 == 0:  # the node's latency window turns over
            self.window = {"GET": 0, "SET": 0}
        self.window["GET"] += gets
        self.window["SET"] += sets
        self.requests["INFO"] += 1  # the console's own poll: not a client op
        for name, share, ratio in (("default", 0.6, 0.93), ("sessions", 0.3, 0.97)):
            reads = int(gets * share)
            self.hits[name] += int(reads * ratio)
            self.misses[name] += reads - int(reads * ratio)
        self.hits["pages"] += int(gets * 0.1 * 0.7)
        self.misses["pages"] += int(gets * 0.1) - int(gets * 0.1 * 0.7)
        self.evictions["sessions"] += 3 + self.rng.randint(0, 4)
        self.expirations["pages"] += 20 + self.rng.randint(0, 10)
        if t >= DEAD_FROM:
            self.hints += 40
            self.connect_errors += 1
        if self.i == 3 and t >= LEAVE_AT:
            moved = 4_000
            self.handoff_out += moved
            self.items["default"] = max(0, self.items["default"] - moved)
        elif t >= LEAVE_AT:
            self.handoff_in += 1_000

    def info(self, t: int) -> dict[str, Any]:
        namespaces = {}
        for name, policy in POLICIES.items():
            namespaces[name] = {
                "items": self.items[name],
                "bytes": self.items[name] * (180 if name == "sessions" else 120),
                "hits": self.hits[name],
                "misses": self.misses[name],
                "evictions": {"max_bytes": self.evictions[name], "max_items": 0},
                "expirations": self.expirations[name],
                "keys_with_ttl": self.items[name] if policy.get("default_ttl") else 0,
                "policy": _policy_full(policy),
                "tombstones": 0,
                "tombstone_bytes": 0,
                "tombstones_dropped": 0,
            }
        return {
            "version": "0.1.0",
            "node_id": NODES[self.i],
            "uptime_s": 86_400.0 + t,
            "connections": 40 + 3 * self.i,
            "namespaces": namespaces,
            "gossip": {"members": {"alive": 4 if t >= DEAD_AT else 5}},
            "mesh": {
                "counters": {
                    "dataplane": {},
                    "replicator": {},
                    "hints": {"queued": self.hints},
                    "rebalance": {
                        "records_handed_off": 0,
                        "records_drained": self.handoff_out,
                        "records_pulled": self.handoff_in,
                    },
                    "peers": {"connect_errors": self.connect_errors},
                    "antientropy": {},
                },
                "gauges": {
                    "hints": self.hints,
                    "hint_bytes": self.hints * 150,
                    "replica_writes_queued": 0,
                    "ring_version": 13 if t >= LEAVE_AT else 12,
                    "ring_members": 5,
                    "handoff_ranges_moving": self.moving(t),
                },
            },
            "requests": {op: int(n) for op, n in self.requests.items()},
            "latency": self._latency(t),
        }

    def moving(self, t: int) -> int:
        """Ranges this node moves now: the leaving node pushes its ranges for a few seconds."""
        return 6 if self.i == 3 and LEAVE_AT <= t < LEAVE_AT + 5 else 0

    def _latency(self, t: int) -> dict[str, Any]:
        p50 = round(0.085 + 0.01 * self.i + 0.03 * self.wave, 4)
        p99 = round(0.6 + 0.15 * self.i + 0.5 * self.wave + (0.8 if t >= DEAD_FROM else 0), 4)
        ops = {
            "GET": {"count": self.window["GET"], "p50_ms": p50, "p99_ms": p99},
            "SET": {"count": self.window["SET"], "p50_ms": p50 * 1.2, "p99_ms": p99 * 1.1},
        }
        return {
            "window_s": float(10 + t % 10),
            "ops": ops,
            "data": {"count": sum(self.window.values()), "p50_ms": p50, "p99_ms": p99},
        }


def recorded_polls() -> list[Poll]:
    """The thirty polls described in the module doc."""
    rng = random.Random(20240611)
    counters = [_NodeCounters(i, rng) for i in range(5)]
    polls = []
    for t in range(POLLS):
        at, wall = float(t), START_WALL + t
        replies = {}
        for i, node in enumerate(NODES):
            counters[i].advance(t)
            if i == 4 and t >= DEAD_FROM:
                replies[node] = NodeReply(
                    node, at, wall, problem=f"cannot reach {node}: Connection refused"
                )
                continue
            reply = NodeReply(
                node,
                at + 0.01 * (i + 1),
                wall + 0.01 * (i + 1),
                info=counters[i].info(t),
                members=_members(t),
                ring=_ring(t),
                raft=_raft(t),
                config=_config(13 if t >= LEAVE_AT else 12, t),
                requests=dict(counters[i].requests),
                errors={"WRITE_FAILED": float(2 * max(0, t - DEAD_FROM))} if i == 0 else {},
                hotkeys=_hotkeys(i, t),
                elapsed=0.002,
            )
            replies[node] = reply
        polls.append(Poll(at + 0.05, wall + 0.05, replies))
    return polls


__all__ = ["NODES", "POLLS", "recorded_polls"]
