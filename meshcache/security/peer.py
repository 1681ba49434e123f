"""How nodes authenticate to each other: a token derived from the cluster key.

The cluster key file (``cluster_key_file``, the keyring that signs and encrypts gossip) is the
cluster's one shared secret. A node opening a connection to another node's data port sends
``AUTH @cluster <token>`` first, where the token is an HMAC-SHA256 of a fixed label under its
*primary* key; the receiver accepts a token made under *any* key it has installed. So the
keyring's rotation (install everywhere, use everywhere, remove everywhere) rotates peer
authentication too, without a connection being refused at any step.

The token never reveals the key (HMAC is one-way), but it is a bearer credential: without TLS
someone who can read the traffic between nodes can replay it (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac

from meshcache.gossip.keyring import Keyring
from meshcache.security.acl import CLUSTER_USER

_LABEL = b"meshcache peer authentication v1"


def peer_token(key: bytes) -> str:
    """The token a node holding ``key`` presents."""
    return hmac.digest(key, _LABEL, hashlib.sha256).hex()


def auth_args(keyring: Keyring | None) -> list[str] | None:
    """The ``AUTH`` arguments this node sends to its peers; None without a cluster key."""
    key = None if keyring is None else keyring.primary
    return None if key is None else [CLUSTER_USER, peer_token(key)]


def accepts(keyring: Keyring, token: str) -> bool:
    """True when ``token`` was made under a key ``keyring`` holds (constant-time per key)."""
    presented = token.encode("utf-8", "surrogatepass")
    ok = False
    for key in keyring.keys():  # noqa: SIM118 (a Keyring is not a mapping)
        ok |= hmac.compare_digest(peer_token(key).encode(), presented)
    return ok


__all__ = ["accepts", "auth_args", "peer_token"]
