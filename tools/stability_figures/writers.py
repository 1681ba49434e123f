"""Pipelining writers at full speed: fill a mesh, then keep overwriting, with latencies by phase.

Each writer is a process with one raw connection to one node. It sends pipelined batches of
SETs of 100-byte values (``PRELOAD_DEPTH`` per batch while filling, ``depth`` after), keys it
takes from the ring the mesh had when it started (each key goes to its primary owner, as a
smart client sends it; after a ring change the node forwards what it no longer owns). First it
writes each of its keys once (the preload), then random keys of its share until stopped (a
``get_ratio`` share of them read with GET, the rest overwritten with SET). Every reply's latency
(batch sent → that reply read) goes to a histogram of the *phase* the parent has set (preload,
baseline, join, after — the drops that follow a join, and the tail —, leave), so the writers'
latency during a join is read off the join phase alone. (What a client sending one request at
a time sees: :mod:`tools.stability_figures.probe`.)
"""

from __future__ import annotations

import multiprocessing
import random
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

from meshcache.testing.mesh import Mesh
from tools.bench.histogram import LatencyHistogram, bucket_of, new_counts
from tools.bench.protocols import MeshcacheProtocol, ReplyKind
from tools.bench.workload import Workload, key

PHASES = ("preload", "baseline", "join", "after", "leave")
PRELOAD, BASELINE, JOIN, AFTER, LEAVE = range(len(PHASES))
VALUE_SIZE = 100
PRELOAD_DEPTH = 1000  # as tools/mesh_figures' preload: the fill is as fast as a node takes it
CONNECT_TIMEOUT = 30.0


@dataclass(slots=True)
class PhaseCounts:
    """What the writers saw in one phase: reply latencies, answers (a stored SET, a GET's value
    or miss) and failures (an error reply, or a request lost with its connection)."""

    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    answered: int = 0
    errors: int = 0

    def p99_ms(self) -> float:
        return self.latency.percentile(99) / 1000

    def max_ms(self) -> float:
        return self.latency.percentile(100) / 1000


def _writer(
    address: tuple[str, int],
    indexes: list[int],
    depth: int,
    get_ratio: float,
    seed: int,
    phase: Any,
    stop: Event,
    preloaded: Synchronized[int],
    pipe: Connection,
) -> None:
    protocol = MeshcacheProtocol()
    value = Workload(value_size=VALUE_SIZE).value()
    hists = [new_counts() for _ in PHASES]
    answered = [0] * len(PHASES)
    errors = [0] * len(PHASES)
    rng = random.Random(seed)
    sock: socket.socket | None = None
    buf = bytearray()

    def batch(frames: list[bytes]) -> None:
        nonlocal sock, buf
        p = phase.value
        try:
            if sock is None:
                sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = bytearray()
            sent = time.perf_counter_ns()
            sock.sendall(b"".join(frames))
            left, pos = len(frames), 0
            while left:
                end = protocol.reply_end(buf, pos)
                if end < 0:
                    data = sock.recv(1 << 20)
                    if not data:
                        raise ConnectionError("the node closed the connection")
                    buf += data
                    continue
                us = (time.perf_counter_ns() - sent) // 1000
                hists[p][bucket_of(us)] += 1
                if protocol.classify(bytes(buf[pos:end])) != ReplyKind.ERROR:
                    answered[p] += 1
                else:
                    errors[p] += 1
                pos = end
                left -= 1
            del buf[:pos]
        except OSError:
            errors[p] += len(frames)
            if sock is not None:
                sock.close()
            sock = None
            stop.wait(0.1)  # back off before reconnecting; returns at once when stopped

    try:
        for start in range(0, len(indexes), PRELOAD_DEPTH):
            if stop.is_set():
                break
            batch([protocol.set(key(i), value) for i in indexes[start : start + PRELOAD_DEPTH]])
        with preloaded.get_lock():
            preloaded.value += 1
        while not stop.is_set() and indexes:
            chosen = [key(rng.choice(indexes)) for _ in range(depth)]
            batch(
                [
                    protocol.get(k) if rng.random() < get_ratio else protocol.set(k, value)
                    for k in chosen
                ]
            )
    finally:
        if sock is not None:
            sock.close()
        pipe.send((hists, answered, errors))
        pipe.close()


class Writers:
    """``procs`` writer processes over the ``keys`` first keys, started at once (see the module
    docstring); :meth:`stop` ends them and returns the counts per phase."""

    def __init__(
        self, mesh: Mesh, keys: int, *, procs: int, depth: int = 100, get_ratio: float = 0.0
    ) -> None:
        ring = mesh.current_ring()
        nodes = mesh.live
        by_node: dict[str, list[int]] = {x.node_id: [] for x in nodes}
        for i in range(keys):
            by_node[ring.owners(key(i), 1)[0].node_id].append(i)
        ctx = multiprocessing.get_context("fork")
        self.phase = ctx.RawValue("i", PRELOAD)
        self._stop = ctx.Event()
        self._preloaded: Synchronized[int] = ctx.Value("i", 0)
        self._pipes: list[Connection] = []
        self._procs: list[Any] = []
        for w in range(procs):
            node = nodes[w % len(nodes)]
            sharers = range(w % len(nodes), procs, len(nodes))
            share = by_node[node.node_id][sharers.index(w) :: len(sharers)]
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_writer,
                args=(
                    node.data_address,
                    share,
                    depth,
                    get_ratio,
                    w,
                    self.phase,
                    self._stop,
                    self._preloaded,
                    child,
                ),
                daemon=True,
            )
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)

    def set_phase(self, phase: int) -> None:
        self.phase.value = phase

    def preloaded(self) -> bool:
        """Every writer has written each of its keys once."""
        return self._preloaded.value == len(self._procs)

    def stop(self) -> list[PhaseCounts]:
        """Stop every writer; the counts of each phase, all writers added up."""
        self._stop.set()
        phases = [PhaseCounts() for _ in PHASES]
        try:
            for pipe in self._pipes:
                if not pipe.poll(60):
                    raise TimeoutError("a writer did not report within 60 s")
                hists, answered, errors = pipe.recv()
                for counts, h, a, e in zip(phases, hists, answered, errors, strict=True):
                    counts.latency.merge(h)
                    counts.answered += a
                    counts.errors += e
        finally:
            for proc in self._procs:
                proc.join(5)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(5)
            for pipe in self._pipes:
                pipe.close()
        return phases
