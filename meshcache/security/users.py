"""Users of a node: names, password hashes, permissions and namespace patterns.

A node's TOML file defines them, one table each::

    [users.app]
    password = "scrypt$n=16384,r=8,p=1$...$..."   # from `meshcache passwd`
    permissions = ["read", "write"]
    namespaces = ["sessions", "app-*"]            # optional: data ops only in these

    [users.ops]
    password = "scrypt$..."
    permissions = ["read", "write", "admin"]

Permissions are ``read``, ``write`` and ``admin`` (each independent: an admin who should also
read keys lists ``read`` too). ``peer`` is never a user's: only other nodes of the cluster, who
authenticate with the cluster key, send node-to-node ops. ``namespaces`` holds shell-style
patterns (``fnmatch``: ``*``, ``?``, ``[abc]``); when given, the ops that read or change a
namespace's keys (data ops, FLUSH, SCAN, DBSIZE, NS_SET, NS_DROP) are allowed only on matching
namespaces, the ops that span every namespace (HOTKEYS, CONFIG_PROPOSE) never, while node and
cluster ops (INFO, RING, NS_LIST, ...) need only the permission (:mod:`meshcache.security.acl`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from meshcache.errors import ConfigError
from meshcache.security.hashing import PasswordHash
from meshcache.wire.ops import Permission

USER_NAME_RULE = "1 to 64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)"
_USER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: What a user may be given (``peer`` and ``none`` are not permissions one grants).
GRANTABLE = {p.value: p for p in (Permission.READ, Permission.WRITE, Permission.ADMIN)}
_KEYS = frozenset({"password", "permissions", "namespaces"})


@dataclass(frozen=True, slots=True)
class User:
    """One user. ``namespaces`` empty: every namespace."""

    name: str
    password: PasswordHash
    permissions: frozenset[Permission]
    namespaces: tuple[str, ...] = ()


def is_user_name(name: object) -> bool:
    return isinstance(name, str) and _USER_NAME_RE.fullmatch(name) is not None


def parse_user(name: str, table: object, where: str) -> User:
    """The user that a ``[users.NAME]`` table (or an equivalent mapping) describes.

    Raises:
        ConfigError: naming ``where``: a bad name, an unknown key, a missing or malformed
            password hash, an unknown permission, or a malformed namespace pattern.
    """
    if isinstance(table, User):
        return table
    if not is_user_name(name):
        raise ConfigError(f"{where}: user name {name!r} is not {USER_NAME_RULE}")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: must be a table with password and permissions")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (known: namespaces, password, permissions)"
        )
    if "password" not in table:
        raise ConfigError(f"{where}: password is missing (make a hash with `meshcache passwd`)")
    try:
        password = PasswordHash.parse(table["password"])
    except ConfigError as exc:
        raise ConfigError(f"{where} password: {exc}") from None
    raw = table.get("permissions", [])
    if not isinstance(raw, list | tuple) or not all(isinstance(p, str) for p in raw):
        raise ConfigError(f"{where} permissions: a list of read, write, admin")
    permissions: set[Permission] = set()
    for item in raw:
        permission = GRANTABLE.get(item.strip().lower())
        if permission is None:
            raise ConfigError(
                f"{where} permissions: {item!r} is not one of read, write, admin"
                + (" (peer is the cluster's, never a user's)" if item.lower() == "peer" else "")
            )
        permissions.add(permission)
    patterns = table.get("namespaces", [])
    if not isinstance(patterns, list | tuple) or not all(
        isinstance(p, str) and p.strip() for p in patterns
    ):
        raise ConfigError(f"{where} namespaces: a list of namespace names or patterns")
    if "namespaces" in table and not patterns:
        raise ConfigError(
            f"{where} namespaces: an empty list allows no namespace; leave the key out to "
            "allow every namespace"
        )
    return User(name, password, frozenset(permissions), tuple(p.strip() for p in patterns))


def parse_users(tables: object, where: str) -> dict[str, User]:
    """Every user of a ``[users]`` table (name -> table)."""
    if not isinstance(tables, Mapping):
        raise ConfigError(f"{where}: 'users' must hold tables: write [users.NAME]")
    return {
        name: parse_user(name, table, f"{where} [users.{name}]") for name, table in tables.items()
    }


__all__ = ["GRANTABLE", "USER_NAME_RULE", "User", "is_user_name", "parse_user", "parse_users"]
