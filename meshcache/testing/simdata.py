"""A deterministic, in-process simulation of the mesh data plane on trio.

:class:`SimMesh` runs N nodes in one trio run: each node is the real :class:`Coordinator`,
:class:`Replicator`, :class:`AntiEntropy`, :class:`HintQueue` and request :class:`Dispatcher`
wired as ``meshcache/node/node.py`` wires them, over :class:`SimDataNet` instead of sockets.
Run it under ``trio.testing.MockClock(autojump_threshold=0)`` (pytest-trio's
``autojump_clock``): the mesh's timeouts, delays and anti-entropy intervals then cost no wall
time, and seconds of mesh time take milliseconds.

What the network models (:class:`SimDataNet`), per directed link (:class:`LinkFaults`):

* **Connections** like the real :class:`PeerPool`'s: one per (caller, peer, lane), opened on
  first use, requests pipelined and matched by id, started by the peer in arrival order and answered
  in request order; as on the data port, a request whose answer waits lets the next ones run
  unless it fans out (:class:`~meshcache.wire.pending.Pending`). Frames on one connection
  arrive in order: jitter delays, never reorders them.
* **Delay**: ``delay + uniform(0, jitter)`` one way, drawn from the seeded network rng.
* **Loss** breaks a connection: with probability ``loss`` per request, the connection breaks
  either before the request arrives or after the peer applied it (the answer is lost), even
  odds. Every request in flight on it fails with :class:`MeshcacheConnectionError`; the next
  call connects again.
* **Duplication**: with probability ``duplicate`` a ``REPL`` frame is applied twice by the peer
  (replication ships state, so it must be idempotent).
* **Partitions** (both ways or one way): a frame that meets a blocked direction is lost and its
  caller times out; connecting needs both directions (a TCP handshake) and fails with
  :class:`PeerUnreachable` after ``connect_timeout``. A frame lost to a partition is gone even
  if the partition heals before the caller's timeout — unless
  :attr:`SimDataNet.retransmit` is set: then TCP's retransmission is modelled, and a frame
  that meets a blocked direction waits (and everything behind it on its connection) until the
  direction is open again, then arrives — also after its caller gave up.
* **Clogs and resets** (:meth:`SimDataNet.clog`, :meth:`SimDataNet.reset`): the requests one
  node sends another on its own connections are lost while the other way's connections carry
  on (a partition blocks a direction for every connection); a node's connections to another
  break at once, as on a reset.
* **Crash / restart** of a node: its tasks are cancelled, its store, hints and queues are lost
  (a cache's memory is), connections to it fail at once (the kernel resets them), connecting
  to it is refused. A restart builds every part afresh and installs the same ring.

Gossip is an oracle (:meth:`SimMesh.alive`) derived from the network: a peer a node cannot
reach both ways (partitioned or down) is reported dead after ``detect_dead`` seconds; one it
can reach again (or that restarted) is reported alive after ``detect_alive`` seconds, and that
transition fires what the server does on gossip's ALIVE event (hint replay; a full
anti-entropy pass if hints to it were dropped).

Reproducibility: all network randomness comes from ``random.Random(seed)``, every node's rng
and clock skew are derived from the seed, and :meth:`SimMesh.run` seeds trio's scheduler
(``trio._core._run._r``, the run-queue shuffle), so one seed replays the same run in one
Python process; across processes also set the same ``PYTHONHASHSEED`` (sets of node ids are
iterated in hash order). :attr:`SimDataNet.trace_digest` fingerprints a run to check that.

Invariant checkers are apart from scenarios: :meth:`SimMesh.owners_agree`,
:meth:`SimMesh.replicas_converged` (every up owner of every written key holds the *last
writer's* record: the greatest ``(version, deleted)`` any coordinator produced, tracked by a
ledger of every local write) and :meth:`SimMesh.lost_acked_writes`.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from meshcache.control import (
    ClusterConfig,
    Command,
    CreateNamespace,
    DropNamespace,
    PutMember,
    UpdateNamespace,
    apply,
    check_proposal,
    command_from_mapping,
)
from meshcache.errors import (
    CommandError,
    ErrorCode,
    MeshcacheConnectionError,
    MeshcacheError,
    MeshcacheTimeout,
)
from meshcache.node.assembly import Assembly
from meshcache.node.cluster.config import install_namespaces
from meshcache.node.data.antientropy import AntiEntropy
from meshcache.node.data.coordinator import Coordinator
from meshcache.node.data.replication import HintQueue
from meshcache.node.data.replication.tombstones import Record, lww_order, read_record
from meshcache.node.data.replicator import Replicator
from meshcache.node.loader.source import Source
from meshcache.node.net.dispatch import Dispatcher
from meshcache.node.net.peer_pool import PeerPool, PeerUnreachable
from meshcache.ring import Ring, RingMember, RingState
from meshcache.settings import NodeSettings
from meshcache.store.policy import NamespacePolicy
from meshcache.store.store import Store
from meshcache.testing.faults import LinkFaults, SimulationError
from meshcache.wire.address import Address
from meshcache.wire.frame import HEADER_SIZE, Response, decode_response, encode_request
from meshcache.wire.ops import OPS, OpKind
from meshcache.wire.pending import Parts, Pending

__all__ = [
    "AckedWrite",
    "Divergence",
    "LinkFaults",
    "SimDataNet",
    "SimMesh",
    "SimNode",
    "SimPeerPool",
    "SimulationError",
]

#: Wall-clock time of mock time 0, so versions look like real HLC values.
EPOCH = 1_800_000_000.0
DATA_PORT = 7000
#: The anti-entropy interval of a mesh without periodic rounds: longer than any run.
NO_ROUNDS = 3600.0
EXPIRE_INTERVAL = 0.1

Handler = Callable[[bytes], "bytes | Pending | Parts"]
"""A node's request handler: :meth:`Dispatcher.handle`."""


