"""Rebalancing: key ranges change hands when the committed ring changes.

Every node compares the ring its store reflects (``held``) with the newest committed ring and
**pulls** the ranges it gained from their previous owners (``HANDOFF``: the source streams the
records with ``REPL``, throttled by ``handoff_rate``):

* a **joining** node is registered as ``joining`` (ring v+1): writes already reach it (it is a
  pending owner), reads do not. It pulls every range it will own, then proposes itself
  ``active`` (v+2) and starts serving reads;
* a node that gains ranges because a dead member was removed pulls them from the surviving
  owners;
* a node that starts with an empty store while already on the ring (a restart) pulls everything
  it owns, from a leaving member too;
* a node owns by each namespace's replica count: what it owned is compared by the count its
  store was laid out for (the held config's), so a raised count pulls the new replicas' ranges.

A **leaving** node (``LEAVE``) does the mirror image: it marks itself ``leaving``, pushes every
record it holds to the owners that replace it, then removes itself from the ring; it keeps
answering requests as a router (forwarding to the owners). The invariant: every member that
owns a range once it is gone ends up with every record it held for it. A node with a store
skips pulling exactly the ranges a leaving member held and replaces it on (the push brings
them) and pulls all else it gains; it keeps what it skipped until that member is off the ring,
and pulls it from the surviving holders if the member was removed while not alive (it crashed
before its push landed, and the auto-remover took it off). The leaving node pushes once its own
pulls for the ring are done; its removal is a compare-and-set on the owners it pushed for
(members and replica counts), so such a change in between makes it push again; and a push that
is not the first of a fresh ``LEAVE`` (a ``LEAVE`` sent again, or one again after a ring change)
goes to every owner to come, not only to the replacements, since what an earlier push
delivered, and by which ring, is not known.

A busy mesh makes every step of a leave slow, not wrong: a batch that got no answer is sent
again (last-writer-wins makes a duplicate harmless), a replacement whose push broke off is
pushed to again, and a ring change whose outcome is unknown (a voter that did not answer in
time) is checked against the config before it is proposed again — until the caller's deadline.
What cannot be done is a typed refusal (``UNAVAILABLE``, saying how many records had moved),
never a transport error; progress is logged as ``leave_progress``.

Once a ring is stable (no joining or leaving member) and nothing is left to pull, each node
drops the keys it no longer owns (no tombstone: the data lives on at its owners). A config that
changes no member and no replica count (a namespace's TTL, bounds, hot keys) moves nothing and
scans nothing.

Every member installs a committed ring at its own moment, and until it has, it routes (and
replicates) by the ring before. So each step that depends on *everyone* routing by a ring first
waits until every live member runs it (at most ``SETTLE_TIMEOUT``): a pull starts only once
every coordinator sends new writes to the pending owner too (a write coordinated by the old ring
after the source's scan would be missed), a leaving node drains only once every write also
reaches its replacements, and nothing is dropped while a lagging member may still route a read
to it. A member runs a ring once it gossips it (``config_version``) or says so itself: one not
yet known to run it is sent a ``PING`` every ``SETTLE_ASK`` seconds, whose answer carries the
ring version its data plane routes by. Gossip alone takes a tenth of a second or more to spread
with the ``lan`` profile.

The pure range arithmetic (which ranges a node gains, who replaces a leaving node) lives in
:mod:`meshcache.ring.diff`; removing long-dead members is :mod:`meshcache.node.cluster.autoremove`.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from functools import partial
from typing import Any

import structlog
import trio

from meshcache.control import ClusterConfig, Command, RemoveMember, SetMemberState
from meshcache.errors import (
    CommandError,
    ErrorCode,
    MeshcacheError,
    ProposalTimeoutError,
    UnavailableError,
)
from meshcache.node.data.coordinator import Coordinator
from meshcache.node.data.outbound import SCAN_CHUNK, Outbound, stream
from meshcache.node.data.replication import ByteBudget
from meshcache.node.data.replicator import BATCH_BYTES
from meshcache.ring import PENDING_STATES, READ_STATES, Ring, RingMember, RingState
from meshcache.ring.diff import gained_ranges, replacements
from meshcache.ring.tokens import (
    RangeSet,
    TokenRange,
    label_runs,
    ranges_from_wire,
    ranges_to_wire,
)
from meshcache.store.store import Store
from meshcache.wire.address import parse_address

log = structlog.get_logger("meshcache.rebalance")

HANDOFF_TIMEOUT = 600.0
REPL_BATCH_TIMEOUT = 30.0
RETRY_DELAY = 1.0
PROPOSE_RETRIES = 10
# A REPL/BULK batch that got no answer, or whose connection broke, is sent this many times in
# all before the stream gives up (a busy target answers late, not never).
BATCH_ATTEMPTS = 3
# A leaving node retries what a busy mesh made fail (a push, an unknown proposal outcome) after
# a back-off doubling from the first to the last, for as long as the LEAVE's deadline allows;
# a ring change is given up after PROPOSE_PATIENCE seconds of unknown outcomes.
LEAVE_RETRY_FIRST = 0.5
LEAVE_RETRY_MAX = 5.0
PROPOSE_PATIENCE = 120.0
LEAVE_PROGRESS_EVERY = 5.0  # seconds between two leave_progress log lines (at most)
# How long a step waits for every live member to run a ring (then goes ahead, logged).
SETTLE_TIMEOUT = 10.0
SETTLE_POLL = 0.05
SETTLE_ASK = 0.01  # ... and asks a member gossip does not show running it yet this often

Propose = Callable[[Command], Awaitable[ClusterConfig]]


class HandOff:
    """Moves ranges on ring changes and drains this node on LEAVE."""

    def __init__(
        self,
        store: Store,
        node_id: str,
        dataplane: Coordinator,
        *,
        config: Callable[[], ClusterConfig],
        propose: Propose,
        alive: Callable[[str], bool],
        dead: Callable[[str], bool],
        config_version_of: Callable[[str], int],
        rate: int,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.dataplane = dataplane
        self._config = config
        self._propose = propose
        self._alive = alive
        self._dead = dead
        self._config_version_of = config_version_of
        self._clock = clock
        self.budget = ByteBudget(rate, max(BATCH_BYTES, rate // 4), clock())
        self.held: ClusterConfig | None = None  # the ring our store reflects
        self._held_moved = trio.Event()  # set (and replaced) whenever ``held`` changes
        self._pulling = False  # the worker runs (:meth:`run`): ``held`` follows the config
        # ``held``'s ring, kept: building a ring (every member's vnodes, two views) costs
        # milliseconds of CPU, and the next ring change compares it with the new one.
        self._held_ring: Ring | None = None
        self.stats: Counter[str] = Counter()
        # What this node left to a leaving member's push (namespace, range, the leaving
        # members that held it) and holds only once that push lands: pulled from the other
        # holders if such a member is removed from the ring without being alive (it crashed
        # before its push, then was removed).
        self._owed: list[tuple[str, TokenRange, frozenset[str]]] = []
        # Ranges this node is moving now: pulling them in, or pushing them out as it leaves
        # (the node serving a pull does not count it, so a sum over the nodes counts each once).
        self.ranges_moving = 0
        self._wakeup = trio.Event()
        self._settled_version = 0  # every live member ran this ring (or we gave up waiting)
        # The layout (:func:`_layout`) whose unowned keys the last complete drop removed.
        self._dropped_for: tuple[Any, ...] | None = None
        self.leave_moved = 0  # records the current (or last) LEAVE pushed so far
        # ... of which each replacement's push got so far (a push sent again starts over).
        self._leave_landed: Counter[str] = Counter()
        self._leaving = False
        self._leave_started = self._progress_at = 0.0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._worker)
                self._pulling = True
                task_status.started()
        finally:
            self._pulling = False

    def on_install(self, config: ClusterConfig) -> None:
        """A newer config was installed: reconsider what to pull, promote or drop."""
        self._wakeup.set()

    # --- pulling -----------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            config = self._config()
            me = config.member(self.node_id)
            if me is None or not config.members:
                if self.held is not None and config.version > 0:
                    await self._settled(config)  # nobody routes to us any more
                    await self._drop_unowned(config)  # removed from the ring: hold nothing
                continue
            layout = _layout(config)
            if (
                self.held is not None
                and self.held.version < config.version
                and _layout(self.held) == layout
            ):
                # A policy change: the store already reflects this ring; nothing moves.
                self._hold(config, self._held_ring)
            if self.held is None or self.held.version < config.version:
                await self._settled(config)
                try:
                    ring = await self._pull_gained(config)
                except MeshcacheError as exc:
                    log.warning("handoff_incomplete", error=str(exc), retry_s=RETRY_DELAY)
                    self.stats["handoff_retries"] += 1
                    await trio.sleep(RETRY_DELAY)
                    self._wakeup.set()
                    continue
                self._hold(config, ring)
            if me.state == "joining":
                await self._promote()
                continue
            latest = self._config()
            if layout == self._dropped_for:
                continue  # what this ring does not give us was dropped already
            if latest.version == config.version and self._ring(latest).stable:
                await self._settled(latest)
                if self._config().version == latest.version and await self._drop_unowned(latest):
                    self._dropped_for = layout

    def _hold(self, config: ClusterConfig, ring: Ring | None) -> None:
        """The store reflects ``config`` (whose ring is ``ring``, if built)."""
        self.held, self._held_ring = config, ring
        self._held_moved.set()
        self._held_moved = trio.Event()

    async def _holding(self, config: ClusterConfig) -> None:
        """Wait until the store reflects ``config`` or a newer ring (the pulls are done); at
        once when nothing pulls (a hand-off driven step by step, without :meth:`run`)."""
        while self._pulling and (self.held is None or self.held.version < config.version):
            await self._held_moved.wait()

    def _ring(self, config: ClusterConfig) -> Ring:
        """``config``'s ring: the data plane's when it routes by that version (a ring is built
        from every member's vnodes, which costs milliseconds)."""
        ring = self.dataplane.ring
        if ring.version == config.version and ring.members:
            return ring
        return Ring(config.members, config.version)

    async def _settled(self, config: ClusterConfig) -> bool:
        """Wait until every live member of ``config`` runs ``config.version`` (or a newer one):
        gossips it, or answers a ``PING`` carrying it; False when ``SETTLE_TIMEOUT`` ran out
        first. Waits once per version."""
        if config.version <= self._settled_version:
            return True
        started = self._clock()
        deadline = started + SETTLE_TIMEOUT
        told, answers = trio.open_memory_channel[str](math.inf)
        with told, answers:
            async with trio.open_nursery() as asking:
                for m in config.members:
                    if m.node_id != self.node_id:
                        asking.start_soon(self._ask_version, m.node_id, config.version, told)
                try:
                    return await self._wait_settled(config, started, deadline, answers)
                finally:
                    asking.cancel_scope.cancel()

    async def _wait_settled(
        self,
        config: ClusterConfig,
        started: float,
        deadline: float,
        answers: trio.MemoryReceiveChannel[str],
    ) -> bool:
        answered: set[str] = set()  # members whose own answer carried the version
        while True:
            behind = [
                m.node_id
                for m in config.members
                if m.node_id != self.node_id
                and m.node_id not in answered
                and not self._dead(m.node_id)
                and self._config_version_of(m.node_id) < config.version
            ]
            if not behind:
                self._settled_version = max(self._settled_version, config.version)
                log.debug(
                    "ring_settled",
                    ring_version=config.version,
                    seconds=round(self._clock() - started, 3),
                    answered=len(answered),
                )
                return True
            if self._clock() >= deadline:
                self._settled_version = max(self._settled_version, config.version)
                self.stats["settle_timeouts"] += 1
                log.warning("ring_not_settled", ring_version=config.version, behind=behind[:8])
                return False
            with trio.move_on_after(SETTLE_POLL):
                answered.add(await answers.receive())

    async def _ask_version(
        self, node_id: str, version: int, told: trio.MemorySendChannel[str]
    ) -> None:
        """``PING`` ``node_id`` every ``SETTLE_ASK`` seconds until its answer carries ring
        ``version`` or newer (then say so on ``told``), or gossip shows it, or it is dead."""
        while self._config_version_of(node_id) < version and not self._dead(node_id):
            address = self.dataplane.address_of(node_id)
            if address is not None:
                try:
                    response = await self.dataplane.pool.request(
                        address, "PING", "default", [], timeout=SETTLE_TIMEOUT
                    )
                except MeshcacheError:
                    response = None
                if response is not None and response.ring_version >= version:
                    told.send_nowait(node_id)
                    return
            await trio.sleep(SETTLE_ASK)

    async def _pull_gained(self, config: ClusterConfig) -> Ring:
        """Pull every range this node gains from ``held`` to ``config``; ``config``'s ring."""
        started = self._clock()
        current = self._ring(config)
        await trio.lowlevel.checkpoint()  # a ring built here is milliseconds of work
        held: Ring | None = None
        if self.held is not None:
            held = self._held_ring
            if held is None or held.version != self.held.version:
                held = self._ring(self.held)
                await trio.lowlevel.checkpoint()
        jobs: list[tuple[str, list[tuple[TokenRange, tuple[RingMember, ...]]]]] = []
        leaving = {m.node_id for m in config.members if m.state == "leaving"}
        owed: list[tuple[str, TokenRange, frozenset[str]]] = []
        unpushed: dict[str, list[tuple[TokenRange, tuple[RingMember, ...]]]] = {}
        if held is not None:
            owed, unpushed = await self._unpushed(config, current, held)
        # What the leaving members push to this node (leave(), _push_all), per replica count,
        # cut where the ring's ranges end: exactly that is not pulled.
        pushed: dict[int, RangeSet] = {}
        cuts: list[int] = []
        if leaving and self.held is not None:
            cuts = sorted(
                set(current.boundaries(READ_STATES)) | set(current.boundaries(PENDING_STATES))
            )
        # Comparing two rings costs milliseconds: once per pair of replica counts (the one the
        # store was laid out for, the new one), not per namespace, with a checkpoint after each.
        gained: dict[tuple[int, int], list[tuple[TokenRange, tuple[RingMember, ...]]]] = {}
        for namespace, policy in config.namespaces.items():
            # Each range with its live holders, grouped by the first: one HANDOFF per source.
            by_source: dict[str, list[tuple[TokenRange, tuple[RingMember, ...]]]] = {}
            counts_of = (policy.replicas, self._held_replicas(namespace, policy.replicas))
            if counts_of not in gained:
                gained[counts_of] = gained_ranges(held, current, self.node_id, *counts_of)
                await trio.lowlevel.checkpoint()
            if cuts and policy.replicas not in pushed:
                pushed[policy.replicas] = replacements(current, policy.replicas).get(
                    self.node_id, RangeSet(())
                )
                await trio.lowlevel.checkpoint()
            for trange, sources in gained[counts_of]:
                wanted = [trange]
                if held is not None and cuts and any(m.node_id in leaving for m in sources):
                    # What a leaving member held (an owner in the ring our store reflects)
                    # and replaces this node on comes from its push; the rest is pulled: the
                    # ranges this node owns in the read view already (nobody pushes those)
                    # and those the leaving member gained with this ring itself. An empty
                    # store pulls everything: a push may have gone to the node's earlier life.
                    before = held.owners_for_token(trange.end, counts_of[1])
                    pushers = frozenset(m.node_id for m in before if m.node_id in leaving)
                    if pushers:
                        wanted, left = _split(trange, pushed[policy.replicas], cuts)
                        owed += [(namespace, r, pushers) for r in left]
                        if not wanted:
                            continue
                live = [m for m in sources if self._alive(m.node_id)]
                if not live:
                    continue  # nobody holds it any more: a cache may lose data no one has
                by_source.setdefault(live[0].node_id, []).extend((r, tuple(live)) for r in wanted)
            for trange, sources in unpushed.get(namespace, []):
                by_source.setdefault(sources[0].node_id, []).append((trange, sources))
            jobs += [(namespace, ranges) for ranges in by_source.values()]
        counts: list[int] = []
        failed: list[MeshcacheError] = []

        async def pull(
            namespace: str, ranges: list[tuple[TokenRange, tuple[RingMember, ...]]]
        ) -> None:
            try:
                counts.append(await self._pull_from(namespace, ranges))
            except MeshcacheError as exc:
                failed.append(exc)

        # Every source at once: each scans its own store; the pull ends with the slowest.
        async with trio.open_nursery() as nursery:
            for job in jobs:
                nursery.start_soon(pull, *job)
        if failed:
            raise failed[0]
        self._owed = owed
        total = sum(counts)
        if total or held is None:
            log.info(
                "handoff_pulled",
                records=total,
                sources=len(jobs),
                ring_version=config.version,
                seconds=round(self._clock() - started, 3),
            )
        return current

    async def _unpushed(
        self, config: ClusterConfig, current: Ring, held: Ring
    ) -> tuple[
        list[tuple[str, TokenRange, frozenset[str]]],
        dict[str, list[tuple[TokenRange, tuple[RingMember, ...]]]],
    ]:
        """Sort what this node left to leaving members' pushes (``_owed``) by ``config``: what
        it still waits for (its members still leaving), and, per namespace, the parts of it
        this node owns by ``current`` that a member removed without being alive never pushed,
        each with its live holders (the held ring's owners, then the current ones). A member
        alive once removed left after its push landed: what it owed is held."""
        waiting: list[tuple[str, TokenRange, frozenset[str]]] = []
        pull: dict[str, list[tuple[TokenRange, tuple[RingMember, ...]]]] = {}
        if not self._owed:
            return waiting, pull
        cuts = sorted(
            set(current.boundaries(READ_STATES))
            | set(current.boundaries(PENDING_STATES))
            | set(held.boundaries(READ_STATES))
        )
        for namespace, trange, pushers in self._owed:
            policy = config.namespaces.get(namespace)
            if policy is None:
                continue
            gone = [n for n in pushers if config.member(n) is None]
            if not gone:
                waiting.append((namespace, trange, pushers))
                continue
            if all(self._alive(n) for n in gone):
                continue
            mine = current.write_ranges(self.node_id, policy.replicas)
            held_count = self._held_replicas(namespace, policy.replicas)
            for piece in _split(trange, mine, cuts)[1]:
                holders: list[RingMember] = []
                for m in (
                    *held.owners_for_token(piece.end, held_count),
                    *current.owners_for_token(piece.end, policy.replicas),
                ):
                    if m.node_id != self.node_id and self._alive(m.node_id) and m not in holders:
                        holders.append(m)
                if holders:
                    pull.setdefault(namespace, []).append((piece, tuple(holders)))
            await trio.lowlevel.checkpoint()
        self.stats["handoff_unpushed_ranges"] += sum(len(v) for v in pull.values())
        return waiting, pull

    def _held_replicas(self, namespace: str, replicas: int) -> int:
        """The replica count of ``namespace`` the store is laid out for: the held config's
        (``replicas``, the new count, for a namespace the held config does not have)."""
        policy = None if self.held is None else self.held.namespaces.get(namespace)
        return replicas if policy is None else policy.replicas

    async def _pull_from(
        self, namespace: str, ranges: list[tuple[TokenRange, tuple[RingMember, ...]]]
    ) -> int:
        self.ranges_moving += len(ranges)
        try:
            return await self._pull_from_one_of(namespace, ranges)
        finally:
            self.ranges_moving -= len(ranges)

    async def _pull_from_one_of(
        self, namespace: str, ranges: list[tuple[TokenRange, tuple[RingMember, ...]]]
    ) -> int:
        """Pull ``ranges`` (each with its holders, the first the same for all) from their first
        holder; when that fails, each range from its next holder (ranges that share the first
        may not share the others); the records pulled. Raises the error of a range whose
        every holder failed."""
        member = ranges[0][1][0]
        try:
            count = await self.dataplane.pool.call_alone(
                parse_address(member.address, default_port=None),
                "HANDOFF",
                namespace,
                [{"ranges": ranges_to_wire(r for r, _ in ranges), "to": self.node_id}],
                timeout=HANDOFF_TIMEOUT,
            )
        except MeshcacheError as exc:
            rest: dict[str, list[tuple[TokenRange, tuple[RingMember, ...]]]] = {}
            for trange, holders in ranges:
                if len(holders) > 1:
                    rest.setdefault(holders[1].node_id, []).append((trange, holders[1:]))
            count = 0
            for group in rest.values():
                count += await self._pull_from_one_of(namespace, group)
            if any(len(holders) == 1 for _, holders in ranges):
                raise exc from None
            return count
        self.stats["records_pulled"] += int(count)
        return int(count)

    async def _promote(self) -> None:
        """A joining node that holds its ranges becomes active."""
        for _ in range(PROPOSE_RETRIES):
            config = self._config()
            me = config.member(self.node_id)
            if me is None or me.state != "joining":
                return
            if self.held is None or self.held.version != config.version:
                self._wakeup.set()  # a newer ring arrived meanwhile: pull for it first
                return
            try:
                await self._propose(SetMemberState(config.version, self.node_id, RingState.ACTIVE))
                log.info("ring_member_active", node_id=self.node_id)
                self.stats["promotions"] += 1
                return
            except MeshcacheError as exc:
                log.info("promotion_retry", error=str(exc))
                await trio.sleep(0.2)

    # --- serving a pull (source side) ---------------------------------------------------------

    async def handle_handoff(self, namespace: str, request: Any) -> int:
        """HANDOFF: stream every record of ``namespace`` in the asked-for ranges to the caller."""
        if type(request) is not dict or type(request.get("to")) is not str:
            raise CommandError(ErrorCode.BAD_REQUEST, "HANDOFF takes {ranges, to}")
        wanted = RangeSet(ranges_from_wire(request.get("ranges")))
        target = request["to"]
        if self.dataplane.address_of(target) is None:
            self.stats["handoff_refused_not_member"] += 1
            raise CommandError(ErrorCode.NOT_OWNER, f"{target[:64]!r} is not on this ring")
        self.store.policy(namespace)  # NO_SUCH_NAMESPACE before any work
        tombs = self.store.tombstone_keys(namespace)
        out = (await self._stream(namespace, tombs, {target: wanted}))[target]
        self.stats["records_handed_off"] += out.sent
        if out.failed is not None:
            raise out.failed
        return out.sent

    async def _stream(
        self, namespace: str, tombstones: list[bytes], targets: Mapping[str, RangeSet | None]
    ) -> dict[str, Outbound]:
        """Send each of ``targets`` the records of ``namespace`` (and the tombstones of
        ``tombstones``) in its ranges, all of them if None, in one scan of the store
        (:func:`~meshcache.node.data.outbound.stream`); what each got, or why it stopped."""
        outbounds = []
        for target, wanted in targets.items():
            address = self.dataplane.address_of(target)
            out = Outbound(
                target,
                wanted,
                partial(self._call_retrying, address, namespace=namespace, target=target),
                partial(self._landed, target),
                self.budget,
                self._clock,
            )
            if address is None:
                out.failed = CommandError(
                    ErrorCode.NOT_OWNER, f"{target[:64]!r} is not on this ring"
                )
            outbounds.append(out)
        await stream(self.store, namespace, tombstones, outbounds)
        return {out.target: out for out in outbounds}

    def _landed(self, target: str, op: str, count: int, answer: Any) -> None:
        """A batch of ``count`` records landed on ``target``."""
        if self._leaving:
            self._moved(target, count)
        if op == "BULK":
            self.stats["handoff_refused"] += int(answer[2]) + int(answer[3])
        else:
            self.stats["handoff_refused"] += sum(1 for a in answer if a >= 2)

    async def _call_retrying(
        self, address: Any, op: str, payload: list[Any], *, namespace: str, target: str
    ) -> Any:
        """One batch to ``target``, sent again (up to :data:`BATCH_ATTEMPTS` in all) when it got
        no answer or its connection broke; a refusal (``CommandError``) is not retried."""
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                return await self.dataplane.pool.call(
                    address, op, namespace, [payload], timeout=REPL_BATCH_TIMEOUT
                )
            except CommandError:
                raise
            except MeshcacheError as exc:
                if attempt == BATCH_ATTEMPTS or self._dead(target):
                    raise
                self.stats["handoff_batch_retries"] += 1
                log.info("handoff_batch_retry", target=target, op=op, error=str(exc))
                await trio.sleep(RETRY_DELAY)
        raise AssertionError("unreachable")  # the loop returns or raises

    # --- leaving -------------------------------------------------------------------------

    async def leave(self) -> dict[str, Any]:
        """LEAVE: mark this node leaving, push its records to their new owners, get removed.

        Retries what a busy mesh makes fail (see the module docstring) until cancelled (the
        caller's deadline).

        Raises:
            CommandError: ``NO_SUCH_MEMBER`` / ``INVALID_TRANSITION`` (nothing was done), a
                refusal of the config plane or of a replacement, or ``UNAVAILABLE`` (a
                replacement is dead, or no voter took the ring change in time), with the
                records moved so far in its message; LEAVE may be sent again.
        """
        config = self._config()
        me = config.member(self.node_id)
        if me is None:
            raise CommandError(ErrorCode.NO_SUCH_MEMBER, f"{self.node_id} is not on the ring")
        others = [m for m in config.members if m.node_id != self.node_id and m.state == "active"]
        if not others:
            raise CommandError(
                ErrorCode.INVALID_TRANSITION, "the last active member of the ring cannot leave"
            )
        self.leave_moved = 0
        self._leave_landed.clear()
        self._leaving = True
        self._leave_started = self._progress_at = self._clock()
        try:
            answer = await self._leave(me.state)
        except CommandError:
            raise
        except MeshcacheError as exc:  # a transport failure no retry got past
            raise self._stopped(str(exc)) from None
        finally:
            self._leaving = False
        return answer

    async def _leave(self, state: str) -> dict[str, Any]:
        if state != "leaving":
            config = await self._propose_retrying(
                lambda c: SetMemberState(c.version, self.node_id, RingState.LEAVING),
                done=lambda c: _state_of(c, self.node_id) == "leaving",
            )
            # The ring's read view is the one every owner's store reflects: the replacements
            # are the only owners to come that lack our records.
            everyone = False
        else:
            # An earlier LEAVE stopped: what it delivered, and by which ring, is not known
            # (an owner it did not reach may own the range in this ring's read view already).
            config = self._config()
            everyone = True
        moved = 0
        while True:
            await self._settled(config)  # from here every write also reaches our new owners
            # A range this node gained with the ring (a removed member's) is pushed once it
            # is pulled: the other new owners leave to the push what this node owns now.
            await self._holding(config)
            ring = self._ring(config)
            for namespace, policy in config.namespaces.items():
                moved += await self._push_all(ring, namespace, policy.replicas, everyone)
            try:
                config = await self._propose_retrying(
                    partial(_removal, self.node_id, config),
                    done=lambda c: c.member(self.node_id) is None,
                )
            except _RingMoved:
                # The owners changed under the push: push again, by the newest ring, to every
                # owner to come (which of them the last push covered is not known).
                config = self._config()
                everyone = True
                self.stats["leave_ring_moved"] += 1
                log.info("leave_ring_moved", ring_version=config.version)
                continue
            break
        log.info("ring_member_left", node_id=self.node_id, moved=moved)
        self.stats["records_drained"] += moved
        return {"node_id": self.node_id, "moved": moved, "ring_version": config.version}

    def _stopped(self, reason: str) -> UnavailableError:
        return UnavailableError(
            message=f"the leave stopped after moving {self.leave_moved} records ({reason}); "
            "send LEAVE again to go on"
        )

    def _moved(self, target: str, count: int) -> None:
        """A LEAVE's batch of ``count`` records landed on ``target``: count it, log progress
        now and then."""
        self.leave_moved += count
        self._leave_landed[target] += count
        now = self._clock()
        if now - self._progress_at >= LEAVE_PROGRESS_EVERY:
            self._progress_at = now
            log.info(
                "leave_progress",
                moved=self.leave_moved,
                ranges_moving=self.ranges_moving,
                seconds=round(now - self._leave_started, 1),
            )

    async def _push_all(
        self, ring: Ring, namespace: str, replicas: int, everyone: bool = False
    ) -> int:
        """Push the records of ``namespace`` to the members that replace this node on ``ring``
        (with ``everyone``: to every member that owns one of its ranges once it is gone);
        the records that landed."""
        tombs = self.store.tombstone_keys(namespace)
        await trio.lowlevel.checkpoint()
        # Comparing the ring's two views is milliseconds of work: a step of its own.
        if everyone:
            targets = await _successors(ring, self.node_id, replicas)
        else:
            targets = replacements(ring, replicas)
        await trio.lowlevel.checkpoint()
        moving = sum(len(ranges) for ranges in targets.values())
        counts: list[int] = []
        failed: list[MeshcacheError] = []

        async def again(target: str, error: MeshcacheError) -> None:
            """Push to ``target`` again, alone, until it takes everything or cannot."""
            delay = LEAVE_RETRY_FIRST
            while True:
                if isinstance(error, CommandError):
                    failed.append(error)
                    return
                if self._dead(target):
                    failed.append(self._stopped(f"{target}, a replacement, is dead"))
                    return
                # Every record again: those that landed are refused as stale, cheaply, and
                # counted once.
                self.leave_moved -= self._leave_landed.pop(target, 0)
                self.stats["leave_push_retries"] += 1
                log.warning("leave_push_retry", target=target, error=str(error), retry_s=delay)
                await trio.sleep(delay)
                delay = min(delay * 2, LEAVE_RETRY_MAX)
                out = (await self._stream(namespace, tombs, {target: targets[target]}))[target]
                if out.failed is None:
                    counts.append(out.sent)
                    return
                error = out.failed

        self.ranges_moving += moving
        try:
            # Every replacement from one scan; one that failed is pushed to again on its own.
            streamed = await self._stream(namespace, tombs, targets)
            async with trio.open_nursery() as nursery:
                for target, out in streamed.items():
                    if out.failed is None:
                        counts.append(out.sent)
                    else:
                        nursery.start_soon(again, target, out.failed)
        finally:
            self.ranges_moving -= moving
        if failed:
            raise failed[0]
        return sum(counts)

    async def _propose_retrying(
        self,
        make: Callable[[ClusterConfig], Command],
        done: Callable[[ClusterConfig], bool] | None = None,
    ) -> ClusterConfig:
        """Commit ``make(config)`` on the held config. A version conflict re-reads the config
        (it may take a moment to arrive), as does an unknown outcome — a proposal that timed
        out, or no voter answered — which may have committed: ``done(config)`` says when the
        change is in and nothing is proposed again. Refusals are raised as they are; after
        :data:`PROPOSE_RETRIES` conflicts or :data:`PROPOSE_PATIENCE` seconds of unknown
        outcomes the last error is raised."""
        last: MeshcacheError | None = None
        conflicts = 0
        delay = SETTLE_POLL
        give_up = self._clock() + PROPOSE_PATIENCE
        while True:
            config = self._config()
            if done is not None and done(config):
                return config
            try:
                return await self._propose(make(config))
            except ProposalTimeoutError as exc:  # unknown outcome, told by the voter
                last = exc
            except CommandError as exc:
                if exc.code != ErrorCode.VERSION_CONFLICT:
                    raise
                last = exc
                conflicts += 1
                if conflicts >= PROPOSE_RETRIES:
                    raise
            except MeshcacheError as exc:  # no voter answered: unknown outcome
                last = exc
            if self._clock() >= give_up:
                raise last
            self.stats["propose_retries"] += 1
            log.info("ring_change_retry", error=str(last), retry_s=round(delay, 2))
            await trio.sleep(delay)
            delay = min(delay * 2, LEAVE_RETRY_MAX)

    # --- dropping ------------------------------------------------------------------------------

    async def _drop_unowned(self, config: ClusterConfig) -> bool:
        """Remove the keys ``config``'s ring does not give this node; False when the ring
        moved on before the pass ended (the next pass decides)."""
        self.stats["drop_passes"] += 1
        ring = self._ring(config)
        me = self.node_id
        dropped = 0
        for namespace, policy in config.namespaces.items():
            try:
                space = self.store.keyspace(namespace)
            except CommandError:
                continue
            mine = ring.write_ranges(me, policy.replicas)  # milliseconds once per ring
            await trio.lowlevel.checkpoint()
            for chunk in _key_slices(self.store.key_parts(namespace)):
                for key, owned in zip(chunk, mine.mask(chunk), strict=True):
                    if not owned and space.remove(key) is not None:
                        dropped += 1
                await trio.lowlevel.checkpoint()
                if self._config().version != config.version:
                    self.stats["records_dropped"] += dropped
                    return False
        if dropped:
            self.stats["records_dropped"] += dropped
            log.info("unowned_dropped", records=dropped, ring_version=config.version)
        return True


def _key_slices(parts: Iterator[list[bytes]]) -> Iterator[list[bytes]]:
    """The keys of :meth:`Store.key_parts` in slices of at most :data:`SCAN_CHUNK` (a table is
    copied when the first of its slices is asked for)."""
    for part in parts:
        for at in range(0, len(part), SCAN_CHUNK):
            yield part[at : at + SCAN_CHUNK]


class _RingMoved(Exception):
    """The ring's owners changed since a leaving node pushed by it: it may not be removed."""


def _removal(node_id: str, pushed: ClusterConfig, config: ClusterConfig) -> Command:
    """Remove ``node_id`` from ``config``, whose owners must be those of ``pushed``, the
    config it pushed by (:func:`_owners_moved`)."""
    if _owners_moved(pushed, config):
        raise _RingMoved
    return RemoveMember(config.version, node_id)


def _owners_moved(pushed: ClusterConfig, config: ClusterConfig) -> bool:
    """Whether the owners of what a push by ``pushed`` delivered may differ in ``config``: a
    member changed, or a namespace of both changed its replica count. A namespace created
    since holds nothing here (a leaving node stores no new writes), and one dropped since has
    nothing left to push."""
    if pushed.members != config.members:
        return True
    now = config.namespaces
    return any(
        name in now and now[name].replicas != policy.replicas
        for name, policy in pushed.namespaces.items()
    )


async def _successors(ring: Ring, node_id: str, replicas: int) -> dict[str, RangeSet]:
    """For a ring where ``node_id`` is leaving: each member that owns some of its tokens once
    it is gone (an owner in the pending view of a token ``node_id`` owns in the read view),
    with those tokens. A superset of :func:`~meshcache.ring.diff.replacements`."""
    bounds = sorted(set(ring.boundaries(READ_STATES)) | set(ring.boundaries(PENDING_STATES)))
    labels: list[tuple[str, ...]] = []
    for at, bound in enumerate(bounds):
        now = ring.owners_for_token(bound, replicas, include=READ_STATES)
        if any(m.node_id == node_id for m in now):
            after = ring.owners_for_token(bound, replicas, include=PENDING_STATES)
            labels.append(tuple(m.node_id for m in after))
        else:
            labels.append(())
        if at % SCAN_CHUNK == SCAN_CHUNK - 1:
            await trio.lowlevel.checkpoint()
    gains: dict[str, list[TokenRange]] = {}
    for trange, targets in label_runs(bounds, labels):
        for target in targets:
            gains.setdefault(target, []).append(trange)
    return {target: RangeSet(ranges) for target, ranges in sorted(gains.items())}


def _split(
    trange: TokenRange, tokens: RangeSet, cuts: list[int]
) -> tuple[list[TokenRange], list[TokenRange]]:
    """The parts of ``trange`` not in ``tokens`` and those in it, each merged, where ``cuts``
    (ascending) hold every token at which membership in ``tokens`` may change."""
    start, end = trange.start, trange.end
    if start < end:
        inside = cuts[bisect_right(cuts, start) : bisect_left(cuts, end)]
    else:  # wraps past 0, or the whole ring
        inside = cuts[bisect_right(cuts, start) :] + cuts[: bisect_left(cuts, end)]
    parts: tuple[list[TokenRange], list[TokenRange]] = ([], [])
    for piece_start, piece_end in zip([start, *inside], [*inside, end], strict=True):
        out = parts[piece_end in tokens]
        if out and out[-1].end == piece_start:
            out[-1] = TokenRange(out[-1].start, piece_end)
        else:
            out.append(TokenRange(piece_start, piece_end))
    return parts


def _layout(config: ClusterConfig) -> tuple[Any, ...]:
    """What decides which keys this node holds: the ring's members (ids, addresses, weights,
    states) and each namespace's replica count. A config that changes nothing else (a TTL, a
    size bound, hot keys) moves no key."""
    return (config.members, tuple((name, p.replicas) for name, p in config.namespaces.items()))


def _state_of(config: ClusterConfig, node_id: str) -> str | None:
    member = config.member(node_id)
    return None if member is None else str(member.state)


__all__ = ["HandOff"]
