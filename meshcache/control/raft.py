"""The pysyncobj side of the config plane: the replicated state machine and its SyncObj.

Nothing here knows trio; :mod:`meshcache.control.bridge` drives it. Settings that were measured
(see design.md, "Key decisions") are fixed here and not exposed: ``appendEntriesUseBatch=False``
(100 ms → ~1.3 ms per commit), ``useFork=False``, ``dynamicMembershipChange=True``, a password
always (pysyncobj's wire format is pickle), journal and dump in the node's data directory.

Why the state lives in a :class:`~pysyncobj.SyncObjConsumer` and not on the SyncObj subclass:
pysyncobj's dump saves only attributes created *after* ``SyncObj.__init__``, but its tick
thread starts inside ``__init__`` and replays the journal at once, so state created afterwards
would race the replay. A consumer is complete before the SyncObj exists, and its own
``_serialize``/``_deserialize`` store the config as msgpack rather than pickled classes.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from pysyncobj import SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.syncobj import SyncObjException

from meshcache.control.config import ClusterConfig, apply, command_from_mapping
from meshcache.errors import ConfigError, InvalidCommandError, MeshcacheError
from meshcache.settings import parse_address

JOURNAL_FILE = "raft.journal"
DUMP_FILE = "raft.dump"
#: How many applied request ids the state machine remembers, so a proposal retried after an
#: ambiguous failure (leader changed before answering) is applied at most once.
RECENT_REQUESTS = 1024


class RaftStartError(ConfigError):
    """The Raft voter could not start (port in use, bad peer list, unreadable journal).

    A local startup failure, not a refusal of a request: the CLI prints it as one line and
    exits 2.
    """


@dataclass(frozen=True, slots=True)
class RaftSettings:
    """How one voter runs.

    Attributes:
        self_address: ``host:port`` of this voter's Raft port; other voters connect to it.
        peers: the other voters' Raft addresses (empty for a single-voter ``--bootstrap``).
            Listing ``self_address`` too is allowed and ignored.
        password: shared by every voter; a voter with another password is never connected.
        data_dir: where the journal and the dump live (created if missing).
        min_timeout / max_timeout: the election timeout is drawn from this range (seconds).
        heartbeat: seconds between append-entries pings; must be < min_timeout / 3.
        connection_retry: seconds between reconnection attempts to an unreachable voter.
        leader_fallback: a leader that hears from no majority for this long steps down.
    """

    self_address: str
    password: str
    data_dir: Path
    peers: tuple[str, ...] = ()
    min_timeout: float = 0.4
    max_timeout: float = 1.0
    heartbeat: float = 0.1
    connection_retry: float = 0.5
    leader_fallback: float = 2.0

    def __post_init__(self) -> None:
        try:
            parse_address(self.self_address, "raft address")
            for peer in self.peers:
                parse_address(peer, "raft peer")
        except ConfigError as exc:
            raise RaftStartError(str(exc)) from None
        if not isinstance(self.password, str) or not self.password:
            raise RaftStartError("a Raft password is required (pysyncobj's wire format is pickle)")
        peers = tuple(dict.fromkeys(p for p in self.peers if p != self.self_address))
        object.__setattr__(self, "peers", peers)
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if not (0 < self.heartbeat * 3 < self.min_timeout < self.max_timeout):
            raise RaftStartError(
                "raft timing: need 3 * heartbeat < min_timeout < max_timeout, got "
                f"heartbeat={self.heartbeat}, min_timeout={self.min_timeout},"
                f" max_timeout={self.max_timeout}"
            )

    @property
    def voters(self) -> tuple[str, ...]:
        """Every voter's address, this one included, sorted."""
        return tuple(sorted((self.self_address, *self.peers)))


def encode_proposal(request_id: bytes, command: Mapping[str, Any]) -> bytes:
    """The bytes that go into the Raft log for one proposal."""
    return bytes(msgpack.packb({"id": request_id, "cmd": dict(command)}, use_bin_type=True))