def _pending(result: bytes | Parts | Pending) -> tuple[bytes | Awaitable[bytes], bool]:
    """Split a handler's result into the answer (ready or awaitable) and whether awaiting it
    holds the connection: a ``Pending`` does when it fans out (the data port's rule). An
    answer in :class:`Parts` is taken whole."""
    if isinstance(result, bytes):
        return result, False
    if isinstance(result, Parts):
        return result.whole(), False
    return _whole(result.answer if result.answer is not None else result.reply()), result.fans_out


async def _whole(answer: Awaitable[bytes | Parts]) -> bytes:
    data = await answer
    return data.whole() if isinstance(data, Parts) else data


# --------------------------------------------------------------------------- the network


class _Waiter:
    __slots__ = ("event", "response")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.response: Response | BaseException | None = None


@dataclass(slots=True)
class _Frame:
    rid: int
    op: str
    body: bytes
    arrive_at: float
    fate: str  # "ok", "break_before" (never arrives), "break_after" (applied, answer lost)
    copies: int


class _Conn:
    """One simulated pipelined connection from ``src``'s pool to ``dst``'s data port."""

    def __init__(self, src: str, dst: str, dst_epoch: int, lane: str = "") -> None:
        self.src = src
        self.dst = dst
        self.lane = lane
        self.dst_epoch = dst_epoch
        self.waiters: dict[int, _Waiter] = {}
        self.ids = itertools.count(1)
        self.broken: BaseException | None = None
        self.arrive_at = 0.0
        self.answer_at = 0.0
        self.send, self.recv = trio.open_memory_channel[_Frame](math.inf)

    def is_broken(self) -> bool:
        return self.broken is not None

    def fail(self, exc: BaseException) -> None:
        if self.broken is None:
            self.broken = exc
            self.send.close()
        waiters, self.waiters = self.waiters, {}
        for waiter in waiters.values():
            waiter.response = exc
            waiter.event.set()


@dataclass(slots=True)
class _Endpoint:
    handler: Handler
    nursery: trio.Nursery


