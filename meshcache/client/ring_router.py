"""Smart routing: send each key's requests straight to its owner on the cluster ring.

A :class:`RingRouter` holds a :class:`RingSnapshot` — the ring and the namespaces' replica counts,
learned with the ``RING`` and ``NS_LIST`` ops — and answers ``candidates(key)`` with the key's
owners in preference order (the first one coordinates its reads and writes), then the other
members, then the seeds. Until a snapshot is installed, and whenever the node has no ring (a lone
node outside a mesh) or the fetch failed, it routes exactly like :class:`SeedRouter`.

**Cost per request.** When a snapshot is installed, its lookup table maps every ring range to a
precomputed tuple of addresses, so ``candidates(key)`` is one CRC-32, one ``bisect`` and one
index — no allocation. Noticing a newer ring version is one integer comparison.

**Refreshing.** Every response carries the ring version the node has installed. When one is
newer than the snapshot, ``observe_ring_version`` returns True to exactly one caller (a
non-blocking lock claims the refresh; everybody else keeps routing with the old snapshot), which
fetches ``RING`` and ``NS_LIST`` and hands them to :meth:`RingRouter.ring_fetched`.

**Hot keys.** Once a ring is known, the router asks one node a second, in turn, for its hot keys
(``HOTKEYS``, docs/hotkeys.md): the keys it owns that are hot, with the nodes holding a copy, and
the copies it holds; and it asks a node at once when a response from it carries a hot-set version
other than the one it last saw from that node (:meth:`RingRouter.hot_hint`). A read of a key known
to be hot goes first to one of the nodes that serve it (its owner and its holders), in turn, so a
hot key's reads spread over its copies; what each node said is kept for one round over the nodes
and a second. A write of a hot key goes to its owner, whose answer carries the version the write
left: the router remembers it (:meth:`RingRouter.wrote`, a bounded table) and the front end sends
this client's reads of the key as ``HOT_GET`` with that version for a while, so no copy older than
its own write answers them (read-your-writes).

**Failed nodes.** A node that refused a connection is moved to the end of every candidate list
for ``retry_after`` seconds, so requests for its keys go to the next owner at once rather than
try it first each time; after that it is tried first again.
"""

from __future__ import annotations

import itertools
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshcache.client import results
from meshcache.client.commands import DEFAULT_NAMESPACE
from meshcache.client.core import Command
from meshcache.client.routing import SeedRouter
from meshcache.errors import ConfigError, RemoteProtocolError
from meshcache.ring import READ_STATES, Ring, RingMember, key_token
from meshcache.ring.ring import DEFAULT_VNODES_PER_WEIGHT
from meshcache.wire.address import Address, parse_address

DEFAULT_RETRY_AFTER = 1.0
"""Seconds a node that refused a connection stays at the end of the candidate lists."""

FETCH_RING: tuple[Command[Any], ...] = (
    Command.build("RING", [], DEFAULT_NAMESPACE, results.str_map),
    Command.build("NS_LIST", [], DEFAULT_NAMESPACE, results.str_map),
)
"""What a front end sends, as one batch, when ``observe_ring_version`` asks for the ring."""

FETCH_HOT: tuple[Command[Any], ...] = (
    Command.build("HOTKEYS", [], DEFAULT_NAMESPACE, results.str_map),
)
"""What a front end sends to the node ``hot_due`` names."""

HOT_EVERY = 1.0
"""Seconds between two ``HOTKEYS`` asked of the nodes in turn."""

WRITTEN_MAX = 4096
"""The most hot keys whose written versions a router remembers (the oldest go first)."""

WRITTEN_FOR = 10.0
"""Seconds a written version is remembered at least (and twice the longest lease a node named):
the lease of any copy older than the write has ended by then."""

ANY_COPY_OLDER = (1 << 64) - 1
"""The version a router demands after a write of a hot key whose answer carried none (it went
through a node that is not the key's owner): no copy serves the key's reads; its owner answers
them with the newest record of the live members."""


