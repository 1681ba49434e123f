"""A deterministic discrete-event network simulator for sans-I/O endpoints.

:class:`SimNetwork` drives any number of :class:`~meshcache.gossip.endpoint.Endpoint` objects
in one process on a simulated clock. Time jumps from one event to the next (a heap of events),
so an hour of a 20-node cluster or tens of seconds of a 1000-node cluster take seconds of wall
time, limited mostly by the endpoints themselves.

What a caller may rely on:

* **One seed reproduces a run.** All network randomness comes from one ``random.Random(seed)``
  consumed in event order; each node gets its own ``random.Random`` derived from the seed, its
  address and how often it was (re)started. Events at the same instant run in the order they
  were scheduled. Same seed + same scenario + deterministic endpoints ⇒ the same trace.
* **Datagrams** (UDP) on a directed link (:class:`~meshcache.testing.faults.LinkFaults`) may
  be lost, duplicated and delayed by ``delay + uniform(0, jitter)``; a jitter larger than the
  gap between two sends reorders them. A link given no faults is :data:`STEADY_LINK`.
* **Stream requests** (TCP exchanges) are never lost or duplicated: the request arrives after
  the link delay, the reply comes back after the reverse link delay. If the peer is unreachable
  (partitioned, crashed, unknown) or does not answer in time (paused), the requester's
  ``handle_stream_reply(tag, None, now)`` runs ``stream_timeout`` after the request was sent.
  A peer that answers ``None`` closes the exchange: the requester gets ``None`` after the
  reverse delay.
* **Partitions** block datagrams and streams between groups, both ways or one way.
* **Pause** models a CPU-starved process: no ticks and no processing; datagrams arriving are
  queued in a bounded receive buffer (overflow is dropped), stream traffic is queued, and all
  of it is processed, in arrival order, when the node resumes — before its (now late) timers.
* **Crash** stops the node and drops everything in flight to it; **restart** calls the node's
  factory again at the current time with a fresh derived ``random.Random``.

Example::

    net = SimNetwork(seed, default_link=LinkFaults(loss=0.1, delay=0.002, jitter=0.003))
    for addr in addresses:
        net.add_node(addr, lambda now, rng, addr=addr: make_node(addr, rng, now))
    net.apply(addresses[1], lambda node, now: node.join([addresses[0]], now))
    net.call_at(30.0, lambda: net.partition(addresses[:3]))   # scenario steps
    net.call_at(45.0, net.heal)
    assert net.run_until_condition(lambda: converged(net), timeout=120.0)

Endpoints must not iterate over sets of strings or use ``hash()`` if traces have to match
*across processes* (``PYTHONHASHSEED``); within one process that does not matter.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

from meshcache.gossip.endpoint import Address, Datagram, Endpoint, Outgoing, StreamRequest
from meshcache.testing.faults import LinkFaults, SimulationError

__all__ = [
    "STEADY_LINK",
    "EndpointFactory",
    "NetStats",
    "NodeStats",
    "SimNetwork",
    "TraceEvent",
]

EndpointFactory: TypeAlias = Callable[[float, random.Random], Endpoint]
"""``factory(now, rng) -> Endpoint``: builds a node's endpoint at start and at every restart."""

TraceEvent: TypeAlias = tuple[float, str, Address, Address, bytes]
"""``(time, event, src, dst, payload)`` as recorded when ``trace=True``."""

T = TypeVar("T")


STEADY_LINK = LinkFaults(delay=0.001, jitter=0.0)
"""The link of a :class:`SimNetwork` given no ``default_link``: a fixed 1 ms, nothing lost."""


@dataclass(slots=True)
class NodeStats:
    """Traffic one node has sent and received (over all its restarts)."""

    datagrams_sent: int = 0
    datagram_bytes_sent: int = 0
    datagrams_received: int = 0
    streams_sent: int = 0
    stream_bytes_sent: int = 0  # requests it sent plus replies it answered


@dataclass(slots=True)
class NetStats:
    """Whole-network counters. ``dropped`` is keyed by reason.

    Drop reasons: ``loss`` (random link loss), ``partition``, ``down`` (destination crashed, or
    crashed and restarted since the packet was sent), ``no_route`` (no such node),
    ``buffer_full`` (paused node's receive buffer overflowed).
    """

    sent: int = 0
    delivered: int = 0
    duplicated: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    streams_sent: int = 0
    streams_completed: int = 0
    streams_failed: int = 0


