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

from collections.abc import Collection
from dataclasses import dataclass

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
    held: Ring | None, current: Ring, node_id: str, replicas: int
) -> list[tuple[TokenRange, tuple[RingMember, ...]]]:
    """The ranges ``node_id`` must receive: it owns them in ``current`` (read or pending) but
    did not in ``held`` (None: it holds nothing). Each comes with the members that hold its
    data (the old owners, else the current read owners), ``node_id`` left out."""
    rings = [current] if held is None else [current, held]
    bounds = sorted(
        {b for ring in rings for inc in (READ_STATES, PENDING_STATES) for b in ring.boundaries(inc)}
    )
    labels: list[tuple[bool, tuple[RingMember, ...]]] = []
    for b in bounds:
        now_owners = current.owners_for_token(b, replicas, include=READ_STATES)
        pending = current.owners_for_token(b, replicas, include=PENDING_STATES)
        mine_now = any(m.node_id == node_id for m in (*now_owners, *pending))
        mine_before = held is not None and any(
            m.node_id == node_id
            for inc in (READ_STATES, PENDING_STATES)
            for m in held.owners_for_token(b, replicas, include=inc)
        )
        if not mine_now or mine_before:
            labels.append((False, ()))
            continue
        sources = list(held.owners_for_token(b, replicas, include=READ_STATES)) if held else []
        sources += [m for m in now_owners if m not in sources]
        labels.append((True, tuple(m for m in sources if m.node_id != node_id)))
    return [(r, label[1]) for r, label in label_runs(bounds, labels) if label[0]]


def replacements(ring: Ring, replicas: int) -> dict[str, RangeSet]:
    """For a ring with a leaving member: each member that gains ranges once it is gone (an
    owner in the pending view that is not one now), with the tokens it gains."""
    gains: dict[str, list[TokenRange]] = {}
    for transfer in handoff(ring, replicas):
        gains.setdefault(transfer.target.node_id, []).append(transfer.range)
    return {target: RangeSet(ranges) for target, ranges in sorted(gains.items())}
