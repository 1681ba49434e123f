"""Ring diffs: which token ranges change owners between two ring views, and the transfers.

The handoff uses two comparisons:

* During a hand-off, inside one ring: ``handoff(ring, replicas)`` compares the read view
  (active + leaving) with the pending view (active + joining) — the ranges the joining nodes
  must receive and the ranges the leaving nodes must give away, before the states flip.
* Between versions: ``diff(old, new, replicas)`` compares the read views of two rings — after a
  joining node becomes active, the old owners learn which ranges they no longer hold
  (:attr:`RangeChange.lost`) and may drop.

Owners are compared as sets of node ids: a range whose owners only change order moves nothing.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection
from dataclasses import dataclass
from functools import partial

from meshcache.ring.member import RingMember
from meshcache.ring.ring import PENDING_STATES, READ_STATES, Ring
from meshcache.ring.tokens import RangeSet, TokenRange, label_runs


@dataclass(frozen=True, slots=True)
class RangeChange:
    """A range whose owner set differs between the old and the new view.

    ``old_owners`` are members of the old ring and ``new_owners`` of the new one, each in
    preference order.
    """

    range: TokenRange
    old_owners: tuple[RingMember, ...]
    new_owners: tuple[RingMember, ...]

    @property
    def gained(self) -> tuple[RingMember, ...]:
        """New owners that did not own the range before (they must receive it)."""
        before = {m.node_id for m in self.old_owners}
        return tuple(m for m in self.new_owners if m.node_id not in before)

    @property
    def lost(self) -> tuple[RingMember, ...]:
        """Old owners that no longer own the range (they may drop it once it is handed off)."""
        after = {m.node_id for m in self.new_owners}
        return tuple(m for m in self.old_owners if m.node_id not in after)


@dataclass(frozen=True, slots=True)
class Transfer:
    """Stream the keys of ``range`` to ``target``.

    ``source`` is the preferred sender: the range's first old owner. ``holders`` are all the
    old owners — each holds the data — for when the source is down.
    """

    range: TokenRange
    source: RingMember
    target: RingMember
    holders: tuple[RingMember, ...]


def range_changes(
    old: Ring,
    new: Ring,
    replicas: int,
    *,
    old_include: Collection[str] = READ_STATES,
    new_include: Collection[str] = READ_STATES,
) -> list[RangeChange]:
    """The maximal ranges whose first ``replicas`` owners differ between the two views.

    A key's owner set changed exactly when its token lies in one of the returned ranges.
    """
    bounds = sorted(set(old.boundaries(old_include)) | set(new.boundaries(new_include)))
    labels: list[tuple[frozenset[str], frozenset[str]]] = []
    owners: dict[
        tuple[frozenset[str], frozenset[str]], tuple[tuple[RingMember, ...], tuple[RingMember, ...]]
    ] = {}
    for bound in bounds:
        # Every token in (previous bound, bound] has the owners of ``bound`` in both views.
        before = old.owners_for_token(bound, replicas, include=old_include)
        after = new.owners_for_token(bound, replicas, include=new_include)
        label = (frozenset(m.node_id for m in before), frozenset(m.node_id for m in after))
        owners.setdefault(label, (before, after))
        labels.append(label)
    return [
        RangeChange(token_range, *owners[label])
        for token_range, label in label_runs(bounds, labels)
        if label[0] != label[1]
    ]


def transfers(changes: list[RangeChange]) -> list[Transfer]:
    """One :class:`Transfer` per (changed range, gained owner) that some old owner can send.

    Ranges with no old owner (a ring that was empty) have nothing to stream and are left out.
    """
    result: list[Transfer] = []
    for change in changes:
        if not change.old_owners:
            continue
        for target in change.gained:
            result.append(Transfer(change.range, change.old_owners[0], target, change.old_owners))
    return result


def diff(
    old: Ring,
    new: Ring,
    replicas: int,
    *,
    old_include: Collection[str] = READ_STATES,
    new_include: Collection[str] = READ_STATES,
) -> list[Transfer]:
    """The transfers that move the data of ``old``'s view to the owners of ``new``'s view."""
    return transfers(
        range_changes(old, new, replicas, old_include=old_include, new_include=new_include)
    )


def handoff(ring: Ring, replicas: int) -> list[Transfer]:
    """The transfers of a hand-off in progress: from the read owners to the pending owners."""
    return diff(ring, ring, replicas, old_include=READ_STATES, new_include=PENDING_STATES)


def gained_ranges(
    held: Ring | None,
    current: Ring,
    node_id: str,
    replicas: int,
    held_replicas: int | None = None,
) -> list[tuple[TokenRange, tuple[RingMember, ...]]]:
    """The ranges ``node_id`` must receive: it owns them in ``current`` (read or pending, with
    ``replicas`` owners per key) but did not in ``held`` (None: it holds nothing) with
    ``held_replicas`` owners per key (``replicas`` when None). Each comes with the members
    that hold its data (the old owners, else the current read owners), ``node_id`` left out.

    Runs once per ring change on the node's event loop, so it does no Python work per vnode
    beyond merging the runs: owners come from the views' precomputed preference lists (shared
    between positions, so a list's identity stands for its contents) and each distinct
    combination of owner lists is labelled once.
    """
    before = replicas if held_replicas is None else held_replicas
    views = [(ring, include, replicas) for ring, include in _views(current)]
    if held is not None:
        views += [(ring, include, before) for ring, include in _views(held)]
    bounds = sorted(set().union(*(ring._view(include).tokens for ring, include, _ in views)))
    computed: dict[tuple[int, tuple[str, ...], int], list[tuple[RingMember, ...]]] = {}
    columns = []
    for ring, include, count in views:
        column = computed.get((id(ring), include, count))
        if column is None:
            column = _owner_lists(ring, include, bounds, count)
            computed[id(ring), include, count] = column
        columns.append((column, count))
    keys = list(zip(*(map(id, column) for column, _ in columns), strict=True))
    # Any position with a key has exactly those owner lists (identities of live objects).
    at = dict(zip(keys, range(len(keys)), strict=True))
    interned: dict[tuple[bool, tuple[RingMember, ...]], tuple[bool, tuple[RingMember, ...]]] = {}
    label_of = {}
    for key, i in at.items():
        label = _gained_label([column[i][:count] for column, count in columns], node_id)
        label_of[key] = interned.setdefault(label, label)
    # Equal labels are one object, so merging the runs compares identities.
    labels = list(map(label_of.__getitem__, keys))
    return [(r, label[1]) for r, label in label_runs(bounds, labels) if label[0]]


_NOT_GAINED: tuple[bool, tuple[RingMember, ...]] = (False, ())


def _views(ring: Ring) -> list[tuple[Ring, tuple[str, ...]]]:
    """The read and pending views of ``ring`` (one view when it is stable: they are equal)."""
    if ring.stable:
        return [(ring, READ_STATES), (ring, READ_STATES)]
    return [(ring, READ_STATES), (ring, PENDING_STATES)]


def _owner_lists(
    ring: Ring, include: tuple[str, ...], bounds: list[int], replicas: int
) -> list[tuple[RingMember, ...]]:
    """``ring.owners_for_token(b, replicas, include=include)`` for every bound, possibly longer
    than ``replicas`` (callers slice). Equal lists at different positions are mostly the same
    object; the lists stay alive with the result, so their ids tell them apart."""
    view = ring._view(include)  # the ring package's own precomputed preference lists
    if not view.tokens:
        return [()] * len(bounds)
    if not (0 < replicas <= view.depth or (replicas > 0 and view.complete)):
        return [ring.owners_for_token(b, replicas, include=include) for b in bounds]
    return list(map(view.prefs.__getitem__, map(partial(bisect_left, view.tokens), bounds)))


def _gained_label(
    owners: list[tuple[RingMember, ...]], node_id: str
) -> tuple[bool, tuple[RingMember, ...]]:
    """Whether ``node_id`` gains a range with these owners (current read, current pending, then
    held read and held pending if there is a held ring), and who holds its data."""
    now_owners, pending, *before = owners
    if not any(m.node_id == node_id for m in (*now_owners, *pending)):
        return _NOT_GAINED
    if any(m.node_id == node_id for held in before for m in held):
        return _NOT_GAINED
    sources = list(before[0]) if before else []
    sources += [m for m in now_owners if m not in sources]
    return (True, tuple(m for m in sources if m.node_id != node_id))


def replacements(ring: Ring, replicas: int) -> dict[str, RangeSet]:
    """For a ring with a leaving member: each member that gains ranges once it is gone (an
    owner in the pending view that is not one now), with the tokens it gains.

    The ranges of :func:`handoff`'s transfers, found as :func:`gained_ranges` finds its own
    (a leaving node runs it on its event loop): owners from the views' shared preference
    lists, each distinct pair of lists labelled once.
    """
    bounds = sorted(set(ring._view(READ_STATES).tokens) | set(ring._view(PENDING_STATES).tokens))
    now = _owner_lists(ring, READ_STATES, bounds, replicas)
    pending = _owner_lists(ring, PENDING_STATES, bounds, replicas)
    keys = list(zip(map(id, now), map(id, pending), strict=True))
    at = dict(zip(keys, range(len(keys)), strict=True))
    interned: dict[tuple[str, ...], tuple[str, ...]] = {}
    label_of = {}
    for key, i in at.items():
        before = {m.node_id for m in now[i][:replicas]}
        # No owner now: nothing to send (a ring that was empty).
        label = tuple(m.node_id for m in pending[i][:replicas] if m.node_id not in before)
        label = label if before else ()
        label_of[key] = interned.setdefault(label, label)
    gains: dict[str, list[TokenRange]] = {}
    for trange, targets in label_runs(bounds, list(map(label_of.__getitem__, keys))):
        for target in targets:
            gains.setdefault(target, []).append(trange)
    return {target: RangeSet(ranges) for target, ranges in sorted(gains.items())}
