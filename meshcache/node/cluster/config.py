"""The node's side of the config plane: hold, learn, apply and change the cluster config.

Every node holds one immutable :class:`ClusterConfig`, swapped by a single assignment. It
learns newer versions in one of two ways:

* a **voter** (``--bootstrap``, or its Raft address listed in ``--raft-peers``) runs a
  :class:`ConfigPlane` and installs every version its state machine applies;
* every node advertises the version it holds in its gossip metadata; a node that sees a peer
  advertise a newer one pulls the whole config from that peer (``CONFIG_GET`` on the data port),
  checks that versions only go up, and installs it.

Installing applies the namespace policies to the local store at once (new namespaces appear,
changed policies take effect live, dropped ones disappear) and re-advertises the version.

Any node accepts a change (``CONFIG_PROPOSE``, ``NS_SET``, ``NS_DROP``): a voter proposes it to
Raft itself; any other node forwards it to a voter it knows from gossip (pysyncobj forwards to
the leader). Nothing here is on the data path: GET and SET never wait on any of it.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
import trio

from meshcache.control import (
    DEFAULT_NAMESPACE,
    ClusterConfig,
    Command,
    ConfigPlane,
    ConfigPull,
    CreateNamespace,
    DropNamespace,
    PullRequest,
    PutMember,
    RaftSettings,
    UpdateNamespace,
    check_proposal,
    command_from_mapping,
    command_to_mapping,
)
from meshcache.errors import (
    CommandError,
    ConfigError,
    InternalError,
    MeshcacheError,
    NoSuchNamespaceError,
    NoVotersError,
    ProposalTimeoutError,
    VersionConflictError,
)
from meshcache.gossip import EventKind, Member, MemberState
from meshcache.node.cluster.membership import Membership
from meshcache.node.net.oneshot import call_once
from meshcache.ring import RingMember, RingState
from meshcache.settings import NodeSettings
from meshcache.store.store import Store
from meshcache.wire.address import Address

log = structlog.get_logger("meshcache.config")

PROPOSE_TIMEOUT = 5.0
# A change based on a version that moved underneath (another change committed first) is
# re-read and re-proposed this many times before the conflict is reported.
CONFLICT_RETRIES = 5
PULL_POLL = 0.25


def _raft_address(settings: NodeSettings, data_address: Address) -> Address:
    if settings.raft_port is not None:
        port = settings.raft_port
    elif settings.port == 0 and settings.bootstrap:
        # A data port picked by the kernel says nothing about the next port being free (tests,
        # tools): a bootstrap voter, whom nobody had to be told about in advance, takes a
        # kernel-picked Raft port too.
        with socket.socket() as probe:
            probe.bind((data_address.host, 0))
            port = probe.getsockname()[1]
    else:
        port = data_address.port + 1
    return Address(data_address.host, port)


def _password(settings: NodeSettings) -> str:
    """The voters' shared password: from the file, or one kept in the data dir (bootstrap)."""
    if settings.raft_password_file is not None:
        try:
            text = settings.raft_password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"raft password file {settings.raft_password_file}: {exc.strerror or exc}"
            ) from None
        password = text.splitlines()[0].strip() if text.strip() else ""
        if not password:
            raise ConfigError(f"raft password file {settings.raft_password_file} is empty")
        return password
    # A group of one talks to nobody, but its journal outlives restarts and a voter added
    # later must share the password: keep a generated one beside the journal.
    path = settings.data_dir / "raft" / "password"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    try:
        # Created with mode 0600: no moment where another local user could read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: that one is the password
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(password + "\n")
    return password


def install_namespaces(store: Store, old: ClusterConfig, new: ClusterConfig) -> list[str]:
    """Bring ``store``'s namespaces from config ``old`` (the one it reflects) to ``new``.

    New namespaces appear, changed policies take effect, namespaces ``new`` lacks are dropped
    with their keys. A namespace whose incarnation differs between ``old`` and ``new`` (dropped
    and created again, both learnt at once) loses its keys too: they belong to the earlier
    incarnation. Every namespace gets its incarnation's floor (:meth:`Store.set_floor`), so
    records of an earlier incarnation still on their way here (hints, replica batches,
    hand-off, anti-entropy, read repair) are discarded when they arrive. Returns the names
    whose keys were dropped.
    """
    dropped: list[str] = []
    names = set(store.namespace_names())
    for name in sorted(names):
        if name in new.namespaces and name in old.namespaces:
            if old.incarnation(name).created != new.incarnation(name).created:
                store.drop_namespace(name)
                names.discard(name)
                dropped.append(name)
        elif name not in new.namespaces and name != DEFAULT_NAMESPACE:
            store.drop_namespace(name)
            names.discard(name)
            dropped.append(name)
    for name, policy in new.namespaces.items():
        if name not in names or old.namespaces.get(name) != policy:
            store.set_policy(name, policy)
        floor = new.incarnation(name).floor
        if store.floor(name) != floor:
            store.set_floor(name, floor)
    if dropped:
        log.info("namespaces_dropped", namespaces=",".join(dropped), version=new.version)
    return dropped