# Event kinds. Small ints so the heap tuples stay cheap; the tuple is
# (time, seq, kind, node, generation, a, b) and `seq` makes every key unique, so comparison
# never reaches the payload and simultaneous events run in scheduling order.
_TICK = 0
_DGRAM = 1
_STREAM_REQ = 2
_STREAM_REP = 3
_STREAM_TIMEOUT = 4
_RESUME = 5
_CALL = 6
_COMPLETE = 7  # only in a paused node's buffer: a settled stream exchange to hand over

_MAX_TICKS_AT_ONE_INSTANT = 1000


class _Node:
    __slots__ = (
        "address",
        "buffer",
        "buffered_datagrams",
        "endpoint",
        "factory",
        "gen",
        "last_tick",
        "paused_until",
        "same_instant_ticks",
        "scheduled",
        "starts",
        "stats",
        "up",
    )

    def __init__(self, address: Address, factory: EndpointFactory) -> None:
        self.address = address
        self.factory = factory
        self.endpoint: Endpoint | None = None
        # Bumped at every crash: events stamped with an older generation are stale.
        self.gen = 0
        self.up = False
        self.starts = 0
        self.paused_until = -math.inf
        # Items received while paused: (kind, a, b) replayed on resume.
        self.buffer: deque[tuple[int, Any, Any]] = deque()
        self.buffered_datagrams = 0
        # Time of the pending tick event (inf: none pending).
        self.scheduled = math.inf
        self.last_tick = -math.inf
        self.same_instant_ticks = 0
        self.stats = NodeStats()


class _Partition:
    __slots__ = ("a", "b", "one_way")

    def __init__(self, a: frozenset[Address], b: frozenset[Address] | None, one_way: bool):
        self.a = a
        self.b = b
        self.one_way = one_way

    def blocks(self, src: Address, dst: Address) -> bool:
        a, b = self.a, self.b
        if b is None:  # `a` against everyone else
            if self.one_way:
                return src in a and dst not in a
            return (src in a) != (dst in a)
        if src in a and dst in b:
            return True
        return not self.one_way and src in b and dst in a


class _Exchange:
    __slots__ = ("data", "dst", "requester", "requester_gen", "settled", "tag")

    def __init__(
        self, requester: _Node, requester_gen: int, dst: Address, data: bytes, tag: int
    ) -> None:
        self.requester = requester
        self.requester_gen = requester_gen
        self.dst = dst
        self.data = data
        self.tag = tag
        self.settled = False


