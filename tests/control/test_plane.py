"""The state machine without Raft, and the trio bridge with real pysyncobj voters in-process."""

from __future__ import annotations

import socket
from pathlib import Path

import msgpack
import pytest
import trio

from meshcache.control.bridge import ConfigPlane
from meshcache.control.config import (
    ClusterConfig,
    CreateNamespace,
    PutMember,
    UpdateNamespace,
    command_to_mapping,
)
from meshcache.control.raft import (
    ConfigStateMachine,
    RaftSettings,
    RaftStartError,
    encode_proposal,
)
from meshcache.errors import (
    InvalidCommandError,
    NoQuorumError,
    NoSuchNamespaceError,
    NotAVoterError,
    VersionConflictError,
)
from meshcache.ring.member import RingMember
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.ports import free_port


def settings(tmp_path: Path, name: str = "v", peers: tuple[str, ...] = ()) -> RaftSettings:
    return RaftSettings(
        self_address=f"127.0.0.1:{free_port()}",
        peers=peers,
        password="secret",
        data_dir=tmp_path / name,
    )


# --- the state machine, applied directly --------------------------------------------------


def _apply(machine: ConfigStateMachine, payload: bytes) -> object:
    return machine.apply_command(payload, _doApply=True)


def test_state_machine_applies_refuses_and_deduplicates() -> None:
    seen: list[int] = []
    machine = ConfigStateMachine(on_change=lambda c: seen.append(c.version))
    create = command_to_mapping(CreateNamespace(0, "users"))
    result = _apply(machine, encode_proposal(b"r1", create))
    assert isinstance(result, ClusterConfig) and result.version == 1
    # The same request again (a retry after an ambiguous failure) is not applied twice.
    assert _apply(machine, encode_proposal(b"r1", create)) is machine.config
    refused = _apply(machine, encode_proposal(b"r2", create))
    assert isinstance(refused, VersionConflictError)
    assert isinstance(_apply(machine, b"\xc1garbage"), InvalidCommandError)
    missing = command_to_mapping(UpdateNamespace(1, "nope", {"replicas": 3}))
    assert isinstance(_apply(machine, encode_proposal(b"r3", missing)), NoSuchNamespaceError)
    assert machine.config.version == 1
    assert seen == [1]


def test_state_machine_dump_roundtrip() -> None:
    machine = ConfigStateMachine()
    member = RingMember(node_id="a", address="127.0.0.1:7400")
    _apply(machine, encode_proposal(b"r1", command_to_mapping(PutMember(0, member))))
    data = machine._serialize()
    msgpack.packb(data["config"])  # the config part is plain bytes
    restored = ConfigStateMachine()
    restored._deserialize(data)
    assert restored.config == machine.config
    assert _apply(restored, encode_proposal(b"r1", b"")) is restored.config  # ids survive


# --- one real voter in this process ------------------------------------------------------


@pytest.mark.trio
async def test_single_voter_commits_and_restarts_from_its_journal(tmp_path: Path) -> None:
    config_settings = settings(tmp_path)
    plane = ConfigPlane(config_settings)
    with pytest.raises(NotAVoterError):
        plane.status()
    async with trio.open_nursery() as nursery:
        await nursery.start(plane.run)
        with trio.fail_after(10):
            config = await plane.propose(
                CreateNamespace(0, "users", NamespacePolicy(eviction="lfu")), timeout=5
            )
            assert config.version == 1
            assert plane.config is config or plane.config.version >= 1
            config = await plane.propose(UpdateNamespace(1, "users", {"max_items": 9}))
            with pytest.raises(VersionConflictError):
                await plane.propose(UpdateNamespace(1, "users", {"max_items": 10}))
            assert (await plane.wait_for_version(2)).namespaces["users"].max_items == 9
            status = plane.status()
            assert status.voters == (config_settings.self_address,)
        nursery.cancel_scope.cancel()

    again = ConfigPlane(config_settings)
    async with trio.open_nursery() as nursery:
        await nursery.start(again.run)
        with trio.fail_after(10):
            restored = await again.wait_for_version(2)
        assert restored == config
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_unreachable_peers_give_no_quorum_within_the_timeout(tmp_path: Path) -> None:
    peers = (f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
    plane = ConfigPlane(settings(tmp_path, peers=peers))
    async with trio.open_nursery() as nursery:
        await nursery.start(plane.run)
        started = trio.current_time()
        with pytest.raises(NoQuorumError) as info:
            await plane.propose(CreateNamespace(0, "users"), timeout=1.0)
        assert trio.current_time() - started < 1.5
        assert "1 of 3 voters reachable" in str(info.value)
        assert peers[0] in str(info.value)
        assert plane.config.version == 0
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_busy_raft_port_is_a_clear_start_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        busy = RaftSettings(
            self_address=f"127.0.0.1:{port}", password="secret", data_dir=tmp_path / "busy"
        )
        plane = ConfigPlane(busy)
        with pytest.raises(RaftStartError, match="cannot listen on raft address"):
            await plane.run()


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"password": ""}, "password is required"),
        ({"self_address": "nowhere"}, "host:port"),
        ({"peers": ("127.0.0.1:1", "bad")}, "host:port"),
        ({"heartbeat": 0.5}, "raft timing"),
    ],
)
def test_bad_raft_settings_are_refused(
    tmp_path: Path, kwargs: dict[str, object], text: str
) -> None:
    values: dict[str, object] = {
        "self_address": "127.0.0.1:1234",
        "password": "pw",
        "data_dir": tmp_path,
        **kwargs,
    }
    with pytest.raises(RaftStartError, match=text):
        RaftSettings(**values)  # type: ignore[arg-type]
