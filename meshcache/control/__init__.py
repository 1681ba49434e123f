"""The config plane: the ring and namespace policies, committed through a small Raft group.

* :mod:`~meshcache.control.config` — the immutable :class:`ClusterConfig` snapshot and the pure
  compare-and-set commands (:func:`apply`).
* :mod:`~meshcache.control.raft` — the pysyncobj state machine and voter.
* :mod:`~meshcache.control.bridge` — :class:`ConfigPlane`, the voter as trio uses it.
* :mod:`~meshcache.control.pull` — how nodes outside the Raft group learn newer configs.
"""

from __future__ import annotations

from meshcache.control.bridge import DEFAULT_TIMEOUT, ConfigPlane, RaftStatus
from meshcache.control.config import (
    DEFAULT_NAMESPACE,
    ClusterConfig,
    Command,
    CreateNamespace,
    DropNamespace,
    PutMember,
    RemoveMember,
    SetMemberState,
    UpdateNamespace,
    apply,
    check_proposal,
    command_from_mapping,
    command_to_mapping,
)
from meshcache.control.member import TRANSITIONS
from meshcache.control.pull import ConfigPull, PullRequest, check_newer
from meshcache.control.raft import RaftSettings, RaftStartError
from meshcache.errors import (
    ControlError,
    InvalidCommandError,
    InvalidTransitionError,
    NamespaceExistsError,
    NoQuorumError,
    NoSuchMemberError,
    NotAVoterError,
    NoVotersError,
    ProposalTimeoutError,
    StaleConfigError,
    VersionConflictError,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_TIMEOUT",
    "TRANSITIONS",
    "ClusterConfig",
    "Command",
    "ConfigPlane",
    "ConfigPull",
    "ControlError",
    "CreateNamespace",
    "DropNamespace",
    "InvalidCommandError",
    "InvalidTransitionError",
    "NamespaceExistsError",
    "NoQuorumError",
    "NoSuchMemberError",
    "NoVotersError",
    "NotAVoterError",
    "ProposalTimeoutError",
    "PullRequest",
    "PutMember",
    "RaftSettings",
    "RaftStartError",
    "RaftStatus",
    "RemoveMember",
    "SetMemberState",
    "StaleConfigError",
    "UpdateNamespace",
    "VersionConflictError",
    "apply",
    "check_newer",
    "check_proposal",
    "command_from_mapping",
    "command_to_mapping",
]
