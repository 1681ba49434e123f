"""Which ops a connection may send: computed once per identity from the op table.

Every op's row in :data:`meshcache.wire.ops.OPS` names the permission it needs. An identity (a
user, the cluster, or the anonymous connection) holds a set of permissions; :func:`grant` turns
that set into a :class:`Grant`: the op names allowed in every namespace, and, for a user with
namespace patterns, the ops limited to the matching namespaces. An op's
:class:`~meshcache.wire.ops.Scope` says which: ``NAMESPACE`` ops (data ops, ``FLUSH``, ``SCAN``,
``DBSIZE``) run only in the user's namespaces, ``NAMED`` ops (``NS_SET``, ``NS_DROP``) only on a
namespace of the user's named by their first argument, ``EVERY`` ops (``HOTKEYS``,
``CONFIG_PROPOSE``: keys or policies of every namespace at once) never; ``NODE`` ops need only
the permission. The request path then costs one set lookup per request
(``op in grant.allowed``); everything else is the slow path of a refusal, an ``AUTH``, or a
namespace-limited user.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from meshcache.wire.ops import OPS, SESSION_HANDLER, Permission, Scope

#: The name a node authenticates as to another node of its cluster (never a user's: user names
#: cannot start with ``@``).
CLUSTER_USER = "@cluster"

#: Every permission: what the cluster holds, and what anyone holds on a node that has neither
#: users nor a cluster key.
EVERYTHING = frozenset(Permission)
#: What anyone holds on a node with a cluster key but no users: all but node-to-node ops.
USER_PERMISSIONS = frozenset({Permission.NONE, Permission.READ, Permission.WRITE, Permission.ADMIN})
#: What an unauthenticated connection holds on a node with users.
ANONYMOUS = frozenset({Permission.NONE})


@dataclass(frozen=True, slots=True)
class Grant:
    """The ops one identity may send.

    Attributes:
        who: the user's name, :data:`CLUSTER_USER`, or None (not authenticated).
        allowed: ops allowed whatever the namespace. ``AUTH`` is never in it, so it always
            reaches the session.
        scoped: ops allowed only in a namespace matching ``patterns``: the request's
            (:attr:`Scope.NAMESPACE`), or the one their first argument names
            (:attr:`Scope.NAMED`).
        patterns: the user's namespace patterns (empty: no namespace limit).
        permissions: the permissions held (for refusal messages).
    """

    who: str | None
    allowed: frozenset[str]
    scoped: frozenset[str]
    patterns: tuple[str, ...]
    permissions: frozenset[Permission]

    def allows_namespace(self, namespace: str) -> bool:
        return any(fnmatchcase(namespace, pattern) for pattern in self.patterns)


def grant(
    who: str | None, permissions: Iterable[Permission], patterns: tuple[str, ...] = ()
) -> Grant:
    """The :class:`Grant` of an identity holding ``permissions`` (``none`` is always held)."""
    held = frozenset(permissions) | {Permission.NONE}
    ops = {name for name, spec in OPS.items() if spec.permission in held}
    ops -= {name for name, spec in OPS.items() if spec.handler == SESSION_HANDLER}
    scoped: set[str] = set()
    if patterns:
        scoped = {name for name in ops if OPS[name].scope in (Scope.NAMESPACE, Scope.NAMED)}
        ops -= scoped
        ops -= {name for name in ops if OPS[name].scope is Scope.EVERY}
    return Grant(who, frozenset(ops), frozenset(scoped), patterns, held)


__all__ = [
    "ANONYMOUS",
    "CLUSTER_USER",
    "EVERYTHING",
    "USER_PERMISSIONS",
    "Grant",
    "grant",
]
