"""Is a peer entitled to what it sends? Range and key ownership checks for replica traffic.

A replica write, a hint replay or an anti-entropy exchange names keys or a token range; the
receiver checks them against *its* ring before acting, because a peer on an older or newer
ring, or a buggy one, may send what it should not. What callers may rely on:

* :func:`range_within` is exact on the wrapping token ring.
* :func:`owns_range` is true when every token of the range is owned (among the first
  ``replicas`` owners, in the given member states) by ``node_id``: the test for "a peer
  offering a digest or key list of a range" and for "a range asked of us".
* :func:`foreign_keys` lists the keys of a batch that ``node_id`` does not own: the node
  refuses (and counts) such replica writes instead of storing data it would never be asked
  for and that anti-entropy would never repair.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from meshcache.ring import READ_STATES, Ring, TokenRange
from meshcache.ring.tokens import TOKEN_SPACE


def range_within(inner: TokenRange, outer: TokenRange) -> bool:
    """Whether every token of ``inner`` is in ``outer``."""
    if outer.size == TOKEN_SPACE:
        return True
    if inner.size == TOKEN_SPACE:
        return False
    offset = (inner.start - outer.start) % TOKEN_SPACE
    return offset + inner.size <= outer.size


def owns_range(
    ring: Ring,
    node_id: str,
    trange: TokenRange,
    replicas: int,
    *,
    include: Collection[str] = READ_STATES,
) -> bool:
    """Whether ``node_id`` is among the first ``replicas`` owners of every token of ``trange``.

    Owned ranges come back merged into maximal runs, so a range wholly owned lies within one.
    """
    return any(
        range_within(trange, owned)
        for owned in ring.owned_ranges(node_id, replicas, include=include)
    )


def foreign_keys(
    ring: Ring, node_id: str, keys: Iterable[bytes], replicas: int, *, pending: bool = True
) -> list[bytes]:
    """The keys of ``keys`` that ``node_id`` is not a write owner of.

    With ``pending`` (the default) a joining member's future keys count as owned, so the
    streams of a hand-off in progress are not refused.
    """
    out = []
    for key in keys:
        owners = ring.write_owners(key, replicas) if pending else ring.owners(key, replicas)
        if all(m.node_id != node_id for m in owners):
            out.append(key)
    return out


__all__ = ["foreign_keys", "owns_range", "range_within"]
