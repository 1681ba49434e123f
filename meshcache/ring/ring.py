"""The consistent-hash ring: virtual nodes, zone-aware preference lists, cheap lookups.

A :class:`Ring` is an immutable snapshot of the ring members at one ring version. Each member
with weight *w* gets ``w * vnodes_per_weight`` virtual nodes (see :mod:`meshcache.ring.tokens`
for where they sit). A vnode at token *t* whose predecessor is at *p* owns the tokens in
``(p, t]``; a key belongs to the first vnode clockwise from its token.

**Preference lists.** The owners of a key for ``replicas = r`` come from walking clockwise from
its vnode: first one node per zone, in the order the zones are met, then — when there are fewer
zones than *r* — the other nodes in the order they are met. The list for *r* is always a prefix
of the list for *r + 1*, so the first owner is the primary whatever *r* is, and copies land in
distinct zones whenever there are enough zones. Adding a node only ever moves keys (or replica
copies) *to* that node, never between the nodes already there.

**States and views.** A lookup reads one *view* of the ring: the members in the given states.

* :meth:`Ring.owners` (default ``include=READ_STATES``: active and leaving) — who serves reads
  and is the authority for a key now. Joining members are not read owners: they may not have
  the data yet. Leaving members still are: they hold it until their hand-off completes.
* :meth:`Ring.pending_owners` (``PENDING_STATES``: active and joining) — the owners once the
  current hand-off finishes, i.e. where the data must be streamed.
* :meth:`Ring.write_owners` — ``owners`` followed by the ``pending_owners`` not already in it,
  so a write made during a hand-off reaches both the old and the new owners and none is lost.
  With no member joining or leaving the three are the same.

**Cost.** At build time each view precomputes, for every vnode position, the preference list
up to ``preference_depth`` owners (identical lists are shared, so this costs a pointer per
position). A lookup is then one CRC-32, one ``bisect`` and one list index; asking for more
than ``preference_depth`` owners walks the ring instead, unless the view has no more members
than that (its lists then hold every one).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Iterable, Iterator, Mapping
from functools import lru_cache

from meshcache.errors import ConfigError, MeshcacheError
from meshcache.ring.member import RING_STATES, RingMember, RingState
from meshcache.ring.tokens import (
    TOKEN_SPACE,
    RangeSet,
    TokenRange,
    key_token,
    label_runs,
    vnode_token,
)

READ_STATES: tuple[RingState, ...] = (RingState.ACTIVE, RingState.LEAVING)
"""Members that own keys for reads now."""
PENDING_STATES: tuple[RingState, ...] = (RingState.ACTIVE, RingState.JOINING)
"""Members that will own keys once the current hand-off completes."""
ALL_STATES: tuple[RingState, ...] = RING_STATES

DEFAULT_VNODES_PER_WEIGHT = 512
"""Chosen by measurement (``tools/ring_figures.py``, ``docs/benchmarks.md``, Ring)."""
DEFAULT_PREFERENCE_DEPTH = 5
MAX_VNODES = 1 << 20
"""Refuse rings with more vnodes than this: a bad config must not exhaust memory."""
MAPPING_SCHEME = 1
"""Bumped whenever the token functions or the placement rules change."""


@lru_cache(maxsize=1024)
def _vnode_tokens(node_id: str, count: int) -> tuple[int, ...]:
    """The tokens of a member's first ``count`` vnodes. Kept: a member's vnodes never move, and
    every ring change builds a ring of mostly the same members again."""
    return tuple(vnode_token(node_id, i) for i in range(count))


class NoOwnerError(MeshcacheError):
    """The ring (or the asked-for view of it) has no member that can own a key."""


class _View:
    """The ring restricted to members in some states, with precomputed preference lists."""

    __slots__ = ("complete", "depth", "members", "owner", "prefs", "tokens", "zone_of", "zones")

    def __init__(
        self, vnodes: list[tuple[int, str, int]], members: tuple[RingMember, ...], depth: int
    ) -> None:
        # vnodes: (token, node_id, member index), sorted, of the view's members only;
        # members: all the ring's members, so member indexes need no remapping.
        self.members = members
        self.tokens = [v[0] for v in vnodes]
        self.owner = [v[2] for v in vnodes]
        zone_ids: dict[str, int] = {}
        self.zone_of = [zone_ids.setdefault(m.zone, len(zone_ids)) for m in members]
        present = set(self.owner)
        self.zones = len({self.zone_of[i] for i in present})
        self.depth = min(depth, len(present))
        # Every list holds every member of the view: a lookup for more owners than that
        # returns the list itself (walking the ring would find no one else).
        self.complete = self.depth == len(present)
        self.prefs = self._preference_lists()

    def _preference_lists(self) -> list[tuple[RingMember, ...]]:
        """Every position's preference list, :meth:`walk` ``(pos, depth)`` for each, built
        counter-clockwise: the members met walking from ``pos`` in the order first met are
        ``owner[pos]`` followed by those met from ``pos + 1`` without it. Only the shortest
        prefix of that order at which a walk stops (:meth:`_stops`) is carried from position
        to position, so a list costs a few steps, not a walk."""
        n = len(self.owner)
        if n == 0:
            return []
        owner, depth, members = self.owner, self.depth, self.members
        met = self._met(n - 1)
        # The list a met-order gives, by the order's members: equal orders share one tuple.
        lists: dict[tuple[int, ...], tuple[RingMember, ...]] = {}
        prefs: list[tuple[RingMember, ...]] = [()] * n
        for pos in range(n - 1, -1, -1):
            first = owner[pos]
            if met[0] != first:
                met = self._stops([first, *(m for m in met if m != first)])
            key = tuple(met)
            pref = lists.get(key)
            if pref is None:
                pref = lists[key] = tuple(members[i] for i in self._choose(met, depth))
            prefs[pos] = pref
        # One extra slot so a token past the last vnode wraps to position 0 without a branch.
        prefs.append(prefs[0])
        return prefs

    def _met(self, pos: int) -> list[int]:
        """The members met walking clockwise from ``pos``, in order, up to where a walk for
        :attr:`depth` owners stops."""
        owner, n = self.owner, len(self.owner)
        met: list[int] = []
        seen: set[int] = set()
        for step in range(n):
            member = owner[(pos + step) % n]
            if member not in seen:
                seen.add(member)
                met.append(member)
        return self._stops(met)

    def _stops(self, met: list[int]) -> list[int]:
        """The shortest prefix of ``met`` (members in the order a walk meets them) at which
        :meth:`walk` for :attr:`depth` owners stops: ``depth`` zones met, or every zone met and
        at least ``depth`` members; all of ``met`` if neither happens."""
        zone_of, count, zones = self.zone_of, self.depth, self.zones
        seen_zones: set[int] = set()
        for i, member in enumerate(met):
            seen_zones.add(zone_of[member])
            if len(seen_zones) == count or (len(seen_zones) == zones and i + 1 >= count):
                return met[: i + 1]
        return met

    def _choose(self, met: list[int], count: int) -> tuple[int, ...]:
        """What :meth:`walk` returns for members met in the order ``met``: the first met of
        each zone, then the others in the order met, ``count`` in all."""
        zone_of = self.zone_of
        reps: list[int] = []
        others: list[int] = []
        zones: set[int] = set()
        for member in met:
            zone = zone_of[member]
            if zone in zones:
                others.append(member)
            else:
                zones.add(zone)
                reps.append(member)
        return tuple(reps + others)[:count]

    def walk(self, pos: int, count: int) -> tuple[int, ...]:
        """Member indexes of the first ``count`` owners from vnode position ``pos``."""
        owner, zone_of, n = self.owner, self.zone_of, len(self.owner)
        reps: list[int] = []
        zones_seen: set[int] = set()
        order: list[int] = []
        seen: set[int] = set()
        for step in range(n):
            member = owner[(pos + step) % n]
            if member in seen:
                continue
            seen.add(member)
            order.append(member)
            zone = zone_of[member]
            if zone not in zones_seen:
                zones_seen.add(zone)
                reps.append(member)
                if len(reps) == count:
                    break
            # Every zone has its representative and enough other nodes are known to fill up.
            if len(zones_seen) == self.zones and len(seen) >= count:
                break
        chosen = set(reps)
        return tuple(reps + [m for m in order if m not in chosen])[:count]


def _normalize(include: Collection[str]) -> frozenset[str]:
    states = frozenset(include)
    unknown = states - set(RING_STATES)
    if unknown:
        raise ValueError(f"unknown member states {sorted(unknown)}")
    return states


class Ring:
    """An immutable ring snapshot: members, a version, and fast owner lookups.

    Members are kept sorted by ``node_id``; two rings built from the same members, version and
    parameters are equal and place every key identically, in every process.

    Raises:
        ConfigError: duplicate node ids, a negative version, or parameters out of range.
    """

    __slots__ = (
        "_by_id",
        "_members",
        "_pending",
        "_read",
        "_stable",
        "_views",
        "_vnodes",
        "_write_ranges",
        "preference_depth",
        "version",
        "vnodes_per_weight",
    )

    def __init__(
        self,
        members: Iterable[RingMember] = (),
        version: int = 0,
        *,
        vnodes_per_weight: int = DEFAULT_VNODES_PER_WEIGHT,
        preference_depth: int = DEFAULT_PREFERENCE_DEPTH,
    ) -> None:
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ConfigError("ring version must be a non-negative integer")
        if not isinstance(vnodes_per_weight, int) or not 1 <= vnodes_per_weight <= 65536:
            raise ConfigError("vnodes_per_weight must be 1..65536")
        if not 1 <= preference_depth <= 64:
            raise ConfigError("preference_depth must be 1..64")
        ordered = tuple(sorted(members, key=lambda m: m.node_id))
        by_id = {m.node_id: m for m in ordered}
        if len(by_id) != len(ordered):
            raise ConfigError("ring has duplicate node ids")
        total = sum(m.weight for m in ordered) * vnodes_per_weight
        if total > MAX_VNODES:
            raise ConfigError(f"ring would have {total} vnodes (limit {MAX_VNODES})")
        self.version = version
        self.vnodes_per_weight = vnodes_per_weight
        self.preference_depth = preference_depth
        self._members = ordered
        self._by_id = by_id
        self._vnodes: list[tuple[int, str, int]] | None = self._all_vnodes()
        self._views: dict[frozenset[str], _View] = {}
        self._write_ranges: dict[tuple[str, int], RangeSet] = {}
        self._stable = all(m.state is RingState.ACTIVE for m in ordered)
        self._read = self._view(READ_STATES)
        self._pending = self._read if self._stable else self._view(PENDING_STATES)
        # Only views for unusual state sets need the full list again; they rebuild it rather
        # than every ring carrying a third more memory.
        self._vnodes = None

    def _all_vnodes(self) -> list[tuple[int, str, int]]:
        """(token, node id, member index) of every vnode, sorted.

        Ties between equal tokens go to the smaller node id; the later vnode owns nothing.
        """
        return sorted(
            (token, m.node_id, index)
            for index, m in enumerate(self._members)
            for token in _vnode_tokens(m.node_id, m.weight * self.vnodes_per_weight)
        )

    def _view(self, include: Collection[str]) -> _View:
        states = _normalize(include)
        view = self._views.get(states)
        if view is None:
            chosen = {i for i, m in enumerate(self._members) if m.state in states}
            if self._vnodes is None:
                self._vnodes = self._all_vnodes()
            vnodes = [v for v in self._vnodes if v[2] in chosen]
            view = _View(vnodes, self._members, self.preference_depth)
            # A benign race under threads: both builders produce equal views.
            self._views[states] = view
        return view

    # -- members -------------------------------------------------------------------------------

    @property
    def members(self) -> tuple[RingMember, ...]:
        """All members, in every state, sorted by node id."""
        return self._members

    def member(self, node_id: str) -> RingMember | None:
        """The member with this id, or None."""
        return self._by_id.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._by_id

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[RingMember]:
        return iter(self._members)

    @property
    def stable(self) -> bool:
        """True when every member is active: no hand-off in progress."""
        return self._stable

    # -- lookups (hot path) --------------------------------------------------------------------

    @staticmethod
    def token(key: bytes) -> int:
        """The key's token (see :func:`meshcache.ring.tokens.key_token`)."""
        return key_token(key)

    def owners(
        self, key: bytes, replicas: int = 1, *, include: Collection[str] = READ_STATES
    ) -> tuple[RingMember, ...]:
        """The key's owners in preference order: at most ``replicas`` distinct members.

        Fewer come back when the view has fewer members; ``()`` when it has none. ``include``
        picks the member states that count (default: the read owners, active and leaving).
        """
        view = self._read if include is READ_STATES else self._view(include)
        # _lookup inlined: this is on the path of every request.
        if 0 < replicas <= view.depth:
            return view.prefs[bisect_left(view.tokens, key_token(key))][:replicas]
        return self._lookup(view, key_token(key), replicas)

    def owners_for_token(
        self, token: int, replicas: int = 1, *, include: Collection[str] = READ_STATES
    ) -> tuple[RingMember, ...]:
        """Like :meth:`owners` for a token rather than a key."""
        view = self._read if include is READ_STATES else self._view(include)
        return self._lookup(view, token, replicas)

    def _lookup(self, view: _View, token: int, replicas: int) -> tuple[RingMember, ...]:
        if not view.tokens:
            return ()
        pos = bisect_left(view.tokens, token)
        if 0 < replicas <= view.depth:
            return view.prefs[pos][:replicas]
        if replicas < 1:
            return ()
        if view.complete:
            return view.prefs[pos]
        order = view.walk(pos % len(view.tokens), replicas)
        return tuple(view.members[i] for i in order)

    def primary(self, key: bytes) -> RingMember:
        """The key's first read owner.

        Raises:
            NoOwnerError: no member is active or leaving.
        """
        prefs = self._read.prefs
        if not prefs:
            raise NoOwnerError("the ring has no active member")
        return prefs[bisect_left(self._read.tokens, key_token(key))][0]

    def pending_owners(self, key: bytes, replicas: int = 1) -> tuple[RingMember, ...]:
        """The key's owners once the hand-off completes (active and joining members)."""
        return self._lookup(self._pending, key_token(key), replicas)

    def write_owners(self, key: bytes, replicas: int = 1) -> tuple[RingMember, ...]:
        """Where a write must go: :meth:`owners`, then :meth:`pending_owners` not among them.

        During a hand-off this is up to ``2 * replicas`` members; otherwise just ``owners``.
        """
        token = key_token(key)
        current = self._lookup(self._read, token, replicas)
        if self._stable:
            return current
        pending = self._lookup(self._pending, token, replicas)
        return current + tuple(m for m in pending if m not in current)

    def write_ranges(self, node_id: str, replicas: int = 1) -> RangeSet:
        """The tokens whose :meth:`write_owners` include ``node_id``, for O(log n) membership
        tests of many keys (built once per ring, node and ``replicas``)."""
        cached = self._write_ranges.get((node_id, replicas))
        if cached is None:
            ranges = self.owned_ranges(node_id, replicas)
            if not self._stable:
                ranges += self.owned_ranges(node_id, replicas, include=PENDING_STATES)
            cached = self._write_ranges[(node_id, replicas)] = RangeSet(ranges)
        return cached

    # -- ranges --------------------------------------------------------------------------------

    def boundaries(self, include: Collection[str] = READ_STATES) -> list[int]:
        """The distinct vnode tokens of a view, ascending: the ends of its ranges."""
        tokens = self._view(include).tokens
        return [t for i, t in enumerate(tokens) if i == 0 or tokens[i - 1] != t]

    def range_of(self, key: bytes, *, include: Collection[str] = READ_STATES) -> TokenRange:
        """The vnode range ``(start, end]`` that holds the key's token in the given view.

        Raises:
            NoOwnerError: the view has no vnode.
        """
        tokens = self._view(include).tokens
        if not tokens:
            raise NoOwnerError("the ring has no member in the asked-for states")
        pos = bisect_left(tokens, key_token(key)) % len(tokens)
        # bisect_left lands on the first of equal tokens, so the predecessor is strictly smaller
        # (or, wrapping, the largest token).
        return TokenRange(tokens[pos - 1], tokens[pos])

    def ranges(
        self, replicas: int = 1, *, include: Collection[str] = READ_STATES
    ) -> list[tuple[TokenRange, tuple[RingMember, ...]]]:
        """Every range of the view with its owners, adjacent ranges with equal owners merged."""
        bounds = self.boundaries(include)
        labels = [self.owners_for_token(b, replicas, include=include) for b in bounds]
        return label_runs(bounds, labels)

    def owned_ranges(
        self, node_id: str, replicas: int = 1, *, include: Collection[str] = READ_STATES
    ) -> list[TokenRange]:
        """The ranges whose first ``replicas`` owners include ``node_id``, merged."""
        view = self._view(include)
        member = self._by_id.get(node_id)
        if member is None or replicas < 1:
            return []
        bounds = self.boundaries(include)
        if replicas > view.depth and not view.complete:  # beyond the lists: walk the ring
            labels = [member in self.owners_for_token(b, replicas, include=include) for b in bounds]
        else:
            # The owners of a boundary are its position's list (of equal tokens, the first's);
            # lists are shared between positions, so each is looked at once.
            holds: dict[int, bool] = {}
            labels = []
            previous = -1
            for token, pref in zip(view.tokens, view.prefs[:-1], strict=True):
                if token == previous:
                    continue
                previous = token
                label = holds.get(id(pref))
                if label is None:
                    label = holds[id(pref)] = any(m is member for m in pref[:replicas])
                labels.append(label)
        return [r for r, owned in label_runs(bounds, labels) if owned]

    def shares(self, *, include: Collection[str] = READ_STATES) -> dict[str, float]:
        """Each member's share of the token space as first owner in the view (0.0 for a member
        outside it): what summing :meth:`owned_ranges` per member gives, in one pass."""
        view = self._view(include)
        owned = [0] * len(self._members)
        previous = view.tokens[-1] - TOKEN_SPACE if view.tokens else 0
        # A range (previous, token] belongs to the vnode at its end; of equal tokens, the first.
        for token, member in zip(view.tokens, view.owner, strict=True):
            owned[member] += token - previous
            previous = token
        return {m.node_id: owned[i] / TOKEN_SPACE for i, m in enumerate(self._members)}

    # -- changes -------------------------------------------------------------------------------

    def with_member(self, member: RingMember) -> Ring:
        """A ring one version newer with ``member`` added, or replacing the one with its id."""
        others = [m for m in self._members if m.node_id != member.node_id]
        return self._evolve([*others, member])

    def without_member(self, node_id: str) -> Ring:
        """A ring one version newer without ``node_id`` (unchanged members if it was absent)."""
        return self._evolve([m for m in self._members if m.node_id != node_id])

    def _evolve(self, members: list[RingMember]) -> Ring:
        return Ring(
            members,
            self.version + 1,
            vnodes_per_weight=self.vnodes_per_weight,
            preference_depth=self.preference_depth,
        )

    # -- serialization -------------------------------------------------------------------------

    def to_mapping(self) -> dict[str, object]:
        """Plain dicts, lists, strings and ints (msgpack- and JSON-able).

        ``preference_depth`` is a local speed/memory trade-off and is not included: it does
        not change placement.
        """
        return {
            "scheme": MAPPING_SCHEME,
            "version": self.version,
            "vnodes_per_weight": self.vnodes_per_weight,
            "members": [m.to_mapping() for m in self._members],
        }

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, object], *, preference_depth: int = DEFAULT_PREFERENCE_DEPTH
    ) -> Ring:
        """Rebuild a ring from :meth:`to_mapping` output.

        Raises:
            ConfigError: the mapping is malformed or from an unknown placement scheme.
        """
        if not isinstance(data, Mapping):
            raise ConfigError("ring must be a mapping")
        if data.get("scheme") != MAPPING_SCHEME:
            raise ConfigError(f"unknown ring scheme {data.get('scheme')!r}")
        members = data.get("members")
        version = data.get("version")
        vnodes = data.get("vnodes_per_weight")
        if not isinstance(members, list | tuple):
            raise ConfigError("ring members must be a list")
        if not isinstance(version, int) or not isinstance(vnodes, int):
            raise ConfigError("ring version and vnodes_per_weight must be integers")
        return cls(
            (RingMember.from_mapping(m) for m in members),
            version,
            vnodes_per_weight=vnodes,
            preference_depth=preference_depth,
        )

    # -- value semantics -----------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return (self.version, self.vnodes_per_weight, self._members) == (
            other.version,
            other.vnodes_per_weight,
            other._members,
        )

    def __hash__(self) -> int:
        return hash((self.version, self.vnodes_per_weight, self._members))

    def __repr__(self) -> str:
        ids = ", ".join(f"{m.node_id}:{m.state}" for m in self._members)
        return f"Ring(version={self.version}, vnodes_per_weight={self.vnodes_per_weight}, [{ids}])"
