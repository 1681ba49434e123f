"""Figures for the consistent-hash ring (``meshcache.ring``), printed as markdown.

Run from the repository root::

    .venv/bin/python tools/ring_figures.py            # full run, 1M keys (a few minutes)
    .venv/bin/python tools/ring_figures.py --keys 100000 --id-sets 3   # quick look

Sections:

1. The key hash: cost per call and how evenly each candidate spreads three key shapes.
2. The vnode count: max/mean share of the token space per node (exact, from the vnode arcs)
   over several sets of node ids, with build time and memory — the default is the smallest
   count whose *worst* set meets max/mean <= 1.10 at 3, 6 and 12 nodes.
3. At the default: max/mean keys per node for N keys, and the keys (and replica copies) that
   move when one node joins N, against the ideal 1/(N+1).
4. Lookup cost: ``Ring.owners(key, 2)`` against a dict lookup, timeit best-of.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import random
import statistics
import sys
import timeit
import tracemalloc
import zlib
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The path line above lets the tool run from a checkout without installing meshcache.
from meshcache.ring import (
    DEFAULT_VNODES_PER_WEIGHT,
    TOKEN_SPACE,
    Ring,
    RingMember,
    key_token,
)

TARGET_BALANCE = 1.10
NODE_COUNTS = (3, 6, 12)
VNODE_CANDIDATES = (64, 128, 256, 512, 1024)
ZONES = ("a", "b", "c")


def members(ids: Sequence[str]) -> list[RingMember]:
    """Members spread round-robin over three zones, weight 1, all active."""
    return [
        RingMember(node_id, f"127.0.0.1:{7400 + i}", zone=ZONES[i % len(ZONES)])
        for i, node_id in enumerate(ids)
    ]


def plain_ids(n: int) -> list[str]:
    return [f"node-{i}" for i in range(1, n + 1)]


def random_ids(n: int, rng: random.Random) -> list[str]:
    return [f"node-{rng.getrandbits(48):012x}" for _ in range(n)]


def blake2b_token(key: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "big")


def md5_token(key: bytes) -> int:
    return int.from_bytes(hashlib.md5(key).digest()[:4], "big")


HASHES: dict[str, Callable[[bytes], int]] = {
    "crc32 (chosen)": zlib.crc32,
    "blake2b, 4-byte digest": blake2b_token,
    "md5, first 4 bytes": md5_token,
}


def best_ns(stmt: str, env: dict[str, object], number: int = 200_000, repeat: int = 9) -> float:
    """Best-of-``repeat`` nanoseconds per execution: the least disturbed by other load."""
    timer = timeit.Timer(stmt, globals=env)
    return min(timer.repeat(repeat, number)) / number * 1e9


def balance(counts: Sequence[int]) -> float:
    return max(counts) / (sum(counts) / len(counts))


def primary_counts(ring: Ring, tokens: Sequence[int]) -> list[int]:
    index = {m.node_id: i for i, m in enumerate(ring.members)}
    counts = [0] * len(ring.members)
    for token in tokens:
        counts[index[ring.owners_for_token(token)[0].node_id]] += 1
    return counts


def arc_shares(ring: Ring) -> list[int]:
    """Exact number of tokens each member owns as primary."""
    shares: Counter[str] = Counter()
    for token_range, owners in ring.ranges(1):
        shares[owners[0].node_id] += token_range.size
    return [shares[m.node_id] for m in ring.members]


def section_hash(n_keys: int) -> list[str]:
    rng = random.Random(1)
    shapes: dict[str, list[bytes]] = {
        "`key:<i>`": [b"key:%d" % i for i in range(n_keys)],
        "`user:<i:08d>:profile`": [b"user:%08d:profile" % i for i in range(n_keys)],
        "16 random bytes": [rng.randbytes(16) for _ in range(n_keys)],
    }
    ring = Ring(members(plain_ids(12)), 1)
    bounds = ring.boundaries()
    index = {m.node_id: i for i, m in enumerate(ring.members)}
    owner_of = [index[ring.owners_for_token(b)[0].node_id] for b in bounds]
    owner_of.append(owner_of[0])
    arcs = arc_shares(ring)
    ideal = max(a / (TOKEN_SPACE / len(arcs)) for a in arcs)
    lines = [
        f"### Key hash (12 nodes, {DEFAULT_VNODES_PER_WEIGHT} vnodes each, {n_keys:,} keys)",
        "",
        f"max/mean keys per node; the vnode arcs alone give {ideal:.3f} (a perfect hash).",
        "",
        "| hash | ns per call | " + " | ".join(shapes) + " |",
        "|---|---:|" + "---:|" * len(shapes),
    ]
    sample = b"user:00123456:profile"
    for name, fn in HASHES.items():
        ns = best_ns("fn(k)", {"fn": fn, "k": sample})
        cells = []
        for keys in shapes.values():
            counts = [0] * len(ring.members)
            for key in keys:
                counts[owner_of[bisect_left(bounds, fn(key))]] += 1
            cells.append(f"{balance(counts):.3f}")
        lines.append(f"| {name} | {ns:.0f} | " + " | ".join(cells) + " |")
    return lines


def ring_bytes(ring_members: list[RingMember], vnodes: int) -> tuple[int, float]:
    """(bytes retained by a built ring, build time in ms)."""
    # Timed without tracemalloc, which slows allocation-heavy code several times over.
    elapsed = min(
        timeit.repeat(lambda: Ring(ring_members, 1, vnodes_per_weight=vnodes), number=1, repeat=3)
    )
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    ring = Ring(ring_members, 1, vnodes_per_weight=vnodes)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del ring
    return after - before, elapsed * 1e3


def section_vnodes(id_sets: int) -> tuple[list[str], int]:
    rng = random.Random(7)
    sets = {
        n: [plain_ids(n)] + [random_ids(n, rng) for _ in range(id_sets - 1)] for n in NODE_COUNTS
    }
    lines = [
        f"### Vnodes per unit weight ({id_sets} sets of node ids per cluster size)",
        "",
        "max/mean share of the token space per node, worst (median) over the id sets; memory and"
        " build time of a 12-node ring (tracemalloc, one build).",
        "",
        "| vnodes | " + " | ".join(f"{n} nodes" for n in NODE_COUNTS) + " | 12-node ring memory |"
        " 12-node build |",
        "|---:|" + "---:|" * len(NODE_COUNTS) + "---:|---:|",
    ]
    chosen = 0
    for vnodes in VNODE_CANDIDATES:
        worst_all = 0.0
        cells = []
        for n in NODE_COUNTS:
            values = [
                balance(arc_shares(Ring(members(ids), 1, vnodes_per_weight=vnodes)))
                for ids in sets[n]
            ]
            worst_all = max(worst_all, max(values))
            cells.append(f"{max(values):.3f} ({statistics.median(values):.3f})")
        size, build_ms = ring_bytes(members(plain_ids(12)), vnodes)
        lines.append(
            f"| {vnodes} | " + " | ".join(cells) + f" | {size / 1024:.0f} KiB | {build_ms:.0f} ms |"
        )
        if not chosen and worst_all <= TARGET_BALANCE:
            chosen = vnodes
    lines += [
        "",
        f"Smallest count whose worst set meets max/mean <= {TARGET_BALANCE}: "
        f"**{chosen or 'none of these'}**; the default (`DEFAULT_VNODES_PER_WEIGHT`) is "
        f"**{DEFAULT_VNODES_PER_WEIGHT}**.",
    ]
    return lines, chosen


def section_default(n_keys: int) -> list[str]:
    tokens = [key_token(b"key:%d" % i) for i in range(n_keys)]
    lines = [
        f"### At {DEFAULT_VNODES_PER_WEIGHT} vnodes per unit weight, {n_keys:,} keys `key:<i>`",
        "",
        "Nodes `node-1`..`node-N` round-robin over zones a, b, c; node N+1 joins in the next zone."
        " Moved = keys whose primary changes; copies moved = replica copies (replicas=2) that"
        " change node, over all copies.",
        "",
        "| nodes N | max/mean keys (primary) | max/mean copies (replicas=2) | keys moved when"
        " one joins | copies moved | ideal 1/(N+1) | target 1.1/(N+1) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in NODE_COUNTS:
        old = Ring(members(plain_ids(n)), 1)
        new = Ring(members(plain_ids(n + 1)), 2)
        index = {m.node_id: i for i, m in enumerate(old.members)}
        copies = [0] * n
        moved = moved_copies = 0
        for token in tokens:
            before = old.owners_for_token(token, 2)
            after = new.owners_for_token(token, 2)
            for member in before:
                copies[index[member.node_id]] += 1
            if before[0].node_id != after[0].node_id:
                moved += 1
            moved_copies += len({m.node_id for m in after} - {m.node_id for m in before})
        primary = balance(primary_counts(old, tokens))
        lines.append(
            f"| {n} | {primary:.3f} | {balance(copies):.3f} | {moved / n_keys:.4f} |"
            f" {moved_copies / (2 * n_keys):.4f} | {1 / (n + 1):.4f} | {1.1 / (n + 1):.4f} |"
        )
    return lines


def section_lookup() -> list[str]:
    lines = [
        "### Lookup cost (best of 9 x 200k calls, 20-byte key)",
        "",
        "| nodes | `Ring.owners(key, 2)` ns | `Ring.primary(key)` ns | `dict.get(key)` ns |",
        "|---:|---:|---:|---:|",
    ]
    key = b"user:00123456:profile"
    for n in (*NODE_COUNTS, 100):
        ring = Ring(members(plain_ids(n)), 1)
        env: dict[str, object] = {"ring": ring, "k": key, "d": {key: 1}}
        owners = best_ns("ring.owners(k, 2)", env)
        primary = best_ns("ring.primary(k)", env)
        plain = best_ns("d.get(k)", env)
        lines.append(f"| {n} | {owners:.0f} | {primary:.0f} | {plain:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys for sections 1 and 3")
    parser.add_argument("--id-sets", type=int, default=10, help="node-id sets for section 2")
    args = parser.parse_args(argv)
    blocks = [
        section_hash(args.keys),
        section_vnodes(args.id_sets)[0],
        section_default(args.keys),
        section_lookup(),
    ]
    print("\n\n".join("\n".join(block) for block in blocks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
