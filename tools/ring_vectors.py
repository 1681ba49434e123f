"""Test vectors for the ring placement that docs/protocol.md specifies (section Ring placement).

Writes ``docs/ring-vectors.json``: two rings (members with ids, zones, weights and states), the
tokens of some of their vnodes (every vnode of the small one) and, for a list of keys, each key's
token and its owners in the read, pending and write views. A client in another language that
reproduces the file places keys as every node does. ``tests/ring/test_vectors.py`` checks
``meshcache.ring`` and the Python client's router against the file, and that this script still
writes it byte for byte.

Run from the repository root::

    .venv/bin/python tools/ring_vectors.py           # rewrite docs/ring-vectors.json
    .venv/bin/python tools/ring_vectors.py --check   # exit 1 when the file differs

Besides ordinary keys the list holds keys forged to land exactly on a vnode's token, one past
it, on token 0 and on the last token, where an implementation that gets the range ends wrong
disagrees.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The path line above lets the tool run from a checkout without installing meshcache.
from meshcache.ring import (
    PENDING_STATES,
    READ_STATES,
    TOKEN_SPACE,
    Ring,
    RingMember,
    RingState,
    key_token,
    vnode_token,
)
from meshcache.ring.ring import MAPPING_SCHEME

OUT = Path(__file__).resolve().parents[1] / "docs" / "ring-vectors.json"

#: Preference lists are given this deep; the owners for ``r`` replicas are the first ``r``.
DEPTH = 4
#: Write owners are given for these replica counts (they are not prefixes of each other).
WRITE_REPLICAS = (1, 2, 3)
#: Vnodes listed per member of the large ring (all of them for the small one).
SAMPLED_VNODES = (0, 1, 2, 511, 512, 1023)
#: Line width of the file: a value that fits stays on one line.
WIDTH = 100


def _member(node_id: str, address: str, zone: str, weight: int, state: str) -> RingMember:
    return RingMember(node_id, address, zone=zone, weight=weight, state=RingState(state))


def rings() -> list[tuple[str, str, Ring]]:
    """(name, what it exercises, ring) of every ring in the file."""
    small = Ring(
        [
            _member("a", "10.0.0.1:7400", "z1", 1, "active"),
            _member("b", "10.0.0.2:7400", "z1", 1, "active"),
            _member("c", "10.0.0.3:7400", "z2", 2, "active"),
            _member("d", "10.0.0.4:7400", "z3", 1, "joining"),
        ],
        version=7,
        vnodes_per_weight=4,
    )
    large = Ring(
        [
            _member("10.0.1.1:7400", "10.0.1.1:7400", "eu-1", 1, "active"),
            _member("10.0.1.2:7400", "10.0.1.2:7400", "eu-1", 2, "active"),
            _member("10.0.2.1:7400", "10.0.2.1:7400", "eu-2", 1, "active"),
            _member("10.0.2.2:7400", "10.0.2.2:7400", "eu-2", 1, "joining"),
            _member("10.0.3.1:7400", "10.0.3.1:7400", "eu-3", 1, "leaving"),
            _member("10.0.3.2:7400", "10.0.3.2:7400", "eu-3", 0, "active"),
            _member("cache-\u00e4", "10.0.4.1:7400", "", 1, "active"),
        ],
        version=42,
    )
    return [
        (
            "small",
            "4 vnodes per unit of weight, so every vnode is listed; one member of weight 2; "
            "one joining member (a pending and write owner, never a read owner)",
            small,
        ),
        (
            "large",
            "512 vnodes per unit of weight, as RING reports; three zones plus the empty zone; "
            "a leaving member (a read owner, not a pending one), a joining member, a member of "
            "weight 2, a member of weight 0 (owns nothing) and a non-ASCII node id",
            large,
        ),
    ]


def forge(prefix: bytes, token: int) -> bytes:
    """``prefix`` plus 4 bytes chosen so that the whole has CRC-32 ``token``.

    CRC-32 is affine over GF(2) in the appended bits, so the 4 bytes solve a 32x32 linear
    system (Gaussian elimination on bitmasks).
    """
    base = zlib.crc32(prefix + bytes(4))
    # Column j: what flipping appended bit j does to the CRC.
    columns = [zlib.crc32(prefix + (1 << j).to_bytes(4, "little")) ^ base for j in range(32)]
    # Rows of the augmented system [A | b], one per CRC bit: bit j of a row's mask is A[i][j].
    rows = []
    for i in range(32):
        mask = sum(((columns[j] >> i) & 1) << j for j in range(32))
        rows.append((mask, ((token ^ base) >> i) & 1))
    solution = 0
    pivots: list[tuple[int, int, int]] = []
    for j in range(32):
        pivot = next(k for k, (mask, _) in enumerate(rows) if (mask >> j) & 1)
        mask, bit = rows.pop(pivot)
        rows = [(m ^ mask, b ^ bit) if (m >> j) & 1 else (m, b) for m, b in rows]
        pivots = [
            (pm ^ mask, pb ^ bit, pj) if (pm >> j) & 1 else (pm, pb, pj) for pm, pb, pj in pivots
        ]
        pivots.append((mask, bit, j))
    for _, bit, j in pivots:
        solution |= bit << j
    data = prefix + solution.to_bytes(4, "little")
    assert key_token(data) == token
    return data


def keys(ring: Ring) -> list[tuple[str, bytes]]:
    """(why, key) of every key listed for ``ring``."""
    ordinary = [
        ("empty key", b""),
        ("ASCII", b"a"),
        ("ASCII", b"user:1"),
        ("ASCII", b"session:4f2a9c"),
        ("UTF-8 text", "cl\u00e9-\u00fc\u20ac".encode()),
        ("binary", bytes([0, 255, 128, 10, 13])),
    ] + [("ASCII", b"key:%d" % i) for i in range(40)]
    read = ring.boundaries(READ_STATES)
    pending = ring.boundaries(PENDING_STATES)
    forged = [
        ("token 0", forge(b"edge:", 0)),
        ("the last token", forge(b"edge:", TOKEN_SPACE - 1)),
        ("the first read vnode's token", forge(b"edge:", read[0])),
        ("one past the first read vnode's token", forge(b"edge:", read[0] + 1)),
        ("the last read vnode's token", forge(b"edge:", read[-1])),
        ("one past the last read vnode's token", forge(b"edge:", (read[-1] + 1) % TOKEN_SPACE)),
        ("a middle read vnode's token", forge(b"edge:", read[len(read) // 2])),
        ("a middle pending vnode's token", forge(b"edge:", pending[len(pending) // 2])),
    ]
    return ordinary + forged


def _ids(members: tuple[RingMember, ...]) -> list[str]:
    return [m.node_id for m in members]


def describe(name: str, about: str, ring: Ring) -> dict[str, Any]:
    """One ring's entry: the ring as RING describes it, some vnodes (every one of a small
    ring; else a sample and those whose token a listed key has), and the keys."""
    listed_keys = keys(ring)
    key_tokens = {key_token(key) for _, key in listed_keys}
    complete = ring.vnodes_per_weight < 16
    vnodes: list[list[Any]] = []
    for m in ring.members:
        for i in range(m.weight * ring.vnodes_per_weight):
            token = vnode_token(m.node_id, i)
            if complete or i in SAMPLED_VNODES or token in key_tokens:
                vnodes.append([m.node_id, i, token])
    listed = []
    for why, key in listed_keys:
        entry: dict[str, Any] = {"why": why, "key_hex": key.hex()}
        try:
            text = key.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and text.isprintable():
            entry["key_utf8"] = text
        entry["token"] = key_token(key)
        entry["read"] = _ids(ring.owners(key, DEPTH))
        entry["pending"] = _ids(ring.pending_owners(key, DEPTH))
        entry["write"] = {str(r): _ids(ring.write_owners(key, r)) for r in WRITE_REPLICAS}
        listed.append(entry)
    return {
        "name": name,
        "about": about,
        "ring": {
            "version": ring.version,
            "vnodes_per_weight": ring.vnodes_per_weight,
            "members": [m.to_mapping() for m in ring.members],
        },
        "vnodes_complete": complete,
        "vnodes": sorted(vnodes, key=lambda v: (v[2], v[0])),
        "keys": listed,
    }


def vectors() -> dict[str, Any]:
    """The whole file's content."""
    return {
        "about": "Ring placement test vectors; docs/protocol.md, section Ring placement, says "
        "how each value is computed. key_hex: the key's bytes; token: CRC-32 of the key; "
        "vnodes: [node_id, index, token] (every vnode when vnodes_complete, else a sample); "
        f"read and pending: the preference list {DEPTH} deep in the read view (active and "
        "leaving members) and the pending view (active and joining members), the owners for r "
        "replicas being the first r; write: the write owners for r replicas (the read owners, "
        "then the pending owners not among them). Written by tools/ring_vectors.py.",
        "scheme": MAPPING_SCHEME,
        "depth": DEPTH,
        "rings": [describe(name, about, ring) for name, about, ring in rings()],
    }


def _json(value: Any, indent: str = "") -> str:
    """JSON with every value that fits in ``WIDTH`` characters on one line."""
    flat = json.dumps(value, ensure_ascii=False)
    if len(indent) + len(flat) <= WIDTH or not isinstance(value, dict | list) or not value:
        return flat
    inner = indent + " "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    items = [inner + _json(v, inner) for v in value]
    return "[\n" + ",\n".join(items) + f"\n{indent}]"


def render() -> str:
    """The file's text: JSON in UTF-8, short values on one line, ending in a newline."""
    return _json(vectors()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=OUT, help=f"the file (default {OUT})")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'differs from what this tool writes'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
