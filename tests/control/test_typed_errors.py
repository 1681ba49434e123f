"""Config-plane refusals are CommandErrors with an ErrorCode, raised by type on both sides.

The node sends a refusal as an error frame (code + message); the Python client raises the class
registered for the code, so ``except meshcache.errors.VersionConflictError`` works in user code,
whether the node that answered is a voter or forwarded the change to one.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from meshcache import Client
from meshcache.errors import (
    CommandError,
    ControlError,
    ErrorCode,
    InvalidCommandError,
    MeshcacheTimeout,
    NamespaceExistsError,
    NoQuorumError,
    NoSuchMemberError,
    ProposalTimeoutError,
    VersionConflictError,
)
from meshcache.ring import RingState
from meshcache.testing.nodes import NodeProcess
from tests.mesh.helpers import wait_for


def test_a_code_from_the_wire_builds_its_class() -> None:
    for code, cls in [
        ("VERSION_CONFLICT", VersionConflictError),
        ("INVALID_COMMAND", InvalidCommandError),
        ("NO_SUCH_MEMBER", NoSuchMemberError),
        ("NAMESPACE_EXISTS", NamespaceExistsError),
        ("PROPOSAL_TIMEOUT", ProposalTimeoutError),
        ("NO_QUORUM", NoQuorumError),
        ("CONTROL", ControlError),
    ]:
        exc = CommandError(code, "why")
        assert type(exc) is cls and exc.code == code and exc.message == "why"
        assert isinstance(exc, ControlError)
    # An answer from a node, not a transport failure: a client must not treat the node as gone.
    assert not isinstance(CommandError("NO_QUORUM", ""), MeshcacheTimeout)


def test_a_subclass_takes_its_text_as_message() -> None:
    exc = NoSuchMemberError(message="no ring member 'x'")
    assert exc.code is ErrorCode.NO_SUCH_MEMBER and str(exc) == "NO_SUCH_MEMBER: no ring member 'x'"
    with pytest.raises(TypeError):
        NoSuchMemberError("no ring member 'x'")  # a code that is not its own


def test_refusals_pickle_with_their_attributes() -> None:
    conflict = VersionConflictError(expected=3, actual=4)
    again = pickle.loads(pickle.dumps(conflict))
    assert type(again) is VersionConflictError
    assert (again.expected, again.actual, again.message) == (3, 4, conflict.message)
    quorum = pickle.loads(pickle.dumps(NoQuorumError(message="2 of 3 unreachable")))
    assert type(quorum) is NoQuorumError and quorum.message == "2 of 3 unreachable"


# --- through real nodes ------------------------------------------------------------------------


def call(node: NodeProcess, method: str, *args: Any) -> Any:
    with Client(node.data, timeout=15, smart=False) as client:
        return getattr(client, method)(*args)


@pytest.fixture(scope="module")
def voter_and_other(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    tmp = tmp_path_factory.mktemp("typed_errors")
    with ExitStack() as stack:
        voter = stack.enter_context(NodeProcess(tmp / "voter", "--profile", "local", "--bootstrap"))
        other = stack.enter_context(
            NodeProcess(tmp / "other", "--profile", "local", "--join", voter.data)
        )

        def both_active() -> bool:
            # Then the config stops changing by itself: the tests own every later version.
            members = call(voter, "ring")["members"]
            return len(members) == 2 and all(m["state"] == RingState.ACTIVE for m in members)

        wait_for(both_active, 30, "both nodes active on the ring")
        yield [voter, other]


def _update_ttl(version: int, ttl: int) -> dict[str, Any]:
    return {
        "op": "update_namespace",
        "expected_version": version,
        "name": "default",
        "changes": {"default_ttl": ttl},
    }


@pytest.mark.slow
@pytest.mark.parametrize("through", ["voter", "non-voter"])
def test_a_lost_compare_and_set_raises_version_conflict_in_the_client(
    voter_and_other: list[NodeProcess], through: str
) -> None:
    voter = voter_and_other[0]
    node = voter if through == "voter" else voter_and_other[1]
    version = call(voter, "config")["version"]  # a non-voter may not have pulled it yet
    committed = call(node, "config_propose", _update_ttl(version, 30))
    assert committed["version"] == version + 1
    try:
        call(node, "config_propose", _update_ttl(version, 60))  # based on the old version
    except VersionConflictError as exc:
        assert exc.code is ErrorCode.VERSION_CONFLICT
        assert f"based on version {version}" in exc.message
    else:
        pytest.fail("a stale compare-and-set was accepted")
    assert call(voter, "config")["version"] == version + 1


@pytest.mark.slow
def test_other_refusals_arrive_typed(voter_and_other: list[NodeProcess]) -> None:
    voter, other = voter_and_other
    version = call(voter, "config")["version"]
    with pytest.raises(NamespaceExistsError):
        call(
            other,
            "config_propose",
            {
                "op": "create_namespace",
                "expected_version": version,
                "name": "default",
                "policy": {},
            },
        )
    with pytest.raises(InvalidCommandError):
        call(other, "config_propose", {"op": "no_such_op"})
