"""Ring members: who is on the ring, where, with how much weight and in which hand-off state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from meshcache.errors import ConfigError


class RingState(StrEnum):
    """A member's ownership state on the ring (its liveness is gossip's ``MemberState``).

    The values are the strings the config carries on the wire, in Raft and in TOML; a
    ``RingState`` compares equal to its string.

    * ``JOINING``: on the ring but not yet a read owner; it receives writes and hand-off
      streams for the ranges it is about to own.
    * ``ACTIVE``: a full owner.
    * ``LEAVING``: still a read owner (it holds the data) while its ranges stream to their next
      owners; gone from the ring once the hand-off completes.
    """

    JOINING = "joining"
    ACTIVE = "active"
    LEAVING = "leaving"


RING_STATES: tuple[RingState, ...] = tuple(RingState)
MAX_WEIGHT = 1000
MAX_ID_CHARS = 255


@dataclass(frozen=True, slots=True)
class RingMember:
    """One node on the ring.

    ``address`` is the node's data address (``"host:port"``); ``weight`` scales its number of
    virtual nodes (weight 0 keeps it on the ring owning nothing). ``state`` may be given as
    its string; it is stored as a :class:`RingState`.

    Raises:
        ConfigError: a field is empty, out of range or of the wrong type.
    """

    node_id: str
    address: str
    zone: str = ""
    weight: int = 1
    state: RingState = RingState.ACTIVE

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not 0 < len(self.node_id) <= MAX_ID_CHARS:
            raise ConfigError(f"ring member id must be 1..{MAX_ID_CHARS} characters")
        if not isinstance(self.address, str) or not self.address:
            raise ConfigError(f"ring member {self.node_id!r}: address must be a non-empty string")
        if not isinstance(self.zone, str):
            raise ConfigError(f"ring member {self.node_id!r}: zone must be a string")
        if (
            not isinstance(self.weight, int)
            or isinstance(self.weight, bool)
            or not 0 <= self.weight <= MAX_WEIGHT
        ):
            raise ConfigError(f"ring member {self.node_id!r}: weight must be 0..{MAX_WEIGHT}")
        try:
            object.__setattr__(self, "state", RingState(self.state))
        except ValueError:
            raise ConfigError(
                f"ring member {self.node_id!r}: unknown state {self.state!r}"
            ) from None

    def to_mapping(self) -> dict[str, object]:
        """A plain dict (msgpack- and JSON-able); :meth:`from_mapping` reads it back."""
        return {
            "node_id": self.node_id,
            "address": self.address,
            "zone": self.zone,
            "weight": self.weight,
            "state": self.state.value,
        }

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> RingMember:
        """Rebuild a member from :meth:`to_mapping` output.

        Raises:
            ConfigError: a field is missing, unknown or invalid.
        """
        if not isinstance(data, Mapping):
            raise ConfigError("ring member must be a mapping")
        unknown = set(data) - {"node_id", "address", "zone", "weight", "state"}
        if unknown:
            raise ConfigError(f"ring member has unknown fields {sorted(map(str, unknown))}")
        try:
            return cls(
                node_id=cast(str, data["node_id"]),
                address=cast(str, data["address"]),
                zone=cast(str, data.get("zone", "")),
                weight=cast(int, data.get("weight", 1)),
                state=cast(RingState, data.get("state", RingState.ACTIVE)),
            )
        except KeyError as exc:
            raise ConfigError(f"ring member lacks field {exc.args[0]!r}") from None