def _refusal(exc: MeshcacheError) -> CommandError:
    """The error frame a config request is answered with: its refusal as it is, or INTERNAL
    with the reason for a failure on the way (no voter could be reached)."""
    return exc if isinstance(exc, CommandError) else InternalError(message=str(exc))


class ConfigService:
    """Holds this node's view of the cluster config and keeps it current."""

    def __init__(
        self,
        settings: NodeSettings,
        store: Store,
        membership: Membership,
        node_id: str,
        data_address: tuple[str, int],
        *,
        on_install: Callable[[ClusterConfig], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.membership = membership
        self.node_id = node_id
        self.data_address = Address(*data_address)
        raft_address = _raft_address(settings, self.data_address)
        self.raft_address = str(raft_address)
        self.raft_port = raft_address.port
        self.is_voter = settings.bootstrap or self.raft_address in settings.raft_peers
        self.config = ClusterConfig(version=0, namespaces=settings.namespaces)
        self.plane: ConfigPlane | None = None
        self._pull = ConfigPull(0)
        self._pull_wakeup = trio.Event()
        self._pull_started: list[PullRequest] = []
        self._on_install = on_install

    # --- running ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            if self.is_voter:
                peers_ = tuple(p for p in self.settings.raft_peers if p != self.raft_address)
                raft_dir = self.settings.data_dir / "raft"
                self.plane = ConfigPlane(
                    RaftSettings(
                        self_address=self.raft_address,
                        password=_password(self.settings),
                        data_dir=Path(raft_dir),
                        peers=peers_,
                    )
                )
                await nursery.start(self.plane.run)
                self.membership.update_meta(raft_port=self.raft_port)
                nursery.start_soon(self._follow_plane)
                log.info("raft_voter_started", raft=self.raft_address, peers=",".join(peers_))
            else:
                nursery.start_soon(self.register_self)
            nursery.start_soon(self._pull_loop)
            task_status.started()

    async def _follow_plane(self) -> None:
        """A voter: seed a new group, register on the ring, then install every new version."""
        assert self.plane is not None
        plane = self.plane
        if plane.config.version == 0:
            await self._seed_namespaces()
        else:
            self.install(plane.config)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.register_self)
            while True:
                config = await plane.wait_for_version(self.config.version + 1)
                self.install(config)

    async def _seed_namespaces(self) -> None:
        """A new group (version 0) starts with this voter's configured namespaces.

        Several voters of a new group may try at once; compare-and-set lets exactly one
        seed, and the others stop at their first version conflict.
        """
        assert self.plane is not None
        delay = 0.2
        for name, policy in self.settings.namespaces.items():
            while True:
                config = self.plane.config
                if config.namespaces.get(name) == policy:
                    break
                command: Command
                if name in config.namespaces:
                    command = UpdateNamespace(config.version, name, policy.to_mapping())
                else:
                    command = CreateNamespace(config.version, name, policy)
                try:
                    await self.propose(command)
                    break
                except VersionConflictError:
                    return  # another voter is seeding this group
                except ProposalTimeoutError as exc:  # no quorum yet: the others are starting
                    log.info("namespace_seed_waiting", namespace=name, error=str(exc))
                    await trio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                except MeshcacheError as exc:
                    log.warning("namespace_seed_failed", namespace=name, error=str(exc))
                    break

    async def register_self(self) -> None:
        """Put this node on the ring (once it can reach a voter), retrying with backoff.

        The first member of a ring starts ``active``; any later one starts ``joining`` and
        the handoff makes it ``active`` once it holds its ranges. A node already on the
        ring (a restart) keeps its state.
        """
        address = str(self.data_address)
        delay = 0.2
        while True:
            config = self.config
            current = config.member(self.node_id)
            if current is not None and (current.address, current.zone) == (
                address,
                self.settings.zone,
            ):
                return
            others_active = any(
                m.state is RingState.ACTIVE and m.node_id != self.node_id for m in config.members
            )
            me = RingMember(
                node_id=self.node_id,
                address=address,
                zone=self.settings.zone,
                state=RingState.JOINING if others_active else RingState.ACTIVE,
            )
            try:
                await self.propose(PutMember(config.version, me))
                log.info("ring_member_registered", node_id=self.node_id, state=me.state)
                return
            except VersionConflictError:
                await self._refresh()
                continue
            except MeshcacheError as exc:
                log.debug("ring_registration_waiting", error=str(exc))
            await trio.sleep(delay)
            delay = min(delay * 2, 1.0)  # a voter may appear in gossip at any moment

    async def _refresh(self) -> None:
        """Get the newest config we can: from our own voter, or pulled from a voter."""
        if self.plane is not None:
            self.install(self.plane.config)
            return
        for address in self._voter_data_addresses():
            try:
                fetched = ClusterConfig.from_mapping(
                    await call_once(
                        address,
                        "CONFIG_GET",
                        [],
                        keyring=self.membership.keyring,
                        tls=self.membership.tls,
                    )
                )
            except MeshcacheError:
                continue
            self.install(fetched)
            return

    # --- installing ---------------------------------------------------------------------------

    def install(self, config: ClusterConfig) -> bool:
        """Make ``config`` the held config if it is newer; apply its policies. True if so."""
        old = self.config
        if config.version <= old.version:
            return False
        self.config = config
        install_namespaces(self.store, old, config)
        self._pull.installed(config.version)
        self.membership.update_meta(config_version=config.version)
        self.membership.join_members((m.node_id, m.address) for m in config.members)
        log.info("config_installed", version=config.version, namespaces=len(config.namespaces))
        if self._on_install is not None:
            self._on_install(config)
        return True

    def on_member_event(self, kind: EventKind, member: Member) -> None:
        """Gossip told us about a member: pull if it holds a newer config."""
        if kind in (EventKind.DEAD, EventKind.LEFT, EventKind.REAPED):
            self._pull.forget(member.name)
            return
        if member.meta.config_version > self.config.version:
            now = trio.current_time()
            request = self._pull.observe(member.name, member.meta.config_version, now)
            if request is not None:
                self._pull_started.append(request)
                self._pull_wakeup.set()

    async def _pull_loop(self) -> None:
        while True:
            with trio.move_on_after(PULL_POLL):
                await self._pull_wakeup.wait()
            self._pull_wakeup = trio.Event()
            # A pull that gossip news started, else one that is due (a retry, a timeout).
            request = (
                self._pull_started.pop(0)
                if self._pull_started
                else self._pull.poll(trio.current_time())
            )
            while request is not None:
                request = await self._pull_from(request)

    async def _pull_from(self, request: PullRequest) -> PullRequest | None:
        member = self.membership.swim.member(request.peer) if self.membership.running else None
        now = trio.current_time()
        if member is None or member.state is not MemberState.ALIVE:
            return self._pull.failed(request.peer, now)
        address = Address(member.address[0], member.meta.data_port)
        try:
            fetched = ClusterConfig.from_mapping(
                await call_once(
                    address,
                    "CONFIG_GET",
                    [],
                    keyring=self.membership.keyring,
                    tls=self.membership.tls,
                )
            )
        except MeshcacheError as exc:
            log.debug("config_pull_failed", peer=request.peer, error=str(exc))
            return self._pull.failed(request.peer, trio.current_time())
        # Parsing the config and installing it (which builds the data plane's ring) are each
        # milliseconds of CPU: two steps, not one.
        await trio.lowlevel.checkpoint()
        accepted = self._pull.pulled(request.peer, fetched, trio.current_time())
        if accepted is not None and not self.install(accepted):
            log.debug("config_pull_stale", version=accepted.version, held=self.config.version)
        return self._pull.poll(trio.current_time())

    # --- changing ----------------------------------------------------------------------------

    def _voter_data_addresses(self) -> list[Address]:
        """Voters to ask, alive ones first. A suspect voter is still asked, last: a busy
        process is often suspected for a moment, and giving up on it would fail a proposal
        that it would have answered."""
        if not self.membership.running:
            return []
        voters = [
            m
            for m in self.membership.swim.members()
            if m.meta.raft_port
            and m.state in (MemberState.ALIVE, MemberState.SUSPECT)
            and m.name != self.node_id
        ]
        voters.sort(key=lambda m: m.state is not MemberState.ALIVE)
        return [Address(m.address[0], m.meta.data_port) for m in voters]

    async def propose(self, command: Command) -> ClusterConfig:
        """Commit ``command`` (here if a voter, else through a voter) and install the result.

        Raises:
            ControlError: a subclass, the same whether this node is a voter or forwarded the
                change (NoVotersError when no voter is known).
            MeshcacheConnectionError, MeshcacheTimeout: no known voter could be reached.
        """
        check_proposal(command)
        if self.plane is not None:
            config = await self.plane.propose(command, timeout=PROPOSE_TIMEOUT)
            self.install(config)
            return config
        voters = self._voter_data_addresses()
        if not voters:
            raise NoVotersError(
                message="no config voter is known to this node: start one with --bootstrap or "
                "--raft-peers, and --join it",
            )
        last: MeshcacheError | None = None
        for address in voters:
            try:
                mapping = await call_once(
                    address,
                    "CONFIG_PROPOSE",
                    [command_to_mapping(command)],
                    timeout=PROPOSE_TIMEOUT + 1,
                    keyring=self.membership.keyring,
                    tls=self.membership.tls,
                )
            except CommandError:
                raise
            except MeshcacheError as exc:  # unreachable voter: try the next
                last = exc
                continue
            config = ClusterConfig.from_mapping(mapping)
            self.install(config)
            return config
        assert last is not None
        raise last

    async def handle_propose(self, mapping: Any) -> dict[str, Any]:
        """CONFIG_PROPOSE: a raw compare-and-set command; the committed config comes back."""
        try:
            command = command_from_mapping(mapping)
            return (await self.propose(command)).to_mapping()
        except MeshcacheError as exc:
            raise _refusal(exc) from None

    async def set_namespace(self, name: str, fields: dict[str, Any]) -> dict[str, Any]:
        """NS_SET: create ``name`` or change the given policy fields, whatever the version."""
        try:
            for _ in range(CONFLICT_RETRIES):
                await self._refresh_if_voterless()
                config = self.config
                try:
                    if name in config.namespaces:
                        command: Command = UpdateNamespace(config.version, name, fields)
                    else:
                        policy = {**config.namespaces["default"].to_mapping(), **fields}
                        command = CreateNamespace(
                            config.version,
                            name,
                            policy,  # type: ignore[arg-type]
                            floor=self.store.version_now(),
                        )
                    result = await self.propose(command)
                except VersionConflictError:
                    await self._refresh()
                    continue
                return result.namespaces[name].to_mapping()
            raise VersionConflictError(message=f"namespace {name!r}: the config kept changing")
        except MeshcacheError as exc:
            raise _refusal(exc) from None

    async def drop_namespace(self, name: str) -> bool:
        """NS_DROP: delete namespace ``name`` cluster-wide."""
        try:
            for _ in range(CONFLICT_RETRIES):
                await self._refresh_if_voterless()
                config = self.config
                if name not in config.namespaces:
                    raise NoSuchNamespaceError(message=f"no namespace {name!r}")
                try:
                    await self.propose(DropNamespace(config.version, name))
                except VersionConflictError:
                    await self._refresh()
                    continue
                return True
            raise VersionConflictError(message=f"namespace {name!r}: the config kept changing")
        except MeshcacheError as exc:
            raise _refusal(exc) from None

    async def _refresh_if_voterless(self) -> None:
        if self.plane is None and self.config.version == 0:
            await self._refresh()

    # --- raft administration -------------------------------------------------------------------

    async def raft(self, action: str, address: str | None = None) -> Any:
        """RAFT_STATUS / RAFT_ADD / RAFT_REMOVE, here if a voter, else at a known voter."""
        try:
            if self.plane is None:
                voters = self._voter_data_addresses()
                if not voters:
                    raise NoVotersError(message="no config voter is known")
                args = [] if address is None else [address]
                return await call_once(
                    voters[0],
                    f"RAFT_{action.upper()}",
                    args,
                    timeout=10,
                    keyring=self.membership.keyring,
                    tls=self.membership.tls,
                )
            if action == "status":
                return self.plane.status().to_mapping()
            assert address is not None
            if action == "add":
                await self.plane.add_voter(address)
            else:
                await self.plane.remove_voter(address)
            return self.plane.status().to_mapping()
        except MeshcacheError as exc:
            raise _refusal(exc) from None
