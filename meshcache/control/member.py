"""What the config plane adds to :class:`meshcache.ring.member.RingMember`.

The ring owns the member type; the config plane owns the rules for changing members: the one
table of allowed state changes (:data:`TRANSITIONS`) and the checks a member must pass before
it may be committed (:func:`checked_member`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshcache.errors import ConfigError, InvalidCommandError
from meshcache.ring.member import RING_STATES, RingMember, RingState
from meshcache.settings import parse_address

#: Every allowed state change of a ring member, and nothing else. ``joining → leaving`` aborts a
#: join; ``leaving → active`` cancels a drain. Removal is allowed from any state (an operator
#: must be able to remove a dead node whatever it was doing), so it is not in this table.
TRANSITIONS: Mapping[RingState, frozenset[RingState]] = {
    RingState.JOINING: frozenset({RingState.ACTIVE, RingState.LEAVING}),
    RingState.ACTIVE: frozenset({RingState.LEAVING}),
    RingState.LEAVING: frozenset({RingState.ACTIVE}),
}

MAX_TEXT_BYTES = 255


def check_text(name: str, value: object) -> str:
    """Return ``value`` if it is 1 to 255 bytes of text; raise InvalidCommandError otherwise."""
    if (
        not isinstance(value, str)
        or not value
        or len(value.encode("utf-8", "replace")) > MAX_TEXT_BYTES
    ):
        raise InvalidCommandError(
            message=f"{name} {value!r} must be 1 to {MAX_TEXT_BYTES} bytes of text"
        )
    return value


def checked_member(member: RingMember | Mapping[str, Any]) -> RingMember:
    """``member`` (or the member a mapping describes) if it may be committed.

    Beyond the ring's own checks, the id must be 1 to 255 bytes of text and the address a
    ``host:port``.

    Raises:
        InvalidCommandError: the member is malformed or invalid.
    """
    try:
        if not isinstance(member, RingMember):
            member = RingMember.from_mapping(member)
        check_text("ring member id", member.node_id)
        parse_address(member.address, f"ring member {member.node_id!r} address")
    except ConfigError as exc:
        raise InvalidCommandError(message=str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise InvalidCommandError(message=f"bad ring member: {exc}") from None
    return member


__all__ = [
    "RING_STATES",
    "TRANSITIONS",
    "RingMember",
    "RingState",
    "check_text",
    "checked_member",
]
