"""A meshcache node: wires the store, the data port, the admin port and background tasks.

``serve(settings)`` is the structured-concurrency entry point (tests start nodes with it inside
their own nursery); ``run(settings)`` is the blocking one the CLI calls, with SIGTERM/SIGINT
handled as a graceful shutdown.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import trio

from meshcache._version import __version__
from meshcache.control import ClusterConfig
from meshcache.errors import CommandError, ErrorCode
from meshcache.gossip import EventKind, Member, MemberState
from meshcache.hlc import HLC
from meshcache.node.admin.http import AdminHandler
from meshcache.node.admin.metrics import NodeCollector, NodeCounters, make_registry
from meshcache.node.cluster.autoremove import AutoRemover
from meshcache.node.cluster.config import ConfigService
from meshcache.node.cluster.membership import Membership
from meshcache.node.data.antientropy import AE_OPS, AntiEntropy
from meshcache.node.data.coordinator import Coordinator
from meshcache.node.data.handoff import HandOff
from meshcache.node.data.replication import ByteBudget, HintQueue, VersionClamp
from meshcache.node.data.replicator import Replicator
from meshcache.node.net.dataport import DataPort, open_listener
from meshcache.node.net.dispatch import Dispatcher
from meshcache.node.net.peer_pool import PeerPool
from meshcache.ring import TOKEN_SPACE, Ring
from meshcache.ring.ring import DEFAULT_VNODES_PER_WEIGHT
from meshcache.settings import NodeSettings
from meshcache.store.store import Store
from meshcache.wire.ops import Limits

log = structlog.get_logger("meshcache.node")

READY_FILE = "node.json"
# One unreachable owner may hold at most this share of the hint bytes.
HINT_SHARE_PER_TARGET = 4
# Anti-entropy runs beside client traffic: a small share of the hand-off rate, and bursts small
# enough that one batch never holds the loop long.
AE_RATE_SHARE = 16
AE_BURST = 256 * 1024


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Where a started node can be reached; handed to ``task_status.started``."""

    node_id: str
    data_address: tuple[str, int]
    admin_address: tuple[str, int]
    pid: int


