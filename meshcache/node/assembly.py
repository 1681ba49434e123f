"""One assembly of a node's parts, shared by the real node and the simulation.

:class:`Assembly` builds everything a node does with data — the store, hints, replicator,
coordinator, anti-entropy, hand-off, auto-removal and the request dispatcher with its op
routes — from :class:`~meshcache.settings.NodeSettings` and what the caller injects:

* a **peer pool** (real sockets, or the simulated network's),
* a **wall clock** (versions and expiry) — trio's clock drives every timer,
* **liveness** (:class:`Liveness`: gossip on a real node, an oracle in the simulation),
  which routing reads together with the pool's per-peer circuit breakers (:meth:`reachable`),
* a **config source** (:class:`ConfigSource`: the Raft-backed config service, or the
  simulation's committed config) and a **membership view** (:class:`MembershipView`),
* a **seed**: when given, every part draws its randomness from ``Random(f"{seed}:{part}")``.

:class:`~meshcache.node.node.Node` adds what only a process has (listening sockets, gossip on
UDP, Raft, the admin port, signals); :mod:`meshcache.testing.simdata` adds the simulated network
and the gossip oracle. Neither builds a data part itself, so a green simulation tests the
node's own wiring.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from typing import Any

import trio

from meshcache.control import ClusterConfig
from meshcache.errors import CommandError, ErrorCode
from meshcache.hlc import HLC
from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.cluster.autoremove import AutoRemover
from meshcache.node.contracts import ConfigSource, Liveness, MembershipView
from meshcache.node.data.antientropy import AntiEntropy
from meshcache.node.data.coordinator import Coordinator
from meshcache.node.data.handoff import HandOff
from meshcache.node.data.hot import HotKeys
from meshcache.node.data.replication import ByteBudget, HintQueue, VersionClamp
from meshcache.node.data.replicator import Replicator
from meshcache.node.data.scan import KeyScan, slice_bytes_for
from meshcache.node.loader.loader import Loader
from meshcache.node.loader.source import Source
from meshcache.node.net.breakers import PROBE_TIMEOUT
from meshcache.node.net.dispatch import Dispatcher
from meshcache.node.net.peer_pool import PeerPool
from meshcache.node.net.relay import answer_bytes_for
from meshcache.node.routes import Routes
from meshcache.settings import NodeSettings
from meshcache.store.store import Store
from meshcache.wire.address import Address
from meshcache.wire.ops import Limits

#: One unreachable owner may hold at most this share of the hint bytes.
HINT_SHARE_PER_TARGET = 4
#: Anti-entropy runs beside client traffic: this share of the hand-off rate (at least 1 MiB/s),
#: in bursts small enough that one batch never holds the loop long.
AE_RATE_SHARE = 16
AE_MIN_RATE = 1 << 20
AE_BURST = 256 * 1024
#: The timeout of anti-entropy's calls to a peer. ``AE_DIGEST`` and ``AE_KEYS`` may wait for
#: the peer to scan its store: about 5 us of CPU a key, up to twice that in time on a busy
#: peer (the scan takes turns with its requests), so 6-7 s for a million keys. A longer
#: timeout would hold a round that long on a peer behind a cut.
AE_CALL_TIMEOUT = 10.0
#: Keys an active-expiry cycle looks at before it yields.
EXPIRE_BUDGET = 1000


StoreFactory = Callable[..., Store]


class Assembly:
    """A node's data parts, wired once. Build it, ``install`` a config, then ``run`` it.

    Args:
        settings: the node's settings (limits, namespaces, rates, intervals, hint bounds).
        node_id: this node's id on the ring.
        pool: connections to other nodes' data ports.
        liveness: other nodes' health.
        config: the committed config and config-plane ops; None until :meth:`bind_config`
            (the real config service needs the store built here).
        membership: the membership ops.
        wall_clock: seconds since the epoch (versions, expiry); timers use trio's clock.
        seed: makes every part's randomness reproducible (None: the parts' defaults).
        store_factory: builds the store (the simulation records every local write).
        is_voter: runs auto-removal of long-dead ring members.
        info: answers INFO (the node's description; None: only the data parts' figures).
        sources: the databases read-through namespaces load from (node-local; the real node
            builds them from its ``[sources.NAME]`` settings, the simulation simulates one).
    """

    def __init__(
        self,
        settings: NodeSettings,
        node_id: str,
        *,
        pool: PeerPool,
        liveness: Liveness,
        config: ConfigSource | None,
        membership: MembershipView,
        wall_clock: Callable[[], float],
        seed: str | None = None,
        store_factory: StoreFactory = Store,
        is_voter: bool = False,
        info: Callable[[], dict[str, Any]] | None = None,
        sources: Mapping[str, Source] | None = None,
    ) -> None:
        s = settings
        self.settings = settings
        self.node_id = node_id
        self.pool = pool
        self.liveness = liveness
        self.breakers = pool.breakers
        self.breakers.on_close = self._peer_answers
        self._config_source = config
        self.membership = membership
        self.is_voter = is_voter
        self.counters = NodeCounters()
        self.hlc = HLC(lambda: int(wall_clock() * 1000))
        self.store = store_factory(
            clock=wall_clock,
            hlc=self.hlc,
            policies=s.namespaces,
            tombstone_grace_s=s.tombstone_grace,
            rng=self._rng(seed, "store"),
            max_value_bytes=s.limits.max_value_bytes,
        )
        self.hints = HintQueue(
            max_bytes=max(1, s.hint_max_bytes),
            max_bytes_per_target=max(1, s.hint_max_bytes // HINT_SHARE_PER_TARGET),
            max_age_s=s.hint_max_age,
        )
        self.limits = Limits(
            max_key_bytes=s.limits.max_key_bytes, max_value_bytes=s.limits.max_value_bytes
        )
        # Where requests go, replica writes included, follows gossip and the breakers; what
        # the node owns, hands off or removes follows gossip alone.
        self.replicator = Replicator(
            pool,
            address_of=self.address_of,
            alive=self.reachable,
            hints=self.hints,
            ring_version=lambda: self.coordinator.ring_version,
        )
        self.coordinator = Coordinator(
            self.store,
            node_id,
            pool=pool,
            replicator=self.replicator,
            clamp=VersionClamp(self.hlc),
            alive=self.reachable,
            limits=self.limits,
            read_repair_chance=s.read_repair_chance,
            rng=self._rng(seed, "coordinator"),
        )
        self.hot = HotKeys(
            self.store,
            node_id,
            ring=lambda: (self.coordinator.ring, self.coordinator.ring_version),
            alive=self.reachable,
            call=self.peer_call,
            submit=self.peer_submit,
            apply=self.coordinator.apply_replicated,
            wall_clock=wall_clock,
            rng=self._rng(seed, "hot"),
        )
        self.coordinator.hot = self.hot
        self.loader = Loader(
            self.store,
            node_id,
            sources=sources or {},
            replicate=self.coordinator.replicate_key,
            max_key_bytes=s.limits.max_key_bytes,
            wall_clock=wall_clock,
            drop_copy=self.hot.fence,
            coordinates=self.coordinator.coordinates,
        )
        self.loader.install(s.namespaces)
        self.coordinator.loader = self.loader
        self.handoff = HandOff(
            self.store,
            node_id,
            self.coordinator,
            config=lambda: self.config_source.config,
            propose=lambda command: self.config_source.propose(command),
            alive=liveness.alive,
            dead=liveness.dead,
            config_version_of=liveness.config_version_of,
            rate=s.handoff_rate,
        )
        self.auto_remover = AutoRemover(
            node_id,
            config=lambda: self.config_source.config,
            propose=lambda command: self.config_source.propose(command),
            dead=liveness.dead,
            after=s.auto_remove_after,
            stats=self.handoff.stats,
        )
        self.antientropy = AntiEntropy(
            self.store,
            node_id,
            ring=lambda: self.coordinator.ring,
            alive=self.reachable,
            call=self.peer_call,
            clamp=self.coordinator.clamp,
            budget=ByteBudget(
                max(AE_MIN_RATE, s.handoff_rate // AE_RATE_SHARE), AE_BURST, trio.current_time()
            ),
            interval=s.anti_entropy_interval,
            rng=self._rng(seed, "antientropy") or random.Random(node_id),
        )
        self.scan = KeyScan(
            node_id,
            self.store,
            ring=lambda: self.coordinator.ring,
            alive=self.reachable,
            call=self.peer_call,
            slice_bytes=slice_bytes_for(s.limits.max_frame_bytes),
        )
        self.routes = Routes(self, info=info)
        self.dispatcher = Dispatcher(
            execute=self.coordinator.execute,
            # HOT_GET is a data op (permissions, counts) the coordinator answers itself.
            routes={**self.routes.table(), "HOT_GET": self.coordinator.read_at_least},
            limits=self.limits,
            counters=self.counters,
            answer_bytes=answer_bytes_for(s.limits.max_frame_bytes),
        )
        self.dispatcher.hot = self.hot
        self.dispatcher.relay = self.coordinator.execute
        self._nursery: trio.Nursery | None = None
        # Ring members' addresses by the last installed config (a removed one's breaker goes).
        self._member_addresses: dict[str, Address | None] = {}

    @property
    def config_source(self) -> ConfigSource:
        """The config plane.

        Raises:
            CommandError: ``UNAVAILABLE`` before one is bound.
        """
        if self._config_source is None:
            raise CommandError(ErrorCode.UNAVAILABLE, "the node is not running yet")
        return self._config_source

    def bind_config(self, config: ConfigSource, *, is_voter: bool) -> None:
        """Give the parts their config plane (once; before :meth:`run`)."""
        self._config_source = config
        self.is_voter = is_voter

    @staticmethod
    def _rng(seed: str | None, part: str) -> random.Random | None:
        return None if seed is None else random.Random(f"{seed}:{part}")

    # --- life ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every part's background work until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.pool.run)
            await nursery.start(self.replicator.run)
            await nursery.start(self.coordinator.run)
            await nursery.start(self.hot.run)
            await nursery.start(self.loader.run)
            await nursery.start(self.handoff.run)
            await nursery.start(self.breakers.run, self._probe, self._held_dead)
            nursery.start_soon(self._expire_loop)
            nursery.start_soon(self.antientropy.run)
            if self.is_voter:
                nursery.start_soon(self.auto_remover.run)
            self._nursery = nursery
            task_status.started()

    async def _expire_loop(self) -> None:
        while True:
            await trio.sleep(self.settings.expire_interval)
            # Keep going while a cycle used its whole budget: there is a backlog to clear.
            while self.store.expire_cycle(budget=EXPIRE_BUDGET) >= EXPIRE_BUDGET:
                await trio.lowlevel.checkpoint()

    # --- what the node learns from the config and membership planes -----------------------

    def install(self, config: ClusterConfig) -> None:
        """A newer config is held: route by its ring, then let the hand-off act on it."""
        before = {m.node_id for m in self.coordinator.ring.members}
        self.coordinator.install(config)
        self.loader.install(config.namespaces)
        self.dispatcher.ring_version = config.version
        for gone in before - {m.node_id for m in config.members}:
            self.replicator.target_removed(gone)
            address = self._member_addresses.get(gone)
            if address is not None:
                self.breakers.forget(address)
        self._member_addresses = {m.node_id: self.address_of(m.node_id) for m in config.members}
        self.handoff.on_install(config)

    def member_alive(self, peer: str) -> None:
        """Gossip holds ``peer`` alive (again): probe it at once if its breaker is open (hints
        and routing wait for the breaker to close); replay its hints; repair what hints lost."""
        self.breakers.wake(self.address_of(peer))
        self._deliver_owed(peer)

    def _deliver_owed(self, peer: str) -> None:
        self.replicator.target_alive(peer)
        if peer in self.hints.needs_repair and self._nursery is not None:
            self._nursery.start_soon(self._repair, peer)

    # --- where requests go: gossip and the peers' breakers -----------------------------------

    def reachable(self, node_id: str) -> bool:
        """Worth sending to: gossip holds ``node_id`` alive (or suspect, or does not know it
        yet) and its circuit breaker is closed. Routing, replica writes, hot-key copies and
        anti-entropy ask this; ownership, hand-off and auto-removal ask gossip alone."""
        if self.breakers.open and self.breakers.blocked(self.address_of(node_id)):
            if self.liveness.alive(node_id):
                self.breakers.stats["steered"] += 1
            return False
        return self.liveness.alive(node_id)

    def _held_dead(self, address: Address) -> bool:
        node_id = self.coordinator.node_at(address)
        return node_id is not None and self.liveness.dead(node_id)

    async def _probe(self, address: Address) -> None:
        await self.pool.request(address, "PING", "default", [], timeout=PROBE_TIMEOUT)

    def _peer_answers(self, address: Address) -> None:
        """A peer's breaker closed: what was held for it while it was open goes now."""
        node_id = self.coordinator.node_at(address)
        if node_id is not None:
            self._deliver_owed(node_id)

    async def _repair(self, peer: str) -> None:
        """Hints owed to ``peer`` were lost (overflow, age): one anti-entropy pass with it."""
        results = await self.antientropy.repair(peer)
        if results is not None and all(r.complete for r in results):
            self.hints.repaired(peer)

    # --- calls to peers --------------------------------------------------------------------

    def address_of(self, node_id: str) -> Address | None:
        return self.coordinator.address_of(node_id)

    async def peer_call(
        self,
        peer: str,
        op: str,
        namespace: str,
        args: list[Any],
        timeout: float = AE_CALL_TIMEOUT,
        lane: str = "",
    ) -> Any:
        """A request to ``peer``; ``lane``: on that lane's kept connection to it
        (:class:`PeerPool`), so that its answer is not held behind the pooled connection's
        slower answers."""
        address = self.address_of(peer)
        if address is None:
            raise CommandError(ErrorCode.NOT_OWNER, f"{peer} is not on this node's ring")
        return await self.pool.call(address, op, namespace, args, timeout=timeout, lane=lane)

    def peer_submit(
        self,
        peer: str,
        op: str,
        namespace: str,
        args: list[Any],
        timeout: float,
        lane: str,
        answered: Callable[[Any], None],
    ) -> bool:
        """:meth:`peer_call` without a task (:meth:`PeerPool.submit`): ``answered`` gets the
        response or the error; False (nothing sent) when no open connection can take it."""
        address = self.address_of(peer)
        if address is None:
            return False
        return self.pool.submit(
            address, op, namespace, args, timeout=timeout, answered=answered, lane=lane
        )

    # --- figures ----------------------------------------------------------------------------

    def mesh_figures(self) -> dict[str, Any]:
        """The data plane's counters and gauges (INFO's ``mesh``, /metrics)."""
        coordinator = self.coordinator
        hot_counters, hot_gauges = self.hot.figures()
        loader_figures = self.loader.figures()
        breaker_counters, peers_open = self.breakers.figures()
        return {
            "counters": {
                "dataplane": dict(coordinator.stats),
                "replicator": dict(self.replicator.stats),
                "hints": dataclasses.asdict(self.hints.stats),
                "rebalance": dict(self.handoff.stats),
                "peers": dict(self.pool.stats),
                "clamp": {"clamped": coordinator.clamp.clamped},
                "antientropy": dict(self.antientropy.stats),
                "breakers": breaker_counters,
                "hot": hot_counters,
                "loader": loader_figures["counters"],
            },
            "gauges": {
                "hints": len(self.hints),
                "hint_bytes": self.hints.total_bytes,
                "replica_writes_queued": self.replicator.queued(),
                "ring_version": coordinator.ring_version,
                "ring_members": len(coordinator.ring.members),
                "handoff_ranges_moving": self.handoff.ranges_moving,
                "peers_open": peers_open,
                **hot_gauges,
                **{f"loader_{k}": v for k, v in loader_figures["gauges"].items()},
            },
            "loader_timings": loader_figures["timings"],
        }


__all__ = ["AE_RATE_SHARE", "HINT_SHARE_PER_TARGET", "Assembly"]
