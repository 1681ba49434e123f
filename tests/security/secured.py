"""A node with users, shared by the authentication tests of the data port and the RESP port:
the users (cheap hashes), the cluster key they need, and the node's settings."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from meshcache.security.hashing import hash_password
from meshcache.settings import NodeSettings, load_settings

CHEAP = 1024  # scrypt's N for test users: about a millisecond per check

USERS: dict[str, dict[str, Any]] = {
    "app": {"password": hash_password("app-pw", n=CHEAP), "permissions": ["read", "write"]},
    "viewer": {"password": hash_password("view-pw", n=CHEAP), "permissions": ["read"]},
    "ops": {
        "password": hash_password("ops-pw", n=CHEAP),
        "permissions": ["read", "write", "admin"],
    },
    "tenant": {
        "password": hash_password("tenant-pw", n=CHEAP),
        "permissions": ["read", "write"],
        "namespaces": ["tenant-*"],
    },
}


def key_file(tmp_path: Path) -> Path:
    """A cluster key file in ``tmp_path`` (users need one)."""
    path = tmp_path / "cluster.key"
    path.write_text(base64.b64encode(b"s" * 32).decode() + "\n")
    return path


def secured(
    tmp_path: Path, users: dict[str, dict[str, Any]] | None = None, **extra: Any
) -> NodeSettings:
    """Settings of a node on free ports with ``users`` (default :data:`USERS`), a cluster key,
    and the namespace ``tenant-a``; ``extra`` overrides settings (``resp_port=0``, ...)."""
    return load_settings(
        overrides={
            "port": 0,
            "admin_port": 0,
            "data_dir": str(tmp_path / "data"),
            "cluster_key_file": str(key_file(tmp_path)),
            "users": USERS if users is None else users,
            "namespaces": {"tenant-a": {}},
            **extra,
        },
        environ={},
    )
