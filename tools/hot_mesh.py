"""What the hot-key figure tools do to a running test mesh: switch hot keys, count reads served."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from meshcache.testing.mesh import Mesh, MeshError


def served(mesh: Mesh) -> dict[str, int]:
    """Per node, the reads it answered itself (GET and HOT_GET, forwards counted at the owner)."""
    out = {}
    for node in mesh.nodes:
        info: dict[str, Any] = mesh.call(node, "INFO", [])
        data = info["mesh"]["counters"]["dataplane"]
        requests = info.get("requests", {})
        out[node.node_id] = (
            requests.get("GET", 0)
            + requests.get("HOT_GET", 0)
            - data.get("forwarded_out", 0)
            + data.get("forwarded_in", 0)
        )
    return out


def set_hot(mesh: Mesh, policy: Mapping[str, float], on: bool) -> None:
    """Switch the default namespace's hot keys (``policy`` beside ``enabled``); return once every
    node applied it."""
    mesh.call(mesh.nodes[0], "NS_SET", ["default", {"hot": {**policy, "enabled": on}}])
    deadline = time.monotonic() + 20
    for node in mesh.nodes:
        while mesh.call(node, "NS_LIST", [])["default"].get("hot", {}).get("enabled") != on:
            if time.monotonic() > deadline:
                raise MeshError(f"{node.node_id} did not apply hot keys {on} in 20 s")
            time.sleep(0.05)