class SimDataNet:
    """The simulated network between nodes' peer pools and data ports (see module docstring).

    Args:
        seed: seeds every random choice of the network.
        default_link: faults of every link not given its own with :meth:`set_link`.
        connect_timeout: seconds a connection attempt to an unreachable peer takes to fail
            (the real pool's default).
    """

    def __init__(
        self,
        seed: int,
        *,
        default_link: LinkFaults | None = None,
        connect_timeout: float = 1.0,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.default_link = default_link or LinkFaults()
        self.connect_timeout = connect_timeout
        self.stats: Counter[str] = Counter()
        #: Requests sent and not yet answered, failed or timed out.
        self.in_flight = 0
        self._links: dict[tuple[str, str], LinkFaults] = {}
        self._blocked: set[tuple[str, str]] = set()
        self._clogged: set[tuple[str, str]] = set()
        self._endpoints: dict[str, _Endpoint] = {}
        self._epochs: Counter[str] = Counter()
        # The kept ones per (src, dst, lane): the pooled connection is lane "".
        self._conns: dict[tuple[str, str, str], _Conn] = {}
        # Every open connection, pooled or alone, in opening order (a dict: a set of objects would
        # iterate in address order, which differs from run to run).
        self._open: dict[_Conn, None] = {}
        self._connecting: dict[tuple[str, str, str], trio.Lock] = {}
        self._trace = hashlib.sha256()
        #: Model TCP retransmission: a frame meeting a partition is delivered when it heals.
        self.retransmit = False
        self._healed = trio.Event()  # set (and replaced) whenever partitions are removed

    # --- topology -------------------------------------------------------------------------

    def set_link(self, src: str, dst: str, faults: LinkFaults) -> None:
        """Give the directed link ``src → dst`` its own faults."""
        self._links[(src, dst)] = faults

    def set_default_link(self, faults: LinkFaults) -> None:
        """Change the faults of every link, forgetting per-link settings."""
        self.default_link = faults
        self._links.clear()

    def link(self, src: str, dst: str) -> LinkFaults:
        return self._links.get((src, dst), self.default_link)

    def partition(
        self, side_a: Iterable[str], side_b: Iterable[str], *, one_way: bool = False
    ) -> None:
        """Block traffic between the two sides (only ``a → b`` with ``one_way``)."""
        b = list(side_b)
        for x in side_a:
            for y in b:
                self._blocked.add((x, y))
                if not one_way:
                    self._blocked.add((y, x))
        self._record("partition", "", "", repr(sorted(self._blocked)))

    def heal(self) -> None:
        """Remove every partition (link faults stay)."""
        self._blocked.clear()
        self._healed.set()
        self._healed = trio.Event()
        self._record("heal", "", "", "")

    def clog(self, src: str, dst: str, clogged: bool = True) -> None:
        """Lose every request ``src`` sends ``dst`` on its own connections (every lane's)
        while ``clogged``, as a partition would; ``dst``'s connections to ``src`` carry on,
        answers and all (a partition blocks a direction for every connection)."""
        if clogged:
            self._clogged.add((src, dst))
        else:
            self._clogged.discard((src, dst))
        self._record("clog" if clogged else "unclog", src, dst, "")

    def reset(self, src: str, dst: str) -> None:
        """The open connections ``src → dst`` (every lane's) break at once, as on a reset:
        requests in flight on them fail, and the next call connects again."""
        for conn in [c for c in self._open if (c.src, c.dst) == (src, dst)]:
            self._break(conn, "reset")

    def blocked(self, src: str, dst: str) -> bool:
        return (src, dst) in self._blocked

    def reachable(self, a: str, b: str) -> bool:
        """Whether ``a`` and ``b`` are both up and can talk both ways."""
        return (
            a in self._endpoints
            and b in self._endpoints
            and (a, b) not in self._blocked
            and (b, a) not in self._blocked
        )

    # --- nodes ----------------------------------------------------------------------------

    def attach(self, node_id: str, handler: Handler, nursery: trio.Nursery) -> None:
        """``node_id`` is up: frames to it are handled by ``handler`` in tasks of ``nursery``."""
        self._epochs[node_id] += 1
        self._endpoints[node_id] = _Endpoint(handler, nursery)
        self._record("up", node_id, "", "")

    def detach(self, node_id: str) -> None:
        """``node_id`` crashed: its connections fail at once, connecting to it is refused."""
        self._endpoints.pop(node_id, None)
        self._epochs[node_id] += 1
        for key in [k for k in self._conns if node_id in k[:2]]:
            del self._conns[key]
        for conn in [c for c in self._open if node_id in (c.src, c.dst)]:
            self._open.pop(conn, None)
            conn.fail(MeshcacheConnectionError(f"{conn.dst} reset the connection"))
        self._record("down", node_id, "", "")

    def is_up(self, node_id: str) -> bool:
        return node_id in self._endpoints

    def pool(self, node_id: str) -> SimPeerPool:
        """A peer pool for ``node_id`` that sends over this network."""
        return SimPeerPool(self, node_id)

    # --- requests -------------------------------------------------------------------------

    async def request(
        self,
        src: str,
        address: Address,
        op: str,
        namespace: str,
        args: list[Any],
        timeout: float,
        *,
        alone: bool = False,
        lane: str = "",
    ) -> Response:
        """What :meth:`PeerPool.request` does, over the simulated network, on the kept
        connection of ``lane``; with ``alone``, on a connection of its own that is closed after
        the answer (:meth:`PeerPool.call_alone`)."""
        dst = address[0]
        self.stats["requests"] += 1
        if lane:
            self.stats["lane_requests"] += 1
        self.in_flight += 1
        conn: _Conn | None = None
        try:
            with trio.fail_after(timeout):
                conn = await (
                    self._connect(src, dst) if alone else self._connection(src, dst, lane)
                )
                rid = next(conn.ids)
                waiter = _Waiter()
                conn.waiters[rid] = waiter
                try:
                    self._send(conn, rid, op, encode_request(rid, op, namespace, args))
                    await waiter.event.wait()
                finally:
                    conn.waiters.pop(rid, None)
        except trio.TooSlowError:
            self.stats["timeouts"] += 1
            self._record("timeout", src, dst, op)
            raise MeshcacheTimeout(f"{op} to {dst}: no answer in {timeout}s") from None
        finally:
            self.in_flight -= 1
            if alone and conn is not None:
                self._close(conn)
        response = waiter.response
        if isinstance(response, BaseException):
            self.stats["broken"] += 1
            raise response
        assert response is not None
        return response

    def _latency(self, link: LinkFaults) -> float:
        return link.delay + self.rng.uniform(0.0, link.jitter)

    async def _connection(self, src: str, dst: str, lane: str = "") -> _Conn:
        slot = (src, dst, lane)
        conn = self._conns.get(slot)
        if conn is not None and conn.broken is None:
            return conn
        async with self._connecting.setdefault(slot, trio.Lock()):
            conn = self._conns.get(slot)
            if conn is not None and conn.broken is None:
                return conn
            conn = await self._connect(src, dst, lane)
            self._conns[slot] = conn
            return conn

    async def _connect(self, src: str, dst: str, lane: str = "") -> _Conn:
        """Open a new connection ``src → dst`` (a TCP handshake over the links)."""
        there, back = self.link(src, dst), self.link(dst, src)
        if dst not in self._endpoints:
            await trio.sleep(self._latency(there) + self._latency(back))
            self.stats["connect_refused"] += 1
            self._record("refused", src, dst, "")
            raise PeerUnreachable(f"connecting to {dst}: connection refused")
        if not self.reachable(src, dst):
            await trio.sleep(self.connect_timeout)
            self.stats["connect_timeouts"] += 1
            self._record("connect_timeout", src, dst, "")
            raise PeerUnreachable(f"connecting to {dst} timed out")
        await trio.sleep(self._latency(there) + self._latency(back))
        endpoint = self._endpoints.get(dst)
        if endpoint is None or not self.reachable(src, dst):
            self.stats["connect_errors"] += 1
            raise PeerUnreachable(f"connecting to {dst}: the handshake was lost")
        conn = _Conn(src, dst, self._epochs[dst], lane)
        self._open[conn] = None
        self.stats["connects"] += 1
        if lane:
            self.stats["lane_connects"] += 1
        self._record("connect", src, dst, lane)
        endpoint.nursery.start_soon(self._serve, conn, endpoint)
        return conn

    def _send(self, conn: _Conn, rid: int, op: str, frame: bytes) -> None:
        if conn.broken is not None:
            raise MeshcacheConnectionError(str(conn.broken))
        link = self.link(conn.src, conn.dst)
        fate = "ok"
        if link.loss and self.rng.random() < link.loss:
            fate = self.rng.choice(("break_before", "break_after"))
        copies = 2 if op == "REPL" and link.duplicate and self.rng.random() < link.duplicate else 1
        # One TCP stream: a frame never overtakes the one sent before it.
        conn.arrive_at = max(conn.arrive_at, trio.current_time() + self._latency(link))
        conn.send.send_nowait(_Frame(rid, op, frame[HEADER_SIZE:], conn.arrive_at, fate, copies))
        self._record("send", conn.src, conn.dst, op)

    async def _serve(self, conn: _Conn, endpoint: _Endpoint) -> None:
        """The peer's side of one connection: handle frames in arrival order, answer in order.

        A request whose answer must wait holds the connection (nothing behind it is read)
        unless the dispatcher says it may not (see :func:`_pending`); answers leave in request
        order either way, as on the data port.
        """
        previous = trio.Event()
        previous.set()
        async for frame in conn.recv:
            await trio.sleep_until(frame.arrive_at)
            if conn.is_broken():
                return
            while self.retransmit and self.blocked(conn.src, conn.dst):
                self.stats["held_partition"] += 1
                self._record("held", conn.src, conn.dst, frame.op)
                await self._healed.wait()
                if conn.is_broken():
                    return
            if self.blocked(conn.src, conn.dst) or (conn.src, conn.dst) in self._clogged:
                self.stats["lost_partition"] += 1
                self._record("lost", conn.src, conn.dst, frame.op)
                continue
            if frame.fate == "break_before":
                self._break(conn, frame.op)
                return
            for _ in range(frame.copies - 1):
                self.stats["duplicated"] += 1
                self._record("duplicate", conn.src, conn.dst, frame.op)
                answer, holds = _pending(endpoint.handler(frame.body))
                if not isinstance(answer, bytes):
                    await answer
            answer, holds = _pending(endpoint.handler(frame.body))
            if holds and not isinstance(answer, bytes):
                answer = await answer
            done = trio.Event()
            endpoint.nursery.start_soon(self._reply, conn, frame, answer, previous, done)
            previous = done

    async def _reply(
        self,
        conn: _Conn,
        frame: _Frame,
        answer: bytes | Awaitable[bytes],
        previous: trio.Event,
        done: trio.Event,
    ) -> None:
        try:
            body = answer if isinstance(answer, bytes) else await answer
            await previous.wait()
            if conn.is_broken():
                return
            if frame.fate == "break_after":
                self._break(conn, frame.op)
                return
            back = self.link(conn.dst, conn.src)
            at = conn.answer_at = max(conn.answer_at, trio.current_time() + self._latency(back))
        finally:
            done.set()
        await trio.sleep_until(at)
        if conn.is_broken():
            return
        while self.retransmit and self.blocked(conn.dst, conn.src):
            self.stats["held_partition"] += 1
            self._record("answer_held", conn.dst, conn.src, frame.op)
            await self._healed.wait()
            if conn.is_broken():
                return
        if self.blocked(conn.dst, conn.src):
            self.stats["lost_partition"] += 1
            self._record("answer_lost", conn.dst, conn.src, frame.op)
            return
        waiter = conn.waiters.pop(frame.rid, None)
        if waiter is not None:  # None: its caller timed out and left
            waiter.response = decode_response(body[HEADER_SIZE:])
            waiter.event.set()

    def _close(self, conn: _Conn) -> None:
        self._open.pop(conn, None)
        conn.fail(MeshcacheConnectionError(f"connection {conn.src} -> {conn.dst} closed"))

    def _break(self, conn: _Conn, op: str) -> None:
        self.stats["loss"] += 1
        self._record("break", conn.src, conn.dst, op)
        slot = (conn.src, conn.dst, conn.lane)
        if self._conns.get(slot) is conn:
            del self._conns[slot]
        self._open.pop(conn, None)
        conn.fail(MeshcacheConnectionError(f"connection {conn.src} -> {conn.dst} broke"))

    # --- tracing --------------------------------------------------------------------------

    def _record(self, event: str, src: str, dst: str, detail: str) -> None:
        self._trace.update(f"{trio.current_time():.9f} {event} {src} {dst} {detail}\n".encode())

    @property
    def trace_digest(self) -> str:
        """A fingerprint of every network event so far, with its mock time."""
        return self._trace.hexdigest()


class SimPeerPool(PeerPool):
    """A :class:`PeerPool` whose requests travel over a :class:`SimDataNet`.

    Same surface and errors as the real pool: :class:`PeerUnreachable` when no connection can
    be made, :class:`MeshcacheConnectionError` when it broke with the request in flight,
    :class:`MeshcacheTimeout` after ``timeout``; an error answer is returned (``request``) or
    raised as :class:`CommandError` (``call``).
    """

    def __init__(self, net: SimDataNet, node_id: str) -> None:
        super().__init__(connect_timeout=net.connect_timeout)
        self.net = net
        self.node_id = node_id

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def request(
        self,
        address: Address,
        op: str,
        namespace: str,
        args: list[Any],
        *,
        timeout: float,
        abort_on_timeout: bool = False,
        sent: Callable[[], None] | None = None,
        failed: Callable[[], None] | None = None,
        lane: str = "",
    ) -> Response:
        """Over the simulated network. ``submit`` (the pool's way without a task) is never
        taken here (this pool holds no connection of its own), so the order of what a node
        forwards is the order of its tasks' requests; ``sent`` is told at once, ``failed`` as
        the request fails. A timed-out
        connection is not reset: the simulated network models delivery itself. The peer's
        breaker hears of it as from the real pool: a refused or timed-out connection, a
        timed-out request, an answer."""
        self.stats["requests"] += 1
        if sent is not None:
            sent()
        started = trio.current_time()
        try:
            response = await self.net.request(
                self.node_id, address, op, namespace, args, timeout, lane=lane
            )
        except (PeerUnreachable, MeshcacheTimeout):
            self.breakers.failed(address, trio.current_time(), started)
            if failed is not None:
                failed()
            raise
        except MeshcacheError:
            if failed is not None:
                failed()
            raise
        self.breakers.answered(address, trio.current_time())
        return response

    async def call_alone(
        self, address: Address, op: str, namespace: str, args: list[Any], *, timeout: float
    ) -> Any:
        """:meth:`call` on a simulated connection of its own, closed after the answer."""
        self.stats["requests"] += 1
        response = await self.net.request(
            self.node_id, address, op, namespace, args, timeout, alone=True
        )
        return response.result()

    def close(self, address: Address) -> None:
        """Nothing to close: the network holds the simulated connections."""


# --------------------------------------------------------------------------- the nodes


@dataclass(frozen=True, slots=True)
class _Write:
    """One record a coordinator's store produced (the ledger's unit)."""

    node: str
    at: float
    order: tuple[int, bool, int]
    wire: tuple[Any, ...]


class _LedgerStore(Store):
    """A :class:`Store` that reports the record every local write leaves behind."""

    def __init__(self, ledger: Callable[[str, bytes, Record], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ledger = ledger

    def execute(self, namespace: str, op: str, args: list[Any]) -> Any:
        result = super().execute(namespace, op, args)
        spec = OPS.get(op)
        if spec is not None and spec.kind is OpKind.WRITE and spec.keyed:
            keys = args[::2] if op == "MSET" else (args if op == "DELETE" else args[:1])
            for key in keys:
                record = read_record(self, namespace, key)
                if record is not None:
                    self._ledger(namespace, key, record)
        return result


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


class _SimConfig:
    """A node's config plane in the simulation: the mesh's committed config, no Raft.

    A proposal commits at once (the pure compare-and-set :func:`~meshcache.control.apply`)
    and every up node installs the result, as if Raft and the config pull took no time.
    """

    def __init__(self, mesh: SimMesh, node: SimNode) -> None:
        self._mesh = mesh
        self._node = node

    @property
    def config(self) -> ClusterConfig:
        return self._mesh.config

    async def propose(self, command: Command) -> ClusterConfig:
        check_proposal(command)
        return self._mesh.commit(command)

    async def handle_propose(self, mapping: Any) -> dict[str, Any]:
        return (await self.propose(command_from_mapping(mapping))).to_mapping()

    async def set_namespace(self, name: str, fields: dict[str, Any]) -> dict[str, Any]:
        config = self.config
        command: Command
        if name in config.namespaces:
            command = UpdateNamespace(config.version, name, fields)
        else:
            policy = {**config.namespaces["default"].to_mapping(), **fields}
            command = CreateNamespace(
                config.version,
                name,
                policy,  # type: ignore[arg-type]
                floor=self._node.store.version_now(),
            )
        return (await self.propose(command)).namespaces[name].to_mapping()

    async def drop_namespace(self, name: str) -> bool:
        await self.propose(DropNamespace(self.config.version, name))
        return True

    async def raft(self, action: str, address: str | None = None) -> Any:
        raise CommandError(ErrorCode.UNAVAILABLE, "the simulation has no Raft group")

    async def register_self(self) -> None:
        config = self.config
        if config.member(self._node.node_id) is not None:
            return
        active = any(m.state is RingState.ACTIVE for m in config.members)
        state = RingState.JOINING if active else RingState.ACTIVE
        me = RingMember(self._node.node_id, f"{self._node.node_id}:{DATA_PORT}", state=state)
        await self.propose(PutMember(config.version, me))


class _SimMembership:
    """A node's membership ops in the simulation, answered from the gossip oracle."""

    def __init__(self, mesh: SimMesh, node_id: str) -> None:
        self._mesh = mesh
        self._node_id = node_id

    def members(self) -> list[dict[str, Any]]:
        return [
            {
                "name": other,
                "address": f"{other}:{DATA_PORT}",
                "state": "alive" if self.alive(other) else "dead",
                "incarnation": self._mesh.nodes[other].incarnation,
            }
            for other in self._mesh.nodes
        ]

    def handle_push_pull(self, payload: bytes) -> Any:
        raise CommandError(ErrorCode.UNAVAILABLE, "gossip is an oracle in the simulation")

    # The assembly's Liveness:

    def alive(self, node_id: str) -> bool:
        return node_id == self._node_id or self._mesh.alive(self._node_id, node_id)

    def dead(self, node_id: str) -> bool:
        return not self.alive(node_id)

    def config_version_of(self, node_id: str) -> int:
        return self._mesh.config.version


class SimNode:
    """One simulated node: the node's own :class:`~meshcache.node.assembly.Assembly` (every
    data part, op route and constant the real node has) over the simulated network, with the
    gossip oracle as liveness and the mesh's committed config instead of Raft.

    Every (re)start assembles the parts afresh (memory is lost on a crash) and installs the
    mesh's config. ``incarnation`` counts starts.
    """

    def __init__(self, mesh: SimMesh, node_id: str, skew: float) -> None:
        self.mesh = mesh
        self.node_id = node_id
        self.skew = skew
        self.incarnation = 0
        self.up = False
        self.nursery: trio.Nursery | None = None
        self._scope: trio.CancelScope | None = None
        self._build()

    def wall(self) -> float:
        """This node's wall clock: mock time, offset by the epoch and its own skew."""
        return EPOCH + trio.current_time() + self.skew

    def _build(self) -> None:
        mesh = self.mesh
        membership = _SimMembership(mesh, self.node_id)
        self.parts = Assembly(
            mesh.settings(self.node_id),
            self.node_id,
            pool=mesh.net.pool(self.node_id),
            liveness=membership,
            config=_SimConfig(mesh, self),
            membership=membership,
            wall_clock=self.wall,
            seed=f"{mesh.seed}:{self.node_id}:{self.incarnation}",
            store_factory=functools.partial(
                _LedgerStore, lambda ns, key, rec: mesh.note_write(self.node_id, ns, key, rec)
            ),
            sources=mesh.sources(self.node_id) if mesh.sources is not None else None,
        )
        # A fresh store holds the policies of the mesh's config; its floors come from it too.
        install_namespaces(self.parts.store, ClusterConfig(), mesh.config)
        #: The config this node's store reflects (behind ``mesh.config`` while held).
        self.installed = mesh.config
        self.parts.install(mesh.config)

    def install(self, config: ClusterConfig) -> None:
        """What a node's config service does with a newer config: namespaces, then parts."""
        install_namespaces(self.parts.store, self.installed, config)
        self.installed = config
        self.parts.install(config)

    # The parts, by the names scenarios and checkers use:

    @property
    def store(self) -> Store:
        return self.parts.store

    @property
    def hints(self) -> HintQueue:
        return self.parts.hints

    @property
    def replicator(self) -> Replicator:
        return self.parts.replicator

    @property
    def coordinator(self) -> Coordinator:
        return self.parts.coordinator

    @property
    def antientropy(self) -> AntiEntropy:
        return self.parts.antientropy

    @property
    def dispatcher(self) -> Dispatcher:
        return self.parts.dispatcher

    # --- life -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run this incarnation until :meth:`crash` (or the mesh stops)."""
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                await nursery.start(self.parts.run)
                self.nursery = nursery
                self.up = True
                self.mesh.net.attach(self.node_id, self.dispatcher.handle, nursery)
                task_status.started()
                await trio.sleep_forever()

    def crash(self) -> None:
        """Stop at once: tasks cancelled, connections reset; the memory is gone."""
        if not self.up:
            return
        self.up = False
        self.nursery = None
        self.mesh.net.detach(self.node_id)
        assert self._scope is not None
        self._scope.cancel()

    def restart(self) -> None:
        """Build a fresh incarnation (an empty store); :meth:`SimMesh.restart` runs it."""
        if self.up:
            raise SimulationError(f"{self.node_id} is running")
        self.incarnation += 1
        self._build()

    def member_alive(self, peer: str) -> None:
        """Gossip's ALIVE event for ``peer``: what the node does on it (hint replay, repair)."""
        self.parts.member_alive(peer)

    async def client(self, namespace: str, op: str, args: list[Any]) -> Any:
        """One client request through this node's dispatcher, as its data port would run it.

        Raises:
            CommandError: the node's error answer.
            MeshcacheConnectionError: the node is down, or crashed before answering.
        """
        return (await self.request(namespace, op, args)).result()

    async def request(self, namespace: str, op: str, args: list[Any]) -> Response:
        """:meth:`client`'s whole response (its hints included), an error answer too.

        Raises:
            MeshcacheConnectionError: the node is down, or crashed before answering.
        """
        nursery = self.nursery
        if not self.up or nursery is None:
            raise MeshcacheConnectionError(f"{self.node_id} is down")
        body = encode_request(1, op, namespace, args)[HEADER_SIZE:]
        done = trio.Event()
        box: list[bytes] = []

        async def serve() -> None:
            try:
                answer, _ = _pending(self.dispatcher.handle(body))
                box.append(answer if isinstance(answer, bytes) else await answer)
            finally:
                done.set()

        nursery.start_soon(serve)
        await done.wait()
        if not box:
            raise MeshcacheConnectionError(f"{self.node_id} crashed before answering")
        return decode_response(box[0][HEADER_SIZE:])


# --------------------------------------------------------------------------- the mesh


@dataclass(frozen=True, slots=True)
class AckedWrite:
    """A SET a client saw acknowledged; ``value`` must be unique among the scenario's writes."""

    namespace: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Divergence:
    """An up owner whose record of ``key`` is not the last writer's.

    ``tie``: two different records share the greatest last-writer-wins order (version, delete
    flag and tie-break hash: only a 64-bit hash collision).
    """

    namespace: str
    key: bytes
    node: str
    expected: tuple[Any, ...]
    held: tuple[Any, ...] | None
    tie: bool


@dataclass(slots=True)
class _View:
    alive: bool
    incarnation: int
    since: float
    truth: bool


class SimMesh:
    """N simulated nodes on one fixed ring, a gossip oracle, clients and invariant checkers.

    Args:
        seed: the one seed of the run (network, node rngs, clock skews, trio's scheduler).
        nodes: how many nodes (ids ``n0``, ``n1``, …), all active ring members.
        policies: namespace policies every store starts with (``default`` is added).
        link: the default link faults.
        detect_dead / detect_alive: gossip's delay to report a peer dead / alive again.
        gossip_interval: how often the oracle looks at the network.
        anti_entropy_interval: periodic rounds (``None``: none; a dropped-hint repair
            still runs an exchange).
        hint_max_bytes / hint_max_age: the hint queue's bounds (per target: a quarter).
        tombstone_grace: seconds deletes are remembered.
        read_repair_chance: as the node setting (0 by default: repairs come from hints and
            anti-entropy only).
        max_skew: each node's wall clock is ahead by ``uniform(0, max_skew)`` seconds.
        sources: each node's loader sources, by node id (e.g. over one
            :class:`~meshcache.testing.simsource.SimDatabase`); None: none.
    """

    def __init__(
        self,
        seed: int,
        nodes: int,
        *,
        policies: dict[str, NamespacePolicy] | None = None,
        link: LinkFaults | None = None,
        detect_dead: float = 2.0,
        detect_alive: float = 0.5,
        gossip_interval: float = 0.1,
        anti_entropy_interval: float | None = 5.0,
        hint_max_bytes: int = 64 * 1024 * 1024,
        hint_max_age: float = 3600.0,
        tombstone_grace: float = 3 * 3600.0,
        read_repair_chance: float = 0.0,
        max_skew: float = 0.005,
        sources: Callable[[str], Mapping[str, Source]] | None = None,
    ) -> None:
        self.seed = seed
        self.sources = sources
        self.net = SimDataNet(seed, default_link=link)
        self.policies = {"default": NamespacePolicy(), **(policies or {})}
        self.detect_dead = detect_dead
        self.detect_alive = detect_alive
        self.gossip_interval = gossip_interval
        self.anti_entropy_interval = anti_entropy_interval
        self.hint_max_bytes = hint_max_bytes
        self.hint_max_age = hint_max_age
        self.tombstone_grace = tombstone_grace
        self.read_repair_chance = read_repair_chance
        ids = [f"n{i}" for i in range(nodes)]
        self.config = ClusterConfig(
            version=1,
            members=tuple(RingMember(i, f"{i}:{DATA_PORT}") for i in ids),
            namespaces=self.policies,
        )
        self.ring = Ring(self.config.members, self.config.version)
        #: Nodes that install no config for now (:meth:`hold`).
        self.config_held: set[str] = set()
        skew_rng = random.Random(f"{seed}:skew")
        self.nodes: dict[str, SimNode] = {
            i: SimNode(self, i, skew_rng.uniform(0.0, max_skew)) for i in ids
        }
        self.ledger: dict[str, dict[bytes, list[_Write]]] = {}
        self._views: dict[tuple[str, str], _View] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def ids(self) -> list[str]:
        return list(self.nodes)

    def settings(self, node_id: str) -> NodeSettings:
        """The settings every simulated node runs with (the node's defaults otherwise)."""
        return NodeSettings(
            node_id=node_id,
            namespaces=self.policies,
            tombstone_grace=self.tombstone_grace,
            hint_max_bytes=self.hint_max_bytes,
            hint_max_age=self.hint_max_age,
            read_repair_chance=self.read_repair_chance,
            # No periodic rounds within a run (a dropped-hint repair still runs an exchange).
            anti_entropy_interval=self.anti_entropy_interval or NO_ROUNDS,
            expire_interval=EXPIRE_INTERVAL,
        )

    def commit(self, command: Command) -> ClusterConfig:
        """Commit a config change at once and install it on every up node (Raft's stand-in).

        Raises:
            MeshcacheError: the command does not apply (e.g. a version conflict).
        """
        self.config = apply(self.config, command)
        self.policies = dict(self.config.namespaces)
        self.ring = Ring(self.config.members, self.config.version)
        for node in self.nodes.values():
            if node.up and node.node_id not in self.config_held:
                node.install(self.config)
        return self.config

    def hold(self, node_id: str) -> None:
        """Let ``node_id`` install no config until :meth:`release` (a node behind the plane)."""
        self.config_held.add(node_id)

    def release(self, node_id: str) -> None:
        """Install the newest config on a held ``node_id``, every change since in one step."""
        self.config_held.discard(node_id)
        node = self.nodes[node_id]
        if node.up and node.installed.version < self.config.version:
            node.install(self.config)

    # --- running --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the network, every node and the gossip oracle; run until cancelled.

        Seeds trio's scheduler first, so the whole run replays from the seed.
        """
        trio._core._run._r.seed(self.seed)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for node in self.nodes.values():
                await nursery.start(node.run)
            self._reset_views(list(self.nodes))
            nursery.start_soon(self._gossip)
            task_status.started()
            await trio.sleep_forever()

    def crash(self, node_id: str) -> None:
        """Crash ``node_id`` now (see :meth:`SimNode.crash`)."""
        self.nodes[node_id].crash()

    async def restart(self, node_id: str) -> None:
        """Start a fresh incarnation of a crashed ``node_id`` (empty store, same ring)."""
        node = self.nodes[node_id]
        node.restart()
        assert self._nursery is not None
        await self._nursery.start(node.run)
        self._reset_views([node_id])

    async def client(self, via: str, namespace: str, op: str, *args: Any) -> Any:
        """One client request sent to node ``via`` (see :meth:`SimNode.client`)."""
        return await self.nodes[via].client(namespace, op, list(args))

    async def request(self, via: str, namespace: str, op: str, *args: Any) -> Response:
        """:meth:`client`'s whole response, its hints included (see :meth:`SimNode.request`)."""
        return await self.nodes[via].request(namespace, op, list(args))

    async def wait_until(
        self, condition: Callable[[], bool], *, timeout: float, what: str, poll: float = 0.1
    ) -> float:
        """Poll ``condition`` in mesh time; return the mesh seconds it took.

        Raises:
            SimulationError: not true within ``timeout`` mesh seconds (the message names the seed).
        """
        start = trio.current_time()
        while not condition():
            if trio.current_time() - start > timeout:
                raise SimulationError(
                    f"seed {self.seed}: {what} not reached in {timeout}s of mesh time"
                )
            await trio.sleep(poll)
        return trio.current_time() - start

    def quiet(self) -> bool:
        """No request in flight, and no replica write queued or hint held on any up node."""
        return self.net.in_flight == 0 and all(
            n.replicator.queued() == 0 and len(n.hints) == 0 for n in self.nodes.values() if n.up
        )

    # --- gossip oracle --------------------------------------------------------------------

    def alive(self, viewer: str, target: str) -> bool:
        """Whether gossip on ``viewer`` holds ``target`` alive (or suspect)."""
        view = self._views.get((viewer, target))
        return True if view is None else view.alive

    def _reset_views(self, viewers: Sequence[str]) -> None:
        now = trio.current_time()
        for v in viewers:
            for t in self.nodes:
                if t != v:
                    truth = self.net.reachable(v, t)
                    incarnation = self.nodes[t].incarnation
                    self._views[(v, t)] = _View(True, incarnation, now, truth)
            # The others learn of a restarted node's new incarnation by gossip.
            for o in self.nodes:
                view = self._views.get((o, v))
                if o != v and view is not None:
                    view.since = now

    async def _gossip(self) -> None:
        while True:
            await trio.sleep(self.gossip_interval)
            now = trio.current_time()
            for (v, t), view in self._views.items():
                viewer = self.nodes[v]
                if not viewer.up:
                    continue
                truth = self.net.reachable(v, t)
                incarnation = self.nodes[t].incarnation
                if truth != view.truth:
                    view.truth, view.since = truth, now
                if not truth:
                    if view.alive and now - view.since >= self.detect_dead:
                        view.alive = False
                elif (not view.alive or view.incarnation != incarnation) and (
                    now - view.since >= self.detect_alive
                ):
                    view.alive, view.incarnation = True, incarnation
                    viewer.member_alive(t)

    # --- the ledger and the invariants ----------------------------------------------------

    def note_write(self, node: str, namespace: str, key: bytes, record: Record) -> None:
        """Called by every node's store after a local (coordinator) write of ``key``."""
        write = _Write(node, trio.current_time(), lww_order(record), _freeze(record.to_wire()))
        self.ledger.setdefault(namespace, {}).setdefault(key, []).append(write)

    def owners(self, namespace: str, key: bytes) -> list[str]:
        replicas = self.policies.get(namespace, self.policies["default"]).replicas
        return [m.node_id for m in self.ring.owners(key, replicas)]

    def held(self, node_id: str, namespace: str, key: bytes) -> tuple[Any, ...] | None:
        """``node_id``'s record of ``key`` in wire form (None: nothing held)."""
        record = read_record(self.nodes[node_id].store, namespace, key)
        return None if record is None else _freeze(record.to_wire())

    def owners_agree(self) -> list[str]:
        """Problems with ring agreement: every up node must route by the same ring."""
        problems = []
        for node in self.nodes.values():
            if node.up and (
                node.coordinator.ring_version != self.config.version
                or node.coordinator.ring != self.ring
            ):
                problems.append(f"{node.node_id} routes by ring v{node.coordinator.ring_version}")
        return problems

    def last_writes(self, namespace: str) -> dict[bytes, tuple[_Write, bool]]:
        """Per written key: the winning ledger record and whether another record ties it."""
        out = {}
        for key, writes in self.ledger.get(namespace, {}).items():
            best = max(writes, key=lambda w: w.order)
            tie = any(w.order == best.order and w.wire != best.wire for w in writes)
            out[key] = (best, tie)
        return out

    def replicas_converged(self, namespace: str, *, survivors: bool = False) -> list[Divergence]:
        """Every up owner of every written key that does not hold the last writer's record.

        The last writer is the greatest record of the ledger (any coordinator's write, acked
        or not). With ``survivors`` it is the greatest record an up node still holds: for runs
        with crashes, where a write that only the crashed node held is legitimately gone.
        """
        out = []
        for key, (best, tie) in self.last_writes(namespace).items():
            expected = best.wire
            if survivors:
                held_by = [self._record_of(n, namespace, key) for n in self.nodes]
                records = [r for r in held_by if r is not None]
                if not records:
                    continue
                top = max(records, key=lww_order)
                expected = _freeze(top.to_wire())
                tie = any(
                    lww_order(r) == lww_order(top) and _freeze(r.to_wire()) != expected
                    for r in records
                )
            for owner in self.owners(namespace, key):
                if not self.nodes[owner].up:
                    continue
                held = self.held(owner, namespace, key)
                if held != expected:
                    out.append(Divergence(namespace, key, owner, expected, held, tie))
        return out

    def _record_of(self, node_id: str, namespace: str, key: bytes) -> Record | None:
        node = self.nodes[node_id]
        return read_record(node.store, namespace, key) if node.up else None

    def lost_acked_writes(self, acked: Iterable[AckedWrite]) -> list[AckedWrite]:
        """Acknowledged SETs of which no up owner holds that record or a newer one."""
        lost = []
        for write in acked:
            mine = [
                w
                for w in self.ledger.get(write.namespace, {}).get(write.key, [])
                if w.wire[1] == write.value and not w.order[1]
            ]
            if not mine:
                lost.append(write)  # acknowledged, yet no store ever applied it
                continue
            order = min(w.order for w in mine)
            holders = [
                o
                for o in self.owners(write.namespace, write.key)
                # A write beaten only by the tie-break (an equal version) is overwritten, not lost.
                if self.nodes[o].up
                and self._order_held(o, write.namespace, write.key)[:2] >= order[:2]
            ]
            if not holders:
                lost.append(write)
        return lost

    def _order_held(self, node_id: str, namespace: str, key: bytes) -> tuple[int, bool, int]:
        record = read_record(self.nodes[node_id].store, namespace, key)
        return (-1, False, 0) if record is None else lww_order(record)

    def counters(self) -> dict[str, Counter[str]]:
        """Every node's data-plane counters summed by part (for a scenario's report)."""
        parts: dict[str, Counter[str]] = {
            "dataplane": Counter(),
            "replicator": Counter(),
            "antientropy": Counter(),
            "net": Counter(self.net.stats),
        }
        for node in self.nodes.values():
            parts["dataplane"].update(node.coordinator.stats)
            parts["replicator"].update(node.replicator.stats)
            parts["antientropy"].update(node.antientropy.stats)
        return parts
