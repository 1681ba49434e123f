"""The cluster configuration snapshot and the pure commands that change it.

:class:`ClusterConfig` is immutable: a committed change produces a new snapshot whose
``version`` is exactly one more. :func:`apply` is the only way to produce one from another; it is
pure (no clock, no I/O), so every Raft voter that applies the same commands in the same order
holds equal snapshots.

Every command carries ``expected_version``, the version it was based on. :func:`apply` refuses a
command whose ``expected_version`` is not the current version with
:class:`~meshcache.errors.VersionConflictError`: a command that timed out and commits
late cannot overwrite a newer change, and of two commands based on the same version exactly one
applies.

Commands travel through Raft and over TCP as plain maps (:func:`command_to_mapping` /
:func:`command_from_mapping`), ``{"op": "put_member", "expected_version": 3, ...}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias

from meshcache.control.member import (
    RING_STATES,
    TRANSITIONS,
    RingMember,
    RingState,
    check_text,
    checked_member,
)
from meshcache.errors import (
    ConfigError,
    InvalidCommandError,
    InvalidTransitionError,
    NamespaceExistsError,
    NoSuchMemberError,
    NoSuchNamespaceError,
    VersionConflictError,
)
from meshcache.store.policy import DEFAULT_POLICY, NamespacePolicy
from meshcache.wire.names import NAMESPACE_NAME_RULE, is_namespace_name

DEFAULT_NAMESPACE = "default"
_POLICY_FIELDS = frozenset(f.name for f in dataclasses.fields(NamespacePolicy))


def _frozen_namespaces(
    namespaces: Mapping[str, NamespacePolicy],
) -> Mapping[str, NamespacePolicy]:
    # Sorted so two equal configs also iterate (and serialize) in the same order.
    return MappingProxyType(dict(sorted(namespaces.items())))


@dataclass(frozen=True, slots=True)
class Incarnation:
    """Which life of a namespace name a config holds.

    A namespace dropped and created again under the same name is another incarnation: none of
    the earlier one's keys belong to it. Data moves between nodes as records that carry only a
    version, so an incarnation is told apart two ways: by ``created`` where configs are
    compared, and by ``floor`` where records are.

    Attributes:
        created: the config version whose command created the namespace; 0 when unknown (the
            ``default`` namespace, namespaces of a config committed without incarnations).
        floor: the greatest version an earlier incarnation may have written (the proposer's
            clock when it proposed the creation): a record at or below it belongs to an
            earlier incarnation and is discarded. 0: no floor.
    """

    created: int = 0
    floor: int = 0

    def __post_init__(self) -> None:
        for name in ("created", "floor"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value < 2**64:
                raise ConfigError(f"incarnation {name} must be an integer >= 0, got {value!r}")

    def to_mapping(self) -> dict[str, int]:
        return {"created": self.created, "floor": self.floor}

    @classmethod
    def from_mapping(cls, mapping: object) -> Incarnation:
        if not isinstance(mapping, Mapping) or set(mapping) - {"created", "floor"}:
            raise ConfigError(f"an incarnation is a map of created and floor, not {mapping!r}")
        return cls(created=mapping.get("created", 0), floor=mapping.get("floor", 0))


UNKNOWN_INCARNATION = Incarnation()


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """One committed configuration of the cluster.

    Attributes:
        version: 0 for the initial config, +1 per committed change.
        members: the ring members, sorted by ``node_id``; ids and addresses are unique.
        namespaces: name → policy, sorted by name; always holds ``"default"``.
        incarnations: name → :class:`Incarnation` of the namespaces created by a command
            that recorded it; a namespace absent here is :data:`UNKNOWN_INCARNATION`.
    """

    version: int = 0
    members: tuple[RingMember, ...] = ()
    namespaces: Mapping[str, NamespacePolicy] = field(
        default_factory=lambda: _frozen_namespaces({DEFAULT_NAMESPACE: DEFAULT_POLICY}),
        hash=False,
    )
    incarnations: Mapping[str, Incarnation] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    def __post_init__(self) -> None:
        if type(self.version) is not int or self.version < 0:
            raise ConfigError(f"config version must be an integer >= 0, got {self.version!r}")
        members = tuple(sorted(self.members, key=lambda m: m.node_id))
        ids = [m.node_id for m in members]
        if len(set(ids)) != len(ids):
            raise ConfigError("config lists a ring member twice")
        addresses = [m.address for m in members]
        if len(set(addresses)) != len(addresses):
            raise ConfigError("config lists two ring members with the same address")
        if DEFAULT_NAMESPACE not in self.namespaces:
            raise ConfigError(f"config lacks the {DEFAULT_NAMESPACE!r} namespace")
        stray = sorted(set(self.incarnations) - set(self.namespaces))
        if stray:
            raise ConfigError(f"config holds incarnations of no namespace: {', '.join(stray)}")
        incarnations = {
            name: inc
            for name, inc in sorted(self.incarnations.items())
            if inc != UNKNOWN_INCARNATION
        }
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "namespaces", _frozen_namespaces(self.namespaces))
        object.__setattr__(self, "incarnations", MappingProxyType(incarnations))

    def incarnation(self, name: str) -> Incarnation:
        """Namespace ``name``'s incarnation (:data:`UNKNOWN_INCARNATION` when not recorded)."""
        return self.incarnations.get(name, UNKNOWN_INCARNATION)

    def member(self, node_id: str) -> RingMember | None:
        """The member with ``node_id``, or None."""
        for member in self.members:
            if member.node_id == node_id:
                return member
        return None

    def to_mapping(self) -> dict[str, Any]:
        """The config as plain msgpack-able data; :meth:`from_mapping` reads it back equal."""
        out: dict[str, Any] = {
            "version": self.version,
            "members": [m.to_mapping() for m in self.members],
            "namespaces": {name: p.to_mapping() for name, p in self.namespaces.items()},
        }
        if self.incarnations:
            out["incarnations"] = {
                name: inc.to_mapping() for name, inc in self.incarnations.items()
            }
        return out

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ClusterConfig:
        """Build and validate a config from :meth:`to_mapping`'s output.

        Raises:
            ConfigError: the mapping is malformed or breaks an invariant (the subclass
                InvalidCommandError when a member or policy inside it is invalid).
        """
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"a cluster config must be a map, not {type(mapping).__name__}")
        unknown = sorted(
            map(str, set(mapping) - {"version", "members", "namespaces", "incarnations"})
        )
        if unknown:
            raise ConfigError(f"unknown cluster config field(s): {', '.join(unknown)}")
        members = mapping.get("members", [])
        namespaces = mapping.get("namespaces", {})
        if not isinstance(members, list | tuple):
            raise ConfigError("cluster config 'members' must be a list")
        if not isinstance(namespaces, Mapping):
            raise ConfigError("cluster config 'namespaces' must be a map")
        incarnations = mapping.get("incarnations", {})
        if not isinstance(incarnations, Mapping):
            raise ConfigError("cluster config 'incarnations' must be a map")
        policies: dict[str, NamespacePolicy] = {}
        for name, policy in namespaces.items():
            check_text("namespace name", name)
            policies[name] = _policy_from_mapping(name, policy)
        return cls(
            version=mapping.get("version", 0),
            members=tuple(checked_member(m) for m in members),
            namespaces=policies,
            incarnations={
                str(name): Incarnation.from_mapping(inc) for name, inc in incarnations.items()
            },
        )