class Node:
    """One node's state. Build it, then ``await node.serve()``; it owns nothing until then."""

    def __init__(self, settings: NodeSettings, *, wall_clock: Callable[[], float] = time.time):
        self.settings = settings
        self.counters = NodeCounters()
        self.hlc = HLC(lambda: int(wall_clock() * 1000))
        self.store = Store(
            clock=wall_clock,
            hlc=self.hlc,
            policies=settings.namespaces,
            tombstone_grace_s=settings.tombstone_grace,
        )
        self.node_id = settings.node_id
        self.info: NodeInfo | None = None
        self._started = 0.0
        self._dataport: DataPort | None = None
        self.membership: Membership | None = None
        self.config_service: ConfigService | None = None
        self.dataplane: Coordinator | None = None
        self._ring_answer: tuple[int, dict[str, Any]] | None = None  # RING, per version
        self.handoff: HandOff | None = None
        self.antientropy: AntiEntropy | None = None
        self._nursery: trio.Nursery | None = None
        self.pool = PeerPool(max_frame=settings.limits.max_frame_bytes)
        self.hints = HintQueue(
            max_bytes=max(1, settings.hint_max_bytes),
            max_bytes_per_target=max(1, settings.hint_max_bytes // HINT_SHARE_PER_TARGET),
            max_age_s=settings.hint_max_age,
        )
        self.registry = make_registry(
            NodeCollector(
                self.counters,
                self.store.stats,
                self.uptime,
                gossip=self._gossip_figures,
                mesh=self._mesh_figures,
            )
        )

    def uptime(self) -> float:
        return trio.current_time() - self._started if self._started else 0.0

    async def serve(
        self, *, task_status: trio.TaskStatus[NodeInfo] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind both ports, report where they are, serve until cancelled, then release all."""
        s = self.settings
        listener = open_listener(s.host, s.port)
        try:
            admin_listeners = await trio.open_tcp_listeners(s.admin_port, host=s.admin_host)
        except BaseException:
            listener.close()
            raise
        data_address = listener.getsockname()[:2]
        admin_address = admin_listeners[0].socket.getsockname()[:2]
        self.node_id = s.node_id or f"{data_address[0]}:{data_address[1]}"
        self._started = trio.current_time()
        limits = s.limits
        op_limits = Limits(
            max_key_bytes=limits.max_key_bytes, max_value_bytes=limits.max_value_bytes
        )
        replicator = Replicator(
            self.pool,
            address_of=self._address_of,
            alive=self._is_alive,
            hints=self.hints,
            ring_version=lambda: self.dataplane.ring_version if self.dataplane else 0,
        )
        self.dataplane = dataplane = Coordinator(
            self.store,
            self.node_id,
            pool=self.pool,
            replicator=replicator,
            clamp=VersionClamp(self.hlc),
            alive=self._is_alive,
            limits=op_limits,
            read_repair_chance=s.read_repair_chance,
        )
        dispatcher = Dispatcher(
            execute=dataplane.execute,
            meta=self._meta,
            limits=op_limits,
            counters=self.counters,
        )
        self._dataport = DataPort(listener, dispatcher, limits)
        admin = AdminHandler(self.registry, self._health)
        self.membership = Membership(
            s, self.node_id, data_address, admin_address[1], on_event=self._member_event
        )
        self.config_service = ConfigService(
            s,
            self.store,
            self.membership,
            self.node_id,
            data_address,
            on_install=lambda config: self._installed(config, dispatcher),
        )
        self.handoff = HandOff(
            self.store,
            self.node_id,
            dataplane,
            config=lambda: self._config_service().config,
            propose=lambda command: self._config_service().propose(command),
            alive=self._is_alive,
            dead=self._is_dead,
            config_version_of=self._config_version_of,
            rate=s.handoff_rate,
        )
        auto_remover = AutoRemover(
            self.node_id,
            config=lambda: self._config_service().config,
            propose=lambda command: self._config_service().propose(command),
            dead=self._is_dead,
            after=s.auto_remove_after,
            stats=self.handoff.stats,
        )
        self.antientropy = AntiEntropy(
            self.store,
            self.node_id,
            ring=lambda: dataplane.ring,
            alive=self._is_alive,
            call=self._peer_call,
            clamp=dataplane.clamp,
            budget=ByteBudget(
                max(1 << 20, s.handoff_rate // AE_RATE_SHARE), AE_BURST, trio.current_time()
            ),
            interval=s.anti_entropy_interval,
            rng=random.Random(self.node_id),
        )
        self.info = NodeInfo(self.node_id, data_address, admin_address, os.getpid())
        ready_file: Path | None = None
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.pool.run)
                await nursery.start(replicator.run)
                await nursery.start(dataplane.run)
                await nursery.start(self.handoff.run)
                await nursery.start(self._dataport.serve)
                gossip_address = await nursery.start(self.membership.run)
                await nursery.start(self.config_service.run)
                await nursery.start(trio.serve_listeners, admin.handle_stream, admin_listeners)
                nursery.start_soon(self._expire_loop)
                nursery.start_soon(self.antientropy.run)
                if self.config_service.is_voter:
                    nursery.start_soon(auto_remover.run)
                self._nursery = nursery
                log.info(
                    "node_ready",
                    node_id=self.node_id,
                    data=f"{data_address[0]}:{data_address[1]}",
                    admin=f"{admin_address[0]}:{admin_address[1]}",
                    gossip=f"{gossip_address[0]}:{gossip_address[1]}",
                    join=",".join(s.join) or None,
                    version=__version__,
                )
                ready_file = _write_ready_file(s.data_dir, self.info)
                task_status.started(self.info)
        finally:
            if ready_file is not None:
                ready_file.unlink(missing_ok=True)
            for al in admin_listeners:
                await trio.aclose_forcefully(al)

    async def _expire_loop(self) -> None:
        while True:
            await trio.sleep(self.settings.expire_interval)
            # Keep going while a cycle used its whole budget: there is a backlog to clear.
            while self.store.expire_cycle(budget=1000) >= 1000:
                await trio.lowlevel.checkpoint()

    def _config_service(self) -> ConfigService:
        assert self.config_service is not None
        return self.config_service

    def _installed(self, config: ClusterConfig, dispatcher: Dispatcher) -> None:
        """A newer config is held: route by its ring, then let the handoff act on it."""
        assert self.dataplane is not None and self.handoff is not None
        before = set(self.dataplane.ring.members)
        self.dataplane.install(config)
        dispatcher.ring_version = config.version
        for gone in {m.node_id for m in before} - {m.node_id for m in config.members}:
            self.dataplane.replicator.target_removed(gone)
        self.handoff.on_install(config)

    def _address_of(self, node_id: str) -> tuple[str, int] | None:
        return self.dataplane.address_of(node_id) if self.dataplane else None

    def _gossip_state(self, node_id: str) -> MemberState | None:
        membership = self.membership
        if membership is None or not membership.running:
            return None
        member = membership.swim.member(node_id)
        return None if member is None else member.state

    def _is_alive(self, node_id: str) -> bool:
        """Worth sending to: alive or suspect by gossip, or not known to gossip yet."""
        if node_id == self.node_id:
            return True
        return self._gossip_state(node_id) not in (MemberState.DEAD, MemberState.LEFT)

    def _is_dead(self, node_id: str) -> bool:
        return self._gossip_state(node_id) in (MemberState.DEAD, MemberState.LEFT)

    def _config_version_of(self, node_id: str) -> int:
        """The config version ``node_id`` gossips that it runs (0: not known yet)."""
        membership = self.membership
        if membership is None or not membership.running:
            return 0
        member = membership.swim.member(node_id)
        return 0 if member is None else member.meta.config_version

    def _meta(self, namespace: str, op: str, args: list[Any]) -> Any:
        if op == "PING":
            return "PONG"
        if op == "INFO":
            return self.describe()
        if op == "MEMBERS":
            return self.membership.members() if self.membership else []
        if op == "GOSSIP":
            return self.membership.handle_push_pull(args[0]) if self.membership else None
        if op in ("FWD", "REPL", "BULK", "RECORDS", "HANDOFF", "LEAVE"):
            return self._mesh_op(namespace, op, args)
        if op in AE_OPS:
            if self.antientropy is None:
                raise CommandError(ErrorCode.UNAVAILABLE, "the node is not running yet")
            return self.antientropy.handle(op, namespace, args)
        return self._config_op(op, args)

    def _mesh_op(self, namespace: str, op: str, args: list[Any]) -> Any:
        dataplane, handoff = self.dataplane, self.handoff
        if dataplane is None or handoff is None:
            raise CommandError(ErrorCode.UNAVAILABLE, "the node is not running yet")
        if op == "FWD":
            return dataplane.execute_forwarded(namespace, [args[0], args[1]])
        if op == "REPL":
            return dataplane.apply_replicated(namespace, args[0])
        if op == "BULK":
            return dataplane.apply_bulk(namespace, args[0])
        if op == "RECORDS":
            return dataplane.records(namespace, args[0])
        if op == "HANDOFF":
            return handoff.handle_handoff(namespace, args[0])
        timeout = args[0].get("timeout") or 600.0
        return self._leave(handoff, float(timeout))

    async def _leave(self, handoff: HandOff, timeout: float) -> dict[str, Any]:
        try:
            with trio.fail_after(timeout):
                return await handoff.leave()
        except trio.TooSlowError:
            raise CommandError(
                ErrorCode.UNAVAILABLE, f"the drain did not finish in {timeout}s; run LEAVE again"
            ) from None

    def _config_op(self, op: str, args: list[Any]) -> Any:
        cs = self.config_service
        if cs is None:
            raise CommandError(ErrorCode.NO_VOTERS, "the node is not running yet")
        if op == "CONFIG_GET":
            return cs.config.to_mapping()
        if op == "NS_LIST":
            return {name: p.to_mapping() for name, p in cs.config.namespaces.items()}
        if op == "RING":
            # Smart clients and tools poll it; building a ring's shares costs milliseconds.
            config = cs.config
            if self._ring_answer is None or self._ring_answer[0] != config.version:
                self._ring_answer = (config.version, describe_ring(config))
            return self._ring_answer[1]
        if op == "CONFIG_PROPOSE":
            return cs.handle_propose(args[0])
        if op == "NS_SET":
            return cs.set_namespace(args[0], args[1])
        if op == "NS_DROP":
            return cs.drop_namespace(args[0])
        if op == "RAFT_STATUS":
            return cs.raft("status")
        if op in ("RAFT_ADD", "RAFT_REMOVE"):
            return cs.raft(op.removeprefix("RAFT_").lower(), args[0])
        raise CommandError(ErrorCode.UNKNOWN_OP, op)

    def describe(self) -> dict[str, Any]:
        """What INFO answers: identity, uptime, connections and every namespace's figures."""
        namespaces = {}
        for name, st in self.store.stats().items():
            figures = dataclasses.asdict(st) if dataclasses.is_dataclass(st) else dict(st)
            namespaces[name] = _plain(figures)
        return {
            "version": __version__,
            "node_id": self.node_id,
            "uptime_s": round(self.uptime(), 3),
            "connections": self._dataport.connection_count if self._dataport else 0,
            "namespaces": namespaces,
            "gossip": self._gossip_figures(),
            "mesh": self._mesh_figures(),
        }

    def _member_event(self, kind: EventKind, member: Member) -> None:
        if self.config_service is not None:
            self.config_service.on_member_event(kind, member)
        if kind in (EventKind.ALIVE, EventKind.JOINED) and self.dataplane is not None:
            self.dataplane.replicator.target_alive(member.name)
            if member.name in self.hints.needs_repair and self._nursery is not None:
                self._nursery.start_soon(self._repair, member.name)

    async def _repair(self, peer: str) -> None:
        """Hints owed to ``peer`` were lost (overflow, age): one anti-entropy pass with it."""
        results = await self.antientropy.repair(peer) if self.antientropy else None
        if results is not None and all(r.complete for r in results):
            self.hints.repaired(peer)

    async def _peer_call(self, peer: str, op: str, namespace: str, args: list[Any]) -> Any:
        address = self._address_of(peer)
        if address is None:
            raise CommandError(ErrorCode.NOT_OWNER, f"{peer} is not on this node's ring")
        return await self.pool.call(address, op, namespace, args, timeout=10.0)

    def _mesh_figures(self) -> dict[str, Any]:
        dataplane, handoff = self.dataplane, self.handoff
        if dataplane is None or handoff is None:
            return {}
        hint_stats = dataclasses.asdict(self.hints.stats)
        return {
            "counters": {
                "dataplane": dict(dataplane.stats),
                "replicator": dict(dataplane.replicator.stats),
                "hints": hint_stats,
                "rebalance": dict(handoff.stats),
                "peers": dict(self.pool.stats),
                "clamp": {"clamped": dataplane.clamp.clamped},
                "antientropy": dict(self.antientropy.stats) if self.antientropy else {},
            },
            "gauges": {
                "hints": len(self.hints),
                "hint_bytes": self.hints.total_bytes,
                "replica_writes_queued": dataplane.replicator.queued(),
                "ring_version": dataplane.ring_version,
                "ring_members": len(dataplane.ring.members),
            },
        }

    async def leave(self, timeout: float = 1.0) -> None:
        """Tell the cluster this node is leaving, and give the news ``timeout`` to spread."""
        membership = self.membership
        if membership is None or not membership.running:
            return
        membership.leave()
        if not [m for m in self._alive() if m["name"] != self.node_id]:
            return  # nobody to tell
        with trio.move_on_after(timeout):
            while membership.pending_broadcasts():
                await trio.sleep(0.05)
            # The last round is queued, not yet on the wire: let two gossip rounds go out.
            await trio.sleep(2 * membership.config.gossip_interval)

    def _alive(self) -> list[dict[str, Any]]:
        members = self.membership.members() if self.membership else []
        return [m for m in members if m["state"] == "alive"]

    def _gossip_figures(self) -> dict[str, Any]:
        if self.membership is None:
            return {}
        states: Counter[str] = Counter(m["state"] for m in self.membership.members())
        return {
            "members": dict(states),
            "stats": self.membership.stats(),
            "events": dict(self.membership.events),
        }

    def _health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "node_id": self.node_id,
            "uptime_s": round(self.uptime(), 3),
            "members_alive": len(self._alive()),
        }


def describe_ring(config: ClusterConfig) -> dict[str, Any]:
    """RING: the committed ring with each member's share of the key space (as primary)."""
    members = list(config.members)
    shares: dict[str, float] = {}
    if members:
        ring = Ring(members, config.version)
        for m in members:
            owned = sum(r.size for r in ring.owned_ranges(m.node_id, 1))
            shares[m.node_id] = owned / TOKEN_SPACE
    return {
        "version": config.version,
        "vnodes_per_weight": DEFAULT_VNODES_PER_WEIGHT,
        "members": [
            {**m.to_mapping(), "share": round(shares.get(m.node_id, 0.0), 4)} for m in members
        ],
    }


def _plain(value: Any) -> Any:
    """Turn store statistics into msgpack/JSON-able values (enums and dataclasses to text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    return str(value)


def _write_ready_file(data_dir: Path, info: NodeInfo) -> Path:
    """Write ``data_dir/node.json`` atomically so tools and tests can find the bound ports."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / READY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "node_id": info.node_id,
                "pid": info.pid,
                "data": f"{info.data_address[0]}:{info.data_address[1]}",
                "admin": f"{info.admin_address[0]}:{info.admin_address[1]}",
            }
        )
    )
    tmp.replace(path)
    return path


async def serve(
    settings: NodeSettings, *, task_status: trio.TaskStatus[NodeInfo] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a node until cancelled. ``task_status.started`` receives its :class:`NodeInfo`."""
    await Node(settings).serve(task_status=task_status)


async def _main(settings: NodeSettings) -> None:
    node = Node(settings)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            await nursery.start(node.serve)
            async for signum in signals:
                if signum == signal.SIGHUP:
                    if node.membership is not None:
                        node.membership.reload_keys()
                    continue
                log.info("node_stopping", signal=signal.Signals(signum).name)
                with trio.CancelScope(shield=True):
                    await node.leave()
                nursery.cancel_scope.cancel()
                break


def run(settings: NodeSettings) -> int:
    """Serve until SIGTERM or SIGINT; return the process exit code."""
    failed: list[str] = []
    try:
        trio.run(_main, settings)
    except* OSError as group:  # e.g. a port already in use: one line, not a traceback
        failed.extend(str(exc) for exc in group.exceptions)
    if failed:
        log.error("node_failed", error="; ".join(failed))
        return 1
    log.info("node_stopped")
    return 0
