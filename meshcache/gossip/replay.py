"""Replay protection for signed envelopes.

Each envelope carries ``(sender name, boot nonce, counter)``: the nonce is drawn at random when
a node starts, the counter increases by one per envelope sent. Per sender we keep the current
nonce, the highest counter seen and a bitmap of the last ``window`` counters (IPsec-style), so
reordered UDP packets are still accepted but each envelope is accepted at most once.

A new nonce means the sender restarted: the window resets. Nonces of the last few boots are
remembered and rejected, so packets of a previous life cannot be replayed; a replay of a boot
older than that is accepted once and then displaced by the sender's next real packet. The
signed membership rules (incarnations) make such stale content harmless.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

_OLD_BOOTS = 8


@dataclass(slots=True)
class _Window:
    boot: int
    highest: int
    seen: int = 1  # bit i set = counter (highest - i) was accepted
    old_boots: deque[int] = field(default_factory=lambda: deque(maxlen=_OLD_BOOTS))


class ReplayGuard:
    """Accept each ``(sender, boot, counter)`` at most once; memory bounded by ``max_senders``."""

    __slots__ = ("_mask", "_max_senders", "_senders", "_window")

    def __init__(self, window: int, max_senders: int) -> None:
        self._window = window
        self._mask = (1 << window) - 1
        self._max_senders = max_senders
        self._senders: OrderedDict[str, _Window] = OrderedDict()

    def accept(self, sender: str, boot: int, counter: int) -> bool:
        """Record the envelope and say whether it is fresh (False = replay or too old)."""
        state = self._senders.get(sender)
        if state is None:
            self._senders[sender] = _Window(boot, counter)
            if len(self._senders) > self._max_senders:
                self._senders.popitem(last=False)
            return True
        self._senders.move_to_end(sender)
        if boot != state.boot:
            if boot in state.old_boots:
                return False
            state.old_boots.append(state.boot)
            state.boot, state.highest, state.seen = boot, counter, 1
            return True
        if counter > state.highest:
            shift = counter - state.highest
            state.seen = ((state.seen << shift) | 1) & self._mask if shift < self._window else 1
            state.highest = counter
            return True
        age = state.highest - counter
        if age >= self._window:
            return False
        bit = 1 << age
        if state.seen & bit:
            return False
        state.seen |= bit
        return True

    def forget(self, sender: str) -> None:
        self._senders.pop(sender, None)
