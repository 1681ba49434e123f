"""The config plane as trio sees it: :class:`ConfigPlane`.

pysyncobj runs its own tick thread. This module crosses between it and trio in exactly two
ways: trio puts proposals into pysyncobj's thread-safe command queue, and pysyncobj's callbacks
come back to trio through ``TrioToken.run_sync_soon``. Nothing here blocks trio's thread, and
nothing calls a replicated method with ``sync=True``.

Reads never wait: :attr:`ConfigPlane.config` is the state machine's latest immutable snapshot
and :meth:`ConfigPlane.status` the snapshot the tick thread took on its latest tick.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from pysyncobj import FAIL_REASON

from meshcache.control.config import ClusterConfig, Command, command_to_mapping
from meshcache.control.raft import (
    ConfigRaft,
    ConfigStateMachine,
    RaftSettings,
    RaftStartError,
    encode_proposal,
)
from meshcache.errors import (
    ConfigError,
    ControlError,
    InvalidCommandError,
    MeshcacheError,
    NoQuorumError,
    NotAVoterError,
    ProposalTimeoutError,
)
from meshcache.settings import parse_address

#: Default bound on a proposal, in seconds: long enough for one leader election (≤ 1 s with the
#: default timeouts) plus a commit, short enough for an operator waiting at a prompt.
DEFAULT_TIMEOUT = 5.0
#: Pause between attempts while there is no leader; a new leader needs ≥ 0.4 s anyway.
_RETRY_PAUSE = 0.05
_ROLES = {0: "follower", 1: "candidate", 2: "leader"}


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """One voter's view of the Raft group, as of its latest tick (at most ~50 ms old).

    Attributes:
        self_address: this voter's Raft address.
        role: ``leader``, ``follower`` or ``candidate``.
        leader: the leader's Raft address as this voter last heard, or None.
        voters: every voter's address, this one included, sorted.
        connected: the other voters this one has a live connection to, sorted.
        term, commit_index, last_applied: Raft's counters.
        is_ready: this voter has caught up with the leader's commit index once since start.
        has_quorum: this voter plus the voters it is connected to form a majority.
        config_version: the version of the config this voter holds.
    """

    self_address: str
    role: str
    leader: str | None
    voters: tuple[str, ...]
    connected: tuple[str, ...]
    term: int
    commit_index: int
    last_applied: int
    is_ready: bool
    has_quorum: bool
    config_version: int

    def to_mapping(self) -> dict[str, Any]:
        """A plain msgpack/JSON-able dict (for ``meshcache raft status``)."""
        return {
            "self": self.self_address,
            "role": self.role,
            "leader": self.leader,
            "voters": list(self.voters),
            "connected": list(self.connected),
            "term": self.term,
            "commit_index": self.commit_index,
            "last_applied": self.last_applied,
            "is_ready": self.is_ready,
            "has_quorum": self.has_quorum,
            "config_version": self.config_version,
        }


class _Pending:
    """One pysyncobj callback on its way to trio."""

    def __init__(self) -> None:
        self.event = trio.Event()
        self.result: Any = None
        self.error: int | None = None

    def resolve(self, result: Any, error: int) -> None:
        self.result = result
        self.error = error
        self.event.set()


class ConfigPlane:
    """A Raft voter of the config plane, used from trio.

    Start it with ``await nursery.start(plane.run)``; it stops (and releases its port and
    journal) when that task is cancelled. Until started, :attr:`config` is the initial config
    and the other methods raise :class:`NotAVoterError`.
    """

    def __init__(self, settings: RaftSettings) -> None:
        self.settings = settings
        self._machine = ConfigStateMachine(on_change=self._changed_on_tick_thread)
        self._raft: ConfigRaft | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._changed = trio.Event()
        self._status: RaftStatus | None = None

    # --- running ---------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[ConfigPlane] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Build the voter on this (trio's) thread, report started, and run until cancelled.

        Raises:
            RaftStartError: the Raft port cannot be bound or the data directory is unusable.
        """
        if self._raft is not None:
            raise RuntimeError("this ConfigPlane is already running")
        self._token = trio.lowlevel.current_trio_token()
        # Binding is quick and fails fast (maxBindRetries=1); blocking trio for it once at
        # start is simpler than building the SyncObj anywhere but on trio's thread.
        raft = ConfigRaft(self.settings, self._machine, on_tick=self._snapshot_status)
        self._raft = raft
        try:
            task_status.started(self)
            await trio.sleep_forever()
        finally:
            self._raft = None
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(raft.destroy_synchronous)

    # --- reading -----------------------------------------------------------------------------

    @property
    def config(self) -> ClusterConfig:
        """The latest committed config this voter has applied (lock-free, never blocks)."""
        return self._machine.config

    def status(self) -> RaftStatus:
        """This voter's view of the group as of its latest tick.

        Raises:
            NotAVoterError: the plane is not running.
        """
        status = self._status
        if self._raft is None or status is None:
            raise NotAVoterError(message="the Raft voter is not running")
        return status

    async def wait_for_version(self, version: int) -> ClusterConfig:
        """Wait until this voter holds config ``version`` or newer, and return it."""
        while self._machine.config.version < version:
            await self._changed.wait()
        return self._machine.config

    # --- changing ----------------------------------------------------------------------------

    async def propose(self, command: Command, *, timeout: float = DEFAULT_TIMEOUT) -> ClusterConfig:
        """Commit ``command`` through Raft and return the config it produced.

        Any voter may be asked; pysyncobj forwards to the leader. While there is no leader
        the proposal is retried until ``timeout``. Each proposal carries a random request id
        that the state machine remembers, so a retry after an ambiguous failure is applied at
        most once (then the current config, at least as new, is returned).

        Raises:
            VersionConflictError, InvalidCommandError, NoSuchMemberError, …: the command was
                refused by the state machine and changed nothing.
            NoQuorumError: ``timeout`` passed and no majority of voters is reachable.
            ProposalTimeoutError: ``timeout`` passed with a quorum in sight. In both timeout
                cases the change may still commit later, on its base version only.
            NotAVoterError: the plane is not running.
        """
        payload = encode_proposal(os.urandom(16), command_to_mapping(command))
        deadline = trio.current_time() + timeout
        while True:
            self._running()
            pending = _Pending()
            raft_apply: Callable[..., None] = self._machine.apply_command
            raft_apply(payload, callback=self._callback(pending))
            with trio.move_on_at(deadline):
                await pending.event.wait()
            if not pending.event.is_set():
                raise self._timeout_error("config change", timeout)
            if pending.error == FAIL_REASON.SUCCESS:
                result = pending.result
                if isinstance(result, MeshcacheError):
                    raise result
                assert isinstance(result, ClusterConfig)
                return result
            # Every other reason means "not applied (yet)": no leader, leader changed, entry
            # discarded. Retrying is safe thanks to the request id.
            await trio.sleep(max(0.0, min(_RETRY_PAUSE, deadline - trio.current_time())))

    async def add_voter(self, address: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Make the voter at Raft ``address`` a member of the group (``meshcache raft add``).

        Start the new voter first with every current voter in its peer list. Membership
        changes go one at a time; returns once the change is committed.

        Raises:
            InvalidCommandError: the address is malformed or already a voter.
            ControlError: pysyncobj refused (another membership change in progress).
            NoQuorumError, ProposalTimeoutError: as for :meth:`propose`.
        """
        await self._change_membership("add", address, timeout)

    async def remove_voter(self, address: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Remove the voter at Raft ``address`` from the group (``meshcache raft remove``).

        Use it to replace a dead voter: remove it, then start and add the new one. A voter
        cannot remove itself; ask another voter.

        Raises:
            InvalidCommandError: malformed address, not a voter, or this voter itself.
            ControlError, NoQuorumError, ProposalTimeoutError: as for :meth:`add_voter`.
        """
        await self._change_membership("remove", address, timeout)

    async def _change_membership(self, action: str, address: str, timeout: float) -> None:
        try:
            parse_address(address, f"raft {action}")
        except ConfigError as exc:
            raise InvalidCommandError(message=str(exc)) from None
        deadline = trio.current_time() + timeout
        adding = action == "add"
        voters = self.status().voters
        if adding and address in voters:
            raise InvalidCommandError(message=f"{address} is already a Raft voter")
        if not adding:
            if address not in voters:
                raise InvalidCommandError(message=f"{address} is not a Raft voter")
            if address == self.settings.self_address:
                raise InvalidCommandError(message="a voter cannot remove itself; ask another voter")
        while True:
            raft = self._running()
            pending = _Pending()
            change = raft.addNodeToCluster if adding else raft.removeNodeFromCluster
            change(address, callback=self._callback(pending))
            with trio.move_on_at(deadline):
                await pending.event.wait()
            if not pending.event.is_set():
                raise self._timeout_error(f"raft {action} {address}", timeout)
            if pending.error == FAIL_REASON.SUCCESS:
                return
            if pending.error == FAIL_REASON.REQUEST_DENIED:
                # A retry of a change that did commit is denied as a duplicate: check.
                if (address in self.status().voters) == adding:
                    return
                raise ControlError(
                    message=f"raft {action} {address} refused: another membership change is not"
                    " committed yet, or the leader has not committed an entry in its term"
                )
            await trio.sleep(max(0.0, min(_RETRY_PAUSE, deadline - trio.current_time())))

    # --- plumbing ------------------------------------------------------------------------------

    def _running(self) -> ConfigRaft:
        if self._raft is None:
            raise NotAVoterError(message="the Raft voter is not running")
        return self._raft

    def _callback(self, pending: _Pending) -> Callable[[Any, int], None]:
        token = self._token
        assert token is not None

        def on_result(result: Any, error: int) -> None:  # on pysyncobj's tick thread
            # If trio has gone, nobody waits for this answer any more.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(pending.resolve, result, error)

        return on_result

    def _timeout_error(self, what: str, timeout: float) -> ProposalTimeoutError:
        unknown = "it may still commit later (only on the config version it was based on)"
        status = self._status
        if status is None or not status.has_quorum or status.leader is None:
            if status is None:
                seen = "no status yet"
            else:
                missing = sorted(set(status.voters) - {status.self_address, *status.connected})
                seen = (
                    f"{len(status.connected) + 1} of {len(status.voters)} voters reachable"
                    f"{', unreachable: ' + ', '.join(missing) if missing else ''}"
                    f", leader: {status.leader or 'none'}"
                )
            return NoQuorumError(
                message=f"{what}: no Raft quorum after {timeout:g} s ({seen}); {unknown}"
            )
        return ProposalTimeoutError(
            message=f"{what}: not confirmed within {timeout:g} s (leader {status.leader}); "
            f"{unknown}"
        )

    def _snapshot_status(self) -> None:  # on pysyncobj's tick thread, every tick
        raft = self._raft
        if raft is None:
            return
        info = raft.getStatus()
        others = raft.otherNodes
        leader = info["leader"]
        self._status = RaftStatus(
            self_address=self.settings.self_address,
            role=_ROLES.get(info["state"], str(info["state"])),
            leader=None if leader is None else str(leader.id),
            voters=tuple(sorted({self.settings.self_address, *(str(n.id) for n in others)})),
            connected=tuple(sorted(str(n.id) for n in others if raft.isNodeConnected(n))),
            term=int(info["raft_term"]),
            commit_index=int(info["commit_idx"]),
            last_applied=int(info["last_applied"]),
            is_ready=bool(raft.isReady()),
            has_quorum=bool(info["has_quorum"]),
            config_version=self._machine.config.version,
        )

    def _changed_on_tick_thread(self, config: ClusterConfig) -> None:
        token = self._token
        if token is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(self._wake_waiters)

    def _wake_waiters(self) -> None:
        event, self._changed = self._changed, trio.Event()
        event.set()


__all__ = ["DEFAULT_TIMEOUT", "ConfigPlane", "RaftStartError", "RaftStatus"]
