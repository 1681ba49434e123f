"""Namespace incarnations in the committed config: recorded by creation, gone with the drop."""

from __future__ import annotations

import pytest

from meshcache.control.config import (
    UNKNOWN_INCARNATION,
    ClusterConfig,
    CreateNamespace,
    DropNamespace,
    Incarnation,
    UpdateNamespace,
    apply,
    command_from_mapping,
    command_to_mapping,
)
from meshcache.errors import ConfigError, InvalidCommandError
from meshcache.store.policy import NamespacePolicy


def test_a_created_namespace_records_the_version_that_created_it_and_its_floor() -> None:
    config = apply(ClusterConfig(version=4), CreateNamespace(4, "sessions", floor=99))
    assert config.incarnation("sessions") == Incarnation(created=5, floor=99)
    assert config.incarnation("default") == UNKNOWN_INCARNATION


def test_an_update_keeps_the_incarnation_and_a_re_creation_makes_a_new_one() -> None:
    config = apply(ClusterConfig(version=1), CreateNamespace(1, "s", floor=10))
    config = apply(config, UpdateNamespace(2, "s", {"max_items": 5}))
    assert config.incarnation("s") == Incarnation(2, 10)
    config = apply(config, DropNamespace(3, "s"))
    assert "s" not in config.incarnations
    config = apply(config, CreateNamespace(4, "s", NamespacePolicy(max_items=5), floor=20))
    # The same name and policy as before: only the incarnation tells the two apart.
    assert config.incarnation("s") == Incarnation(5, 20)


def test_incarnations_travel_in_the_config_mapping() -> None:
    config = apply(ClusterConfig(version=1), CreateNamespace(1, "s", floor=7))
    mapping = config.to_mapping()
    assert mapping["incarnations"] == {"s": {"created": 2, "floor": 7}}
    assert ClusterConfig.from_mapping(mapping) == config


def test_a_config_committed_without_incarnations_reads_as_unknown_ones() -> None:
    legacy = {"version": 3, "members": [], "namespaces": {"default": {}, "s": {}}}
    config = ClusterConfig.from_mapping(legacy)
    assert config.incarnations == {}
    assert config.incarnation("s") == UNKNOWN_INCARNATION
    assert config.to_mapping() == {**legacy, "namespaces": config.to_mapping()["namespaces"]}
    assert "incarnations" not in config.to_mapping()


def test_a_create_command_without_a_floor_still_applies() -> None:
    mapping = command_to_mapping(CreateNamespace(0, "s"))
    del mapping["floor"]
    command = command_from_mapping(mapping)
    assert apply(ClusterConfig(), command).incarnation("s") == Incarnation(1, 0)


def test_bad_incarnations_are_refused() -> None:
    with pytest.raises(ConfigError):
        ClusterConfig.from_mapping(
            {"namespaces": {"default": {}}, "incarnations": {"gone": {"created": 1}}}
        )
    with pytest.raises(ConfigError):
        ClusterConfig.from_mapping(
            {"namespaces": {"default": {}, "s": {}}, "incarnations": {"s": {"created": -1}}}
        )
    with pytest.raises(InvalidCommandError):
        CreateNamespace(0, "s", floor=-1)
