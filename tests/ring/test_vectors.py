"""docs/ring-vectors.json: the placement test vectors for clients in other languages.

Three implementations must place every key of the file as the file says: ``meshcache.ring``
(the node's), the Python client's router driven only by a RING answer (what a smart client
sees), and a reference written here from docs/protocol.md's Ring placement section alone, so
the prose is checked as well as the code. The file itself must be what
``tools/ring_vectors.py`` writes.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from meshcache.client.ring_router import RingRouter
from meshcache.ring import Ring, RingMember, key_token, vnode_token
from meshcache.wire import Address, parse_address
from tools import ring_vectors

FILE = Path(__file__).resolve().parents[2] / "docs" / "ring-vectors.json"
VECTORS: dict[str, Any] = json.loads(FILE.read_text(encoding="utf-8"))
RINGS = {entry["name"]: entry for entry in VECTORS["rings"]}
DEPTH: int = VECTORS["depth"]


def test_the_file_is_what_the_tool_writes() -> None:
    assert FILE.read_text(encoding="utf-8") == ring_vectors.render(), (
        "run .venv/bin/python tools/ring_vectors.py"
    )


def test_the_vectors_cover_the_edges() -> None:
    """Both views differ, and keys sit on range ends, token 0 and the last token."""
    for entry in VECTORS["rings"]:
        states = {m["state"] for m in entry["ring"]["members"]}
        assert {"active", "joining"} <= states
        assert any(k["read"] != k["pending"] for k in entry["keys"])
        tokens = {k["token"] for k in entry["keys"]}
        assert {0, 2**32 - 1} <= tokens
        assert tokens & {v[2] for v in entry["vnodes"]}
    assert "leaving" in {m["state"] for m in RINGS["large"]["ring"]["members"]}
    assert 0 in {m["weight"] for m in RINGS["large"]["ring"]["members"]}


def _ring(entry: dict[str, Any]) -> Ring:
    spec = entry["ring"]
    members = [RingMember.from_mapping(m) for m in spec["members"]]
    return Ring(members, spec["version"], vnodes_per_weight=spec["vnodes_per_weight"])


def _ids(members: tuple[RingMember, ...]) -> list[str]:
    return [m.node_id for m in members]


@pytest.mark.parametrize("name", sorted(RINGS))
def test_meshcache_ring_places_every_key_as_the_file_says(name: str) -> None:
    entry = RINGS[name]
    ring = _ring(entry)
    for node_id, index, token in entry["vnodes"]:
        assert vnode_token(node_id, index) == token
    for key in entry["keys"]:
        data = bytes.fromhex(key["key_hex"])
        assert key_token(data) == key["token"], key
        for r in range(1, DEPTH + 1):
            assert _ids(ring.owners(data, r)) == key["read"][:r], (key, r)
            assert _ids(ring.pending_owners(data, r)) == key["pending"][:r], (key, r)
        for r, owners in key["write"].items():
            assert _ids(ring.write_owners(data, int(r))) == owners, (key, r)


@pytest.mark.parametrize("name", sorted(RINGS))
def test_the_client_router_routes_every_key_as_the_file_says(name: str) -> None:
    """The router learns the ring from a RING answer and an NS_LIST answer, as a smart client
    does, and sends each key to its first read owner."""
    entry = RINGS[name]
    spec = entry["ring"]
    ring_answer = {**spec, "members": [{**m, "share": 0.0} for m in spec["members"]]}
    namespaces = {f"r{r}": {"eviction": "lru", "replicas": r} for r in range(1, DEPTH + 1)}
    router = RingRouter([Address("seed", 7400)])
    assert router.observe_ring_version(spec["version"])
    router.ring_fetched([ring_answer, namespaces])
    assert router.ring_version == spec["version"]
    node_of = {parse_address(m["address"]): m["node_id"] for m in spec["members"]}
    for key in entry["keys"]:
        data = bytes.fromhex(key["key_hex"])
        assert node_of[router.candidates(data)[0]] == key["read"][0], key
        for r in range(1, DEPTH + 1):
            owners = [node_of[a] for a in router.owners(data, f"r{r}")]
            assert owners == key["read"][:r], (key, r)


# --- the reference: docs/protocol.md, Ring placement, and nothing else -----------------------


def _reference_vnodes(members: list[dict[str, Any]], per_weight: int) -> list[tuple[int, str]]:
    vnodes = []
    for m in members:
        for i in range(m["weight"] * per_weight):
            data = m["node_id"].encode("utf-8") + b"#" + str(i).encode("ascii")
            token = int.from_bytes(hashlib.blake2b(data, digest_size=4).digest(), "big")
            vnodes.append((token, m["node_id"]))
    # Sorted by token; equal tokens by node id, compared as UTF-8 bytes.
    return sorted(vnodes, key=lambda v: (v[0], v[1].encode("utf-8")))


def _reference_preference(
    members: list[dict[str, Any]], per_weight: int, states: set[str], key: bytes
) -> list[str]:
    view = [m for m in members if m["state"] in states]
    vnodes = _reference_vnodes(view, per_weight)
    if not vnodes:
        return []
    token = zlib.crc32(key)
    start = next((i for i, (t, _) in enumerate(vnodes) if t >= token), 0)
    met: list[str] = []
    for step in range(len(vnodes)):
        node = vnodes[(start + step) % len(vnodes)][1]
        if node not in met:
            met.append(node)
    zone = {m["node_id"]: m["zone"] for m in view}
    firsts: list[str] = []
    for node in met:
        if zone[node] not in {zone[f] for f in firsts}:
            firsts.append(node)
    return firsts + [node for node in met if node not in firsts]


@pytest.mark.parametrize("name", sorted(RINGS))
def test_the_documented_placement_gives_the_file(name: str) -> None:
    entry = RINGS[name]
    members, per_weight = entry["ring"]["members"], entry["ring"]["vnodes_per_weight"]
    if entry["vnodes_complete"]:
        listed = sorted(entry["vnodes"], key=lambda v: (v[2], v[0].encode()))
        assert [(t, n) for n, _, t in listed] == _reference_vnodes(members, per_weight)
    for key in entry["keys"]:
        data = bytes.fromhex(key["key_hex"])
        read = _reference_preference(members, per_weight, {"active", "leaving"}, data)
        pending = _reference_preference(members, per_weight, {"active", "joining"}, data)
        assert read[:DEPTH] == key["read"] and pending[:DEPTH] == key["pending"], key
        for r, owners in key["write"].items():
            first = read[: int(r)]
            assert first + [n for n in pending[: int(r)] if n not in first] == owners, (key, r)
