"""Every member-state transition, in one table (h11's ``_state.py`` habit).

A *claim* is what an update says (or what a local timer concludes) about a member at an
incarnation. :func:`decide` looks the (current state, claim) pair up and returns the
:class:`Rule` to apply, or ``None`` when the claim is stale or meaningless and must be ignored.
Claims about the local node itself use :data:`SELF_RULES` instead: the local node never lets
others change its own state, it *refutes* by raising its incarnation.

Incarnation precedence (the SWIM rules): for the same member, a higher incarnation always wins;
at equal incarnation ``LEFT``/``DEAD`` beat ``SUSPECT`` which beats ``ALIVE``. Only the member
itself raises its incarnation, so an ``ALIVE`` claim needs a strictly newer incarnation to
override anything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meshcache.gossip.member import EventKind, MemberState


class Claim(enum.Enum):
    """What an input says about a member."""

    ALIVE = "alive"  # an alive update (gossip, push/pull, refutation)
    SUSPECT = "suspect"  # someone's probe failed
    DEAD = "dead"  # someone's suspicion expired
    LEFT = "left"  # the member announced its graceful leave
    SUSPICION_EXPIRED = "suspicion_expired"  # local timer: our suspicion ran out
    REAP = "reap"  # local timer: a dead/left member has been kept long enough


class Need(enum.Enum):
    """How the claim's incarnation must compare with the known one."""

    ANY = "any"  # no known incarnation (unknown member)
    NEWER = "newer"  # claim > known
    AT_LEAST = "at_least"  # claim >= known


@dataclass(frozen=True, slots=True)
class Rule:
    """Apply when ``need`` holds: move to ``to`` (``None`` = forget) and emit ``event``."""

    need: Need
    to: MemberState | None
    event: EventKind | None
    confirm: bool = False  # a repeated suspicion: counts as a Lifeguard confirmation


A, S, D, L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT
_UNKNOWN = None

TRANSITIONS: dict[tuple[MemberState | None, Claim], Rule | None] = {
    # Unknown members are learned only from alive updates; suspicion of a stranger is noise.
    (_UNKNOWN, Claim.ALIVE): Rule(Need.ANY, A, EventKind.JOINED),
    (_UNKNOWN, Claim.SUSPECT): None,
    (_UNKNOWN, Claim.DEAD): None,
    (_UNKNOWN, Claim.LEFT): None,
    (_UNKNOWN, Claim.SUSPICION_EXPIRED): None,
    (_UNKNOWN, Claim.REAP): None,
    # Alive: a newer alive may carry new metadata/address ("updated" only if something changed).
    (A, Claim.ALIVE): Rule(Need.NEWER, A, EventKind.UPDATED),
    (A, Claim.SUSPECT): Rule(Need.AT_LEAST, S, EventKind.SUSPECT),
    (A, Claim.DEAD): Rule(Need.AT_LEAST, D, EventKind.DEAD),
    (A, Claim.LEFT): Rule(Need.AT_LEAST, L, EventKind.LEFT),
    (A, Claim.SUSPICION_EXPIRED): None,
    (A, Claim.REAP): None,
    # Suspect: refuted by a newer alive; further suspicions are Lifeguard confirmations.
    (S, Claim.ALIVE): Rule(Need.NEWER, A, EventKind.ALIVE),
    (S, Claim.SUSPECT): Rule(Need.AT_LEAST, S, None, confirm=True),
    (S, Claim.DEAD): Rule(Need.AT_LEAST, D, EventKind.DEAD),
    (S, Claim.LEFT): Rule(Need.AT_LEAST, L, EventKind.LEFT),
    (S, Claim.SUSPICION_EXPIRED): Rule(Need.AT_LEAST, D, EventKind.DEAD),
    (S, Claim.REAP): None,
    # Dead: only the member itself can bring it back (newer alive); a late leave is recorded.
    (D, Claim.ALIVE): Rule(Need.NEWER, A, EventKind.ALIVE),
    (D, Claim.SUSPECT): None,
    (D, Claim.DEAD): None,
    (D, Claim.LEFT): Rule(Need.AT_LEAST, L, EventKind.LEFT),
    (D, Claim.SUSPICION_EXPIRED): None,
    (D, Claim.REAP): Rule(Need.ANY, None, EventKind.REAPED),
    # Left: terminal until the member rejoins with a newer incarnation.
    (L, Claim.ALIVE): Rule(Need.NEWER, A, EventKind.JOINED),
    (L, Claim.SUSPECT): None,
    (L, Claim.DEAD): None,
    (L, Claim.LEFT): None,
    (L, Claim.SUSPICION_EXPIRED): None,
    (L, Claim.REAP): Rule(Need.ANY, None, EventKind.REAPED),
}


class SelfAction(enum.Enum):
    """What the local node does about a claim concerning itself."""

    IGNORE = "ignore"
    REFUTE = "refute"  # raise own incarnation above the claim's and broadcast alive


SELF_RULES: dict[tuple[MemberState, Claim], tuple[Need, SelfAction]] = {
    # Someone remembers a newer incarnation of us (we restarted): take an even newer one.
    (A, Claim.ALIVE): (Need.NEWER, SelfAction.REFUTE),
    (A, Claim.SUSPECT): (Need.AT_LEAST, SelfAction.REFUTE),
    (A, Claim.DEAD): (Need.AT_LEAST, SelfAction.REFUTE),
    # A leave we did not announce (a previous life's, replayed or delayed): we are here.
    (A, Claim.LEFT): (Need.AT_LEAST, SelfAction.REFUTE),
    # Once we have left, we stay left and argue with nobody.
    (L, Claim.ALIVE): (Need.ANY, SelfAction.IGNORE),
    (L, Claim.SUSPECT): (Need.ANY, SelfAction.IGNORE),
    (L, Claim.DEAD): (Need.ANY, SelfAction.IGNORE),
    (L, Claim.LEFT): (Need.ANY, SelfAction.IGNORE),
}


def _holds(need: Need, claimed: int, known: int | None) -> bool:
    if need is Need.ANY or known is None:
        return True
    if need is Need.NEWER:
        return claimed > known
    return claimed >= known


def decide(
    current: MemberState | None, known_inc: int | None, claim: Claim, inc: int
) -> Rule | None:
    """The rule to apply to a member in ``current`` (``None`` = unknown), or ``None`` to ignore."""
    rule = TRANSITIONS[(current, claim)]
    if rule is None or not _holds(rule.need, inc, known_inc):
        return None
    return rule


def decide_self(current: MemberState, own_inc: int, claim: Claim, inc: int) -> SelfAction:
    """What the local node in ``current`` does about ``claim`` at ``inc`` concerning itself."""
    entry = SELF_RULES.get((current, claim))
    if entry is None:
        return SelfAction.IGNORE
    need, action = entry
    return action if _holds(need, inc, own_inc) else SelfAction.IGNORE
