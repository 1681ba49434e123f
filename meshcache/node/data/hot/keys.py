"""Hot keys: the owner finds them and keeps copies on other nodes; holders serve the copies.

One :class:`HotKeys` per node plays both sides (``docs/hotkeys.md`` has the design):

* **As a key's primary owner** it samples the ``GET``\\ s it coordinates into a per-namespace
  :class:`~.sketch.HotSketch`. Every :data:`TICK` seconds it asks the sketch which keys pass
  the namespace's :class:`~meshcache.store.hotpolicy.HotKeyPolicy` thresholds, pushes a copy of
  each new hot key (value, version, expiry, lease) to the next nodes of the key's ring
  preference list (``HOT_PUSH``), renews the copies of keys that stay hot at every look, and
  drops the copies of a key that cooled (``HOT_DROP``; one it cannot reach lapses). A write to a hot
  key updates (or, for a delete or a typed value, drops: ``HOT_DROP``) every copy before the
  write is acknowledged, waiting at most :data:`WRITE_WAIT`; a copy it cannot reach is
  covered by its lease. These updates travel on a kept connection of their own to each
  holder (:data:`UPDATE_LANE`).
* **As a holder** it keeps copies in a bounded :class:`~.area.HotArea` and answers a ``GET``
  of a key it does not own from a copy whose lease runs, instead of forwarding it. A push or
  drop is refused and counted unless it comes from the key's primary owner under the ring
  version this node routes by. A write forwarded through this node drops its copy of the key
  and *fences* the key for one lease: its reads go to the owner meanwhile, so whoever wrote
  through this node reads its own write even if the owner's update of the copies was lost.
  The owner's answer to the forward names the version the write left; no older copy is kept
  or stored afterwards, and only a push at least that new ends the fence early.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from meshcache.errors import CommandError, ErrorCode, MeshcacheConnectionError, MeshcacheError
from meshcache.node.data.hot.area import UNBOUNDED_AREA_BYTES, Copy, HotArea
from meshcache.node.data.hot.sketch import HotSketch
from meshcache.node.data.hot.update import CopyUpdate, Submit
from meshcache.node.data.replication.tombstones import read_record
from meshcache.node.data.replicator import APPLIED, STALE
from meshcache.node.net.peer_pool import PeerUnreachable
from meshcache.ring import Ring
from meshcache.store.entry import EntryView
from meshcache.store.hotpolicy import HotKeyPolicy
from meshcache.store.store import Store
from meshcache.store.values import PLAIN
from meshcache.wire.ops import OPS, OpKind
from meshcache.wire.pending import Later

log = structlog.get_logger("meshcache.hotkeys")

#: Seconds between two looks at the sketches (new hot keys, renewals, cooled keys).
TICK = 0.25
#: The sketches halve their counts every this many seconds: a key that stops being read loses
#: three quarters of its weight a second, so it cools within seconds.
WINDOW = 0.5
#: Counters of a sketch (K). One read in ``HotKeyPolicy.sample_every`` (2 to 16, from the
#: policy's rate) is sampled.
SKETCH_CAPACITY = 128
#: A key turns hot only on at least this many sampled reads (net of the sketch's error).
MIN_SAMPLES = 4.0
#: A hot key none of whose reads reached its owner's sketch (sampled there, or served by a copy)
#: for this many ticks in a row cools at once: its decayed counts would keep it hot for
#: 0.5 s x log2(2 x its rate / the policy's rate) after its reads stopped, and a key that
#: was not read in the last tick does not turn hot either. A key read at the policy's rate,
#: all at its owner, misses 3 ticks in a row about once in 2,000 ticks (8 minutes); the reads
#: its copies serve are counted exactly.
QUIET_TICKS = 3
#: The most hot keys an owner keeps copies of, per namespace.
MAX_HOT = 64
#: How long an acknowledgement of a write to a hot key waits for the copies' updates.
WRITE_WAIT = 0.5
#: The peer pool's lane of the copy updates: a connection to each holder kept for them, so that
#: an update's answer does not wait behind the pooled connection's answers to forwarded writes
#: (which may wait on the other node's own updates: two owners of hot keys written through
#: each other would hold each other up until WRITE_WAIT), and costs a frame, not a connect.
UPDATE_LANE = "hot"
#: Timeout of a renewal push.
PUSH_TIMEOUT = 2.0
#: Fenced keys remembered at most (the oldest go first).
MAX_FENCES = 65536

Call = Callable[[str, str, str, list[Any], float, str], Awaitable[Any]]
#: The version a drop carries when the owner holds no record of the key at all: older than
#: it is every copy.
DROP_ALL = 2**63
#: A push item's answer when the item carried a replica write that was not applied.
NOT_APPLIED = -2

Apply = Callable[[str, list[Any], str], Any]
"""``apply(namespace, [[key, record]], sender)``: ``REPL``'s apply of records sent by another
owner, one answer per record (:meth:`Coordinator.apply_replicated`)."""

Unlanded = list[tuple[str, bytes]]
Written = tuple[Later | Coroutine[Any, Any, Unlanded] | None, AbstractSet[tuple[bytes, str]]]
_NOTHING_WRITTEN: Written = (None, frozenset())


@dataclass(slots=True)
class UpdatePlan:
    """A write's update of the copies of its hot keys."""

    #: Each holder's calls, in order.
    calls: dict[str, list[tuple[str, list[Any]]]] = field(default_factory=dict)
    #: The push items, ``[key, value, version, expires_at]``, as a holder without a replica
    #: write gets them (a holder's answer has one int per item, in this order).
    pushes: list[Any] = field(default_factory=list)
    #: Items (pushes and drops) each holder is sent.
    items: int = 0
    #: ``(key, holder)``: the replica writes the pushes carry.
    carried: set[tuple[bytes, str]] = field(default_factory=set)
    #: ``(holder, key)``: carried replica writes a holder answered it did not apply.
    unlanded: Unlanded = field(default_factory=list)