class ConfigStateMachine(SyncObjConsumer):  # type: ignore[misc]
    """The replicated state: the current :class:`ClusterConfig` and recent request ids.

    ``config`` is replaced by one assignment on pysyncobj's tick thread; any thread may read
    it without a lock and gets a consistent immutable snapshot.
    """

    def __init__(self, on_change: Callable[[ClusterConfig], None] | None = None) -> None:
        super().__init__()
        self.config = ClusterConfig()
        self._recent: OrderedDict[bytes, int] = OrderedDict()
        self._on_change = on_change

    @replicated  # type: ignore[untyped-decorator]
    def apply_command(self, payload: bytes) -> ClusterConfig | MeshcacheError:
        """Apply one proposal; runs on every voter in log order, on the tick thread.

        Returns the new config, the current one when the request id was already applied, or
        the error that refused the command (a refused command changes nothing). Never raises:
        pysyncobj would retry a raising entry forever.
        """
        try:
            envelope = msgpack.unpackb(payload, raw=False)
            request_id = envelope["id"]
            if not isinstance(request_id, bytes):
                raise TypeError("request id must be bytes")
            if request_id in self._recent:
                return self.config
            command = command_from_mapping(envelope["cmd"])
            config = apply(self.config, command)
        except MeshcacheError as exc:
            return exc
        except Exception as exc:
            return InvalidCommandError(message=f"undecodable config command: {exc!r}")
        self._recent[request_id] = config.version
        while len(self._recent) > RECENT_REQUESTS:
            self._recent.popitem(last=False)
        self.config = config
        if self._on_change is not None:
            self._on_change(config)
        return config

    def _serialize(self) -> dict[str, Any]:
        return {
            "config": msgpack.packb(self.config.to_mapping(), use_bin_type=True),
            "recent": list(self._recent.items()),
        }

    def _deserialize(self, data: Mapping[str, Any]) -> None:
        self.config = ClusterConfig.from_mapping(msgpack.unpackb(data["config"], raw=False))
        self._recent = OrderedDict(data["recent"])
        if self._on_change is not None:
            self._on_change(self.config)


class ConfigRaft(SyncObj):  # type: ignore[misc]
    """A pysyncobj voter carrying a :class:`ConfigStateMachine`.

    Build it on the thread that must outlive it (trio's): pysyncobj's tick thread stops when
    the thread that built the SyncObj ends.

    Raises:
        RaftStartError: the Raft port cannot be bound or the data directory is unusable.
    """

    def __init__(
        self,
        settings: RaftSettings,
        machine: ConfigStateMachine,
        *,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RaftStartError(f"raft data dir {str(settings.data_dir)!r}: {exc}") from None
        conf = SyncObjConf(
            password=settings.password,
            appendEntriesUseBatch=False,
            useFork=False,
            dynamicMembershipChange=True,
            journalFile=os.fspath(settings.data_dir / JOURNAL_FILE),
            fullDumpFile=os.fspath(settings.data_dir / DUMP_FILE),
            # Fail a proposal at once while there is no leader; the bridge retries until its
            # deadline. Waiting inside pysyncobj would let a minority pile up stale commands.
            commandsWaitLeader=False,
            raftMinTimeout=settings.min_timeout,
            raftMaxTimeout=settings.max_timeout,
            appendEntriesPeriod=settings.heartbeat,
            connectionTimeout=max(3.5, settings.max_timeout),
            connectionRetryTime=settings.connection_retry,
            leaderFallbackTimeout=settings.leader_fallback,
            maxBindRetries=1,
            # pysyncobj binds 0.0.0.0 unless told; nodes bind only where they are told to.
            bindAddress=settings.self_address,
        )
        try:
            with warnings.catch_warnings():
                # pysyncobj 0.3.17 reads the journal's meta file without closing it
                # (journal.py, MetaStorer.getMeta); the handle is freed at once, only warned.
                warnings.filterwarnings(
                    "ignore", message=r"unclosed file .*raft\.journal", category=ResourceWarning
                )
                super().__init__(
                    settings.self_address, list(settings.peers), conf, consumers=[machine]
                )
        except OSError as exc:
            raise RaftStartError(f"raft journal in {settings.data_dir}: {exc}") from None
        try:
            self.waitBinded()
        except SyncObjException:
            self._doDestroy()
            raise RaftStartError(
                f"cannot listen on raft address {settings.self_address} (in use or not local)"
            ) from None
        if on_tick is not None:
            self.addOnTickCallback(on_tick)


__all__ = [
    "DUMP_FILE",
    "JOURNAL_FILE",
    "ConfigRaft",
    "ConfigStateMachine",
    "RaftSettings",
    "RaftStartError",
    "encode_proposal",
]
