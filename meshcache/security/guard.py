"""Who a connection is and what it may send: the node's :class:`Guard` and each connection's
:class:`Session`.

The dispatcher holds the request path's one check: ``op in session.allowed`` (a frozenset of op
names, see :mod:`meshcache.security.acl`). Anything else goes to :meth:`Session.gate`: ``AUTH``,
a namespace-limited user's op on a namespace, and refusals — ``NOAUTH`` for a connection that
has not authenticated on a node with users, ``NOPERM`` naming the permission otherwise.

What a connection may do before ``AUTH``:

=====================================  ==============================================
the node has                           an unauthenticated connection may send
=====================================  ==============================================
no users, no cluster key               every op (a development node)
no users, a cluster key                every op but the node-to-node ones
users                                  ``PING`` and ``AUTH`` only
=====================================  ==============================================

Users need a cluster key (settings refuse users without one): otherwise node-to-node ops would
be open to anyone, and a forwarded ``FWD SET`` would write past every permission.

``AUTH user password`` checks a password hash (scrypt) on a worker thread, at most
``VERIFY_THREADS`` at a time; ``AUTH @cluster token`` checks a peer token (an HMAC, at once).
Answers to ``AUTH`` from one client address are given one at a time, after the delay its recent
failures earned (:class:`~meshcache.security.throttle.AuthThrottle`). A failed ``AUTH`` leaves
the connection as it was. Everything is counted in :attr:`Guard.stats` (``meshcache_auth`` in
``/metrics``).
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any

import structlog
import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from meshcache.errors import NoAuthError, NoPermError, WrongPassError
from meshcache.gossip.keyring import Keyring
from meshcache.security import peer
from meshcache.security.acl import (
    ANONYMOUS,
    CLUSTER_USER,
    EVERYTHING,
    USER_PERMISSIONS,
    Grant,
    grant,
)
from meshcache.security.hashing import PasswordHash, decoy_for
from meshcache.security.throttle import AuthThrottle
from meshcache.security.users import User
from meshcache.wire.ops import SESSION_HANDLER, Limits, OpSpec, Scope, normalize_args

log = structlog.get_logger("meshcache.security")

#: Password checks run at once on worker threads (each holds a core for tens of milliseconds).
VERIFY_THREADS = 2
_AUTH_LIMITS = Limits(max_key_bytes=4096, max_value_bytes=4096, max_args=2)
_MAX_CACHED_NAMESPACES = 1024


class Session:
    """One connection's identity. The data port makes one per connection
    (:meth:`Guard.session`) and hands it to the dispatcher with every frame.

    ``allowed`` is read on every request: a plain slot, replaced (never mutated) on ``AUTH``.
    """

    __slots__ = ("__weakref__", "_namespaces", "allowed", "grant", "guard", "host", "port")

    def __init__(self, guard: Guard, host: str, granted: Grant, port: str = "data") -> None:
        self.guard = guard
        self.host = host
        self.port = port  # which port it came through: "data" or "resp" (a metric label)
        self.grant = granted
        self.allowed = granted.allowed
        self._namespaces: dict[str, bool] = {}

    @property
    def user(self) -> str | None:
        """Who authenticated on this connection (:data:`CLUSTER_USER` for a node), or None."""
        return self.grant.who

    def become(self, granted: Grant) -> None:
        self.grant = granted
        self.allowed = granted.allowed
        self._namespaces = {}

    def gate(self, spec: OpSpec, namespace: str, args: Any) -> Coroutine[Any, Any, str] | None:
        """Decide an op that is not in :attr:`allowed`.

        ``args`` are the request's arguments as received (unchecked): an op of
        :attr:`~meshcache.wire.ops.Scope.NAMED` acts on the namespace its first argument names,
        and is refused when that is not text.

        Returns:
            ``AUTH``'s answer (a coroutine: it checks the password off the event loop), or None
            when the op may run (a namespace-limited op on one of the user's namespaces).

        Raises:
            NoAuthError: the connection has not authenticated and the op needs it.
            NoPermError: the connection's identity lacks the op's permission (or namespace).
            CommandError: ``AUTH``'s arguments are malformed.
        """
        if spec.handler == SESSION_HANDLER:
            user, password = normalize_args(spec, args, _AUTH_LIMITS)
            return self.guard.authenticate(self, user, password)
        granted = self.grant
        if spec.name in granted.scoped:
            if spec.scope is Scope.NAMED:
                named = _named(args)
                if named is None:
                    raise self.guard.refusal(granted, spec, "")
                namespace = named
            ok = self._namespaces.get(namespace)
            if ok is None:
                ok = granted.allows_namespace(namespace)
                if len(self._namespaces) < _MAX_CACHED_NAMESPACES:
                    self._namespaces[namespace] = ok
            if ok:
                return None
        raise self.guard.refusal(granted, spec, namespace)


def _named(args: Any) -> str | None:
    """The namespace a :attr:`~meshcache.wire.ops.Scope.NAMED` op's arguments name (its first
    argument), or None when it is not text."""
    if type(args) is not list or not args:
        return None
    first = args[0]
    if type(first) is str:
        return first
    if type(first) is bytes:
        try:
            return first.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


class Guard:
    """A node's users, its cluster key and its record of failed ``AUTH``\\ s.

    Args:
        users: name -> user (from ``[users.NAME]``).
        keyring: the cluster keyring (peers' tokens are checked against every installed key,
            so rotation applies at once); None or empty: no cluster key.
        throttle: failed ``AUTH``\\ s per client address.
        clock: trio's clock (the throttle's ``now``).
    """

    def __init__(
        self,
        users: Mapping[str, User] | None = None,
        *,
        keyring: Keyring | None = None,
        throttle: AuthThrottle | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.keyring = keyring
        self.throttle = throttle or AuthThrottle()
        self._clock = clock
        self.stats: Counter[str] = Counter()
        self.users: dict[str, User] = {}
        #: Checked in place of a hash for an unknown user name: the users' most common cost.
        self.decoy: PasswordHash = decoy_for(())
        self._grants: dict[str, Grant] = {}
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._cluster = grant(CLUSTER_USER, EVERYTHING)
        self._anonymous = {
            perms: grant(None, perms) for perms in (ANONYMOUS, USER_PERMISSIONS, EVERYTHING)
        }
        self._limiter = trio.CapacityLimiter(VERIFY_THREADS)
        self._turns: dict[str, trio.Lock] = {}
        self.set_users(users or {})

    @property
    def has_cluster_key(self) -> bool:
        return self.keyring is not None and self.keyring.enabled

    def anonymous(self) -> Grant:
        """What a connection may do before ``AUTH`` (see the module docstring's table)."""
        if self.users:
            return self._anonymous[ANONYMOUS]
        return self._anonymous[USER_PERMISSIONS if self.has_cluster_key else EVERYTHING]

    def session(self, host: str, port: str = "data") -> Session:
        """A new connection from ``host`` (its IP address: failures are counted per address,
        one record for both ports) through ``port`` (``data`` or ``resp``)."""
        session = Session(self, host, self.anonymous(), port)
        self._sessions.add(session)
        return session

    def set_users(self, users: Mapping[str, User]) -> None:
        """Replace the users (a SIGHUP reload). Open connections follow at once: one whose user
        is gone is unauthenticated again, one whose user changed holds the new permissions, and
        an unauthenticated one gets what the new configuration gives it."""
        self.users = dict(users)
        self.decoy = decoy_for(user.password for user in users.values())
        self._grants = {
            name: grant(name, user.permissions, user.namespaces) for name, user in users.items()
        }
        for session in list(self._sessions):
            who = session.grant.who
            if who == CLUSTER_USER:
                continue
            granted = self._grants.get(who) if who is not None else None
            session.become(granted if granted is not None else self.anonymous())

    def refusal(self, granted: Grant, spec: OpSpec, namespace: str) -> NoAuthError | NoPermError:
        needed = spec.permission.value
        if granted.who is None and self.users:
            self.stats["noauth"] += 1
            return NoAuthError(
                message=f"{spec.name} needs authentication: send AUTH user password first"
            )
        self.stats["noperm"] += 1
        who = "this connection" if granted.who is None else f"user {granted.who!r}"
        if spec.permission in granted.permissions and spec.scope is Scope.EVERY:
            return NoPermError(
                message=f"{who} is limited to some namespaces, and {spec.name} covers every "
                "namespace"
            )
        if spec.permission in granted.permissions:
            return NoPermError(
                message=f"{who} has the '{needed}' permission, but not in namespace "
                f"{namespace[:64]!r} ({spec.name})"
            )
        return NoPermError(
            message=f"{spec.name} needs the '{needed}' permission, which {who} lacks"
        )

    async def authenticate(self, session: Session, user: str, password: str) -> str:
        """``AUTH``: on success the session holds the user's (or the cluster's) grant.

        Raises:
            WrongPassError: an unknown user, a wrong password or a token under no installed
                key (one message for all: the answer does not say which names exist).
        """
        host = session.host
        turn = self._turns.get(host)
        if turn is None:
            turn = self._turns[host] = trio.Lock()
        try:
            async with turn:  # one AUTH at a time per address: parallel connections gain nothing
                delay = self.throttle.delay(host, self._clock())
                if delay > 0:
                    self.stats["throttled"] += 1
                    await trio.sleep(delay)
                granted = await self._check(user, password)
                if granted is None:
                    self.throttle.failed(host, self._clock(), session.port)
        finally:
            if not turn.locked() and self._turns.get(host) is turn:
                del self._turns[host]
        if granted is None:
            self.stats["failed"] += 1
            log.warning("auth_failed", client=host, user=user[:64])
            raise WrongPassError(message="invalid user name or password")
        self.stats["peer_ok" if granted is self._cluster else "ok"] += 1
        session.become(granted)
        return "OK"

    async def _check(self, user: str, password: str) -> Grant | None:
        if user == CLUSTER_USER:
            keyring = self.keyring
            if keyring is not None and keyring.enabled and peer.accepts(keyring, password):
                return self._cluster
            return None
        record = self.users.get(user)
        hashed = self.decoy if record is None else record.password
        ok = await trio.to_thread.run_sync(
            hashed.verify, password, abandon_on_cancel=True, limiter=self._limiter
        )
        if record is None or not ok:
            return None
        # The users may have been reloaded while the hash was checked: the password checked
        # must still be the user's, and the grant is the one the user holds now.
        current = self.users.get(user)
        if current is None or current.password != record.password:
            return None
        return self._grants[user]

    def collector(self) -> Collector:
        """``meshcache_auth`` (outcomes) and ``meshcache_auth_failing_addresses`` (by port)
        for the node's registry."""
        return _AuthCollector(self)


class _AuthCollector(Collector):
    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    def collect(self) -> Iterator[Any]:
        family = CounterMetricFamily(
            "meshcache_auth",
            "Authentication outcomes: ok (a user), peer_ok (a node of the cluster), failed "
            "(wrong user, password or token), throttled (an AUTH delayed after repeated "
            "failures from its address), noauth and noperm (ops refused).",
            labels=["outcome"],
        )
        for outcome in ("ok", "peer_ok", "failed", "throttled", "noauth", "noperm"):
            family.add_metric([outcome], self._guard.stats[outcome])
        yield family
        failing = GaugeMetricFamily(
            "meshcache_auth_failing_addresses",
            "Client addresses with recent failed AUTHs on record, by the port the failures "
            "came through (data or resp; one record per address serves both ports, and an "
            "address that failed through both counts under both).",
            labels=["port"],
        )
        guard = self._guard
        try:
            now: float | None = guard._clock()
        except RuntimeError:  # read outside trio: old records stay a little longer
            now = None
        for port, count in guard.throttle.failing(now).items():
            failing.add_metric([port], count)
        yield failing


__all__ = ["VERIFY_THREADS", "Guard", "Session"]