@dataclass(frozen=True, slots=True)
class RingSnapshot:
    """The ring as one node described it, with the replica count of every namespace.

    ``bounds`` and ``table`` are the lookup table: ``table[i]`` is the candidate list for the
    keys whose token falls in ``(bounds[i-1], bounds[i]]``; ``table[len(bounds)]`` repeats
    ``table[0]`` for tokens past the last bound (they wrap around to the first range).
    """

    ring: Ring
    replicas: Mapping[str, int]
    addresses: Mapping[str, Address]
    bounds: list[int]
    table: list[tuple[Address, ...]]
    others: tuple[Address, ...]

    @property
    def version(self) -> int:
        return self.ring.version

    @classmethod
    def build(
        cls, ring: Ring, replicas: Mapping[str, int], seeds: Sequence[Address] = ()
    ) -> RingSnapshot | None:
        """The snapshot of ``ring``, or None when no member owns keys (route by seed then).

        Raises:
            ConfigError: a member's address does not parse.
        """
        addresses = {m.node_id: parse_address(m.address) for m in ring.members}
        bounds = ring.boundaries()
        if not bounds:
            return None
        # Owners as deep as the ring precomputes them: deeper asks walk the ring per lookup.
        depth = len(ring.owners_for_token(bounds[0], ring.preference_depth))
        readers = [addresses[m.node_id] for m in ring.members if m.state in READ_STATES]
        rest = [addresses[m.node_id] for m in ring.members if m.state not in READ_STATES]
        tail = tuple(dict.fromkeys([*readers, *rest, *seeds]))
        interned: dict[tuple[str, ...], tuple[Address, ...]] = {}
        table: list[tuple[Address, ...]] = []
        for bound in bounds:
            owners = ring.owners_for_token(bound, depth)
            ids = tuple(m.node_id for m in owners)
            row = interned.get(ids)
            if row is None:
                first = tuple(addresses[i] for i in ids)
                row = interned[ids] = first + tuple(a for a in tail if a not in first)
            table.append(row)
        table.append(table[0])
        return cls(ring, dict(replicas), addresses, bounds, table, tail)

    @classmethod
    def from_replies(
        cls, ring_reply: Any, namespaces_reply: Any, seeds: Sequence[Address] = ()
    ) -> RingSnapshot | None:
        """Parse what ``RING`` and ``NS_LIST`` answered; None when the ring has no owner.

        Raises:
            RemoteProtocolError: a reply does not have the documented shape.
        """
        try:
            if not isinstance(ring_reply, Mapping) or not isinstance(namespaces_reply, Mapping):
                raise RemoteProtocolError("RING and NS_LIST answer maps")
            version = ring_reply.get("version")
            members = ring_reply.get("members")
            if type(version) is not int or not isinstance(members, list):
                raise RemoteProtocolError("RING answers {version: int, members: [...]}")
            parsed = []
            for member in members:
                if not isinstance(member, Mapping):
                    raise RemoteProtocolError("a ring member is a map")
                # share: the member's part of the key space, for display; not placement.
                parsed.append(
                    RingMember.from_mapping({k: v for k, v in member.items() if k != "share"})
                )
            vnodes = ring_reply.get("vnodes_per_weight", DEFAULT_VNODES_PER_WEIGHT)
            if type(vnodes) is not int or not 1 <= vnodes <= 1 << 16:
                raise RemoteProtocolError(f"bad vnodes_per_weight {vnodes!r}")
            ring = Ring(parsed, version, vnodes_per_weight=vnodes)
            replicas = {str(name): _replicas(policy) for name, policy in namespaces_reply.items()}
            return cls.build(ring, replicas, seeds)
        except ConfigError as exc:
            raise RemoteProtocolError(f"the node described an invalid ring: {exc}") from exc

    def owners(self, key: bytes, namespace: str = DEFAULT_NAMESPACE) -> tuple[Address, ...]:
        """The addresses of the key's owners in ``namespace`` (as many as its replicas)."""
        replicas = self.replicas.get(namespace, 1)
        return tuple(self.addresses[m.node_id] for m in self.ring.owners(key, replicas))

    def primary(self, key: bytes) -> Address:
        """The key's first owner: the node that coordinates its reads and writes."""
        return self.table[bisect_left(self.bounds, key_token(key))][0]


