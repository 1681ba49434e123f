"""The namespace name rule has one home (meshcache/wire/names.py) and the config plane applies
it when a namespace is created, and only then."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from meshcache import Client
from meshcache.control.config import (
    ClusterConfig,
    CreateNamespace,
    DropNamespace,
    UpdateNamespace,
    apply,
    check_proposal,
    command_from_mapping,
)
from meshcache.errors import InvalidCommandError
from meshcache.ring import RingState
from meshcache.store.policy import DEFAULT_POLICY, NamespacePolicy
from meshcache.testing.mesh import wait_for
from meshcache.testing.nodes import NodeProcess
from meshcache.wire.names import NAMESPACE_NAME_RE, NAMESPACE_NAME_RULE, is_namespace_name

GOOD = ["sessions", "a", "user.v2", "tenant:42", "x-y_z", "n" * 64]
BAD = ["", "bad name!", "n" * 65, "caf\u00e9", "a/b", "x\n", "\u0661"]


def test_the_rule_is_importable_without_the_store() -> None:
    code = (
        "import sys, meshcache.wire.names; "
        "sys.exit(any(m.startswith('meshcache.store') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("name", GOOD)
def test_names_that_follow_the_rule(name: str) -> None:
    assert is_namespace_name(name) and NAMESPACE_NAME_RE.fullmatch(name)
    assert CreateNamespace(0, name).name == name


@pytest.mark.parametrize("name", [*BAD, 5, None])
def test_proposing_a_namespace_with_another_name_is_an_invalid_command(name: object) -> None:
    assert not is_namespace_name(name)
    with pytest.raises(InvalidCommandError):
        check_proposal(
            command_from_mapping({"op": "create_namespace", "expected_version": 0, "name": name})
        )


@pytest.mark.parametrize("name", [n for n in BAD if n])
def test_a_committed_create_with_another_name_still_replays(name: str) -> None:
    """The rule holds for new proposals; a Raft log written before it must replay alike."""
    with pytest.raises(InvalidCommandError, match=NAMESPACE_NAME_RULE):
        check_proposal(CreateNamespace(0, name))
    config = apply(ClusterConfig(), CreateNamespace(0, name))
    assert name in config.namespaces


def test_a_namespace_named_otherwise_can_still_be_changed_and_dropped() -> None:
    config = ClusterConfig(namespaces={"default": DEFAULT_POLICY, "old name": DEFAULT_POLICY})
    assert ClusterConfig.from_mapping(config.to_mapping()) == config
    changed = apply(config, UpdateNamespace(0, "old name", {"max_items": 10}))
    assert changed.namespaces["old name"] == NamespacePolicy(max_items=10)
    dropped = apply(changed, DropNamespace(1, "old name"))
    assert "old name" not in dropped.namespaces


@pytest.fixture(scope="module")
def voter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with NodeProcess(tmp_path_factory.mktemp("names"), "--profile", "local", "--bootstrap") as n:

        def active() -> bool:
            with Client(n.data, smart=False) as client:
                members = client.ring()["members"]
            return len(members) == 1 and members[0]["state"] == RingState.ACTIVE

        wait_for(active, 30, "the voter active on its ring")
        yield n


@pytest.mark.slow
def test_a_node_refuses_to_create_a_namespace_with_another_name(voter: NodeProcess) -> None:
    with Client(voter.data, smart=False, timeout=15) as client:
        version = client.config()["version"]
        for name in ("bad name!", "caf\u00e9", "n" * 65):
            with pytest.raises(InvalidCommandError, match="is not 1 to 64 characters"):
                client.ns_set(name, {"max_items": 5})
            with pytest.raises(InvalidCommandError, match="is not 1 to 64 characters"):
                client.config_propose(
                    {"op": "create_namespace", "expected_version": version, "name": name}
                )
        assert client.config()["version"] == version  # nothing was committed
        assert client.ns_set("good.name:1", {"max_items": 5})["max_items"] == 5
        assert "good.name:1" in client.ns_list()
