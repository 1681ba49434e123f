"""Routing and coordination: which node executes a request, and who else must apply it.

Any node accepts any request. For a keyed op the node looks up the key's owners on the ring
it holds (``replicas`` from the namespace's policy) and picks the **coordinator**: the first
owner that gossip does not report dead. If that is this node, it executes the op on its store
and, for a write, ships the key's resulting *record* to the key's other write owners (the
owners plus any joining owner during a hand-off) through the :class:`Replicator`. Otherwise it
forwards the request (``FWD``) over a pooled connection to the coordinator, which executes it
without forwarding again: one hop at most, even when two nodes' rings disagree for a moment.
A forward to an open connection is *submitted* with a callback (:meth:`PeerPool.submit`) and
answered as a :class:`Later`, with no task per request: the forwards of one reactor turn leave
for each peer in one write. Only a failure (fail over to the next owner, stand in) or a forward
that must connect first runs in a task.

Writes are acknowledged by the namespace's consistency (a SET may say its own):

* ``one`` — after the coordinator applied it; the other owners get it asynchronously;
* ``quorum`` / ``all`` — after a majority / all of the write owners applied it, within
  ``write_timeout``, else ``WRITE_FAILED`` (the write may still have landed somewhere; every
  owner that did not answer gets a hint, so it converges anyway).

Many-key ops (MGET, MSET, DELETE and EXISTS with several keys) are split by coordinator, the
parts run in parallel, and the answers are merged in the caller's order.

A node on a ring of one (or none: no config plane) executes everything locally at the cost of
one attribute check: the single-node fast path stays what it was.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from collections.abc import Set as AbstractSet
from functools import partial
from itertools import compress
from typing import Any

import msgpack
import structlog
import trio

from meshcache.control import ClusterConfig
from meshcache.errors import (
    CommandError,
    ErrorCode,
    MeshcacheError,
    UnavailableError,
    WriteFailedError,
)
from meshcache.hlc import MAX_VERSION, physical_ms
from meshcache.node.data.hot import HotKeys
from meshcache.node.data.replication import (
    Consistency,
    VersionClamp,
    WriteState,
    WriteTracker,
    read_repair,
)
from meshcache.node.data.replication.tombstones import (
    Record,
    Tombstone,
    apply_record,
    lww_order,
    read_record,
    record_from_wire,
)
from meshcache.node.data.replicator import (
    APPLIED,
    REFUSED_NOT_OWNER,
    REFUSED_STORE,
    STALE,
    Replicator,
)
from meshcache.node.loader.loader import Loader
from meshcache.node.net.peer_pool import Address, PeerPool, PeerUnreachable
from meshcache.ring import Ring, RingMember, key_token
from meshcache.store.keyspace import blob_version
from meshcache.store.sizes import VERSION_HEADER
from meshcache.store.store import Store
from meshcache.store.values import PLAIN
from meshcache.wire.address import parse_address
from meshcache.wire.frame import Response
from meshcache.wire.ops import OPS, Limits, OpKind, OpSpec, normalize_args
from meshcache.wire.pending import FailedOver, Later, Relayed

log = structlog.get_logger("meshcache.dataplane")

FORWARD_TIMEOUT = 5.0
WRITE_TIMEOUT = 2.0
READ_REPAIR_TIMEOUT = 1.0
# How long a starting node waits for each peer's CLOCK before it coordinates writes anyway.
CLOCK_TIMEOUT = 1.0
# Times a quorum/all write is run again above a newer record an owner holds (_await_acks).
REWRITES = 2
# A forwarded plain write that reaches its coordinator this long or longer after its forwarder
# stamped it (by the receiver's wall clock) is applied at its stamp: its forwarder may have
# timed out and failed it over (after FORWARD_TIMEOUT; one second less tolerates that much
# clock skew between the two). One arriving sooner is coordinated as any write, with a version
# from the receiver's clock in arrival order, so skew does not reorder concurrent writes.
LATE_FORWARD_MS = int(FORWARD_TIMEOUT * 1000) - 1000
# Read repairs in flight at once; beyond it a sampled read is simply not checked.
MAX_READ_REPAIRS = 16
# Work done between two checkpoints, so that no batch holds the loop beyond a few milliseconds:
# keys of a many-key op routed or executed here (a write also ships each key to its other
# owners, or hints it: ~25 us a key), records of a REPL batch, blobs of a BULK one. A node
# that pulls its ranges gets batches from every source at once, and its reactor reads one
# from each in a wake-up, so those slices are about a millisecond: a hand-off batch above one
# is applied by a task, a slice per step, and such batches take turns (one applies at a time),
# or every batch in flight would apply a slice in the same pass of trio's scheduler.
SCATTER_SLICE = 1000
SCATTER_WRITE_SLICE = 200
REPL_SLICE = 200  # 2.5-4.5 us a record
BULK_SLICE = 400  # about 1.5 us a blob
_WRITE = OpKind.WRITE
_HOT_GET = OPS["HOT_GET"]
_unpackb = msgpack.unpackb
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_NEW_STAMP: Any = object()  # _forwarding: stamp the request now
_STAMPABLE = frozenset(("SET", "MSET", "DELETE"))  # the ops stampable() may say yes to
# The ops whose first argument is their key (OpSpec.keyed, a property, asked per request).
_KEYED = frozenset(name for name, spec in OPS.items() if spec.keyed)


class Coordinator:
    """Executes client requests on the right nodes; answers the node-to-node data ops.

    Args:
        store: this node's store.
        node_id: this node's id (as on the ring).
        pool: connections to peers.
        replicator: ships records to other owners.
        clamp: admits versions received from peers (a far-future clock is clamped).
        alive: whether gossip holds a node alive.
        limits: argument limits, to re-check forwarded requests.
        read_repair_chance: the fraction of single-key reads after which the coordinator
            asks the key's other owners for their record, in the background, and sends the
            newest to whoever is behind (0 turns read repair off).
    """

    def __init__(
        self,
        store: Store,
        node_id: str,
        *,
        pool: PeerPool,
        replicator: Replicator,
        clamp: VersionClamp,
        alive: Callable[[str], bool],
        limits: Limits,
        read_repair_chance: float = 0.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.pool = pool
        self.replicator = replicator
        self.clamp = clamp
        self._alive = alive
        self._limits = limits
        self._clock = clock
        self._store_execute = store.execute
        self.ring = Ring([], 0)
        self.ring_version = 0
        # True while this node is alone (or there is no ring): no routing, no replication.
        self.solo = True
        self._addresses: dict[str, Address] = {}
        self.stats: Counter[str] = Counter()
        # Held by the REPL or BULK batch being applied a slice at a time.
        self._slicing = trio.Lock()
        self.read_repair_chance = read_repair_chance
        self._rng = rng or random.Random(node_id)
        self._repairs = 0
        self._nursery: trio.Nursery | None = None
        # False from the start of run() until the peers' clocks were asked (_catch_up).
        self._clock_ready = True
        self._clock_asked = trio.Event()
        self._catching_up = False
        # Forwards that run in a task and have not handed their request to the pool yet: while
        # there are any, a forward is not submitted directly, or it could overtake one of them.
        self._unsent = 0
        # Whether the first of the owners the last _coordinators call returned is live.
        self._first_live = True
        # The newest failover's event, set once it handed its request on (they go in order).
        self._failover_tail: trio.Event | None = None
        # What a failed RELAY hands each of its reads to, per owner it was relayed to.
        self._relay_failures: dict[str, Callable[[bytes, Later, BaseException], None]] = {}
        #: The hot-key layer (the assembly wires it): samples the GETs coordinated here,
        #: updates copies on writes, answers GETs of keys this node holds a copy of.
        self.hot: HotKeys | None = None
        #: The read-through loader (the assembly wires it): loads the misses of namespaces
        #: with a loader when this node coordinates them.
        self.loader: Loader | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the background read repairs (and the start-up clock catch-up) until
        cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._start_catch_up()
            task_status.started()
            await trio.sleep_forever()

    def _start_catch_up(self) -> None:
        """Once, when this node first runs with peers: ask their clocks before coordinating
        writes (:meth:`_catch_up`)."""
        if self._catching_up or self.solo or self._nursery is None:
            return
        self._catching_up = True
        self._clock_ready = False
        self._nursery.start_soon(self._catch_up)

    async def _catch_up(self) -> None:
        """Take the greatest of the peers' clocks (``CLOCK``, clamped like any remote version)
        as this node's floor, so its writes are stamped above every version the peers hold —
        a node restarted with its clock set right is behind the versions its fast clock left.
        Writes this node coordinates wait for it (at most :data:`CLOCK_TIMEOUT`)."""

        async def ask(node_id: str, address: Address) -> None:
            try:
                reading = await self.pool.call(
                    address, "CLOCK", "default", [], timeout=CLOCK_TIMEOUT
                )
            except MeshcacheError:
                return  # unreachable or older: its versions reach us by replication
            if type(reading) is int and 0 < reading <= MAX_VERSION:
                self.clamp.admit(reading, node_id)

        try:
            async with trio.open_nursery() as nursery:
                for node_id, address in self._addresses.items():
                    if node_id != self.node_id:
                        nursery.start_soon(ask, node_id, address)
        finally:
            self._clock_ready = True
            self._clock_asked.set()

    def clock_reading(self) -> int:
        """CLOCK: a version from this node's clock, above all it issued or applied."""
        return self.clamp.hlc.now()

    async def _after_catch_up(
        self, namespace: str, op: str, spec: OpSpec, args: list[Any], stamp: int | None
    ) -> Any:
        await self._clock_asked.wait()
        result = self.coordinate(namespace, op, spec, args, stamp)
        return await _settled(result)

    # --- ring ----------------------------------------------------------------------------

    def install(self, config: ClusterConfig) -> None:
        """Route by ``config``'s ring from now on."""
        self.ring = Ring(config.members, config.version)
        self.ring_version = config.version
        self._addresses = {
            m.node_id: parse_address(m.address, default_port=None) for m in config.members
        }
        others = [m for m in config.members if m.node_id != self.node_id]
        self.solo = not others
        self._start_catch_up()

    def address_of(self, node_id: str) -> Address | None:
        return self._addresses.get(node_id)

    def node_at(self, address: Address) -> str | None:
        """The ring member whose data address ``address`` is (None: none is)."""
        for node_id, known in self._addresses.items():
            if known == address:
                return node_id
        return None

    def _replicas(self, namespace: str) -> int:
        try:
            return self.store.policy(namespace).replicas
        except CommandError:
            return 1

    def coordinates(self, namespace: str, key: bytes) -> bool:
        """Whether this node coordinates ``key`` now (its first live owner).

        It only reads (the ring snapshot, gossip's view): the loader asks it from its
        database thread too, as a NOTIFY arrives."""
        if self.solo:
            return True
        me, alive = self.node_id, self._alive
        owners = self.ring.owners(key, self._replicas(namespace))
        for member in owners:
            if member.node_id == me:
                return True
            if alive(member.node_id):
                return False
        return not owners

    def _coordinators(self, namespace: str, key: bytes) -> list[RingMember]:
        """The key's owners, live ones first (gossip): the first is the coordinator."""
        owners = self.ring.owners(key, self._replicas(namespace))
        alive = self._alive
        me = self.node_id
        if owners:
            first = owners[0].node_id
            if first == me or alive(first):
                # The coordinator is the first owner; forwarding checks the others' liveness
                # again as it fails over (a dead one is skipped wherever it is in the list).
                self._first_live = True
                return list(owners)
        live = [m for m in owners if m.node_id == me or alive(m.node_id)]
        self._first_live = bool(live)
        return live + [m for m in owners if m not in live]

    # --- the client-facing executor --------------------------------------------------------

    def execute(
        self,
        namespace: str,
        op: str,
        args: list[Any],
        body: bytes | None = None,
        relay: bool = False,
    ) -> Any:
        """Run a data op for a client: here, or forwarded to the key's coordinator.

        ``body`` (a read's frame body as its client sent it) or ``relay``: the caller takes
        the owner's response frame for an answer. A read of a key another node coordinates is
        then relayed (:meth:`_relay`; as ``body``, or as a request made of ``args`` with
        ``relay``) and answered as a :class:`Relayed`."""
        if self.solo:
            result = self._store_execute(namespace, op, args)
            loader = self.loader
            if loader is not None and namespace in loader.policies:
                return self._read_through(loader, namespace, op, OPS[op], args, result)
            return result
        spec = OPS[op]
        if op not in _KEYED:
            if op == "FLUSH":
                return self._flush_everywhere(namespace)
            return self._store_execute(namespace, op, args)
        if spec.multi_key and len(args) > (2 if op == "MSET" else 1):
            hot = self.hot
            if hot is not None and namespace in hot.policies:
                if spec.kind is _WRITE:
                    self._hot_copy(hot, namespace, op, spec, args)
                elif op == "MGET" and len(hot.area):
                    return self._mget_copies(hot, namespace, spec, args)
            return self._scatter(namespace, op, spec, args)
        owners = self._coordinators(namespace, args[0])
        if not owners or owners[0].node_id == self.node_id:
            return self.coordinate(namespace, op, spec, args)
        hot = self.hot
        if hot is not None and hot.policies and namespace in hot.policies:
            copy = self._hot_copy(hot, namespace, op, spec, args)
            if copy is not None:
                return copy.value if op == "GET" else [copy.value]
        if body is not None or relay:
            if body is None:
                body = _pack([1, op, namespace, args])
            relayed = self._relay(owners[0].node_id, namespace, body)
            if relayed is not None:
                return relayed
        later = self._forward_now(owners, namespace, op, args)
        answer = later if later is not None else self._forward(owners, namespace, op, args)
        loader = self.loader
        if loader is not None and op == "GET" and namespace in loader.policies:
            return loader.timed_forward(answer)  # the miss path's forward step
        return answer

    def execute_or_relay(self, namespace: str, op: str, args: list[Any]) -> Any:
        """:meth:`execute` with ``relay``, for a port that decodes the owner's response frame
        itself (the RESP port): one call with no keyword on every request."""
        return self.execute(namespace, op, args, None, True)

    @staticmethod
    def _hot_copy(hot: HotKeys, namespace: str, op: str, spec: OpSpec, args: list[Any]) -> Any:
        """A copy to answer a GET of a key owned elsewhere with; a write passing through
        here on its way to the owner drops (and fences) this node's copy instead."""
        if op == "GET" or op == "MGET":
            return hot.serve(namespace, args[0])
        if spec.kind is _WRITE:
            for key in args[::2] if op == "MSET" else (args if op == "DELETE" else args[:1]):
                hot.fence(namespace, key)
        return None

    def _mget_copies(self, hot: HotKeys, namespace: str, spec: OpSpec, args: list[Any]) -> Any:
        """An MGET on a node that holds copies: the keys it may answer from a copy (owned
        elsewhere, not fenced, lease running) are, the rest go to their owners as always."""
        me = self.node_id
        area = hot.area
        served: dict[int, bytes] = {}
        for i, key in enumerate(args):
            if (namespace, key) in area:
                owners = self._coordinators(namespace, key)
                if owners and owners[0].node_id != me:
                    copy = hot.serve(namespace, key)
                    if copy is not None:
                        served[i] = copy.value
        if not served:
            return self._scatter(namespace, "MGET", spec, args)
        if len(served) == len(args):
            return [served[i] for i in range(len(args))]
        rest = [i for i in range(len(args)) if i not in served]

        async def merged() -> list[Any]:
            answers = await self._scatter(namespace, "MGET", spec, [args[i] for i in rest])
            out: list[Any] = [served.get(i) for i in range(len(args))]
            for i, value in zip(rest, answers, strict=True):
                out[i] = value
            return out

        return merged()

    def read_at_least(self, namespace: str, args: list[Any]) -> Any:
        """HOT_GET ``[key, version]``: a GET that no copy older than ``version`` answers (a
        smart client's read of a hot key it wrote, with the version the write's answer
        carried); such a read goes to the key's owner instead."""
        key, version = args[0], args[1]
        hot = self.hot
        if self.solo or hot is None or namespace not in hot.policies:
            return self.execute(namespace, "GET", [key])
        owners = self._coordinators(namespace, key)
        if not owners or owners[0].node_id == self.node_id:
            return self._read_owned_at_least(namespace, key, version)
        copy = hot.serve(namespace, key, version)
        if copy is not None:
            return copy.value
        later = self._forward_now(owners, namespace, "HOT_GET", args)
        return later if later is not None else self._forward(owners, namespace, "HOT_GET", args)

    def _read_owned_at_least(self, namespace: str, key: bytes, version: int) -> Any:
        """HOT_GET where this node coordinates the key: a GET, unless the record here is
        older than ``version``. The write the client saw acknowledged then landed elsewhere (on
        a stand-in during a cut, say, before hints or anti-entropy brought it here), and the
        newest record the other members hold is taken first. The largest version, which no
        record carries, comes from a client whose write went through another node and was
        given no version (a stand-in took it while this owner was out of its reach, say): the
        newest record of every live member answers it."""
        mine = read_record(self.store, namespace, key)
        if mine is not None and mine.version >= version:
            return self.coordinate(namespace, "GET", OPS["GET"], [key])
        return self._catch_up_key(namespace, key, version)

    async def _catch_up_key(self, namespace: str, key: bytes, version: int) -> Any:
        self.stats["reads_caught_up"] += 1
        best: tuple[str, Any] | None = None
        for member in self.ring.owners(key, len(self.ring.members)):
            if best is not None and best[1].version >= version:
                break
            if member.node_id == self.node_id or not self._alive(member.node_id):
                continue
            answered, record = await self._peer_record(member, namespace, key)
            if not answered:
                continue  # the newest of the others answers
            if record is not None and (best is None or record.version > best[1].version):
                best = (member.node_id, record)
        mine = read_record(self.store, namespace, key)
        if best is not None and (mine is None or best[1].version > mine.version):
            winner, _ = self.clamp.admit_record(best[1], best[0])
            try:
                apply_record(self.store, namespace, key, winner)
            except CommandError:  # over this node's bounds: the GET answers what it holds
                self.stats["reads_caught_up_refused"] += 1
        return await _settled(self.coordinate(namespace, "GET", OPS["GET"], [key]))

    def execute_forwarded(self, namespace: str, payload: list[Any]) -> Any:
        """FWD: another node sent us a request to coordinate; never forward it again.

        ``payload`` is ``[op, args]`` or ``[op, args, {"version": v}]``: a plain write (see
        :func:`stampable`) carries the version its forwarder fixed; delivered late (see
        :data:`LATE_FORWARD_MS`) it is applied at that version, only to keys holding older
        records (:meth:`_execute_stamped`)."""
        if (
            not 2 <= len(payload) <= 3
            or type(payload[0]) is not str
            or type(payload[1]) is not list
            or (len(payload) == 3 and type(payload[2]) is not dict)
        ):
            raise CommandError(
                ErrorCode.BAD_REQUEST, "FWD takes [op, args] or [op, args, {version}]"
            )
        op, raw = payload[0], payload[1]
        spec = OPS.get(op)
        if spec is None or spec.kind is OpKind.META:
            raise CommandError(ErrorCode.BAD_REQUEST, f"FWD cannot carry {op[:64]!r}")
        args = normalize_args(spec, raw, self._limits)
        stamp = payload[2].get("version") if len(payload) == 3 else None
        if stamp is not None:
            if type(stamp) is not int or not 0 < stamp <= MAX_VERSION:
                raise CommandError(ErrorCode.BAD_REQUEST, "FWD: version is a uint64 above 0")
            if not stampable(op, args):
                raise CommandError(
                    ErrorCode.BAD_REQUEST, f"FWD: {op} with these options carries no version"
                )
        self.stats["forwarded_in"] += 1
        return self.coordinate(namespace, op, spec, args, self._late(stamp))

    def _late(self, stamp: int | None) -> int | None:
        """``stamp`` when a write stamped with it arrives :data:`LATE_FORWARD_MS` or more after
        it (by this node's clock): it is then applied at that version. None for one on time —
        its forwarder is still waiting for the answer — which gets a version from this
        node's clock, in arrival order like any write."""
        if stamp is None or self.clamp.hlc.wall_ms() - physical_ms(stamp) < LATE_FORWARD_MS:
            return None
        return stamp

    # --- coordinating ------------------------------------------------------------------------

    def coordinate(
        self, namespace: str, op: str, spec: OpSpec, args: list[Any], stamp: int | None = None
    ) -> Any:
        """Execute here; for a write, replicate to the other owners per the consistency.

        ``stamp``: apply this plain write at that version (:meth:`_execute_stamped`; see
        :meth:`_late`), not at a new one from this node's clock.

        Returns the result, or a coroutine whose result it is, or a :class:`Later` settled
        with it (a read-through GET's miss, answered when its load ends with no task: a
        caller inside the node awaits either with :func:`_settled`)."""
        if not self._clock_ready and spec.kind is _WRITE:
            return self._after_catch_up(namespace, op, spec, args, stamp)
        if spec is _HOT_GET:  # forwarded here, or a stand-in's: a read at least that version
            return self._read_owned_at_least(namespace, args[0], args[1])
        if stamp is None:
            result = self._store_execute(namespace, op, args)
        else:
            self.stats["forwards_late"] += 1
            result = self._execute_stamped(namespace, op, args, stamp)
        loader = self.loader
        if loader is not None and namespace in loader.policies:
            result = self._read_through(loader, namespace, op, spec, args, result)
        if self.solo:
            return result
        if spec.kind is not _WRITE:
            hot = self.hot
            if hot is not None and hot.sketches and op == "GET":
                hot.observe(namespace, args[0])
            if self.read_repair_chance and self._rng.random() < self.read_repair_chance:
                self._start_read_repair(namespace, args[0])
            return result
        level = self.store.policy(namespace).consistency
        if op == "SET":
            requested = args[-1].get("consistency")
            if requested is not None:
                level = requested
        keys = args[::2] if op == "MSET" else (args if op == "DELETE" else args[:1])
        hot = self.hot
        if level == "one":
            # The update of a hot key's copies carries the replica write to a holder that is
            # also a write owner; the rest go the usual way.
            update, carried = (None, None) if hot is None else hot.written(namespace, keys, True)
            for key in keys:
                self._replicate(namespace, key, carried)
            return self._hot_written(namespace, update, result)
        if level not in ("quorum", "all"):
            raise CommandError(ErrorCode.BAD_REQUEST, f"unknown consistency {level!r}")
        acks = self._await_acks(namespace, keys, Consistency(level), result, op, args, stamp)
        return self._hot_written(
            namespace, None if hot is None else hot.written(namespace, keys)[0], acks
        )

    def _hot_written(self, namespace: str, update: Any, result: Any) -> Any:
        """``result``, answered once ``update`` of the copies of hot keys (None: none) is
        done: as a :class:`Later` with no task when both are at hand (the update submitted,
        the result a value). The replica writes the update carried that did not land are
        then sent the usual way."""
        if update is None:
            return result
        if (
            type(update) is Later
            and type(result) is not Later
            and not isinstance(result, Coroutine)
        ):
            later = Later()

            def done(unlanded: Any, _: BaseException | None) -> None:
                if unlanded:
                    self._replicate_unlanded(namespace, unlanded)
                later.resolve(result)

            update.then(done)
            return later

        async def then() -> Any:
            unlanded = await _settled(update)
            if unlanded:
                self._replicate_unlanded(namespace, unlanded)
            return await _settled(result)

        return then()

    def _replicate_unlanded(self, namespace: str, unlanded: list[tuple[str, bytes]]) -> None:
        """Send the replica writes a hot key's update carried that did not land the usual way
        (queued, or hinted)."""
        for target, key in unlanded:
            record = read_record(self.store, namespace, key)
            if record is not None:
                self.replicator.send(
                    target,
                    namespace,
                    key,
                    record.to_wire(),
                    record.version,
                    type(record) is Tombstone,
                )

    # --- read-through ------------------------------------------------------------------------

    @staticmethod
    def _read_through(
        loader: Loader, namespace: str, op: str, spec: OpSpec, args: list[Any], result: Any
    ) -> Any:
        """A read's answer with its misses loaded from the source (a :class:`Later` for a
        GET's miss, a coroutine otherwise), or ``result``; a write is told to the loader, so that
        a load in flight does not overwrite it."""
        if spec.kind is _WRITE:
            loader.on_write(namespace, op, args)
            return result
        loading = loader.on_read(namespace, op, args, result)
        return result if loading is None else loading

    def replicate_key(self, namespace: str, key: bytes) -> None:
        """Ship ``key``'s record to its other owners, as after a write (a loaded value)."""
        if not self.solo:
            self._replicate(namespace, key)

    def _execute_stamped(self, namespace: str, op: str, args: list[Any], stamp: int) -> Any:
        """A plain write at the version ``stamp`` fixed by the node that first routed it.

        A forward may arrive late — after its forwarder timed out, failed it over to the next
        owner and acknowledged newer writes of its keys (TCP delivers a frame stuck in a cut
        when the cut heals). Applied with a fresh version it would overwrite them; at its own
        version it is older than they are, so last-writer-wins keeps them: keys that already
        hold a record at least as new are left alone (counted in ``forwards_superseded``).
        The answer is the op's as if it was applied and then overwritten: True for SET and
        MSET, the keys removed here for DELETE.
        """
        stamp = self.clamp.admit(stamp).version
        store = self.store
        mine = (stamp, op == "DELETE")  # its place in the last-writer-wins order
        keys = args[::2] if op == "MSET" else (args if op == "DELETE" else args[:1])
        newer = set()
        for key in keys:
            record = read_record(store, namespace, key)
            if record is not None and lww_order(record) >= mine:
                newer.add(key)
        if newer:
            self.stats["forwards_superseded"] += len(newer)
            if op == "SET":
                return True
            if op == "MSET":
                pairs = [(k, v) for k, v in zip(args[::2], args[1::2], strict=True)]
                args = [item for k, v in pairs if k not in newer for item in (k, v)]
                if not args:
                    return True
            else:
                args = [key for key in args if key not in newer]
                if not args:
                    return 0
        hlc = self.clamp.hlc
        hlc.pin(stamp)
        try:
            return self._store_execute(namespace, op, args)
        finally:
            hlc.unpin()

    def _replicate(
        self, namespace: str, key: bytes, carried: AbstractSet[tuple[bytes, str]] | None = None
    ) -> None:
        """Ship ``key``'s record to its other write owners, but those a hot key's update
        carries it to (``carried``: ``(key, owner)``)."""
        record = read_record(self.store, namespace, key)
        if record is None:
            return  # nothing to ship (a delete while tombstones are off)
        wire = record.to_wire()
        deleted = type(record) is Tombstone
        me = self.node_id
        for member in self.ring.write_owners(key, self._replicas(namespace)):
            target = member.node_id
            if target != me and not (carried and (key, target) in carried):
                self.replicator.send(target, namespace, key, wire, record.version, deleted)

    async def _await_acks(
        self,
        namespace: str,
        keys: list[bytes],
        level: Consistency,
        result: Any,
        op: str,
        args: list[Any],
        stamp: int | None,
    ) -> Any:
        """Wait until ``level`` of each key's write owners applied its record; ``result``.

        A replica answering that it already holds a newer record does not acknowledge a write
        made here: some owner holds a version above the one this node's clock gave it (this
        node restarted with its clock set right behind versions a fast clock left, or a
        concurrent write), and that version would win everywhere. This node then takes that
        record — its clock witnesses the version — and runs the op again above it, at most
        :data:`REWRITES` times within the write timeout (counted in ``writes_rewritten``). A
        forwarded write applied at the version its forwarder fixed (``stamp``) is not run
        again: a newer record there is a newer write.
        """
        deadline = self._clock() + WRITE_TIMEOUT
        for rewrite in range(REWRITES + 1):
            if not await self._acks_or_newer(namespace, keys, level, deadline, stamp is None):
                return result
            if rewrite == REWRITES:
                break
            self.stats["writes_rewritten"] += 1
            result = self._store_execute(namespace, op, args)
        self.stats["writes_failed"] += 1
        raise WriteFailedError(
            message=f"{level} write of {len(keys)} key(s): an owner still holds a newer record "
            f"after {REWRITES} rewrites (a clock far ahead?)"
        )

    async def _acks_or_newer(
        self, namespace: str, keys: list[bytes], level: Consistency, deadline: float, fresh: bool
    ) -> bool:
        """Ship each key's record and wait for ``level``; True when a ``fresh`` write (a version
        from this node's clock) met a newer record on an owner, now applied here instead.
        ``WriteFailedError`` when the level is not reached by ``deadline``."""
        replicas = self._replicas(namespace)
        for key in keys:
            owners = [m.node_id for m in self.ring.write_owners(key, replicas)]
            if self.node_id not in owners:
                owners.insert(0, self.node_id)
            tracker = WriteTracker(owners, level, deadline)
            tracker.ack(self.node_id)
            record = read_record(self.store, namespace, key)
            if record is None or tracker.state is WriteState.ACKED:
                # Acked by this node alone (one owner), or nothing to ship: send async.
                self._replicate(namespace, key)
                continue
            wire = record.to_wire()
            deleted = type(record) is Tombstone
            acks = [
                self.replicator.send(
                    owner, namespace, key, wire, record.version, deleted, want_ack=True
                )
                for owner in owners
                if owner != self.node_id
            ]
            stale: list[str] = []
            with trio.move_on_at(deadline):
                for ack in acks:
                    assert ack is not None
                    await ack.event.wait()
                    if ack.ok and ack.stale and fresh:
                        stale.append(ack.target)  # no ack of this write (yet): see below
                        continue
                    state = tracker.ack(ack.target) if ack.ok else tracker.fail(ack.target)
                    if state is not WriteState.PENDING:
                        break
            if stale:
                if await self._take_newer(namespace, key, record, stale, deadline):
                    return True
                for target in stale:  # they hold this very record (a duplicate delivery)
                    tracker.ack(target)
            if tracker.tick(self._clock()) is not WriteState.ACKED:
                self.stats["writes_failed"] += 1
                raise WriteFailedError(
                    message=f"{level} write of {len(keys)} key(s): {len(tracker.acked)} of "
                    f"{len(tracker.owners)} owners applied it in time (needed {tracker.needed})"
                )
        return False

    async def _take_newer(
        self, namespace: str, key: bytes, mine: Record, targets: list[str], deadline: float
    ) -> bool:
        """Read ``key``'s record from ``targets`` (``RECORDS``) until one is newer than
        ``mine``; apply it here (its version clamped and witnessed by this node's clock) and
        return True. False when none is newer or none answers by ``deadline``."""
        for target in targets:
            address = self._addresses.get(target)
            remaining = deadline - self._clock()
            if address is None or remaining <= 0:
                continue
            try:
                answer = await self.pool.call(
                    address, "RECORDS", namespace, [[key]], timeout=remaining
                )
                raw = answer[0]
                theirs = None if raw is None else record_from_wire(raw)
            except (MeshcacheError, TypeError, IndexError, KeyError):
                continue
            if theirs is None or lww_order(theirs) <= lww_order(mine):
                continue
            theirs, _ = self.clamp.admit_record(theirs, target)
            apply_record(self.store, namespace, key, theirs)
            return True
        return False

    # --- relaying ----------------------------------------------------------------------------

    def _relay(self, owner: str, namespace: str, body: bytes) -> Relayed | None:
        """Pass a client's read (its frame ``body`` as it came) on to ``owner``, the key's
        coordinator, in the round's ``RELAY`` frame for it (:mod:`meshcache.node.net.relay`).
        None when it must be forwarded the usual way: the namespace has a loader (a load is
        timed), or the owner cannot be reached on an open connection now."""
        if self._unsent or not self._first_live:
            return None
        loader = self.loader
        if loader is not None and namespace in loader.policies:
            return None
        address = self._addresses.get(owner)
        if address is None:
            return None
        checking = self.pool.breakers.checking
        if checking and address in checking:
            return None
        later = Relayed()
        if not self.pool.relay(
            address, body, later, timeout=FORWARD_TIMEOUT, failed=self._relay_failed_for(owner)
        ):
            return None
        self.stats["forwarded_out"] += 1
        return later

    def _relay_failed_for(self, owner: str) -> Callable[[bytes, Later, BaseException], None]:
        """:meth:`_relay_failed` for the reads relayed to ``owner`` (one kept per owner)."""
        failed = self._relay_failures.get(owner)
        if failed is None:
            failed = self._relay_failures[owner] = partial(self._relay_failed, owner)
        return failed

    def _relay_failed(self, owner: str, body: bytes, later: Later, error: BaseException) -> None:
        """A read relayed to ``owner`` got no answer in its batch: forward it again the usual
        way, in a task; ``later`` settles with its value (:class:`FailedOver`)."""
        self.stats["relay_failures"] += 1
        if self._nursery is None:
            later.fail(error)
            return
        _, op, namespace, raw = _unpackb(body, raw=False, strict_map_key=False)
        args = normalize_args(OPS[op], raw, self._limits)  # checked when it was relayed
        owners = self._coordinators(namespace, args[0])
        # A peer that broke or kept silent is not asked again: the read goes on down the owners,
        # as a forward that failed does (a write sent after it on the broken connection went
        # there too, and the read must not miss it). One that refused the RELAY itself (an
        # older node) is asked with FWD at once.
        last = (
            error
            if isinstance(error, MeshcacheError) and not isinstance(error, CommandError)
            else None
        )
        if last is not None:
            owners = [member for member in owners if member.node_id != owner]
        failed_over = Later()
        failed_over.then(
            lambda value, error: (
                later.resolve(FailedOver(value)) if error is None else later.fail(error)
            )
        )
        self._start_fail_over(failed_over, owners, namespace, op, args, None, last)

    # --- forwarding --------------------------------------------------------------------------

    def _forward_now(
        self, owners: list[RingMember], namespace: str, op: str, args: list[Any]
    ) -> Later | None:
        """Submit the forward to the first owner on its open connection, without a task: the
        answer arrives as a :class:`Later`. None when it cannot be submitted so (no open
        connection, the owner is down, a forward in a task has not been sent yet): the caller
        then forwards in a task (:meth:`_forward`)."""
        if self._unsent:
            return None
        member = owners[0]
        address = self._addresses.get(member.node_id)
        if address is None or not self._first_live:
            return None
        checking = self.pool.breakers.checking
        if checking and address in checking:
            return None  # wait for the check in a task
        stamp = self.clamp.hlc.now() if op in _STAMPABLE and stampable(op, args) else None
        payload = [op, args] if stamp is None else [op, args, {"version": stamp}]
        later = Later()

        def answered(response: Response | BaseException) -> None:
            if isinstance(response, Response):
                if response.ok:
                    if response.hints is not None:
                        self._written_through(namespace, response.hints)
                    later.resolve(response.value)
                else:
                    code, message = response.value
                    later.fail(CommandError(code, message))
                return
            self.stats["forward_failures"] += 1
            spec = OPS[op]
            if not spec.idempotent or (stamp is None and spec.kind is _WRITE):
                # Sent, then lost: the owner may have applied it, so it is not repeated.
                later.fail(
                    UnavailableError(
                        message=f"the owner did not answer; the write may have applied ({response})"
                    )
                )
            elif self._nursery is None or not isinstance(response, MeshcacheError):
                later.fail(response)
            else:
                self._start_fail_over(later, owners[1:], namespace, op, args, stamp, response)

        if not self.pool.submit(
            address,
            "FWD",
            namespace,
            payload,
            timeout=FORWARD_TIMEOUT
            if self.loader is None
            else self._forward_timeout(namespace, op),
            answered=answered,
            abort_on_timeout=True,
        ):
            return None
        self.stats["forwarded_out"] += 1
        return later

    def _start_fail_over(
        self,
        later: Later,
        owners: list[RingMember],
        namespace: str,
        op: str,
        args: list[Any],
        stamp: int | None,
        error: MeshcacheError | None,
    ) -> None:
        """A submitted forward (or a relayed read) failed: on down the owners (or stand in), in
        a task, from a place in the line of failovers taken now (:meth:`_take_place`)."""
        assert self._nursery is not None
        forwarding = self._forwarding(owners, namespace, op, args, stamp, error, self._take_place())
        self._nursery.start_soon(_settle, later, forwarding)

    def _take_place(self) -> tuple[trio.Event | None, trio.Event]:
        """A place at the end of the line of failovers: the place before it and its own, which
        is set once its request is handed on again (sent or applied here). Requests that fail
        together (a connection broke under them) take their places in the order they failed,
        so each is handed on after the one before it: a read does not overtake a write its
        client sent before it, nor the other way round. Counted as unsent until handed on, so
        no forward is submitted directly past it."""
        self._unsent += 1
        before, place = self._failover_tail, trio.Event()
        self._failover_tail = place
        return before, place

    def _forward(
        self,
        owners: list[RingMember],
        namespace: str,
        op: str,
        args: list[Any],
        stamp: int | None = _NEW_STAMP,
        last: MeshcacheError | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """:meth:`_forwarding`, counted as unsent until it hands its request to the pool."""
        self._unsent += 1
        return self._forwarding(owners, namespace, op, args, stamp, last)

    async def _forwarding(
        self,
        owners: list[RingMember],
        namespace: str,
        op: str,
        args: list[Any],
        stamp: int | None,
        first_error: MeshcacheError | None,
        line: tuple[trio.Event | None, trio.Event] | None = None,
    ) -> Any:
        """Send the request to the first owner that answers; fail over down the list.

        When no owner can even be connected to (all down, gossip not caught up yet), this node
        stands in and coordinates the request itself (sloppy quorum): a write lands here and
        becomes hints for the owners, a read answers what this node holds.

        Counted as unsent (:meth:`_forward`) until the request is handed to the pool; or, given
        ``line``, a failover's place in the line (:meth:`_take_place`), which it waits its turn
        in. A sent request that fails takes a place too, as the pool tells of its failure.
        """
        unsent = line is None
        before, place = (None, None) if line is None else line

        def sent() -> None:
            nonlocal unsent, place
            if unsent:
                unsent = False
                self._unsent -= 1
            if place is not None:  # handed on after a failure: the next one's turn
                self._unsent -= 1
                place.set()
                place = None

        def failed() -> None:
            nonlocal place, before
            if place is None:
                before, place = self._take_place()

        async def turn() -> None:
            if place is not None and before is not None:
                await before.wait()

        try:
            return await self._forward_to(
                owners, namespace, op, args, stamp, first_error, sent, failed, turn
            )
        finally:
            sent()

    async def _forward_to(
        self,
        owners: list[RingMember],
        namespace: str,
        op: str,
        args: list[Any],
        stamp: int | None,
        last: MeshcacheError | None,
        sent: Callable[[], None],
        failed: Callable[[], None],
        turn: Callable[[], Awaitable[None]],
    ) -> Any:
        """:meth:`_forwarding`'s attempts. ``sent`` is called as the request is handed to the
        pool or applied here, ``failed`` by the pool as a sent request fails; ``turn`` waits,
        before each attempt, until the failovers before this one were handed on."""
        down = False
        # A plain write gets its version now. Wherever it is applied late — the next owner or
        # this node after a timed-out forward, or the first owner when a cut heals and TCP
        # delivers the forward at last — it is applied at this version: older than any write
        # acknowledged after it, so last-writer-wins cannot let it overwrite those.
        if stamp is _NEW_STAMP:
            stamp = self.clamp.hlc.now() if stampable(op, args) else None
        payload = [op, args] if stamp is None else [op, args, {"version": stamp}]
        # Failing a write over after a sent forward timed out is safe only when it carries its
        # version: a stuck copy of any other write (SET NX/XX/GET/KEEPTTL, HSET, EXPIRE, ...)
        # is coordinated afresh when TCP delivers it at last, after newer acknowledged writes.
        failover = OPS[op].idempotent and (stamp is not None or OPS[op].kind is not _WRITE)
        for member in owners:
            await turn()
            if member.node_id == self.node_id:
                result = self.coordinate(namespace, op, OPS[op], args, self._late(stamp))
                sent()  # applied here, as far as the order of requests goes
                return await _settled(result)
            address = self._addresses.get(member.node_id)
            if address is None:
                continue
            # An owner being checked (a peer's breaker opened; this one was silent too) may be
            # in the same cut: the check says so within a second. Failing over, an owner not
            # heard from lately is checked first.
            breakers = self.pool.breakers
            check = breakers.check(address) if last is not None else breakers.checking.get(address)
            if check is not None:
                await check.wait()
            if not self._alive(member.node_id):
                down = True  # dead by gossip, or its breaker is open: not worth an attempt
                continue
            self.stats["forwarded_out"] += 1
            try:
                response = await self.pool.request(
                    address,
                    "FWD",
                    namespace,
                    payload,
                    timeout=self._forward_timeout(namespace, op),
                    abort_on_timeout=True,
                    sent=sent,
                    failed=failed,
                )
            except PeerUnreachable as exc:
                self.stats["forward_failures"] += 1
                last = exc
                continue
            except MeshcacheError as exc:
                self.stats["forward_failures"] += 1
                if not failover:
                    # Sent, then lost: the owner may have applied it, so it is not repeated.
                    raise UnavailableError(
                        message=f"the owner did not answer; the write may have applied ({exc})"
                    ) from None
                last = exc
                continue
            if response.ok and response.hints is not None:
                self._written_through(namespace, response.hints)
            return response.result()
        if last is None and not down:
            raise UnavailableError(message="no owner of the key is known")
        await turn()
        self.stats["stand_in"] += 1
        result = self.coordinate(namespace, op, OPS[op], args, self._late(stamp))
        sent()
        return await _settled(result)

    def _written_through(self, namespace: str, hints: dict[str, Any]) -> None:
        """A forwarded write's answer names the versions it left on keys hot at the owner:
        this node's copies and fences of them follow (:meth:`HotKeys.written_through`)."""
        if self.hot is not None:
            self.hot.written_through(namespace, hints)

    def _forward_timeout(self, namespace: str, op: str) -> float:
        # A forwarded miss may wait for a load at the owner: fail over after the load timeout.
        loader = self.loader
        if loader is None or op not in ("GET", "MGET") or namespace not in loader.policies:
            return FORWARD_TIMEOUT
        return loader.forward_timeout(namespace, FORWARD_TIMEOUT)

    async def _scatter(self, namespace: str, op: str, spec: OpSpec, args: list[Any]) -> Any:
        """Split a many-key op by coordinator, run the parts at once, merge in order.

        Routing and each part go :data:`SCATTER_SLICE` keys (of a write,
        :data:`SCATTER_WRITE_SLICE`) at a time: a local part as that many ops in a row with a
        checkpoint between them, a remote one as that many forwards in a row."""
        width = 2 if op == "MSET" else 1
        groups: dict[str, list[int]] = {}
        chosen: dict[str, list[RingMember]] = {}
        for i in range(0, len(args), width):
            if i and not (i // width) % SCATTER_SLICE:
                await trio.lowlevel.checkpoint()
            owners = self._coordinators(namespace, args[i])
            node = owners[0].node_id if owners else self.node_id
            groups.setdefault(node, []).append(i)
            chosen.setdefault(node, owners)
        results: dict[str, Any] = {}
        step = width * (SCATTER_SLICE if spec.kind is not _WRITE else SCATTER_WRITE_SLICE)

        async def part(node: str, positions: list[int]) -> None:
            part_args = [a for i in positions for a in args[i : i + width]]
            values: list[Any] = []
            for at in range(0, len(part_args), step):
                chunk = part_args[at : at + step]
                if at:  # (a forward to an owner gossip holds dead runs here without a wait)
                    await trio.lowlevel.checkpoint()
                if node == self.node_id:
                    value = self.coordinate(namespace, op, spec, chunk)
                    values.append(await _settled(value))
                else:
                    # One forward per slice: the owner runs each without holding its loop long.
                    values.append(await self._forward(chosen[node], namespace, op, chunk))
            if op == "MGET":
                results[node] = [v for answer in values for v in answer]
            elif op == "MSET":
                results[node] = values[0]
            else:
                results[node] = sum(values)

        async with trio.open_nursery() as nursery:
            for node, positions in groups.items():
                nursery.start_soon(part, node, positions)
        if op == "MGET":
            merged: list[Any] = [None] * (len(args))
            for node, positions in groups.items():
                for i, value in zip(positions, results[node], strict=True):
                    merged[i] = value
            return merged
        if op == "MSET":
            return results[next(iter(groups))]
        return sum(results.values())

    async def _flush_everywhere(self, namespace: str) -> Any:
        result = self._store_execute(namespace, "FLUSH", [])
        async with trio.open_nursery() as nursery:
            for member in self.ring.members:
                address = self._addresses.get(member.node_id)
                if member.node_id != self.node_id and address is not None:
                    nursery.start_soon(self._flush_one, address, namespace)
        return result

    async def _flush_one(self, address: Address, namespace: str) -> None:
        try:
            await self.pool.call(address, "FWD", namespace, ["FLUSH", []], timeout=5.0)
        except MeshcacheError as exc:
            log.warning("flush_not_delivered", peer=f"{address[0]}:{address[1]}", error=str(exc))

    # --- read repair --------------------------------------------------------------------------

    def _start_read_repair(self, namespace: str, key: bytes) -> None:
        if self._nursery is None or self._repairs >= MAX_READ_REPAIRS:
            return
        others = [
            m
            for m in self.ring.owners(key, self._replicas(namespace))
            if m.node_id != self.node_id and self._alive(m.node_id)
        ]
        if others:
            self._repairs += 1
            self._nursery.start_soon(self._read_repair, namespace, key, others)

    async def _read_repair(self, namespace: str, key: bytes, others: list[RingMember]) -> None:
        """Compare this key's record on every live owner; bring the stale ones up to date."""
        try:
            mine = read_record(self.store, namespace, key)
            records: dict[str, Any] = {self.node_id: mine}
            for member in others:
                answered, record = await self._peer_record(member, namespace, key)
                if answered:  # one not answering is left to anti-entropy
                    records[member.node_id] = record
            plan = read_repair(
                {
                    n: None if r is None else (r.version, type(r) is Tombstone)
                    for n, r in records.items()
                }
            )
            if plan is None or not plan.stale:
                return
            self.stats["read_repairs"] += 1
            winner = records[plan.winner]
            if self.node_id in plan.stale:
                winner, _ = self.clamp.admit_record(winner, plan.winner)
                apply_record(self.store, namespace, key, winner)
            wire = winner.to_wire()
            for node in plan.stale:
                if node != self.node_id:
                    self.stats["read_repair_records_sent"] += 1
                    self.replicator.send(
                        node, namespace, key, wire, winner.version, type(winner) is Tombstone
                    )
        except CommandError as exc:  # e.g. the namespace was dropped meanwhile
            self.stats["read_repair_errors"] += 1
            log.debug("read_repair_failed", error=str(exc))
        finally:
            self._repairs -= 1

    async def _peer_record(
        self, member: RingMember, namespace: str, key: bytes
    ) -> tuple[bool, Record | None]:
        """``member``'s record of ``key`` (``RECORDS``, within :data:`READ_REPAIR_TIMEOUT`):
        ``(True, record)``, the record None where it holds nothing, or ``(False, None)`` when
        its address is unknown or it did not answer with a record."""
        address = self._addresses.get(member.node_id)
        if address is None:
            return False, None
        try:
            answer = await self.pool.call(
                address, "RECORDS", namespace, [[key]], timeout=READ_REPAIR_TIMEOUT
            )
            raw = answer[0]
            return True, None if raw is None else record_from_wire(raw)
        except (MeshcacheError, TypeError, IndexError):
            return False, None

    def records(self, namespace: str, keys: list[Any]) -> list[Any]:
        """RECORDS: this node's record of each key (nil where it holds nothing)."""
        if not all(type(k) is bytes for k in keys):
            raise CommandError(ErrorCode.BAD_REQUEST, "RECORDS takes an array of keys (bin)")
        out: list[Any] = []
        for key in keys:
            record = read_record(self.store, namespace, key)
            out.append(None if record is None else record.to_wire())
        return out

    # --- replica side ------------------------------------------------------------------------

    def apply_replicated(
        self, namespace: str, payload: list[Any], peer: str = ""
    ) -> list[int] | Coroutine[Any, Any, list[int]]:
        """REPL: apply records sent by another owner; one answer per record.

        A batch of more than :data:`REPL_SLICE` records is applied that many at a time with a
        checkpoint between slices, one such batch (or BULK's) at a time: the answer is then a
        coroutine (the dispatcher awaits it).
        """
        if len(payload) > REPL_SLICE:

            async def sliced() -> list[int]:
                answers: list[int] = []
                async with self._slicing:
                    for at in range(0, len(payload), REPL_SLICE):
                        if at:
                            await trio.lowlevel.checkpoint()
                        part = self.apply_replicated(namespace, payload[at : at + REPL_SLICE], peer)
                        assert isinstance(part, list)
                        answers += part
                return answers

            return sliced()
        ring = self.ring
        owned = ring.write_ranges(self.node_id, self._replicas(namespace)) if ring.members else None
        answers: list[int] = []
        append = answers.append
        store = self.store
        apply_plain = store.apply_plain
        limit = self.clamp.limit()  # the store's HLC observes every version it applies anyway
        for item in payload:
            if type(item) is not list or len(item) != 2 or type(item[0]) is not bytes:
                raise CommandError(ErrorCode.BAD_REQUEST, "REPL takes [[key, record], ...]")
            key, raw = item
            if owned is not None and key_token(key) not in owned:
                self.stats["repl_refused_not_owner"] += 1
                append(REFUSED_NOT_OWNER)
                continue
            if (
                type(raw) is list
                and len(raw) == 4
                and raw[0] == PLAIN
                and raw[2] is None
                and type(raw[1]) is bytes
                and type(raw[3]) is int
                and 0 <= raw[3] <= limit
            ):  # a plain value without expiry, within the clock limit: most of a hand-off
                try:
                    changed = apply_plain(namespace, key, raw[1], raw[3])
                except CommandError as exc:
                    self.stats[f"repl_refused_{str(exc.code).lower()}"] += 1
                    append(REFUSED_STORE)
                    continue
                append(APPLIED if changed else STALE)
                continue
            append(self._apply_record(namespace, key, raw, limit, peer))
        self.stats["repl_applied"] += answers.count(APPLIED)
        return answers

    def _apply_record(self, namespace: str, key: bytes, raw: Any, limit: int, peer: str) -> int:
        """One replicated record the slow way: decoded, clamped if its version is beyond
        ``limit``, applied by last-writer-wins; its REPL answer."""
        try:
            record = record_from_wire(raw)
        except MeshcacheError as exc:
            raise CommandError(ErrorCode.BAD_REQUEST, f"REPL: {exc}") from None
        if record.version > limit:
            record, admitted = self.clamp.admit_record(record, peer or None)
            if admitted.clamped:
                log.warning(
                    "replica_version_clamped", key=key[:64], ahead_ms=admitted.ahead_ms, peer=peer
                )
        try:
            changed = apply_record(self.store, namespace, key, record)
        except CommandError as exc:
            self.stats[f"repl_refused_{str(exc.code).lower()}"] += 1
            return REFUSED_STORE
        return APPLIED if changed else STALE

    def apply_bulk(
        self, namespace: str, payload: list[Any], peer: str = ""
    ) -> list[int] | Coroutine[Any, Any, list[int]]:
        """BULK: apply a hand-off batch of plain values, ``[key, blob, key, blob, ...]`` with
        each blob as the store keeps it (version, then value); the same last-writer-wins and
        ownership check as REPL, answered with counts: ``[applied, stale, refused because not
        owned, refused by the store]``.

        A batch of more than :data:`BULK_SLICE` blobs is applied that many at a time with a
        checkpoint between slices, one such batch (or REPL's) at a time: the answer is then a
        coroutine (the dispatcher awaits it).
        """
        if len(payload) % 2:
            raise CommandError(ErrorCode.BAD_REQUEST, "BULK takes [key, blob, key, blob, ...]")
        if len(payload) > 2 * BULK_SLICE:

            async def sliced() -> list[int]:
                counts = [0, 0, 0, 0]
                async with self._slicing:
                    for at in range(0, len(payload), 2 * BULK_SLICE):
                        if at:
                            await trio.lowlevel.checkpoint()
                        part = self.apply_bulk(namespace, payload[at : at + 2 * BULK_SLICE], peer)
                        assert isinstance(part, list)
                        counts = [a + b for a, b in zip(counts, part, strict=True)]
                return counts

            return sliced()
        keys, blobs = payload[0::2], payload[1::2]
        not_owned = 0
        ring = self.ring
        if ring.members:
            try:
                inside = ring.write_ranges(self.node_id, self._replicas(namespace)).mask(keys)
            except TypeError:
                raise CommandError(ErrorCode.BAD_REQUEST, "BULK: a key is not bytes") from None
            not_owned = len(keys) - sum(inside)
            if not_owned:
                keys, blobs = list(compress(keys, inside)), list(compress(blobs, inside))
                self.stats["repl_refused_not_owner"] += not_owned
        limit = self.clamp.limit()
        done = self.store.apply_blobs(namespace, keys, blobs, limit)
        refused = sum(done.refused.values())
        for code, count in done.refused.items():
            self.stats[f"repl_refused_{code.lower()}"] += count
        applied, stale = done.applied, done.stale
        for i in done.ahead:  # versions beyond the clock limit: clamped one by one
            blob = blobs[i]
            raw = [PLAIN, blob[VERSION_HEADER:], None, blob_version(blob)]
            answer = self._apply_record(namespace, keys[i], raw, limit, peer)
            applied += answer == APPLIED
            stale += answer == STALE
            refused += answer == REFUSED_STORE
        self.stats["repl_applied"] += applied
        self.stats["bulk_records"] += len(payload) // 2
        return [applied, stale, not_owned, refused]


async def _settle(later: Later, answer: Coroutine[Any, Any, Any]) -> None:
    """Settle ``later`` with what ``answer`` gives, or its error (a refusal, or a bug: the port
    answers either)."""
    try:
        later.resolve(await answer)
    except Exception as exc:
        later.fail(exc)


async def _settled(result: Any) -> Any:
    """What :meth:`Coordinator.coordinate` answered, as a value: a coroutine awaited, a
    :class:`Later` (a read-through miss waiting on its load) waited for."""
    if isinstance(result, Coroutine):
        return await result
    if type(result) is Later:
        return await result.wait()
    return result


def stampable(op: str, args: list[Any]) -> bool:
    """Whether a forward of ``op`` carries its version: a write whose effect does not depend on
    what the key held (SET without nx/xx/get/keepttl, MSET, DELETE). Any other write reads the
    key's state, so it is applied at a new version by its coordinator."""
    if op == "SET":
        options = args[-1]
        return not (
            options.get("nx") or options.get("xx") or options.get("get") or options.get("keepttl")
        )
    return op == "MSET" or op == "DELETE"


__all__ = ["Coordinator", "stampable"]
