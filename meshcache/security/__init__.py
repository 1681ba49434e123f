"""Security of a node: users and their permissions, password hashes, peer authentication,
protected mode (docs/security.md).

* :mod:`.hashing` — scrypt password hashes as self-describing strings (``meshcache passwd``);
* :mod:`.users` — ``[users.NAME]`` tables: password hash, permissions, namespace patterns;
* :mod:`.acl` — which ops an identity may send, from the op table's permission column;
* :mod:`.guard` — the node's :class:`Guard` and each connection's :class:`Session` (``AUTH``,
  ``NOAUTH``, ``NOPERM``), used by the dispatcher;
* :mod:`.throttle` — the delay that repeated failed ``AUTH``\\ s from one address earn;
* :mod:`.peer` — the token nodes authenticate to each other with (from the cluster key);
* :mod:`.protected` — the refusal to serve a non-loopback address with no users.
* :mod:`.tls` — certificates (``meshcache certs``) and the node's TLS contexts, reloaded on
  SIGHUP.
"""

from __future__ import annotations

from meshcache.security.acl import CLUSTER_USER, Grant, grant
from meshcache.security.hashing import PasswordHash, hash_password
from meshcache.security.users import User, parse_users

__all__ = ["CLUSTER_USER", "Grant", "PasswordHash", "User", "grant", "hash_password", "parse_users"]
