"""The transmit-limited broadcast queue that feeds piggybacked gossip.

One pending update per member (a newer update about a member replaces the older one). Each
packet takes the least-transmitted updates first, newest first among equals, as many as fit;
an update is dropped after ``retransmit_limit(mult, n)`` transmissions.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass


def retransmit_limit(mult: int, n_members: int) -> int:
    """``mult * ceil(log10(n + 1))``: enough sends for an update to reach everyone w.h.p."""
    return mult * max(1, math.ceil(math.log10(n_members + 1)))


@dataclass(slots=True)
class _Item:
    payload: bytes
    order: int  # higher = queued more recently
    transmits: int = 0


class BroadcastQueue:
    """Pending updates keyed by member name."""

    __slots__ = ("_items", "_next_order")

    def __init__(self) -> None:
        self._items: dict[str, _Item] = {}
        self._next_order = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def queue(self, key: str, payload: bytes) -> None:
        """Queue ``payload`` about ``key``, replacing (and resetting) any older update."""
        self._next_order += 1
        self._items[key] = _Item(payload, self._next_order)

    def take(self, space: int, limit: int, *, carried: Collection[bytes] = ()) -> list[bytes]:
        """Up to ``space`` bytes of updates; counts one transmission for each one returned.

        ``carried``: messages the packet already holds. An update among them is neither added
        again nor counted: a packet sent to one member for its own sake (an answer to it) does
        not spread the update, and must not use up the sends that do.
        """
        if space <= 0 or not self._items:
            return []
        chosen: list[bytes] = []
        for key, item in sorted(
            self._items.items(), key=lambda kv: (kv[1].transmits, -kv[1].order)
        ):
            if len(item.payload) > space or item.payload in carried:
                continue
            chosen.append(item.payload)
            space -= len(item.payload)
            item.transmits += 1
            if item.transmits >= limit:
                del self._items[key]
            if space < 8:  # no message is this small
                break
        return chosen

    def transmits(self, key: str) -> int | None:
        """How often the pending update about ``key`` was sent, or None if none is pending."""
        item = self._items.get(key)
        return None if item is None else item.transmits
