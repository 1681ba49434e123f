"""Errors of the config plane.

Every class here is a :class:`~meshcache.errors.MeshcacheError`. Each carries a stable ``code``
(a short upper-case string) so the node can send it in an error frame and the CLI can print it;
the codes are not yet part of :class:`~meshcache.errors.ErrorCode` (see the report of the control
plane for the request to add them).

Two families, which callers must tell apart:

* The change was **refused** and will never apply: :class:`InvalidCommandError`,
  :class:`VersionConflictError`, :class:`NoSuchMemberError`, :class:`NamespaceExistsError`,
  :class:`InvalidTransitionError`, and :class:`~meshcache.errors.NoSuchNamespaceError`.
* The outcome is **unknown**: :class:`ProposalTimeoutError` and its subclass
  :class:`NoQuorumError`. The change may still commit later; because every command is
  compare-and-set on the version it was based on, it can then only apply on that version.
  Re-read the config before retrying.
"""

from __future__ import annotations

from typing import ClassVar

from meshcache.errors import ConfigError, MeshcacheError, MeshcacheTimeout


class ControlError(MeshcacheError):
    """Root of the config plane's own errors."""

    code: ClassVar[str] = "CONTROL"


class InvalidCommandError(ControlError, ConfigError):
    """The command is malformed or names an invalid value (policy, member, state, name).

    It is also a :class:`~meshcache.errors.ConfigError`, so the CLI prints it as one line and
    exits 2.
    """

    code: ClassVar[str] = "INVALID_COMMAND"


class VersionConflictError(ControlError):
    """The command was based on a config version that is no longer current.

    Attributes:
        expected: the version the command was based on.
        actual: the version it met when it was applied.
    """

    code: ClassVar[str] = "VERSION_CONFLICT"

    def __init__(self, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"config changed: the command was based on version {expected}, the config is at "
            f"version {actual}; re-read the config and retry"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (VersionConflictError, (self.expected, self.actual))


class NoSuchMemberError(ControlError):
    """The command names a ring member that does not exist."""

    code: ClassVar[str] = "NO_SUCH_MEMBER"


class NamespaceExistsError(ControlError):
    """``create_namespace`` named a namespace that already exists."""

    code: ClassVar[str] = "NAMESPACE_EXISTS"


class InvalidTransitionError(ControlError):
    """A member state change that the ring's state table does not allow."""

    code: ClassVar[str] = "INVALID_TRANSITION"


class NotAVoterError(ControlError):
    """This node is not a Raft voter; forward the change to a node that is."""

    code: ClassVar[str] = "NOT_A_VOTER"


class RaftStartError(ControlError, ConfigError):
    """The Raft voter could not start (port in use, bad peer list, unreadable journal)."""

    code: ClassVar[str] = "RAFT_START"


class ProposalTimeoutError(ControlError, MeshcacheTimeout):
    """The change was not confirmed in time; it may still commit later (on its base version)."""

    code: ClassVar[str] = "PROPOSAL_TIMEOUT"


class NoQuorumError(ProposalTimeoutError):
    """No majority of voters is reachable, so no change can commit now.

    Data reads and writes keep working; only configuration changes wait for a quorum.
    """

    code: ClassVar[str] = "NO_QUORUM"


class StaleConfigError(ControlError):
    """A pulled config is not newer than the one held (versions only go up)."""

    code: ClassVar[str] = "STALE_CONFIG"


__all__ = [
    "ControlError",
    "InvalidCommandError",
    "InvalidTransitionError",
    "NamespaceExistsError",
    "NoQuorumError",
    "NoSuchMemberError",
    "NotAVoterError",
    "ProposalTimeoutError",
    "RaftStartError",
    "StaleConfigError",
    "VersionConflictError",
]