def _replicas(policy: Any) -> int:
    replicas = policy.get("replicas", 1) if isinstance(policy, Mapping) else None
    if type(replicas) is not int or replicas < 1:
        raise RemoteProtocolError(f"a namespace policy has no valid replicas: {policy!r}")
    return replicas


class RingRouter:
    """Routes each key to its owners by the cluster ring; by seed until a ring is known.

    Safe to share between threads and tasks: the snapshot and the table of failed nodes are
    replaced by single assignments, and the only lock is taken without blocking, when a newer
    ring version is seen.

    Args:
        seeds: the addresses the client was given; tried for meta ops, and for everything
            while no ring is known.
        clock: monotonic seconds (injected so tests can drive it).
        retry_after: seconds a node that refused a connection goes to the end of the lists.
    """

    def __init__(
        self,
        seeds: Sequence[Address],
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_after: float = DEFAULT_RETRY_AFTER,
    ) -> None:
        self.seeds = SeedRouter(seeds)
        self.snapshot: RingSnapshot | None = None
        self._clock = clock
        self.retry_after = retry_after
        # The ring version the router is up to date with: responses carrying it or an older one
        # need nothing. -1 until the first fetch, so the first response asks for the ring.
        self._known = -1
        self._wanted = -1
        self._refreshing = threading.Lock()
        self._down: dict[Address, float] = {}
        # Hot keys: key -> the addresses serving it; what each node said, until when; turns.
        self._hot: dict[bytes, tuple[Address, ...]] = {}
        self._hot_parts: dict[Address, tuple[float, dict[bytes, set[Address]]]] = {}
        self._hot_next = 0.0
        self._hot_asked = 0
        self._spread = itertools.count()
        # The hot-set version each node's responses carried last; nodes whose changed.
        self._hot_seen: dict[Address, int] = {}
        self._hot_changed: dict[Address, None] = {}
        # key -> (the newest version this client's writes left on it, -1 if none said, until
        # when it is demanded; until when its owner is demanded, after a write answered with
        # no version).
        self._written: dict[bytes, tuple[int, float, float]] = {}
        self._remember = WRITTEN_FOR

    @property
    def ring_version(self) -> int:
        """The version of the installed ring (0 when none is)."""
        snapshot = self.snapshot
        return 0 if snapshot is None else snapshot.version

    # -- the Router protocol ---------------------------------------------------------------------

    def candidates(self, key: bytes | None) -> Sequence[Address]:
        found = self._owners_first(key)
        hot = self._hot
        if hot and key in hot:
            serving = hot[key]
            first = serving[next(self._spread) % len(serving)]
            return [first, *(a for a in found if a != first)]
        return found

    def _owners_first(self, key: bytes | None) -> Sequence[Address]:
        snapshot = self.snapshot
        if snapshot is None:
            found: Sequence[Address] = self.seeds.candidates(key)
        elif key is None:
            seeds = self.seeds.candidates(None)
            found = [*seeds, *(a for a in snapshot.others if a not in seeds)]
        else:
            found = snapshot.table[bisect_left(snapshot.bounds, key_token(key))]
        if self._down:
            return self._down_last(found)
        return found

    def primary(self, key: bytes) -> Address | None:
        snapshot = self.snapshot
        if snapshot is None:
            return None
        return self._owners_first(key)[0]

    def connected(self, address: Address) -> None:
        self.seeds.connected(address)
        if address in self._down:
            down = dict(self._down)
            down.pop(address, None)
            self._down = down

    def failed(self, address: Address) -> None:
        self.seeds.failed(address)
        self._down = {**self._down, address: self._clock() + self.retry_after}

    def observe_ring_version(self, version: int) -> bool:
        if version <= self._known:
            return False
        return self._claim(version)

    def ring_fetched(self, replies: Sequence[Any] | None) -> None:
        """Install the snapshot ``RING`` and ``NS_LIST`` answered (None: the fetch failed).

        Called once by the caller ``observe_ring_version`` chose, whatever happened; it releases
        that claim. An answer without a usable ring (none, or one that does not parse) makes the
        router route by seed; a failed fetch (connection, timeout, cancellation, an error
        answer) keeps what it had. Either way it fetches again only for a newer version.
        """
        try:
            if replies is None:
                version = -1
            else:
                self.snapshot, version = self._parse(replies)
            # A node may answer with a ring older than the version that asked for the fetch
            # (another node installed it first); wait for a newer one rather than ask again
            # on every response.
            self._known = max(self._known, self._wanted, version)
        finally:
            self._refreshing.release()

    @property
    def hot(self) -> dict[bytes, tuple[Address, ...]]:
        """The keys known to be hot, each with the addresses serving it."""
        return self._hot

    @property
    def written(self) -> dict[bytes, tuple[int, float, float]]:
        """The hot keys this client wrote lately: ``key -> (version, until, owner_until)``
        (:meth:`wrote`)."""
        return self._written

    def hot_hint(self, address: Address, version: int) -> None:
        """A response from ``address`` carried this hot-set version: when it is not the one
        that node's responses carried before, its ``HOTKEYS`` is asked next."""
        if self._hot_seen.get(address) != version:
            self._hot_seen[address] = version
            self._hot_changed[address] = None

    def wrote(
        self,
        keys: Sequence[bytes],
        version: int | None,
        versions: Sequence[tuple[bytes, int]] | None = None,
    ) -> None:
        """This client's write of ``keys`` was answered with ``version`` (None: no version;
        then only the keys known to be hot are remembered, each demanding its owner) and, for
        a write of several keys, ``versions``: the keys hot at their owner, each with the
        version the write left on it, remembered each with its own (None: the answer does not
        name them; then the keys known to be hot, or the first, take ``version``).

        The two demands are kept apart: a version answered later does not end the demand of
        the owner that a write answered without one left (the two answers may have come back
        out of order), and does not prolong it either: it ends when every copy older than
        that write has lapsed, and the newest version answered is demanded after it."""
        if versions is not None:
            for key, own in versions:
                self.wrote([key], own)
            return
        hot = self._hot
        now = self._clock()
        until = now + self._remember
        if version is None:
            keys = [k for k in keys if k in hot]
            if not keys:
                return
        elif len(keys) > 1:
            keys = [k for k in keys if k in hot] or keys[:1]
        written = self._written
        for key in keys:
            held = written.pop(key, None)
            newest, newest_until, owner_until = (-1, 0.0, 0.0) if held is None else held
            if version is None:
                owner_until = until
            elif version >= newest or newest_until <= now:
                newest, newest_until = version, until
            else:  # an answer that came back late: the newer version stays demanded
                newest_until = until
            written[key] = (newest, newest_until, owner_until)
        while len(written) > WRITTEN_MAX:
            try:
                written.pop(next(iter(written)), None)
            except (RuntimeError, StopIteration):  # another thread changed it meanwhile
                break

    def min_version(self, key: bytes) -> int | None:
        """The version a read of ``key`` demands (this client wrote it lately), or None."""
        held = self._written.get(key)
        if held is None:
            return None
        newest, newest_until, owner_until = held
        now = self._clock()
        if owner_until > now:
            return ANY_COPY_OLDER
        if newest >= 0 and newest_until > now:
            return newest
        self._written.pop(key, None)
        return None

    def hot_due(self) -> Address | None:
        """The node to ask for its hot keys now (``FETCH_HOT``), or None when it is not time:
        a node whose hot-set version changed, else at most one caller a :data:`HOT_EVERY`
        seconds is told a node in turn; the caller must hand the answer to
        :meth:`hot_fetched`."""
        snapshot = self.snapshot
        if snapshot is None:
            return None
        if self._hot_changed:
            try:
                address, _ = self._hot_changed.popitem()
            except KeyError:  # another caller took it
                pass
            else:
                if address in snapshot.addresses.values():
                    return address
        if self._clock() < self._hot_next:
            return None
        self._hot_next = self._clock() + HOT_EVERY
        nodes = sorted(set(snapshot.addresses.values()))
        if not nodes:
            return None
        self._hot_asked += 1
        return nodes[self._hot_asked % len(nodes)]

    def hot_fetched(self, address: Address, replies: Sequence[Any] | None) -> None:
        """What ``address`` answered to ``FETCH_HOT`` (None: nothing usable)."""
        snapshot = self.snapshot
        if snapshot is None:
            return
        now = self._clock()
        parts = {a: part for a, part in self._hot_parts.items() if part[0] > now}
        said = _hot_keys(snapshot, replies)
        lease = _longest_lease(replies)
        if lease * 2 > self._remember:
            self._remember = lease * 2
        if said is not None:
            keep = HOT_EVERY * (len(set(snapshot.addresses.values())) + 1)
            parts[address] = (now + keep, said)
        merged: dict[bytes, set[Address]] = {}
        for _, part in parts.values():
            for key, serving in part.items():
                merged.setdefault(key, set()).update(serving)
        self._hot_parts = parts
        self._hot = {key: tuple(sorted(serving)) for key, serving in merged.items()}

    # -- details ---------------------------------------------------------------------------------

    def owners(self, key: bytes, namespace: str = DEFAULT_NAMESPACE) -> tuple[Address, ...]:
        """The key's owners in ``namespace`` by the installed ring (``()`` when none is)."""
        snapshot = self.snapshot
        return () if snapshot is None else snapshot.owners(key, namespace)

    def _parse(self, replies: Sequence[Any] | None) -> tuple[RingSnapshot | None, int]:
        """The snapshot in the replies and their ring version; (None, -1) when malformed."""
        if replies is None or len(replies) != 2:
            return None, -1
        ring_reply, namespaces_reply = replies
        try:
            snapshot = RingSnapshot.from_replies(ring_reply, namespaces_reply, self.seeds.addresses)
        except RemoteProtocolError:
            return None, -1
        return snapshot, ring_reply["version"]

    def _claim(self, version: int) -> bool:
        if not self._refreshing.acquire(blocking=False):
            return False
        if version <= self._known:  # another caller refreshed in between
            self._refreshing.release()
            return False
        self._wanted = version
        return True

    def _down_last(self, found: Sequence[Address]) -> Sequence[Address]:
        now = self._clock()
        down = self._down
        if any(until <= now for until in down.values()):
            down = {a: until for a, until in down.items() if until > now}
            self._down = down
        if not down:
            return found
        return [*(a for a in found if a not in down), *(a for a in found if a in down)]