class SimNetwork:
    """A simulated network of sans-I/O endpoints on a simulated clock (starts at ``0.0``).

    Args:
        seed: the only source of randomness for the network and (derived) for every node.
        default_link: behaviour of every directed link without an override
            (:data:`STEADY_LINK` when not given).
        stream_timeout: how long a requester waits for a stream reply before failing it.
        recv_buffer: datagrams a paused node can queue before further ones are dropped.
        trace: record every delivery and drop in :attr:`trace` and :meth:`trace_digest`.
    """

    def __init__(
        self,
        seed: int,
        *,
        default_link: LinkFaults | None = None,
        stream_timeout: float = 1.0,
        recv_buffer: int = 256,
        trace: bool = False,
    ) -> None:
        self.seed = seed
        self.now = 0.0
        self.default_link = default_link if default_link is not None else STEADY_LINK
        self.stream_timeout = stream_timeout
        self.recv_buffer = recv_buffer
        self.stats = NetStats()
        self.trace: list[TraceEvent] | None = [] if trace else None
        self._digest = hashlib.blake2b(digest_size=16)
        self._rng = random.Random(seed)
        self._heap: list[tuple[float, int, int, Any, int, Any, Any]] = []
        self._seq = itertools.count()
        self._nodes: dict[Address, _Node] = {}
        self._links: dict[tuple[Address, Address], LinkFaults] = {}
        self._partitions: list[_Partition] = []

    # ------------------------------------------------------------------ nodes

    def add_node(self, address: Address, factory: EndpointFactory) -> Endpoint:
        """Start a node at ``address`` built by ``factory(now, rng)``; return its endpoint."""
        if address in self._nodes:
            raise ValueError(f"node {address} already exists")
        node = _Node(address, factory)
        self._nodes[address] = node
        return self._start(node)

    def crash(self, address: Address) -> None:
        """Stop the node now: no ticks, no processing; everything in flight to it is dropped.

        Its pending stream exchanges never complete (the endpoint object is gone).
        """
        node = self._node(address)
        if not node.up:
            return
        node.up = False
        node.gen += 1
        node.endpoint = None
        node.paused_until = -math.inf
        for kind, src, data in node.buffer:
            if kind == _DGRAM:
                self._drop("down", src, address, data)
        node.buffer.clear()
        node.buffered_datagrams = 0
        node.scheduled = math.inf

    def restart(self, address: Address) -> Endpoint:
        """Crash the node if it is up, then build a new endpoint with its factory, now."""
        node = self._node(address)
        self.crash(address)
        return self._start(node)

    def pause(self, address: Address, duration: float) -> None:
        """Starve the node of CPU for ``duration`` seconds from now (extends a running pause).

        Does nothing to a crashed node.
        """
        node = self._node(address)
        if not node.up or duration <= 0:
            return
        until = self.now + duration
        if until > node.paused_until:
            node.paused_until = until
            self._push(until, _RESUME, node, node.gen, until, None)

    def endpoint(self, address: Address) -> Endpoint:
        """The node's current endpoint; raises ``KeyError`` if it is crashed or unknown."""
        node = self._nodes[address]
        if node.endpoint is None:
            raise KeyError(f"node {address} is down")
        return node.endpoint

    def endpoints(self) -> Iterator[tuple[Address, Endpoint]]:
        """``(address, endpoint)`` of every running node (paused ones included), in add order."""
        for address, node in self._nodes.items():
            if node.endpoint is not None:
                yield address, node.endpoint

    @property
    def addresses(self) -> list[Address]:
        """Every node ever added, running or not, in add order."""
        return list(self._nodes)

    def is_up(self, address: Address) -> bool:
        return self._node(address).up

    def is_paused(self, address: Address) -> bool:
        node = self._node(address)
        return node.up and node.paused_until > self.now

    def node_stats(self, address: Address) -> NodeStats:
        return self._node(address).stats

    def apply(self, address: Address, action: Callable[[Endpoint, float], T]) -> T:
        """Run ``action(endpoint, now)`` on a node from outside (e.g. an API call), then send
        what it queued. Use this rather than calling the endpoint directly, or its output and
        new timers go unnoticed until its next event.
        """
        node = self._node(address)
        if node.endpoint is None:
            raise KeyError(f"node {address} is down")
        result = action(node.endpoint, self.now)
        self._drain(node)
        return result

    # ------------------------------------------------------------------ links

    def set_link(self, src: Address, dst: Address, cfg: LinkFaults | None) -> None:
        """Override the directed link ``src -> dst`` (``None`` restores the default)."""
        if cfg is None:
            self._links.pop((src, dst), None)
        else:
            self._links[(src, dst)] = cfg

    def partition(
        self,
        group_a: Iterable[Address],
        group_b: Iterable[Address] | None = None,
        *,
        one_way: bool = False,
    ) -> None:
        """Cut ``group_a`` from ``group_b`` (default: from every node not in ``group_a``).

        ``one_way=True`` only blocks traffic from ``group_a`` to ``group_b``. Partitions add up
        until :meth:`heal`. Packets already in flight are not affected.
        """
        b = None if group_b is None else frozenset(group_b)
        self._partitions.append(_Partition(frozenset(group_a), b, one_way))

    def heal(self) -> None:
        """Remove every partition (link overrides stay)."""
        self._partitions.clear()

    def reachable(self, src: Address, dst: Address) -> bool:
        """Whether no partition blocks ``src -> dst`` right now."""
        return not any(p.blocks(src, dst) for p in self._partitions)

    # ------------------------------------------------------------------ running

    def call_at(self, when: float, fn: Callable[[], object]) -> None:
        """Run ``fn()`` at simulated time ``when`` (scenario steps: crash, pause, partition...)."""
        self._push(max(when, self.now), _CALL, None, 0, fn, None)

    def run_until(self, t: float) -> None:
        """Process every event due at or before ``t``; afterwards :attr:`now` is ``t``."""
        self._run(t, None)
        self.now = max(self.now, t)

    def run_for(self, dt: float) -> None:
        """Run for ``dt`` simulated seconds."""
        self.run_until(self.now + dt)

    def run_until_condition(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        *,
        poll_interval: float | None = None,
    ) -> bool:
        """Run until ``predicate()`` holds or ``timeout`` simulated seconds pass.

        The predicate is checked before the first event and after every event (or, with
        ``poll_interval``, only every that many simulated seconds — cheaper for big clusters).
        Returns whether it held; :attr:`now` is the time it first held, or the deadline.
        """
        deadline = self.now + timeout
        if predicate():
            return True
        if poll_interval is None:
            if self._run(deadline, predicate):
                return True
        else:
            t = self.now
            while t < deadline:
                t = min(t + poll_interval, deadline)
                self.run_until(t)
                if predicate():
                    return True
        self.now = max(self.now, deadline)
        return False

    def trace_digest(self) -> str:
        """Hex digest over every recorded delivery and drop (requires ``trace=True``)."""
        if self.trace is None:
            raise SimulationError("trace_digest() needs SimNetwork(..., trace=True)")
        return self._digest.hexdigest()

    # ------------------------------------------------------------------ internals

    def _node(self, address: Address) -> _Node:
        try:
            return self._nodes[address]
        except KeyError:
            raise KeyError(f"no node {address}") from None

    def _push(self, t: float, kind: int, node: Any, gen: int, a: Any, b: Any) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), kind, node, gen, a, b))

    def _record(self, event: str, src: Address, dst: Address, data: bytes) -> None:
        assert self.trace is not None
        item = (self.now, event, src, dst, data)
        self.trace.append(item)
        self._digest.update(repr(item).encode())

    def _start(self, node: _Node) -> Endpoint:
        node.starts += 1
        host, port = node.address
        # A string seed goes through sha512 in random.seed, so this does not depend on
        # PYTHONHASHSEED and differs per node and per restart.
        rng = random.Random(f"{self.seed}/{host}:{port}/{node.starts}")
        endpoint = node.factory(self.now, rng)
        node.endpoint = endpoint
        node.up = True
        node.scheduled = math.inf
        self._drain(node)
        return endpoint

    def _drain(self, node: _Node) -> None:
        """Send what the node queued and make sure a tick is scheduled for its next deadline."""
        endpoint = node.endpoint
        assert endpoint is not None
        out: list[Outgoing] = endpoint.take_outgoing()
        for msg in out:
            if type(msg) is Datagram:
                self._send_datagram(node, msg.dst, msg.data)
            elif isinstance(msg, StreamRequest):
                self._send_stream(node, msg)
            else:
                raise SimulationError(f"{node.address} queued an unknown outgoing item {msg!r}")
        deadline = endpoint.next_deadline()
        now = self.now
        t = deadline if deadline > now else now
        if t < node.scheduled:
            node.scheduled = t
            heapq.heappush(self._heap, (t, next(self._seq), _TICK, node, node.gen, None, None))

    def _send_datagram(self, node: _Node, dst: Address, data: bytes) -> None:
        stats = self.stats
        stats.sent += 1
        node.stats.datagrams_sent += 1
        node.stats.datagram_bytes_sent += len(data)
        src = node.address
        target = self._nodes.get(dst)
        if target is None:
            self._drop("no_route", src, dst, data)
            return
        if self._partitions and not self.reachable(src, dst):
            self._drop("partition", src, dst, data)
            return
        link = self._links.get((src, dst), self.default_link) if self._links else self.default_link
        rng = self._rng
        if link.loss and rng.random() < link.loss:
            self._drop("loss", src, dst, data)
            return
        delay = link.delay + rng.random() * link.jitter if link.jitter else link.delay
        heap = self._heap
        heapq.heappush(
            heap, (self.now + delay, next(self._seq), _DGRAM, target, target.gen, src, data)
        )
        if link.duplicate and rng.random() < link.duplicate:
            stats.duplicated += 1
            delay = link.delay + rng.random() * link.jitter if link.jitter else link.delay
            heapq.heappush(
                heap, (self.now + delay, next(self._seq), _DGRAM, target, target.gen, src, data)
            )

    def _send_stream(self, node: _Node, req: StreamRequest) -> None:
        self.stats.streams_sent += 1
        node.stats.streams_sent += 1
        node.stats.stream_bytes_sent += len(req.data)
        exchange = _Exchange(node, node.gen, req.dst, req.data, req.tag)
        # The timeout always fires unless the exchange completed first; whichever happens
        # first settles it (see _settle).
        self._push(self.now + self.stream_timeout, _STREAM_TIMEOUT, node, node.gen, exchange, None)
        target = self._nodes.get(req.dst)
        if target is None or not self.reachable(node.address, req.dst):
            return
        link = self._links.get((node.address, req.dst), self.default_link)
        self._push(self.now + link.delay, _STREAM_REQ, target, target.gen, exchange, None)

    def _drop(self, reason: str, src: Address, dst: Address, data: bytes) -> None:
        self.stats.dropped[reason] += 1
        if self.trace is not None:
            self._record("drop:" + reason, src, dst, data)

    def _run(self, until: float, predicate: Callable[[], bool] | None) -> bool:
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= until:
            t, _, kind, node, gen, a, b = pop(heap)
            self.now = t
            if kind == _CALL:
                a()
            elif gen != node.gen or not node.up:
                # The node crashed since this was scheduled (or was down when it was sent).
                if kind == _DGRAM:
                    self._drop("down", a, node.address, b)
                elif kind == _STREAM_REQ:
                    pass  # the requester's timeout reports the failure
            elif kind == _TICK:
                if t == node.scheduled and t >= node.paused_until:
                    self._tick(node)
            elif kind == _DGRAM:
                if node.paused_until > t:
                    if node.buffered_datagrams >= self.recv_buffer:
                        self._drop("buffer_full", a, node.address, b)
                    else:
                        node.buffered_datagrams += 1
                        node.buffer.append((_DGRAM, a, b))
                else:
                    self._deliver_datagram(node, a, b)
            elif kind == _RESUME:
                if a == node.paused_until:
                    self._resume(node)
            elif kind == _STREAM_REQ:
                self._stream_request(node, a)
            else:  # _STREAM_REP carries the answer in b; _STREAM_TIMEOUT has b=None
                self._settle(node, a, b)
            if predicate is not None and predicate():
                return True
        return False

    def _tick(self, node: _Node) -> None:
        endpoint = node.endpoint
        assert endpoint is not None
        if node.last_tick == self.now:
            node.same_instant_ticks += 1
            if node.same_instant_ticks > _MAX_TICKS_AT_ONE_INSTANT:
                raise SimulationError(
                    f"{node.address} keeps asking for a tick at t={self.now} "
                    "(next_deadline() does not advance after tick())"
                )
        else:
            node.last_tick = self.now
            node.same_instant_ticks = 0
        node.scheduled = math.inf
        endpoint.tick(self.now)
        self._drain(node)

    def _deliver_datagram(self, node: _Node, src: Address, data: bytes) -> None:
        endpoint = node.endpoint
        assert endpoint is not None
        self.stats.delivered += 1
        node.stats.datagrams_received += 1
        if self.trace is not None:
            self._record("dgram", src, node.address, data)
        endpoint.handle_datagram(src, data, self.now)
        self._drain(node)

    def _resume(self, node: _Node) -> None:
        node.paused_until = -math.inf
        buffer = node.buffer
        while buffer and node.up:
            kind, a, b = buffer.popleft()
            if kind == _DGRAM:
                node.buffered_datagrams -= 1
                self._deliver_datagram(node, a, b)
            elif kind == _STREAM_REQ:
                self._stream_request(node, a)
            else:
                self._complete(node, a, b)
        # Timers that came due during the pause fire now, late.
        if node.up and node.scheduled <= self.now:
            self._tick(node)

    def _stream_request(self, node: _Node, exchange: _Exchange) -> None:
        """A stream request reached a live ``node``: answer it and send the reply back."""
        if node.paused_until > self.now:
            node.buffer.append((_STREAM_REQ, exchange, None))
            return
        endpoint = node.endpoint
        assert endpoint is not None
        requester = exchange.requester
        if self.trace is not None:
            self._record("stream_req", requester.address, node.address, exchange.data)
        answer = endpoint.handle_stream_request(requester.address, exchange.data, self.now)
        if answer is not None:
            node.stats.stream_bytes_sent += len(answer)
        self._drain(node)
        if not self.reachable(node.address, requester.address):
            return  # the reply is lost; the requester times out
        link = self._links.get((node.address, requester.address), self.default_link)
        self._push(
            self.now + link.delay, _STREAM_REP, requester, exchange.requester_gen, exchange, answer
        )

    def _settle(self, node: _Node, exchange: _Exchange, payload: bytes | None) -> None:
        """The reply (or the timeout, ``payload=None``) reached the requester: first one wins."""
        if exchange.settled:
            return
        exchange.settled = True
        if payload is None:
            self.stats.streams_failed += 1
        else:
            self.stats.streams_completed += 1
        if node.paused_until > self.now:
            node.buffer.append((_COMPLETE, exchange.tag, payload))
            return
        self._complete(node, exchange.tag, payload)

    def _complete(self, node: _Node, tag: int, payload: bytes | None) -> None:
        endpoint = node.endpoint
        assert endpoint is not None
        if self.trace is not None:
            event = "stream_reply" if payload is not None else "stream_failed"
            self._record(event, node.address, node.address, payload or b"")
        endpoint.handle_stream_reply(tag, payload, self.now)
        self._drain(node)
