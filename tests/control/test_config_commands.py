"""Pure tests of the config snapshot and its compare-and-set commands (no Raft)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.control.config import (
    ClusterConfig,
    Command,
    CreateNamespace,
    DropNamespace,
    PutMember,
    RemoveMember,
    SetMemberState,
    UpdateNamespace,
    apply,
    command_from_mapping,
    command_to_mapping,
)
from meshcache.errors import (
    CommandError,
    ErrorCode,
    InvalidCommandError,
    InvalidTransitionError,
    MeshcacheError,
    NamespaceExistsError,
    NoSuchMemberError,
    NoSuchNamespaceError,
    VersionConflictError,
)
from meshcache.ring.member import RingMember, RingState
from meshcache.store.policy import NamespacePolicy


def member(
    node_id: str = "a", port: int = 7400, state: RingState = RingState.JOINING
) -> RingMember:
    return RingMember(node_id=node_id, address=f"127.0.0.1:{port}", zone="z1", state=state)


def roundtrip(command: Command) -> Command:
    """Every command goes through msgpack in production; so do they here."""
    packed = msgpack.packb(command_to_mapping(command), use_bin_type=True)
    return command_from_mapping(msgpack.unpackb(packed, raw=False))


def test_initial_config_holds_only_the_default_namespace() -> None:
    config = ClusterConfig()
    assert config.version == 0
    assert config.members == ()
    assert dict(config.namespaces) == {"default": NamespacePolicy()}


def test_every_command_applies_and_bumps_the_version_by_one() -> None:
    config = ClusterConfig()
    steps: list[Command] = [
        PutMember(0, member("a", 7400)),
        PutMember(1, member("b", 7401)),
        SetMemberState(2, "a", RingState.ACTIVE),
        CreateNamespace(3, "users", NamespacePolicy(eviction="lfu", max_bytes=1 << 20)),
        UpdateNamespace(4, "users", {"default_ttl": 30.0, "max_bytes": None}),
        SetMemberState(5, "a", RingState.LEAVING),
        RemoveMember(6, "a"),
        DropNamespace(7, "users"),
        PutMember(8, member("b", 7402)),
    ]
    for step in steps:
        new = apply(config, roundtrip(step))
        assert new.version == config.version + 1
        config = new
    assert [m.node_id for m in config.members] == ["b"]
    assert config.members[0].address == "127.0.0.1:7402"
    assert set(config.namespaces) == {"default"}


def test_update_namespace_changes_only_the_named_fields() -> None:
    config = apply(ClusterConfig(), CreateNamespace(0, "s", NamespacePolicy(max_items=10)))
    config = apply(config, UpdateNamespace(1, "s", {"eviction": "ttl"}))
    assert config.namespaces["s"] == NamespacePolicy(eviction="ttl", max_items=10)


def test_config_survives_msgpack_roundtrip() -> None:
    config = ClusterConfig()
    config = apply(config, PutMember(0, member("a")))
    config = apply(config, CreateNamespace(1, "n", NamespacePolicy(default_ttl=5.0, replicas=3)))
    packed = msgpack.packb(config.to_mapping(), use_bin_type=True)
    again = ClusterConfig.from_mapping(msgpack.unpackb(packed, raw=False))
    assert again == config
    assert again.to_mapping() == config.to_mapping()


# --- bad input: a clear error, nothing changed ---------------------------------------------


def _base() -> ClusterConfig:
    config = apply(ClusterConfig(), PutMember(0, member("a", 7400)))
    return apply(config, CreateNamespace(1, "users"))


BAD_COMMANDS: list[tuple[dict[str, Any], type[MeshcacheError], str]] = [
    (
        {
            "op": "create_namespace",
            "expected_version": 2,
            "name": "x",
            "policy": {"eviction": "fifo"},
        },
        InvalidCommandError,
        "unknown eviction policy 'fifo'",
    ),
    (
        {"op": "create_namespace", "expected_version": 2, "name": "x", "policy": {"max_bytes": -1}},
        InvalidCommandError,
        "max_bytes must be >= 1",
    ),
    (
        {"op": "create_namespace", "expected_version": 2, "name": "x", "policy": {"replicas": 0}},
        InvalidCommandError,
        "replicas must be an integer >= 1",
    ),
    (
        {
            "op": "update_namespace",
            "expected_version": 2,
            "name": "users",
            "changes": {"replicas": 0},
        },
        InvalidCommandError,
        "replicas",
    ),
    (
        {
            "op": "update_namespace",
            "expected_version": 2,
            "name": "users",
            "changes": {"colour": 1},
        },
        InvalidCommandError,
        "unknown namespace policy field(s): colour",
    ),
    (
        {
            "op": "update_namespace",
            "expected_version": 2,
            "name": "nope",
            "changes": {"replicas": 3},
        },
        NoSuchNamespaceError,
        "no namespace 'nope'",
    ),
    ({"op": "drop_namespace", "expected_version": 2, "name": "nope"}, NoSuchNamespaceError, "nope"),
    (
        {"op": "drop_namespace", "expected_version": 2, "name": "default"},
        InvalidCommandError,
        "cannot",
    ),
    (
        {"op": "create_namespace", "expected_version": 2, "name": "users"},
        NamespaceExistsError,
        "exists",
    ),
    (
        {"op": "create_namespace", "expected_version": 2, "name": ""},
        InvalidCommandError,
        "namespace name",
    ),
    (
        {"op": "set_member_state", "expected_version": 2, "node_id": "zz", "state": "active"},
        NoSuchMemberError,
        "zz",
    ),
    (
        {"op": "set_member_state", "expected_version": 2, "node_id": "a", "state": "gone"},
        InvalidCommandError,
        "unknown member state",
    ),
    (
        {"op": "set_member_state", "expected_version": 2, "node_id": "a", "state": "joining"},
        InvalidTransitionError,
        "cannot go from joining to joining",
    ),
    ({"op": "remove_member", "expected_version": 2, "node_id": "zz"}, NoSuchMemberError, "zz"),
    (
        {
            "op": "put_member",
            "expected_version": 2,
            "member": {"node_id": "b", "address": "nowhere"},
        },
        InvalidCommandError,
        "host:port",
    ),
    (
        {
            "op": "put_member",
            "expected_version": 2,
            "member": {"node_id": "b", "address": "127.0.0.1:7400"},
        },
        InvalidCommandError,
        "already used by ring member 'a'",
    ),
    (
        {
            "op": "put_member",
            "expected_version": 2,
            "member": {"node_id": "b", "address": "127.0.0.1:1", "weight": -2},
        },
        InvalidCommandError,
        "weight",
    ),
    ({"op": "put_member", "expected_version": 2, "member": "b"}, InvalidCommandError, "mapping"),
    (
        {"op": "explode", "expected_version": 2},
        InvalidCommandError,
        "unknown config command 'explode'",
    ),
    ({"op": "drop_namespace", "expected_version": 2}, InvalidCommandError, "missing field(s) name"),
    (
        {"op": "drop_namespace", "expected_version": 2, "name": "users", "x": 1},
        InvalidCommandError,
        "unknown field(s) x",
    ),
    (
        {"op": "drop_namespace", "expected_version": -1, "name": "users"},
        InvalidCommandError,
        "expected_version",
    ),
    (
        {"op": "drop_namespace", "expected_version": "2", "name": "users"},
        InvalidCommandError,
        "expected_version",
    ),
    (
        {"op": "drop_namespace", "expected_version": 1, "name": "users"},
        VersionConflictError,
        "based on version 1",
    ),
]


@pytest.mark.parametrize(("mapping", "error", "text"), BAD_COMMANDS)
def test_bad_command_gets_a_clear_error_and_changes_nothing(
    mapping: dict[str, Any], error: type[MeshcacheError], text: str
) -> None:
    config = _base()
    before = config.to_mapping()
    with pytest.raises(error) as info:
        apply(config, command_from_mapping(mapping))
    assert text in str(info.value)
    assert config.to_mapping() == before


def test_an_invalid_command_is_refused_with_its_code() -> None:
    with pytest.raises(InvalidCommandError) as info:
        CreateNamespace(0, "x", NamespacePolicy(eviction="fifo"))  # type: ignore[arg-type]
    assert isinstance(info.value, CommandError) and info.value.code is ErrorCode.INVALID_COMMAND
    assert "fifo" in info.value.message


# --- compare-and-set -------------------------------------------------------------------------


def test_two_changes_based_on_the_same_version_exactly_one_applies() -> None:
    base = _base()
    first = UpdateNamespace(base.version, "users", {"max_items": 1})
    second = UpdateNamespace(base.version, "users", {"max_items": 2})
    applied = apply(base, first)
    with pytest.raises(VersionConflictError) as info:
        apply(applied, second)
    assert (info.value.expected, info.value.actual) == (base.version, base.version + 1)
    assert applied.namespaces["users"].max_items == 1


def test_a_late_commit_of_an_old_command_cannot_clobber_a_newer_change() -> None:
    base = _base()
    stale = DropNamespace(base.version, "users")
    newer = apply(base, UpdateNamespace(base.version, "users", {"replicas": 3}))
    with pytest.raises(VersionConflictError):
        apply(newer, stale)


# --- random sequences ------------------------------------------------------------------------

NODE_IDS = ["a", "b", "c"]
NAMES = ["default", "users", "sessions"]
policies = st.builds(
    NamespacePolicy,
    eviction=st.sampled_from(["lru", "lfu", "ttl", "none"]),
    max_bytes=st.none() | st.integers(0, 1 << 30),
    replicas=st.integers(1, 5),
)
command_maps = st.one_of(
    st.fixed_dictionaries(
        {
            "op": st.just("put_member"),
            "member": st.fixed_dictionaries(
                {
                    "node_id": st.sampled_from(NODE_IDS),
                    "address": st.sampled_from(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]),
                    "state": st.sampled_from(["joining", "active", "leaving"]),
                }
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "op": st.just("set_member_state"),
            "node_id": st.sampled_from(NODE_IDS),
            "state": st.sampled_from(["joining", "active", "leaving"]),
        }
    ),
    st.fixed_dictionaries({"op": st.just("remove_member"), "node_id": st.sampled_from(NODE_IDS)}),
    st.fixed_dictionaries(
        {
            "op": st.just("create_namespace"),
            "name": st.sampled_from(NAMES),
            "policy": policies.map(NamespacePolicy.to_mapping),
        }
    ),
    st.fixed_dictionaries(
        {
            "op": st.just("update_namespace"),
            "name": st.sampled_from(NAMES),
            "changes": st.fixed_dictionaries({"replicas": st.integers(-1, 4)}),
        }
    ),
    st.fixed_dictionaries({"op": st.just("drop_namespace"), "name": st.sampled_from(NAMES)}),
)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(command_maps, st.integers(-1, 1)), max_size=30))
def test_random_command_sequences_keep_the_invariants(
    steps: list[tuple[dict[str, Any], int]],
) -> None:
    config = ClusterConfig()
    for mapping, skew in steps:
        # skew 0: based on the current version; ±1: stale or from the future.
        mapping = {**mapping, "expected_version": max(0, config.version + skew)}
        try:
            new = apply(config, command_from_mapping(mapping))
        except MeshcacheError:
            continue
        assert mapping["expected_version"] == config.version
        assert new.version == config.version + 1
        config = new
        assert "default" in config.namespaces
        ids = [m.node_id for m in config.members]
        assert ids == sorted(set(ids))
        assert len({m.address for m in config.members}) == len(ids)
        assert ClusterConfig.from_mapping(config.to_mapping()) == config