def _carrying(item: list[Any]) -> list[Any]:
    """A push item ``[key, value, version, expires_at]`` as ``[key, record]``: the key's whole
    record (a plain value's, as ``REPL`` carries it), for a holder that is also a write
    owner of the key."""
    key, value, version, expires_at = item
    return [key, [PLAIN, value, expires_at, version]]


@dataclass(slots=True)
class HotKey:
    """A key this node owns and copies: what the sketch said and where the copies are."""

    since: float
    share: float
    rate: float
    holders: tuple[str, ...] = ()
    #: The version each holder is known to hold (its last push was answered): renewals to it
    #: carry no value.
    held: dict[str, int] = field(default_factory=dict)
    #: Ticks in a row in which none of its reads reached the sketch.
    quiet: int = 0


class HotKeys:
    """The hot-key layer of one node.

    Args:
        store: this node's store (owned data, and the namespace policies).
        node_id: this node's id on the ring.
        ring: the ring this node routes by, and its version.
        alive: whether gossip holds a node alive.
        call: ``call(peer, op, namespace, args, timeout, lane)``, a request to a peer that
            raises :class:`MeshcacheError` when it fails or is refused; ``lane``: ``""`` for
            the pooled connection, else the name of a kept connection of its own
            (:data:`UPDATE_LANE`).
        wall_clock: Unix seconds (entry expiry).
        clock: trio's clock (leases, ticks).
        rng: sampling gaps.
        submit: a request to a peer on a kept connection without a task
            (:data:`~.update.Submit`): a write's update of the copies goes that way when it
            can (:class:`~.update.CopyUpdate`), else in a task through ``call``.
        apply: see :data:`Apply`; a push item that carries a replica write is applied with
            it (without it such an item is answered :data:`NOT_APPLIED`).
    """

    def __init__(
        self,
        store: Store,
        node_id: str,
        *,
        ring: Callable[[], tuple[Ring, int]],
        alive: Callable[[str], bool],
        call: Call,
        wall_clock: Callable[[], float],
        clock: Callable[[], float] = trio.current_time,
        rng: random.Random | None = None,
        submit: Submit | None = None,
        apply: Apply | None = None,
    ) -> None:
        self.store = store
        self._apply = apply
        self.node_id = node_id
        self._ring = ring
        self._alive = alive
        self._call = call
        self._submit = submit
        self._wall = wall_clock
        self._clock = clock
        self._rng = rng or random.Random(node_id)
        self.area = HotArea()
        #: Namespaces with hot keys on, and their sketches (the read path looks here first).
        self.sketches: dict[str, HotSketch[bytes]] = {}
        self.policies: dict[str, HotKeyPolicy] = {}
        self.hot: dict[str, dict[bytes, HotKey]] = {}
        #: Keys that cooled here, per namespace, each until two leases after (an empty one is
        #: removed): a copy whose drop was lost may still be served meanwhile, so a write's
        #: answer still says the version it left (:meth:`ack_hint`).
        self.cooled: dict[str, dict[bytes, float]] = {}
        # The sketch's counts of the keys near the thresholds at the last tick, per namespace.
        self._counts: dict[str, dict[bytes, float]] = {}
        # (namespace, key) -> (until, the version of the copy dropped; -1: none was held).
        self._fences: dict[tuple[str, bytes], tuple[float, int]] = {}
        # Reads each copy served since its last push: the owner adds them to its sketch.
        self._served: Counter[tuple[str, bytes]] = Counter()
        self.stats: Counter[str] = Counter()
        self._nursery: trio.Nursery | None = None
        #: The hot-set version: changes whenever a key this node owns turns hot or cools, or
        #: its holders change (0 until the first change; it starts at a random number, so a
        #: restarted node does not repeat the versions it sent before).
        self.version = 0
        #: What every response to a data op carries while ``version`` is not 0 (``{"hot":
        #: version}``), as the ring version: a smart client that sees it change asks this
        #: node's ``HOTKEYS``.
        self.hint: dict[str, int] | None = None

    # --- life --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Look at the sketches every :data:`TICK` seconds until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    self.tick()
                    await trio.sleep(TICK)
        finally:
            self._nursery = None  # closed: a write's update waits in its own task again

    def tick(self) -> None:
        """Follow the policies; turn keys hot or cool; renew leases; expire copies."""
        now = self._clock()
        self._follow_policies(now)
        self.area.expire(now, self._wall())
        if self._served:
            area = self.area
            self._served = Counter({s: n for s, n in self._served.items() if s in area})
        if self._fences:
            self._fences = {slot: f for slot, f in self._fences.items() if f[0] > now}
        for name, cooled in list(self.cooled.items()):
            left = {k: until for k, until in cooled.items() if until > now}
            if left and name in self.policies:
                self.cooled[name] = left
            else:
                del self.cooled[name]
        ring, version = self._ring()
        for namespace, sketch in self.sketches.items():
            policy = self.policies[namespace]
            rolled = sketch.roll(now)
            # A hot key stays hot down to half the thresholds (it does not flap around them).
            current = self.hot[namespace]
            low = sketch.heavy(
                now, share=policy.share / 2, rate=policy.rate / 2, min_samples=MIN_SAMPLES / 2
            )
            fresh = self._fresh(namespace, sketch, low, rolled)
            heavy = []
            for h in low:
                entry = current.get(h.item)
                if entry is not None:
                    entry.quiet = 0 if h.item in fresh else entry.quiet + 1
                    if entry.quiet < QUIET_TICKS:
                        heavy.append(h)
                elif (
                    h.item in fresh
                    and h.share >= policy.share
                    and h.rate >= policy.rate
                    and h.samples >= MIN_SAMPLES
                ):
                    heavy.append(h)
            self._update_hot(namespace, policy, ring, version, heavy[:MAX_HOT], now)

    def _fresh(
        self, namespace: str, sketch: HotSketch[bytes], low: list[Any], rolled: bool
    ) -> set[bytes]:
        """The keys of ``low`` read since the last tick: their count grew (a sampled read, or
        reads a copy served) beyond what it was then, halved if the sketch decayed since."""
        summary = sketch.summary
        before = self._counts.get(namespace, {})
        factor = 0.5 if rolled else 1.0
        counts = {h.item: summary.count(h.item) for h in low}
        self._counts[namespace] = counts
        return {k for k, c in counts.items() if c > before.get(k, 0.0) * factor}

    def _follow_policies(self, now: float) -> None:
        store = self.store
        policies: dict[str, HotKeyPolicy] = {}
        for name in store.namespace_names():
            ns_policy = store.policy(name)
            hot = ns_policy.hot
            if hot is not None and hot.enabled:
                policies[name] = hot
                limit = ns_policy.max_bytes
                self.area.set_limit(
                    name, UNBOUNDED_AREA_BYTES if limit is None else int(limit * hot.area)
                )
        for name in list(self.sketches):
            if name not in policies:
                del self.sketches[name]
                self._counts.pop(name, None)
                for key in self.hot.pop(name, {}):
                    log.info("hot_key", namespace=name, key=key[:64], state="cooled")
                    self.stats["keys_cooled"] += 1
                    self._changed()
                self.area.drop_namespace(name)
        for name, hot in policies.items():
            sketch = self.sketches.get(name)
            if sketch is None:
                self.sketches[name] = HotSketch(
                    capacity=SKETCH_CAPACITY,
                    sample_every=hot.sample_every,
                    window=WINDOW,
                    rng=self._rng,
                    now=now,
                )
                self.hot[name] = {}
            else:
                # Follows a change of rate; counts sampled at the old gap fade within 2 s.
                sketch.sample_every = hot.sample_every
        self.policies = policies

    def _holders(
        self, ring: Ring, namespace: str, key: bytes, policy: HotKeyPolicy
    ) -> tuple[str, ...]:
        everyone = ring.owners(key, len(ring.members))
        if not everyone or everyone[0].node_id != self.node_id:
            return ()
        out = [m.node_id for m in everyone[1:] if self._alive(m.node_id)]
        return tuple(out if policy.copies is None else out[: policy.copies])

    def _update_hot(
        self,
        namespace: str,
        policy: HotKeyPolicy,
        ring: Ring,
        version: int,
        heavy: list[Any],
        now: float,
    ) -> None:
        current = self.hot[namespace]
        seen: set[bytes] = set()
        due: dict[str, list[bytes]] = {}
        for h in heavy:
            key = h.item
            holders = self._holders(ring, namespace, key, policy)
            if not holders:
                continue  # not the primary owner (a stand-in read), or a ring of one
            seen.add(key)
            entry = current.get(key)
            if entry is None:
                entry = current[key] = HotKey(since=now, share=h.share, rate=h.rate)
                self.stats["keys_turned_hot"] += 1
                self._changed()
                log.info(
                    "hot_key",
                    namespace=namespace,
                    key=key[:64],
                    state="hot",
                    share=round(h.share, 4),
                    rate=round(h.rate, 1),
                )
            entry.share, entry.rate = h.share, h.rate
            if entry.holders != holders:
                entry.holders = holders
                self._changed()
            # Renewed every tick: a lease never runs short, and the holders' answers bring
            # the reads their copies served back to the sketch smoothly.
            for holder in holders:
                due.setdefault(holder, []).append(key)
        cooled: dict[str, list[Any]] = {}
        for key in [k for k in current if k not in seen]:
            entry = current.pop(key)
            self.cooled.setdefault(namespace, {})[key] = now + 2 * policy.lease
            self.stats["keys_cooled"] += 1
            self._changed()
            log.info("hot_key", namespace=namespace, key=key[:64], state="cooled")
            for holder, held in entry.held.items():
                cooled.setdefault(holder, []).append([key, held])
        if self._nursery is not None:
            for holder, keys in due.items():
                self._nursery.start_soon(self._push, holder, namespace, keys, version, policy)
            for holder, drops in cooled.items():
                self._nursery.start_soon(self._drop_cooled, holder, namespace, drops, version)

    def _changed(self) -> None:
        """The hot set this node owns changed: a new hot-set version for the responses."""
        self.version = self._rng.randrange(1, 1 << 31) if self.version == 0 else self.version + 1
        self.hint = {"hot": self.version}

    # --- owner side ----------------------------------------------------------------------------

    def observe(self, namespace: str, key: bytes) -> None:
        """A GET this node coordinates (the read path calls it)."""
        sketch = self.sketches.get(namespace)
        if sketch is not None:
            sketch.skip -= 1
            if sketch.skip <= 0:
                sketch.sample(key)

    def _copy_items(
        self, namespace: str, keys: list[bytes], holder: str | None = None
    ) -> tuple[list[Any], list[Any]]:
        """``(push items, drop items)`` for ``keys`` as this node holds them now; a push item
        for a ``holder`` known to hold that version already carries no value (a renewal)."""
        pushes: list[Any] = []
        drops: list[Any] = []
        current = self.hot.get(namespace, {})
        for key in keys:
            record = read_record(self.store, namespace, key)
            if record is None:
                drops.append([key, DROP_ALL])
            elif type(record) is EntryView and record.type == PLAIN:
                entry = current.get(key)
                held = None if entry is None or holder is None else entry.held.get(holder)
                value = None if held == record.version else record.value
                pushes.append([key, value, record.version, record.expires_at])
            else:
                drops.append([key, record.version])
        return pushes, drops

    def _answered(self, namespace: str, holder: str, pushes: list[Any], answer: Any) -> None:
        """Note what ``holder`` holds now after answering ``pushes``, and credit its reads."""
        if type(answer) is not list or len(answer) != len(pushes):
            return
        current = self.hot.get(namespace, {})
        sketch = self.sketches.get(namespace)
        for item, reads in zip(pushes, answer, strict=True):
            entry = current.get(item[0])
            if entry is not None:
                if type(reads) is int and reads >= 0:
                    entry.held[holder] = item[2]
                else:
                    entry.held.pop(holder, None)
            if sketch is not None and type(reads) is int and reads > 0:
                sketch.credit(item[0], reads)

    async def _push(
        self, holder: str, namespace: str, keys: list[bytes], version: int, policy: HotKeyPolicy
    ) -> bool:
        pushes, drops = self._copy_items(namespace, keys, holder)
        try:
            if pushes:
                args = [self.node_id, version, float(policy.lease), pushes]
                served = await self._call(holder, "HOT_PUSH", namespace, args, PUSH_TIMEOUT, "")
                self.stats["copies_pushed"] += sum(item[1] is not None for item in pushes)
                self.stats["copies_renewed_sent"] += sum(item[1] is None for item in pushes)
                self._answered(namespace, holder, pushes, served)
            if drops:
                args = [self.node_id, version, drops]
                await self._call(holder, "HOT_DROP", namespace, args, PUSH_TIMEOUT, "")
                self.stats["invalidations_sent"] += len(drops)
        except (MeshcacheError, OSError) as exc:
            self.stats["pushes_failed"] += 1
            log.debug("hot_push_failed", peer=holder, error=str(exc))
            return False
        return True

    async def _drop_cooled(
        self, holder: str, namespace: str, drops: list[Any], version: int
    ) -> None:
        """Drop the copies of keys that cooled (each at the version the holder was known to
        hold); one that is not reached lapses with its lease."""
        try:
            args = [self.node_id, version, drops]
            await self._call(holder, "HOT_DROP", namespace, args, PUSH_TIMEOUT, "")
            self.stats["cooled_drops_sent"] += len(drops)
        except (MeshcacheError, OSError) as exc:
            self.stats["pushes_failed"] += 1
            log.debug("hot_drop_failed", peer=holder, error=str(exc))

    def written(self, namespace: str, keys: list[bytes], carry: bool = False) -> Written:
        """A write to ``keys`` was applied here: the update of their copies to wait for, or
        None when none of them is hot, and the replica writes it carries.

        The update is a :class:`Later` settled when it is done, or a coroutine where no
        update can be submitted without a task; either gives the ``(holder, key)`` replica
        writes it carried that did not land, for the caller to send the usual way. With
        ``carry``, a holder that is also one of a key's write owners gets the key's record in
        its push, applied there as a ``REPL`` would be (one message to it, not two): the
        second item is the ``(key, holder)`` pairs carried so, which the caller does not
        replicate itself."""
        current = self.hot.get(namespace)
        if not current:
            return _NOTHING_WRITTEN
        hot = [key for key in keys if key in current]
        if not hot:
            return _NOTHING_WRITTEN
        plan = self._update_plan(namespace, hot, carry)
        if self._submit is not None and self._nursery is not None:
            return self._update_now(namespace, plan, self._nursery, self._submit), plan.carried
        return self._update_copies(namespace, plan), plan.carried

    def _update_plan(self, namespace: str, keys: list[bytes], carry: bool) -> UpdatePlan:
        """A write's update of the copies of ``keys``: each holder's calls in order
        (``HOT_PUSH``, ``HOT_DROP``). No calls when the namespace's hot keys are off."""
        plan = UpdatePlan()
        policy = self.policies.get(namespace)
        if policy is None:
            return plan
        ring, version = self._ring()
        pushes, drops = self._copy_items(namespace, keys)
        holders: dict[str, None] = {}
        current = self.hot[namespace]
        for key in keys:
            entry = current.get(key)
            if entry is not None:
                holders.update(dict.fromkeys(entry.holders))
        plan.pushes = pushes
        plan.items = len(pushes) + len(drops)
        carried: dict[str, set[bytes]] = {}
        if carry and pushes:
            replicas = self.store.policy(namespace).replicas
            for item in pushes:
                for member in ring.write_owners(item[0], replicas):
                    if member.node_id in holders:
                        carried.setdefault(member.node_id, set()).add(item[0])
                        plan.carried.add((item[0], member.node_id))
        lease = float(policy.lease)
        for holder in holders:
            calls: list[tuple[str, list[Any]]] = []
            if pushes:
                mine = carried.get(holder)
                items = (
                    pushes if not mine else [_carrying(i) if i[0] in mine else i for i in pushes]
                )
                calls.append(("HOT_PUSH", [self.node_id, version, lease, items]))
            if drops:
                calls.append(("HOT_DROP", [self.node_id, version, drops]))
            plan.calls[holder] = calls
        return plan

    def _pushed(self, namespace: str, plan: UpdatePlan, holder: str, answer: Any) -> None:
        """``holder`` answered a write's push: note what it holds, and which of the replica
        writes the push carried to it it did not apply."""
        self._answered(namespace, holder, plan.pushes, answer)
        if not plan.carried:
            return
        landed = type(answer) is list and len(answer) == len(plan.pushes)
        for at, item in enumerate(plan.pushes):
            key = item[0]
            if (key, holder) in plan.carried and (not landed or answer[at] == NOT_APPLIED):
                plan.unlanded.append((holder, key))

    def _update_now(
        self, namespace: str, plan: UpdatePlan, nursery: trio.Nursery, submit: Submit
    ) -> Later:
        """:meth:`_update_copies` by callback (:class:`CopyUpdate`)."""
        done = Later()

        async def resend(holder: str, op: str, args: list[Any], timeout: float) -> Any:
            return await self._call(holder, op, namespace, args, timeout, UPDATE_LANE)

        update = CopyUpdate(
            namespace,
            plan.calls,
            submit=submit,
            resend=resend,
            spawn=nursery.start_soon,
            pushed=lambda holder, answer: self._pushed(namespace, plan, holder, answer),
            lane=UPDATE_LANE,
            wait=WRITE_WAIT,
            clock=self._clock,
        )

        def counted(_: Any, __: BaseException | None) -> None:
            done.resolve(self._count_update(plan, update.missed))

        update.done.then(counted)
        return done

    def _count_update(self, plan: UpdatePlan, missed: set[str]) -> list[tuple[str, bytes]]:
        """Count a write's update once it is done; the carried replica writes that did not
        land (every one to a holder that missed the update, and those a holder refused)."""
        self.stats["invalidations_sent"] += plan.items * len(plan.calls)
        self.stats["invalidations_lost"] += plan.items * len(missed)
        self.stats["replica_writes_carried"] += len(plan.carried)
        unlanded = plan.unlanded
        if missed and plan.carried:
            answered = set(unlanded)
            unlanded += [
                (holder, key)
                for key, holder in plan.carried
                if holder in missed and (holder, key) not in answered
            ]
        self.stats["replica_writes_unlanded"] += len(unlanded)
        return unlanded

    def _versioned(self, namespace: str) -> tuple[dict[bytes, Any], dict[bytes, float]] | None:
        """The keys of ``namespace`` whose writes' answers say the version they left: the hot
        ones, and those that cooled less than two leases ago (a copy whose drop was lost may
        still be served, and a client that still takes the key for hot demands its write's
        version of a copy: without one it would have to demand the owner's newest record of
        every member, for every read, until it forgets the write). None when there are none."""
        current = self.hot.get(namespace)
        cooled = self.cooled.get(namespace)
        if not current and not cooled:
            return None
        return current or {}, cooled or {}

    def ack_hint(self, namespace: str, op: str, args: list[Any]) -> dict[str, Any] | None:
        """The hints of the answer to a write this node coordinated: with ``version``, the
        newest version the write left on a key of it that is hot here or cooled lately (what a
        client that wrote it may demand of a copy: ``HOT_GET``), when there is one; for a write
        of several keys also ``versions``, each such key with its own, so that the client
        knows which of its keys to demand them of."""
        versioned = self._versioned(namespace)
        if versioned is not None:
            current, cooled = versioned
            keys = args[::2] if op == "MSET" else (args if op == "DELETE" else args[:1])
            newest = -1
            versions: list[list[Any]] = []
            for key in keys:
                if type(key) is bytes and (key in current or key in cooled):
                    record = read_record(self.store, namespace, key)
                    # No record left (a delete): every copy from before it is at most the
                    # newest version this node knows, and every later write is above it.
                    version = self.store.last_version + 1 if record is None else record.version
                    newest = max(newest, version)
                    versions.append([key, version])
            if newest >= 0:
                if len(keys) > 1:
                    return {"hot": self.version, "version": newest, "versions": versions}
                return {"hot": self.version, "version": newest}
        return self.hint

    def forward_hint(self, namespace: str, payload: list[Any]) -> dict[str, Any] | None:
        """The hints of the answer to a write another node forwarded here (``FWD`` ``payload``
        ``[op, args, ...]``): with ``versions``, ``[key, version]`` for each key it wrote that
        is hot here or cooled lately, the version the key's record has now (what the write left,
        or a newer one), so that the forwarder refuses any older copy of it
        (:meth:`written_through`); None when it wrote no such key."""
        versioned = self._versioned(namespace)
        if versioned is None or len(payload) < 2 or type(payload[1]) is not list:
            return None
        current, cooled = versioned
        op, args = payload[0], payload[1]
        spec = OPS.get(op) if type(op) is str else None
        if spec is None or spec.kind is not OpKind.WRITE:
            return None
        versions: list[list[Any]] = []
        for key in args[::2] if op == "MSET" else (args if op == "DELETE" else args[:1]):
            if type(key) is bytes and (key in current or key in cooled):
                record = read_record(self.store, namespace, key)
                if record is not None:
                    versions.append([key, record.version])
        return {"versions": versions} if versions else None

    def written_through(self, namespace: str, hints: dict[str, Any]) -> None:
        """The owner answered a write this node forwarded with the versions it left on hot
        keys (:meth:`forward_hint`): a copy here older than its key's is dropped, and no older
        push is stored from now on; a fence on the key ends only on a push of at least that
        version (a push of a version between the copy the write dropped and the write's own,
        arriving late, would otherwise end it and be served to the writer)."""
        versions = hints.get("versions")
        if type(versions) is not list or namespace not in self.policies:
            return
        fences = self._fences
        for item in versions:
            if type(item) is not list or len(item) != 2:
                continue
            key, version = item
            if type(key) is not bytes or type(version) is not int or version < 0:
                continue
            self.area.at_least(namespace, key, version)
            fenced = fences.get((namespace, key))
            if fenced is not None and fenced[1] < version - 1:
                fences[(namespace, key)] = (fenced[0], version - 1)

    async def _update_copies(self, namespace: str, plan: UpdatePlan) -> list[tuple[str, bytes]]:
        pending = set(plan.calls)

        async def one(holder: str) -> None:
            calls = list(plan.calls[holder])
            retried = False
            while calls:
                op, args = calls[0]
                try:
                    answer = await self._call(holder, op, namespace, args, WRITE_WAIT, UPDATE_LANE)
                except PeerUnreachable:
                    return
                except MeshcacheConnectionError:
                    # The kept connection broke (the holder closed it, a reset): once, on a
                    # new one; an update is idempotent, so one that did arrive does no harm.
                    if retried:
                        return
                    retried = True
                    continue
                except (MeshcacheError, OSError):
                    return
                if op == "HOT_PUSH":
                    self._pushed(namespace, plan, holder, answer)
                calls.pop(0)
            pending.discard(holder)

        if plan.calls:
            # The whole update, (re)connecting to a holder included, waits at most WRITE_WAIT.
            with trio.move_on_after(WRITE_WAIT):
                async with trio.open_nursery() as nursery:
                    for holder in plan.calls:
                        nursery.start_soon(one, holder)
        return self._count_update(plan, pending)

    # --- holder side ---------------------------------------------------------------------------

    def serve(self, namespace: str, key: bytes, at_least: int = 0) -> Copy | None:
        """A copy to answer a GET of a key this node does not own with, or None; with
        ``at_least`` (``HOT_GET``), only a copy of that version or a newer one."""
        fences = self._fences
        if fences:
            fenced = fences.get((namespace, key))
            if fenced is not None and fenced[0] > self._clock():
                return None
        copy = self.area.get(namespace, key, self._clock(), self._wall())
        if copy is not None:
            if copy.version < at_least:
                self.stats["copies_older_than_asked"] += 1
                return None
            self.stats["reads_from_copies"] += 1
            self._served[(namespace, key)] += 1
        return copy

    def fence(self, namespace: str, key: bytes) -> None:
        """A write to ``key`` passes through this node on its way to the owner: drop the copy
        and serve none of the key until the owner pushes a newer version than the one dropped
        (its update of the copies, which it sends before it acknowledges the write) or, if
        that update is lost or no copy was held, for one lease."""
        policy = self.policies.get(namespace)
        if policy is None:
            return
        held = self.area.get(namespace, key, self._clock(), self._wall())
        self.area.drop(namespace, key)
        if len(self._fences) >= MAX_FENCES:
            self._fences.pop(next(iter(self._fences)))
        dropped = -1 if held is None else held.version
        self._fences[(namespace, key)] = (self._clock() + policy.lease, dropped)

    def _check_sender(self, namespace: str, args: list[Any], op: str) -> tuple[str, Ring]:
        sender, version = args[0], args[1]
        ring, mine = self._ring()
        if version != mine:
            self.stats["refused_stale_ring"] += 1
            raise CommandError(
                ErrorCode.STALE_CONFIG,
                f"{op}: sent under ring version {version}, this node routes by {mine}",
            )
        if namespace not in self.policies:
            self.stats["refused_off"] += 1
            raise CommandError(ErrorCode.BAD_REQUEST, f"{op}: hot keys are off in {namespace!r}")
        return sender, ring

    def _owned_by(self, ring: Ring, key: Any, sender: str) -> bool:
        if type(key) is not bytes:
            raise CommandError(ErrorCode.BAD_REQUEST, "a hot-key item's key must be bin")
        owners = ring.owners(key, 1)
        if owners and owners[0].node_id == sender:
            return True
        self.stats["refused_not_owner"] += 1
        return False

    def handle_push(self, namespace: str, args: list[Any]) -> list[int]:
        """HOT_PUSH ``[sender, ring version, lease, items]``: store or renew copies. An item is
        ``[key, value, version, expires_at]`` (``value`` None: a renewal), or ``[key, record]``
        for a node that is also one of the key's write owners: the write's record, applied as
        ``REPL`` applies it, and the copy taken from it. The answer has one int per item: the
        reads the copy served since the previous push (so its owner still sees the key's whole
        popularity), -1 when the copy was not stored, :data:`NOT_APPLIED` when the item's
        record was not applied."""
        sender, ring = self._check_sender(namespace, args, "HOT_PUSH")
        lease, items = args[2], args[3]
        policy = self.policies[namespace]
        lease_end = self._clock() + min(lease, policy.lease)
        answer: list[int] = []
        for item in items:
            record = _checked_item(item)
            key = item[0]
            if record is not None:
                value, version, expires_at = record[1], record[3], record[2]
            else:
                value, version, expires_at = item[1], item[2], item[3]
            if not self._owned_by(ring, key, sender):
                answer.append(-1 if record is None else NOT_APPLIED)
                continue
            if record is not None and (
                self._apply is None
                or self._apply(namespace, [[key, record]], sender)[0] not in (APPLIED, STALE)
            ):
                answer.append(NOT_APPLIED)
                continue
            if (
                self.area.renew(namespace, key, version, expires_at, lease_end)
                if value is None
                else self.area.put(namespace, key, value, version, expires_at, lease_end)
            ):
                fenced = self._fences.get((namespace, key)) if self._fences else None
                if fenced is not None and 0 <= fenced[1] < version:
                    del self._fences[(namespace, key)]  # the update of a write that passed
                answer.append(self._served.pop((namespace, key), 0))
            else:
                answer.append(-1)
        return answer

    def handle_drop(self, namespace: str, args: list[Any]) -> int:
        """HOT_DROP ``[sender, ring version, [[key, version], ...]]``: drop copies older than
        the version; the number dropped."""
        sender, ring = self._check_sender(namespace, args, "HOT_DROP")
        dropped = 0
        for item in args[2]:
            if type(item) is not list or len(item) != 2 or type(item[1]) is not int:
                raise CommandError(ErrorCode.BAD_REQUEST, "HOT_DROP takes [[key, version], ...]")
            key, version = item
            if self._owned_by(ring, key, sender):
                dropped += self.area.drop(namespace, key, version + 1)
        return dropped

    # --- seeing it ---------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """HOTKEYS: the keys this node owns that are hot, and the copies it holds."""
        now = self._clock()
        _, version = self._ring()
        owned: list[dict[str, Any]] = [
            {
                "namespace": ns,
                "key": key,
                "share": round(entry.share, 5),
                "rate": round(entry.rate, 1),
                "holders": list(entry.holders),
                "hot_for": round(now - entry.since, 3),
                "lease": float(self.policies[ns].lease) if ns in self.policies else 0.0,
            }
            for ns, keys in self.hot.items()
            for key, entry in keys.items()
        ]
        owned.sort(key=lambda row: row["rate"], reverse=True)
        copies = [
            {
                "namespace": ns,
                "key": key,
                "version": c.version,
                "lease_left": round(max(0.0, c.lease_end - now), 3),
            }
            for (ns, key), c in self.area.slots()
        ]
        return {
            "node_id": self.node_id,
            "ring_version": version,
            "hot": owned,
            "copies": copies,
            "area_bytes": self.area.total_bytes,
        }

    def figures(self) -> tuple[dict[str, int], dict[str, int]]:
        """Counters and gauges for INFO and /metrics."""
        counters = dict(self.stats)
        counters.update(self.area.stats)
        gauges = {
            "hot_keys": sum(len(keys) for keys in self.hot.values()),
            "hot_copies": len(self.area),
            "hot_area_bytes": self.area.total_bytes,
        }
        return counters, gauges


def _checked_item(item: Any) -> list[Any] | None:
    """A push item's record when it carries one, None for a copy's item; ``BAD_REQUEST`` for
    an item of neither shape."""
    if type(item) is list and len(item) == 4:
        if (
            (item[1] is None or type(item[1]) is bytes)
            and type(item[2]) is int
            and (item[3] is None or type(item[3]) in (int, float))
        ):
            return None
    elif type(item) is list and len(item) == 2:
        record = item[1]
        if (
            type(record) is list
            and len(record) == 4
            and record[0] == PLAIN
            and type(record[1]) is bytes
            and (record[2] is None or type(record[2]) in (int, float))
            and type(record[3]) is int
        ):
            return record
    raise CommandError(
        ErrorCode.BAD_REQUEST,
        "HOT_PUSH takes [[key, value, version, expires_at] or [key, record], ...]",
    )


__all__ = ["MAX_HOT", "TICK", "UPDATE_LANE", "WRITE_WAIT", "HotKeys"]