def _longest_lease(replies: Sequence[Any] | None) -> float:
    """The longest ``lease`` of the hot keys in a ``HOTKEYS`` answer (0 when none says)."""
    if not replies or not isinstance(replies[0], Mapping):
        return 0.0
    leases = [
        row.get("lease", 0.0) for row in replies[0].get("hot", ()) if isinstance(row, Mapping)
    ]
    return max((x for x in leases if type(x) in (int, float) and x < 1e6), default=0.0)


def _hot_keys(
    snapshot: RingSnapshot, replies: Sequence[Any] | None
) -> dict[bytes, set[Address]] | None:
    """``key -> addresses serving it`` from one node's ``HOTKEYS`` answer (None: unusable)."""
    if not replies or not isinstance(replies[0], Mapping):
        return None
    answer = replies[0]
    addresses = snapshot.addresses
    me = addresses.get(answer.get("node_id"))  # type: ignore[arg-type]
    if me is None:
        return None
    out: dict[bytes, set[Address]] = {}
    for row in answer.get("hot", ()):
        key = row.get("key") if isinstance(row, Mapping) else None
        if type(key) is bytes:
            holders = row.get("holders", ())
            out[key] = {me, *(addresses[h] for h in holders if h in addresses)}
    for row in answer.get("copies", ()):
        key = row.get("key") if isinstance(row, Mapping) else None
        if type(key) is bytes:
            out.setdefault(key, set()).update((me, snapshot.primary(key)))
    return out


__all__ = [
    "ANY_COPY_OLDER",
    "DEFAULT_RETRY_AFTER",
    "FETCH_HOT",
    "FETCH_RING",
    "HOT_EVERY",
    "RingRouter",
    "RingSnapshot",
]
