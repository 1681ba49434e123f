"""Anti-entropy: replicas compare digests periodically and repair what replication missed.

One *exchange* (:meth:`AntiEntropy.sync`) between this node and a peer, for one namespace,
covers every key the two share — keys whose read owners (``ring.owners(key, replicas)``)
include both — over the whole token ring at once:

1. ``AE_DIGEST``: both sides bucket their shared keys into one :class:`RangeDigest` of
   :data:`WHOLE_RING` (``2**depth`` buckets); :func:`compare` gives the differing buckets.
2. ``AE_KEYS``: for groups of differing buckets, the peer's :class:`KeyVersion` list (checked
   with :func:`check_key_list`) against ours → :func:`plan_repair`.
3. ``AE_PUSH`` our winning records and ``AE_PULL`` theirs, in batches paced by the
   :class:`ByteBudget`. Every received record goes through :meth:`VersionClamp.admit_record`
   then :func:`apply_record` (last-writer-wins; tombstones are records like any other).

Requests are one map ``{"from": node_id, "ring": ring_version, ...}`` (the ops' single ``a``
argument). The receiver answers ``STALE_CONFIG`` when its ring version differs (the exchange
is skipped and counted on both sides) and ``BAD_REQUEST`` with a message starting with
``not_owner`` when the sender does not own, with it, what it asks about or sends.

What callers may rely on:

* One exchange converges the keys the two sides shared when their scans were taken (tests in
  ``tests/node/test_antientropy.py``); writes made meanwhile are caught by a later round.
* Scanning never holds the trio loop for long: the key list is snapshotted (one C-level copy,
  kept packed: :class:`~meshcache.node.data.keychunks.KeyChunks`, which the garbage collector
  never walks), then read in slices of :data:`SCAN_CHUNK` keys (about half a millisecond),
  taking turns with the node's requests between slices (:class:`LoopShare`: on a busy loop a
  scan cuts its slices to :data:`SCAN_CHUNK_BUSY` keys and waits as long as each took, so it
  takes about half of the loop and delays a request by a fraction of a millisecond at most;
  its stretch in time is counted in ``scan_waited_ms``). One scan of a namespace
  serves every peer (each key's owners are looked up once), so a round costs O(keys *
  replicas), not O(keys * peers) or O(keys * ranges).
* A scan (a *snapshot*) is reused, for ``snapshot_ttl`` seconds, to answer peers' digest and
  key-list requests; records this object applies are folded into it at once, other local
  writes are seen by the next scan. Memory: one item (a :class:`KeyVersion` packed into an
  int) per shared key while a
  snapshot is held; :meth:`run` drops expired snapshots after each round.
* :attr:`AntiEntropy.stats` counters (for metrics): ``cycles``; ``rounds`` and
  ``rounds:<outcome>`` per exchange this node started (outcomes ``ok``, ``stale``,
  ``refused``, ``error``, ``not_shared``); ``buckets_differing``, ``keys_pushed``,
  ``keys_pulled``, ``records_applied``, ``apply_errors``, ``bytes`` (estimated bytes of
  digests, key lists and records, all paced by the budget), ``scans``, ``scanned_keys``,
  ``scan_waited_ms``;
  ``refused:<reason>`` for requests this node refused (reasons ``stale_config``,
  ``not_owner``, ``malformed``); ``errors``.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
import trio

from meshcache.errors import (
    BadRequestError,
    CommandError,
    ConfigError,
    ErrorCode,
    MeshcacheError,
    RemoteProtocolError,
)
from meshcache.node.data.keychunks import KeyChunks
from meshcache.node.data.loopshare import LoopShare
from meshcache.node.data.replication.budget import ByteBudget
from meshcache.node.data.replication.clamp import VersionClamp
from meshcache.node.data.replication.digest import (
    DEFAULT_DEPTH,
    ITEM_OVERHEAD,
    KEY_LIST_OVERHEAD,
    MAX_DEPTH,
    KeyVersion,
    RangeDigest,
    bucket_of,
    check_key_list,
    compare,
    item_hash,
    key_version,
    plan_repair,
)
from meshcache.node.data.replication.tombstones import (
    Record,
    apply_record,
    read_record,
    record_from_wire,
)
from meshcache.ring import Ring, RingMember, TokenRange, key_token
from meshcache.ring.tokens import TOKEN_BITS, TOKEN_SPACE
from meshcache.store import Store

log = structlog.get_logger("meshcache.antientropy")

PeerCall = Callable[[str, str, str, list[Any]], Awaitable[Any]]
"""``await call(peer_node_id, op, namespace, args)`` → the peer's result; raises
:class:`MeshcacheError` (``CommandError`` with the peer's code on refusal)."""

AE_DIGEST: Final = "AE_DIGEST"
AE_KEYS: Final = "AE_KEYS"
AE_PULL: Final = "AE_PULL"
AE_PUSH: Final = "AE_PUSH"
AE_OPS: Final = (AE_DIGEST, AE_KEYS, AE_PULL, AE_PUSH)

WHOLE_RING: Final = TokenRange(0, 0)
#: Keys read between two turns of a scan (:class:`LoopShare`): about half a millisecond of work
#: (4-5 us a key: its range, its entry's version and tie-break, its hash) on an idle loop, and
#: about a seventh of one on a busy loop, where a request that arrives during a slice waits
#: for the rest of it (clients that wait for each answer see that as latency, and do less).
SCAN_CHUNK: Final = 128
SCAN_CHUNK_BUSY: Final = 32
#: At most this many keys in one AE_PULL or AE_PUSH request.
MAX_REQUEST_KEYS: Final = 10_000
#: About this many keys (by the asking side's count) in one AE_KEYS answer: checking and
#: planning one answer holds the loop for a few milliseconds.
KEYS_PER_LIST: Final = 1000
#: Received records applied between two checkpoints: each is a last-writer-wins write and a
#: snapshot update, about 20 us.
APPLY_SLICE: Final = 100
NOT_OWNER: Final = "not_owner"


@dataclass(slots=True)
class SyncResult:
    """What one exchange did. ``outcome`` is ``ok``, ``stale`` (ring versions differ),
    ``refused`` (the peer says we do not share what we asked about), ``error`` (transport,
    protocol or the peer's other refusals; ``error`` holds the text) or ``not_shared`` (the ring
    gives us no key in common; nothing was sent). ``bytes``: what the budget was asked for
    (estimates of the digest, key lists and records moved)."""

    peer: str
    namespace: str
    outcome: str = "ok"
    buckets_differing: int = 0
    keys_pushed: int = 0
    keys_pulled: int = 0
    bytes: int = 0
    error: str | None = None

    @property
    def complete(self) -> bool:
        """The exchange covered everything the two sides share (or they share nothing)."""
        return self.outcome in ("ok", "not_shared")


Item = int
"""What a snapshot holds per key (the key is the dict's): a :class:`KeyVersion`'s version,
tie-break, size and deleted flag packed into one int (:func:`_item`, :func:`_key_version`).
An int is no object the garbage collector tracks, and a dict of bytes to ints is not tracked at
all, so a snapshot of a million keys neither triggers full collections as it is built nor
lengthens them (with one KeyVersion per key, each full collection held the loop 100+ ms)."""
_SIZE_BITS = 31
_SIZE_MASK = (1 << _SIZE_BITS) - 1
_TIE_SHIFT = _SIZE_BITS + 1
_TIE_MASK = (1 << 64) - 1
_VERSION_SHIFT = _TIE_SHIFT + 64


def _item(found: KeyVersion) -> Item:
    return (
        (found.version << _VERSION_SHIFT)
        | (found.tie << _TIE_SHIFT)
        | (min(found.size, _SIZE_MASK) << 1)
        | found.deleted
    )


def _key_version(key: bytes, item: Item) -> KeyVersion:
    return KeyVersion(
        key,
        item >> _VERSION_SHIFT,
        bool(item & 1),
        (item >> 1) & _SIZE_MASK,
        (item >> _TIE_SHIFT) & _TIE_MASK,
    )


@dataclass(slots=True)
class _Side:
    """Our half of the shared keys with one peer: digest leaves and items by bucket."""

    leaves: list[int]
    buckets: dict[int, dict[bytes, Item]] = field(default_factory=dict)


@dataclass(slots=True)
class _Snapshot:
    """One scan of a namespace: for every peer we share keys with, our side of them."""

    ring: Ring
    replicas: int
    depth: int
    taken_at: float
    peers: frozenset[str]
    sides: dict[str, _Side]
    #: Every shared key's item as the snapshot holds it (to fold later applies in).
    index: dict[bytes, Item] = field(default_factory=dict)
    complete: bool = False


def shared_peers(ring: Ring, node_id: str, replicas: int) -> frozenset[str]:
    """The nodes that are read owners together with ``node_id`` of at least one token."""
    out: set[str] = set()
    for _, owners in ring.ranges(replicas):
        ids = {m.node_id for m in owners}
        if node_id in ids:
            out |= ids
    out.discard(node_id)
    return frozenset(out)


def _range_sides(
    ring: Ring, node_id: str, replicas: int, sides: dict[str, _Side]
) -> tuple[list[int], list[tuple[_Side, ...] | None]]:
    """The ring's range ends, ascending, and for each range the peers' sides its keys go to
    (``None``: a range ``node_id`` does not own): the key with token ``t`` is in range
    ``bisect_left(ends, t)``, the last entry standing for the range that wraps past 0, as
    :meth:`Ring.owners` looks it up."""
    bounds = ring.boundaries()
    targets: list[tuple[_Side, ...] | None] = []
    for bound in bounds:
        ids = [m.node_id for m in ring.owners_for_token(bound, replicas)]
        if node_id in ids:
            targets.append(tuple(sides[i] for i in ids if i in sides))
        else:
            targets.append(None)
    targets.append(targets[0] if targets else None)
    return bounds, targets


class AntiEntropy:
    """Digest exchanges with the other replicas of this node's keys (see the module docstring).

    Args:
        store: the node's store (read and written on the trio thread).
        node_id: this node's ring id.
        ring: the current ring (read at the start of every exchange and request).
        alive: whether gossip thinks a peer is alive (:meth:`run` skips the others).
        call: sends one request to a peer (see :data:`PeerCall`).
        clamp: admits every received version (far-future clamp, counted per peer).
        budget: paces pushes and pulls (shared with hint replay if the node wishes).
        interval: seconds between rounds of :meth:`run`, jittered ±25 % by ``rng``.
        rng: the node's seeded randomness (jitter, peer order).
        clock: monotonic seconds for the budget and snapshot ages.
        depth: digest depth (``2**depth`` buckets; every node must use the same).
        batch_keys / batch_bytes: repair batch bounds (:func:`plan_repair`).
        snapshot_ttl: how long a scan answers peers' requests (default ``interval / 2``).
        repair_interval: the least time between two starts of :meth:`repair` with one peer.
    """

    def __init__(
        self,
        store: Store,
        node_id: str,
        *,
        ring: Callable[[], Ring],
        alive: Callable[[str], bool],
        call: PeerCall,
        clamp: VersionClamp,
        budget: ByteBudget,
        interval: float,
        rng: random.Random,
        clock: Callable[[], float] = trio.current_time,
        depth: int = DEFAULT_DEPTH,
        batch_keys: int = 500,
        batch_bytes: int = 256 * 1024,
        snapshot_ttl: float | None = None,
        repair_interval: float = 30.0,
    ) -> None:
        if not interval > 0:
            raise ConfigError("the anti-entropy interval must be > 0")
        if not 0 <= depth <= MAX_DEPTH:
            raise ConfigError(f"digest depth must be in 0..{MAX_DEPTH}")
        if not 1 <= batch_keys <= MAX_REQUEST_KEYS or batch_bytes < 1:
            raise ConfigError(f"batch_keys must be 1..{MAX_REQUEST_KEYS}, batch_bytes >= 1")
        self._store = store
        self.node_id = node_id
        self._ring = ring
        self._alive = alive
        self._call = call
        self._clamp = clamp
        self._budget = budget
        self.interval = interval
        self._rng = rng
        self._clock = clock
        self.depth = depth
        self.batch_keys = batch_keys
        self.batch_bytes = batch_bytes
        self.snapshot_ttl = interval / 2 if snapshot_ttl is None else snapshot_ttl
        self.stats: Counter[str] = Counter()
        self._snapshots: dict[str, _Snapshot] = {}
        self._scan_locks: dict[str, trio.Lock] = {}
        self._peers_ring: Ring | None = None
        self._peers: dict[int, frozenset[str]] = {}
        self.repair_interval = repair_interval
        self._repairing: set[str] = set()
        self._repairs_started: dict[str, float] = {}

    # ------------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Forever: wait a jittered ``interval``, then :meth:`round`. Cancel to stop."""
        while True:
            await trio.sleep(self.interval * (0.75 + 0.5 * self._rng.random()))
            await self.round()

    async def round(self) -> list[SyncResult]:
        """One exchange with every alive peer sharing keys, for every namespace."""
        self.stats["cycles"] += 1
        results: list[SyncResult] = []
        for namespace in self._store.namespace_names():
            try:
                snap = await self._snapshot(namespace, self.snapshot_ttl)
            except CommandError:  # the namespace was dropped meanwhile
                continue
            peers = sorted(p for p in snap.peers if self._alive(p))
            self._rng.shuffle(peers)
            for peer in peers:
                results.append(await self._sync(peer, namespace, snap))
        self._prune()
        return results

    async def sync(self, peer: str, namespace: str) -> SyncResult:
        """One full exchange with ``peer`` for ``namespace``, from a fresh scan.

        Never raises :class:`MeshcacheError`: failures are the result's ``outcome``.
        """
        try:
            snap = await self._snapshot(namespace, None)
        except CommandError as exc:
            self.stats["rounds"] += 1
            self.stats["rounds:error"] += 1
            self.stats["errors"] += 1
            return SyncResult(peer, namespace, "error", error=str(exc))
        return await self._sync(peer, namespace, snap)

    async def repair(self, peer: str) -> list[SyncResult] | None:
        """:meth:`sync` with ``peer`` for every namespace: the repair of a peer owed hints that
        were dropped. ``None`` (skipped) while one runs with ``peer`` or within
        ``repair_interval`` of the last start: a peer flapping between suspect and alive under
        load would otherwise start a whole-store scan at every ALIVE (the periodic round covers
        what a skipped repair would have done)."""
        now = self._clock()
        last = self._repairs_started.get(peer)
        if peer in self._repairing or (last is not None and now - last < self.repair_interval):
            self.stats["repairs_skipped"] += 1
            return None
        self._repairs_started[peer] = now
        self._repairing.add(peer)
        try:
            results = [await self.sync(peer, ns) for ns in self._store.namespace_names()]
        finally:
            self._repairing.discard(peer)
        log.info("hinted_peer_repaired", peer=peer, outcomes=[r.outcome for r in results])
        return results

    # ------------------------------------------------------------------------ initiator

    async def _sync(self, peer: str, namespace: str, snap: _Snapshot) -> SyncResult:
        result = SyncResult(peer, namespace)
        self.stats["rounds"] += 1
        if peer not in snap.peers:
            result.outcome = "not_shared"
        else:
            try:
                await self._exchange(peer, namespace, snap, result)
            except CommandError as exc:
                if exc.code == ErrorCode.STALE_CONFIG:
                    result.outcome = "stale"
                elif exc.code == ErrorCode.BAD_REQUEST and exc.message.startswith(NOT_OWNER):
                    result.outcome = "refused"
                else:
                    result.outcome, result.error = "error", str(exc)
            except MeshcacheError as exc:
                result.outcome, result.error = "error", f"{type(exc).__name__}: {exc}"
        self.stats[f"rounds:{result.outcome}"] += 1
        if result.outcome != "ok":
            if result.outcome == "error":
                self.stats["errors"] += 1
            log.info(
                "anti-entropy exchange not completed",
                peer=peer,
                namespace=namespace,
                outcome=result.outcome,
                error=result.error,
            )
        return result

    async def _exchange(
        self, peer: str, namespace: str, snap: _Snapshot, result: SyncResult
    ) -> None:
        side = snap.sides[peer]
        head = {"from": self.node_id, "ring": snap.ring.version}
        await self._pace(8 << snap.depth, result)
        reply = await self._call(peer, AE_DIGEST, namespace, [{**head, "depth": snap.depth}])
        local = RangeDigest(WHOLE_RING, snap.depth)
        local.leaves = list(side.leaves)
        buckets = compare(local, RangeDigest.from_wire(reply))
        result.buckets_differing = len(buckets)
        self.stats["buckets_differing"] += len(buckets)
        for group in _bucket_groups(side, buckets):
            ours = [
                _key_version(key, item)
                for b in group
                for key, item in side.buckets.get(b, {}).items()
            ]
            # The answer's size is not known yet; ours is alike when the replicas mostly agree.
            await self._pace(_batch_bytes((kv.key for kv in ours), {}), result)
            reply = await self._call(peer, AE_KEYS, namespace, [{**head, "buckets": group}])
            if type(reply) is not list:
                raise RemoteProtocolError("an AE_KEYS answer must be a list")
            theirs = check_key_list(
                [KeyVersion.from_wire(x) for x in reply], WHOLE_RING, snap.depth, group
            )
            plan = plan_repair(ours, theirs, max_keys=self.batch_keys, max_bytes=self.batch_bytes)
            our_size = {kv.key: kv.size for kv in ours}
            their_size = {kv.key: kv.size for kv in theirs}
            for batch in plan.push:
                await self._push(peer, namespace, head, batch, our_size, result)
            for batch in plan.pull:
                await self._pull(peer, namespace, head, batch, their_size, result)

    async def _push(
        self,
        peer: str,
        namespace: str,
        head: dict[str, Any],
        batch: list[bytes],
        sizes: dict[bytes, int],
        result: SyncResult,
    ) -> None:
        await self._pace(_batch_bytes(batch, sizes), result)
        # Read after the wait: the record may have changed meanwhile, and we send what is held.
        items = []
        for key in batch:
            record = read_record(self._store, namespace, key)
            if record is not None:  # evicted or expired since the scan
                items.append([key, record.to_wire()])
        if not items:
            return
        await self._call(peer, AE_PUSH, namespace, [{**head, "items": items}])
        result.keys_pushed += len(items)
        self.stats["keys_pushed"] += len(items)

    async def _pull(
        self,
        peer: str,
        namespace: str,
        head: dict[str, Any],
        batch: list[bytes],
        sizes: dict[bytes, int],
        result: SyncResult,
    ) -> None:
        await self._pace(_batch_bytes(batch, sizes), result)
        reply = await self._call(peer, AE_PULL, namespace, [{**head, "keys": batch}])
        if type(reply) is not list or len(reply) != len(batch):
            raise RemoteProtocolError("an AE_PULL answer must list one record per key")
        records = [
            (key, record_from_wire(wire))
            for key, wire in zip(batch, reply, strict=True)
            if wire is not None
        ]
        await self._apply_all(peer, namespace, records)
        result.keys_pulled += len(records)
        self.stats["keys_pulled"] += len(records)

    async def _pace(self, nbytes: int, result: SyncResult) -> None:
        """Wait until the budget grants ``nbytes`` (an estimate of one request and answer)."""
        while True:
            now = self._clock()
            wait = self._budget.delay(nbytes, now)
            if wait <= 0 and self._budget.take(nbytes, now):
                result.bytes += nbytes
                self.stats["bytes"] += nbytes
                return
            # A float rounding can leave a hair of debt after the computed wait: wait a hair.
            await trio.sleep(max(wait, 1e-6))

    # ------------------------------------------------------------------------ receiver

    def handle(self, op: str, namespace: str, args: Any) -> Any:
        """Answer a peer's ``AE_*`` request (``args``: the op's argument list, one map).

        ``AE_DIGEST`` and ``AE_KEYS`` may scan, and ``AE_PUSH`` applies its records in slices
        of :data:`APPLY_SLICE`, so they return a coroutine for the dispatcher to await (the
        number of records applied, for ``AE_PUSH``); ``AE_PULL`` answers a list of record wire
        forms (``None`` for a key not held). Raises ``CommandError``: ``STALE_CONFIG``
        (ring versions differ), ``BAD_REQUEST`` (malformed, or ``not_owner: …``),
        ``NO_SUCH_NAMESPACE``. Every refusal is counted in ``refused:<reason>``.
        """
        request = self._request(op, args)
        sender = request["from"]
        ring = self._ring()
        if request["ring"] != ring.version:
            self.stats["refused:stale_config"] += 1
            raise CommandError(
                ErrorCode.STALE_CONFIG,
                f"ring version {request['ring']}; this node has {ring.version}",
            )
        replicas = self._store.policy(namespace).replicas
        if op in (AE_DIGEST, AE_KEYS):
            if sender not in self._shared_peers(ring, replicas):
                raise self._not_owner(f"{sender!r} shares no keys of {namespace!r} with us")
            if op == AE_DIGEST:
                if request.get("depth") != self.depth:
                    raise self._malformed(f"digest depth {request.get('depth')!r}")
                return self._serve_digest(sender, namespace, request["ring"])
            return self._serve_keys(sender, namespace, request["ring"], self._buckets(request))
        if op == AE_PULL:
            keys = request.get("keys")
            if (
                type(keys) is not list
                or len(keys) > MAX_REQUEST_KEYS
                or not all(type(k) is bytes for k in keys)
            ):
                raise self._malformed(
                    f"AE_PULL keys must be a list of up to {MAX_REQUEST_KEYS} bytes"
                )
            self._check_keys(ring, replicas, sender, namespace, keys)
            out = []
            for key in keys:
                record = read_record(self._store, namespace, key)
                out.append(None if record is None else record.to_wire())
            return out
        items = request.get("items")
        if (
            type(items) is not list
            or len(items) > MAX_REQUEST_KEYS
            or not all(type(i) is list and len(i) == 2 and type(i[0]) is bytes for i in items)
        ):
            raise self._malformed(f"AE_PUSH items must be up to {MAX_REQUEST_KEYS} [key, record]")
        try:
            records = [(key, record_from_wire(wire)) for key, wire in items]
        except RemoteProtocolError as exc:
            raise self._malformed(str(exc)) from None
        self._check_keys(ring, replicas, sender, namespace, [key for key, _ in records])
        return self._apply_all(sender, namespace, records)

    def _request(self, op: str, args: Any) -> dict[str, Any]:
        if op not in AE_OPS:
            raise self._malformed(f"{op!r} is not an anti-entropy op")
        if type(args) is not list or len(args) != 1 or type(args[0]) is not dict:
            raise self._malformed(f"{op} takes one map")
        request: dict[str, Any] = args[0]
        sender, version = request.get("from"), request.get("ring")
        if type(sender) is not str or not sender or sender == self.node_id:
            raise self._malformed(f"{op}: bad sender {sender!r}")
        if type(version) is not int:
            raise self._malformed(f"{op}: bad ring version {version!r}")
        return request

    def _buckets(self, request: dict[str, Any]) -> list[int]:
        buckets = request.get("buckets")
        count = 1 << self.depth
        if (
            type(buckets) is not list
            or len(buckets) > count
            or not all(type(b) is int and 0 <= b < count for b in buckets)
        ):
            raise self._malformed(f"AE_KEYS buckets must be up to {count} ints in 0..{count - 1}")
        return buckets

    def _check_keys(
        self, ring: Ring, replicas: int, sender: str, namespace: str, keys: Iterable[bytes]
    ) -> None:
        for key in keys:
            ids = [m.node_id for m in ring.owners(key, replicas)]
            if self.node_id not in ids or sender not in ids:
                raise self._not_owner(f"key {key[:64]!r} of {namespace!r} is not shared")

    def _not_owner(self, message: str) -> CommandError:
        self.stats[f"refused:{NOT_OWNER}"] += 1
        return BadRequestError(message=f"{NOT_OWNER}: {message}")

    def _malformed(self, message: str) -> CommandError:
        self.stats["refused:malformed"] += 1
        return BadRequestError(message=message)

    async def _serve_digest(self, sender: str, namespace: str, version: int) -> list[Any]:
        snap = await self._snapshot(namespace, self.snapshot_ttl)
        side = self._side_for(snap, sender, version)
        digest = RangeDigest(WHOLE_RING, snap.depth)
        digest.leaves = list(side.leaves)
        return digest.to_wire()

    async def _serve_keys(
        self, sender: str, namespace: str, version: int, buckets: list[int]
    ) -> list[Any]:
        snap = await self._snapshot(namespace, self.snapshot_ttl)
        side = self._side_for(snap, sender, version)
        return [
            _key_version(key, item).to_wire()
            for b in set(buckets)
            for key, item in side.buckets.get(b, {}).items()
        ]

    def _side_for(self, snap: _Snapshot, sender: str, version: int) -> _Side:
        if snap.ring.version != version:  # the ring changed while we scanned
            self.stats["refused:stale_config"] += 1
            raise CommandError(ErrorCode.STALE_CONFIG, f"ring version is now {snap.ring.version}")
        side = snap.sides.get(sender)
        if side is None:
            raise self._not_owner(f"{sender!r} shares no keys with us")
        return side

    # ------------------------------------------------------------------------ applying

    async def _apply_all(
        self, peer: str, namespace: str, records: list[tuple[bytes, Record]]
    ) -> int:
        """:meth:`_apply` each record, with a checkpoint every :data:`APPLY_SLICE`; how many
        changed something."""
        applied = 0
        for i, (key, record) in enumerate(records):
            if i and not i % APPLY_SLICE:
                await trio.lowlevel.checkpoint()
            applied += self._apply(peer, namespace, key, record)
        return applied

    def _apply(self, peer: str, namespace: str, key: bytes, record: Record) -> bool:
        record, admitted = self._clamp.admit_record(record, peer)
        if admitted.clamped:
            log.warning(
                "far-future version clamped",
                peer=peer,
                namespace=namespace,
                key=key[:64],
                ahead_ms=admitted.ahead_ms,
            )
        try:
            changed = apply_record(self._store, namespace, key, record)
        except CommandError as exc:  # TOO_LARGE, OUT_OF_MEMORY: this key only
            self.stats["apply_errors"] += 1
            log.info("anti-entropy record not applied", namespace=namespace, error=str(exc))
            return False
        if changed:
            self.stats["records_applied"] += 1
            self._fold(namespace, key)
        return changed

    def _fold(self, namespace: str, key: bytes) -> None:
        """Bring a held snapshot up to date with ``key``'s record now (we just applied it)."""
        snap = self._snapshots.get(namespace)
        if snap is None:
            return
        owners = snap.ring.owners(key, snap.replicas)
        if all(m.node_id != self.node_id for m in owners):
            return
        _place(snap, key, owners, key_version(self._store, namespace, key))

    # ------------------------------------------------------------------------ scanning

    async def _snapshot(self, namespace: str, max_age: float | None) -> _Snapshot:
        """A scan of ``namespace`` at most ``max_age`` seconds old (``None``: a fresh one)
        on the current ring; concurrent callers share one scan."""
        lock = self._scan_locks.setdefault(namespace, trio.Lock())
        async with lock:
            snap = self._snapshots.get(namespace)
            ring = self._ring()
            if (
                max_age is not None
                and snap is not None
                and snap.complete
                and (snap.ring is ring or snap.ring == ring)
                and snap.replicas == self._store.policy(namespace).replicas
                and self._clock() - snap.taken_at <= max_age
            ):
                return snap
            return await self._scan(namespace, ring)

    async def _scan(self, namespace: str, ring: Ring) -> _Snapshot:
        store = self._store
        replicas = store.policy(namespace).replicas
        peers = self._shared_peers(ring, replicas)
        snap = _Snapshot(
            ring=ring,
            replicas=replicas,
            depth=self.depth,
            taken_at=self._clock(),
            peers=peers,
            sides={p: _Side([0] * (1 << self.depth)) for p in peers},
        )
        # Registered before it is complete, so records applied during the scan are folded in
        # (and then skipped by the scan, which sees them in the index).
        self._snapshots[namespace] = snap
        bounds, targets = _range_sides(ring, self.node_id, replicas, snap.sides)
        index = snap.index
        shift = TOKEN_BITS - self.depth
        entry_facts = store.entry_facts
        get_tombstone = store.get_tombstone
        share = LoopShare(self._clock)
        try:
            # Expired keys and superseded tombstones are in it too: entry_facts and
            # get_tombstone skip them.
            keys = await KeyChunks.take(store, namespace, tombstones=True)
            for n, chunk in enumerate(_slices(keys, share)):
                if n:
                    await share.turn()
                for key in chunk:
                    if key in index:  # folded in by an apply during the scan
                        continue
                    token = key_token(key)
                    sides = targets[bisect_left(bounds, token)]
                    if sides is None:  # not ours
                        continue
                    # _item and item_hash inlined: the scan's hot loop.
                    facts = entry_facts(namespace, key)
                    if facts is None:
                        version = get_tombstone(namespace, key)
                        if version is None:
                            continue
                        item = (version << _VERSION_SHIFT) | ((len(key) + ITEM_OVERHEAD) << 1) | 1
                        h = item_hash(key, version, True, 0)
                    else:
                        version, size, tie = facts
                        size = min(size + len(key) + ITEM_OVERHEAD, _SIZE_MASK)
                        item = (version << _VERSION_SHIFT) | (tie << _TIE_SHIFT) | (size << 1)
                        h = item_hash(key, version, False, tie)
                    index[key] = item
                    b = ((token - 1) % TOKEN_SPACE) >> shift  # bucket_of(token, WHOLE_RING)
                    for side in sides:
                        side.leaves[b] ^= h
                        held = side.buckets.get(b)
                        if held is None:
                            held = side.buckets[b] = {}
                        held[key] = item
        except BaseException:
            if self._snapshots.get(namespace) is snap:
                del self._snapshots[namespace]
            raise
        snap.complete = True
        self.stats["scans"] += 1
        self.stats["scanned_keys"] += len(keys)
        self.stats["scan_waited_ms"] += round(share.waited * 1000)
        return snap

    def _shared_peers(self, ring: Ring, replicas: int) -> frozenset[str]:
        if ring is not self._peers_ring and ring != self._peers_ring:
            self._peers_ring = ring
            self._peers = {}
        peers = self._peers.get(replicas)
        if peers is None:
            peers = self._peers[replicas] = shared_peers(ring, self.node_id, replicas)
        return peers

    def _prune(self) -> None:
        now = self._clock()
        for namespace, snap in list(self._snapshots.items()):
            if snap.complete and now - snap.taken_at > self.snapshot_ttl:
                del self._snapshots[namespace]


def _place(
    snap: _Snapshot, key: bytes, owners: Iterable[RingMember], found: KeyVersion | None
) -> None:
    """Set ``key``'s item in ``snap`` (``None``: absent), for every peer among ``owners``."""
    old = snap.index.get(key)
    item = None if found is None else _item(found)
    if old == item:
        return
    bucket = bucket_of(key_token(key), WHOLE_RING, snap.depth)
    toggle = 0
    if old is not None:
        was = _key_version(key, old)
        toggle ^= item_hash(key, was.version, was.deleted, was.tie)
    if found is not None and item is not None:
        toggle ^= item_hash(key, found.version, found.deleted, found.tie)
        snap.index[key] = item
    else:
        snap.index.pop(key, None)
    for member in owners:
        side = snap.sides.get(member.node_id)
        if side is None:  # ourselves
            continue
        side.leaves[bucket] ^= toggle
        held = side.buckets.setdefault(bucket, {})
        if item is None:
            held.pop(key, None)
        else:
            held[key] = item


def _slices(keys: KeyChunks, share: LoopShare) -> Iterator[list[bytes]]:
    """``keys`` in slices of :data:`SCAN_CHUNK`, or :data:`SCAN_CHUNK_BUSY` while ``share``
    finds the loop busy."""
    for chunk in keys:
        at = 0
        while at < len(chunk):
            end = at + (SCAN_CHUNK_BUSY if share.busy else SCAN_CHUNK)
            yield chunk[at:end]
            at = end


def _bucket_groups(side: _Side, buckets: list[int]) -> list[list[int]]:
    """Split differing buckets into requests of about :data:`KEYS_PER_LIST` keys (by our
    count; the peer's is alike when the replicas mostly agree), at least one bucket each."""
    groups: list[list[int]] = []
    group: list[int] = []
    count = 0
    for b in buckets:
        n = len(side.buckets.get(b, ()))
        if group and count + n > KEYS_PER_LIST:
            groups.append(group)
            group, count = [], 0
        group.append(b)
        count += n
    if group:
        groups.append(group)
    return groups


def _batch_bytes(batch: Iterable[bytes], sizes: dict[bytes, int]) -> int:
    return sum(sizes.get(key, 0) + len(key) + KEY_LIST_OVERHEAD for key in batch)


__all__ = [
    "AE_DIGEST",
    "AE_KEYS",
    "AE_OPS",
    "AE_PULL",
    "AE_PUSH",
    "MAX_REQUEST_KEYS",
    "SCAN_CHUNK",
    "SCAN_CHUNK_BUSY",
    "WHOLE_RING",
    "AntiEntropy",
    "PeerCall",
    "SyncResult",
    "shared_peers",
]