# --- commands ----------------------------------------------------------------------------------


def _check_version(value: object) -> None:
    if type(value) is not int or value < 0:
        raise InvalidCommandError(
            message=f"expected_version must be an integer >= 0, got {value!r}"
        )


def _policy_from_mapping(name: str, mapping: object) -> NamespacePolicy:
    if isinstance(mapping, NamespacePolicy):
        policy = mapping
    elif isinstance(mapping, Mapping):
        try:
            policy = NamespacePolicy.from_mapping(mapping)
        except ConfigError as exc:
            raise InvalidCommandError(message=f"namespace {name!r}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise InvalidCommandError(message=f"namespace {name!r}: {exc}") from None
    else:
        raise InvalidCommandError(message=f"namespace {name!r}: a policy must be a map")
    try:
        return policy.validate()
    except ConfigError as exc:
        raise InvalidCommandError(message=f"namespace {name!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class PutMember:
    """Add ``member`` to the ring, or replace the member with the same ``node_id``."""

    op: ClassVar[str] = "put_member"
    expected_version: int
    member: RingMember

    def __post_init__(self) -> None:
        _check_version(self.expected_version)
        object.__setattr__(self, "member", checked_member(self.member))


@dataclass(frozen=True, slots=True)
class SetMemberState:
    """Move member ``node_id`` to ``state`` along :data:`~meshcache.control.member.TRANSITIONS`.

    ``state`` may be given as its string; it is stored as a :class:`RingState`.
    """

    op: ClassVar[str] = "set_member_state"
    expected_version: int
    node_id: str
    state: RingState

    def __post_init__(self) -> None:
        _check_version(self.expected_version)
        check_text("node_id", self.node_id)
        try:
            object.__setattr__(self, "state", RingState(self.state))
        except ValueError:
            raise InvalidCommandError(
                message=f"unknown member state {self.state!r} "
                f"(one of: {', '.join(sorted(RING_STATES))})"
            ) from None


@dataclass(frozen=True, slots=True)
class RemoveMember:
    """Take member ``node_id`` off the ring, whatever its state."""

    op: ClassVar[str] = "remove_member"
    expected_version: int
    node_id: str

    def __post_init__(self) -> None:
        _check_version(self.expected_version)
        check_text("node_id", self.node_id)


@dataclass(frozen=True, slots=True)
class CreateNamespace:
    """Create namespace ``name`` with ``policy``; refused if it exists.

    ``name`` must follow :data:`~meshcache.wire.names.NAMESPACE_NAME_RE` (else
    :class:`InvalidCommandError`). Only creation checks it: the other commands take any name
    a config holds, so a namespace named before the rule can still be changed or dropped.

    ``floor`` becomes the new incarnation's :attr:`Incarnation.floor`: the proposer's clock
    (a version), so that records an earlier incarnation of the name wrote are told apart.
    """

    op: ClassVar[str] = "create_namespace"
    expected_version: int
    name: str
    policy: NamespacePolicy = DEFAULT_POLICY
    floor: int = 0

    def __post_init__(self) -> None:
        _check_version(self.expected_version)
        check_text("namespace name", self.name)
        if type(self.floor) is not int or not 0 <= self.floor < 2**64:
            raise InvalidCommandError(message=f"floor must be a version, got {self.floor!r}")
        object.__setattr__(self, "policy", _policy_from_mapping(self.name, self.policy))


@dataclass(frozen=True, slots=True)
class UpdateNamespace:
    """Change some policy fields of existing namespace ``name``.

    ``changes`` maps policy field names to new values; a value of None clears an optional bound.
    """

    op: ClassVar[str] = "update_namespace"
    expected_version: int
    name: str
    changes: Mapping[str, Any] = field(hash=False)

    def __post_init__(self) -> None:
        _check_version(self.expected_version)
        check_text("namespace name", self.name)
        if not isinstance(self.changes, Mapping) or not self.changes:
            raise InvalidCommandError(message="update_namespace needs a non-empty map of changes")
        unknown = sorted(map(str, set(self.changes) - _POLICY_FIELDS))
        if unknown:
            raise InvalidCommandError(
                message=f"unknown namespace policy field(s): {', '.join(unknown)}"
                f" (known: {', '.join(sorted(_POLICY_FIELDS))})"
            )
        # Check the values on their own now, so a bad update fails before it reaches Raft.
        _policy_from_mapping(self.name, {**DEFAULT_POLICY.to_mapping(), **self.changes})
        object.__setattr__(self, "changes", MappingProxyType(dict(self.changes)))


@dataclass(frozen=True, slots=True)
class DropNamespace:
    """Delete namespace ``name``; ``default`` cannot be dropped."""

    op: ClassVar[str] = "drop_namespace"
    expected_version: int
    name: str

    def __post_init__(self) -> None:
        _check_version(self.expected_version)
        check_text("namespace name", self.name)
        if self.name == DEFAULT_NAMESPACE:
            raise InvalidCommandError(
                message=f"the {DEFAULT_NAMESPACE!r} namespace cannot be dropped"
            )


Command: TypeAlias = (
    PutMember | SetMemberState | RemoveMember | CreateNamespace | UpdateNamespace | DropNamespace
)
COMMANDS: Mapping[str, type[Command]] = MappingProxyType(
    {
        cls.op: cls
        for cls in (
            PutMember,
            SetMemberState,
            RemoveMember,
            CreateNamespace,
            UpdateNamespace,
            DropNamespace,
        )
    }
)


def check_proposal(command: Command) -> None:
    """Rules a *new* proposal must meet beyond its command's own checks.

    Committed commands are not held to them: a Raft log written before a rule existed must
    replay on every voter to the same config.

    Raises:
        InvalidCommandError: a namespace is created with a name outside the naming rule.
    """
    if isinstance(command, CreateNamespace) and not is_namespace_name(command.name):
        raise InvalidCommandError(
            message=f"namespace name {command.name!r} is not {NAMESPACE_NAME_RULE}"
        )


def command_to_mapping(command: Command) -> dict[str, Any]:
    """The command as a plain msgpack-able map with an ``"op"`` key."""
    out: dict[str, Any] = {"op": command.op}
    for f in dataclasses.fields(command):
        value = getattr(command, f.name)
        if isinstance(value, RingMember | NamespacePolicy):
            value = value.to_mapping()
        elif isinstance(value, RingState):
            value = value.value
        elif isinstance(value, Mapping):
            value = dict(value)
        out[f.name] = value
    return out


def command_from_mapping(mapping: Mapping[str, Any]) -> Command:
    """Build and validate a command from a map; raise InvalidCommandError when it is bad."""
    if not isinstance(mapping, Mapping):
        raise InvalidCommandError(message=f"a command must be a map, not {type(mapping).__name__}")
    op = mapping.get("op")
    cls = COMMANDS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise InvalidCommandError(
            message=f"unknown config command {op!r} (one of: {', '.join(sorted(COMMANDS))})"
        )
    names = {f.name for f in dataclasses.fields(cls)}
    args = {k: v for k, v in mapping.items() if k != "op"}
    unknown = sorted(map(str, set(args) - names))
    if unknown:
        raise InvalidCommandError(message=f"{op}: unknown field(s) {', '.join(unknown)}")
    missing = sorted(
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in args
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise InvalidCommandError(message=f"{op}: missing field(s) {', '.join(missing)}")
    try:
        return cls(**args)
    except TypeError as exc:
        raise InvalidCommandError(message=f"{op}: {exc}") from None


# --- applying ----------------------------------------------------------------------------------


def apply(config: ClusterConfig, command: Command) -> ClusterConfig:
    """The config after ``command``, with ``version`` one more; ``config`` is not changed.

    Raises:
        VersionConflictError: ``command.expected_version`` is not ``config.version``.
        NoSuchMemberError, NoSuchNamespaceError: the command names something that is absent.
        NamespaceExistsError: ``create_namespace`` of a namespace that exists.
        InvalidTransitionError: a member state change the state table does not allow.
        InvalidCommandError: the change would break an invariant (duplicate address, bad policy).
    """
    if command.expected_version != config.version:
        raise VersionConflictError(expected=command.expected_version, actual=config.version)
    members = {m.node_id: m for m in config.members}
    namespaces = dict(config.namespaces)
    incarnations = dict(config.incarnations)
    if isinstance(command, PutMember):
        new = command.member
        for other in config.members:
            if other.address == new.address and other.node_id != new.node_id:
                raise InvalidCommandError(
                    message=f"address {new.address} is already used by ring member "
                    f"{other.node_id!r}"
                )
        members[new.node_id] = new
    elif isinstance(command, SetMemberState):
        old = _member(members, command.node_id)
        if command.state not in TRANSITIONS[old.state]:
            allowed = ", ".join(sorted(TRANSITIONS[old.state]))
            raise InvalidTransitionError(
                message=f"ring member {old.node_id!r} cannot go from {old.state} to {command.state}"
                f" (from {old.state} it may go to: {allowed})"
            )
        members[old.node_id] = dataclasses.replace(old, state=command.state)
    elif isinstance(command, RemoveMember):
        del members[_member(members, command.node_id).node_id]
    elif isinstance(command, CreateNamespace):
        if command.name in namespaces:
            raise NamespaceExistsError(message=f"namespace {command.name!r} already exists")
        namespaces[command.name] = command.policy
        incarnations[command.name] = Incarnation(config.version + 1, command.floor)
    elif isinstance(command, UpdateNamespace):
        policy = _namespace(namespaces, command.name)
        namespaces[command.name] = _policy_from_mapping(
            command.name, {**policy.to_mapping(), **command.changes}
        )
    elif isinstance(command, DropNamespace):
        _namespace(namespaces, command.name)
        del namespaces[command.name]
        incarnations.pop(command.name, None)
    else:  # pragma: no cover - the Command union is closed
        raise InvalidCommandError(message=f"unknown config command {command!r}")
    return ClusterConfig(
        version=config.version + 1,
        members=tuple(members.values()),
        namespaces=namespaces,
        incarnations=incarnations,
    )


def _member(members: Mapping[str, RingMember], node_id: str) -> RingMember:
    member = members.get(node_id)
    if member is None:
        raise NoSuchMemberError(message=f"no ring member {node_id!r}")
    return member


def _namespace(namespaces: Mapping[str, NamespacePolicy], name: str) -> NamespacePolicy:
    policy = namespaces.get(name)
    if policy is None:
        raise NoSuchNamespaceError(message=f"no namespace {name!r}")
    return policy


__all__ = [
    "COMMANDS",
    "DEFAULT_NAMESPACE",
    "UNKNOWN_INCARNATION",
    "ClusterConfig",
    "Command",
    "CreateNamespace",
    "DropNamespace",
    "Incarnation",
    "PutMember",
    "RemoveMember",
    "SetMemberState",
    "UpdateNamespace",
    "apply",
    "command_from_mapping",
    "command_to_mapping",
]
