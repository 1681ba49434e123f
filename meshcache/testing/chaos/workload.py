"""The chaos workload: clients that write, read and delete, recording every op in the history.

A worker is one process (``python -m meshcache.testing.chaos worker SPEC``), started by the
harness inside an endpoint's network namespace, running one thread per :class:`ClientSpec`.
Each thread owns a :class:`meshcache.Client` — smart (ring-routed over every node) or plain
(``smart=False``, one node) — and loops: pick an op from its seeded rng, record ``invoke``,
run it, record ``ok`` / ``fail`` / ``unknown``, wait for its next slot (``rate`` ops/s; 0 runs
back to back). Values are unique (``<client>:<n>``), so a read names the write it saw.
Conditional writes (``SET NX`` / ``XX``, ``GETS`` + ``CAS``, ``INCR``) join the mix when their
weights are set; the history records what each answered (see :mod:`.history`).

The consistency of a write is its namespace's policy (``chaos-one``, ``chaos-quorum``,
``chaos-all``; see :data:`NAMESPACES`): the public client's ``set`` has no per-call
consistency argument, and a namespace per level keeps each key's writes at one level.

The worker stops when its stdin closes (the harness closes the pipe, or dies), letting each
thread finish the op it is in (bounded by the client's timeout), or after ``stop_after``.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from meshcache.errors import CommandError, ErrorCode
from meshcache.testing.chaos.history import (
    FAIL,
    OK,
    UNKNOWN,
    VALUE_WRITES,
    HistoryWriter,
    now,
)

#: Consistency level → the chaos namespace whose policy acknowledges writes at that level.
NAMESPACES = {"one": "chaos-one", "quorum": "chaos-quorum", "all": "chaos-all"}
#: The namespace with hot keys on (docs/hotkeys.md): short lease, low thresholds, and writes
#: acknowledged at ``all``, so that every node's own store holds every acknowledged write and
#: a read anywhere can lag only through a copy (bounded by the lease), whatever the fault.
HOT_NAMESPACE = "chaos-hot"
HOT_LEASE = 1.0
HOT_POLICY: dict[str, Any] = {
    "consistency": "all",
    "hot": {"enabled": True, "share": 0.02, "rate": 10.0, "lease": HOT_LEASE},
}
LEVEL_OF = {**{ns: level for level, ns in NAMESPACES.items()}, HOT_NAMESPACE: "all"}
#: The longest pause between a ``cas`` op's ``GETS`` and its ``CAS`` (seconds).
CAS_PAUSE = 0.05

# A write refused with one of these certainly did not apply; any other error may have.
_NOT_APPLIED = frozenset(
    {
        ErrorCode.BAD_REQUEST,
        ErrorCode.UNKNOWN_OP,
        ErrorCode.WRONG_ARITY,
        ErrorCode.WRONGTYPE,
        ErrorCode.TOO_LARGE,
        ErrorCode.OUT_OF_MEMORY,
        ErrorCode.NO_SUCH_NAMESPACE,
        ErrorCode.TOO_MANY_CONNECTIONS,
    }
)


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """One workload client.

    Attributes:
        name: its process name in the history (unique in a run).
        seeds: node data addresses; a plain client (``smart=False``) talks to the first only.
        smart: route by the ring (``meshcache.Client(smart=True)``).
        namespaces: the namespaces it writes to, one picked per op (see :data:`NAMESPACES`).
        keys: how many keys per namespace (``<key_prefix>k<i>``), shared by every client with
            the same prefix, so clients on both sides of a partition write the same keys.
        key_prefix: keeps one cycle's keys apart from another's.
        writes, reads, deletes: the op mix (relative weights).
        setnx, setxx, cas, incr: conditional writes in the mix (relative weights, 0: none):
            ``SET NX``, ``SET XX`` and ``GETS`` + ``CAS`` on the same keys as the plain ops,
            ``INCR`` on counter keys of their own (``<key_prefix>i<j>``, ``counters`` of them
            per namespace), so a counter never holds a written value.
        rate: ops per second (0: back to back).
        timeout: the client's timeout for a whole call (meshcache.Client ``timeout``).
        seed: the rng seed of its op sequence.
        role: ``mixed`` (the op mix above), ``hot-reader`` (reads of the hot keys
            ``<key_prefix>h<i>``, ``keys`` of them, in :data:`HOT_NAMESPACE`) or ``hot-writer``
            (the one writer of hot key ``hot_key``: writes it — values ``<name>:<n>``, ``n``
            rising, a tenth of them deletes — and reads it back after each write: ``smart``
            False, through ``seeds[0]`` and then through every seed in turn, each with a plain
            client, the ops carrying ``node``; ``smart``, with one smart client over every
            seed, three reads wherever it routes them, no ``node``); or, for the read-through
            namespace (:mod:`.loaderclients`), ``loader-reader`` (GETs of ``<key_prefix>l<i>``,
            a ``writes`` share of SETs) or ``db-writer`` (UPDATEs of their rows through ``dsn``).
        hot_key: the key a ``hot-writer`` owns.
        dsn: the database a ``db-writer`` updates.
    """

    name: str
    seeds: tuple[str, ...]
    smart: bool = True
    namespaces: tuple[str, ...] = tuple(NAMESPACES.values())
    keys: int = 50
    key_prefix: str = ""
    writes: float = 0.7
    reads: float = 0.2
    deletes: float = 0.1
    setnx: float = 0.0
    setxx: float = 0.0
    cas: float = 0.0
    incr: float = 0.0
    counters: int = 8
    rate: float = 40.0
    timeout: float = 5.0
    seed: int = 0
    role: str = "mixed"
    hot_key: str = ""
    dsn: str = ""

    @classmethod
    def from_mapping(cls, m: dict[str, Any]) -> ClientSpec:
        return cls(**{**m, "seeds": tuple(m["seeds"]), "namespaces": tuple(m["namespaces"])})


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What one worker process runs: its clients, where they record, and a safety stop."""

    history: str
    clients: tuple[ClientSpec, ...] = field(default_factory=tuple)
    stop_after: float = 600.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        m = json.loads(text)
        clients = tuple(ClientSpec.from_mapping(c) for c in m["clients"])
        return cls(history=m["history"], clients=clients, stop_after=float(m["stop_after"]))


def _outcome(f: str, exc: BaseException) -> tuple[str, str]:
    """The completion type of an op that raised, and the error text."""
    text = f"{type(exc).__name__}: {exc}"[:300]
    if f == "get":
        return FAIL, text
    if isinstance(exc, CommandError) and exc.code in _NOT_APPLIED:
        return FAIL, text
    return UNKNOWN, text


class _GetsFailed(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _conditional(
    client: Any, f: str, ns: str, key: str, value: str | None, done: dict[str, Any], pause: float
) -> None:
    """Run conditional write ``f``; what the history needs of its answer goes into ``done``."""
    if f == "incr":
        done["result"] = client.incr(key, namespace=ns)
        return
    assert value is not None
    if f in ("setnx", "setxx"):
        stored = client.set(key, value.encode(), nx=f == "setnx", xx=f == "setxx", namespace=ns)
        done["stored"] = bool(stored)
        return
    try:
        seen = client.gets(key, namespace=ns)
    except Exception as exc:
        raise _GetsFailed(exc) from exc
    done["seen_at"] = now()
    done["seen"] = None if seen is None else seen[0].decode("utf-8", "replace")
    if seen is None:
        done["stored"] = False  # nothing to compare and swap: no write was sent
        return
    # A pause between the read and the swap gives other clients' writes room to land
    # between them, where the checker can tell them apart (pacing, not a wait for anything).
    time.sleep(pause)
    done["cas_at"] = now()
    done["stored"] = bool(client.cas(key, value.encode(), seen[1], namespace=ns))


def _recorded(
    history: HistoryWriter,
    spec: ClientSpec,
    n: int,
    f: str,
    ns: str,
    key: str,
    value: str | None,
    node: str | None,
    call: Any,
) -> None:
    """Record the invocation of op ``n``, run ``call()`` (a read returns what it read), record
    how it ended."""
    record: dict[str, Any] = {"type": "invoke", "p": spec.name, "n": n, "f": f, "ns": ns}
    record["key"] = key
    if value is not None:
        record["value"] = value
    if node is not None:
        record["node"] = node
    history.write(record)
    done: dict[str, Any] = {"p": spec.name, "n": n, "f": f}
    try:
        got = call()
        if f == "get":
            done["value"] = None if got is None else got.decode("utf-8", "replace")
        done["type"] = OK
    except Exception as exc:  # every outcome is recorded, a client bug's too
        done["type"], done["error"] = _outcome(f, exc)
    done["t"] = now()
    history.write(done)


def run_hot_client(spec: ClientSpec, history: HistoryWriter, stop: threading.Event) -> None:
    """A ``hot-reader`` or ``hot-writer`` (see :class:`ClientSpec`) until ``stop`` is set."""
    import meshcache

    rng = random.Random(spec.seed)
    ns = HOT_NAMESPACE
    period = 1.0 / spec.rate if spec.rate > 0 else 0.0
    next_at = time.monotonic()
    n = 0
    clients = []
    try:
        if spec.role == "hot-reader" or spec.smart:
            clients.append(meshcache.Client(list(spec.seeds), timeout=spec.timeout))
        else:
            for seed in spec.seeds:
                clients.append(
                    meshcache.Client(
                        [seed], timeout=spec.timeout, connect_timeout=spec.timeout, smart=False
                    )
                )
        while not stop.is_set():
            if spec.role == "hot-reader":
                n += 1
                key = f"{spec.key_prefix}h{rng.randrange(spec.keys)}"
                read = partial(clients[0].get, key, namespace=ns)
                _recorded(history, spec, n, "get", ns, key, None, None, read)
            else:
                n += 1
                key, writer = spec.hot_key, clients[0]
                through = None if spec.smart else spec.seeds[0]
                if rng.random() < 0.1:
                    delete = partial(writer.delete, key, namespace=ns)
                    _recorded(history, spec, n, "delete", ns, key, None, through, delete)
                else:
                    value = f"{spec.name}:{n}"
                    write = partial(writer.set, key, value.encode(), namespace=ns)
                    _recorded(history, spec, n, "set", ns, key, value, through, write)
                readers: list[tuple[str | None, Any]] = [(None, writer)] * 3
                if not spec.smart:
                    readers = list(zip(spec.seeds, clients, strict=True))
                for via, reader in readers:
                    n += 1
                    read = partial(reader.get, key, namespace=ns)
                    _recorded(history, spec, n, "get", ns, key, None, via, read)
            if period:
                next_at = max(next_at + period, time.monotonic() - period)
                stop.wait(max(0.0, next_at - time.monotonic()))  # pacing, not a condition
    finally:
        for client in clients:
            client.close()


def run_client(spec: ClientSpec, history: HistoryWriter, stop: threading.Event) -> None:
    """Run one client until ``stop`` is set, recording every op in ``history``."""
    import meshcache

    if spec.role in ("loader-reader", "db-writer"):
        from meshcache.testing.chaos import loaderclients

        if spec.role == "db-writer":
            loaderclients.run_db_writer(spec, history, stop)
        else:
            loaderclients.run_loader_reader(spec, history, stop)
        return
    if spec.role != "mixed":
        run_hot_client(spec, history, stop)
        return

    rng = random.Random(spec.seed)
    seeds = list(spec.seeds) if spec.smart else list(spec.seeds[:1])
    client = meshcache.Client(
        seeds, timeout=spec.timeout, connect_timeout=spec.timeout, smart=spec.smart
    )
    node = None if spec.smart else seeds[0]
    period = 1.0 / spec.rate if spec.rate > 0 else 0.0
    next_at = time.monotonic()
    n = 0
    kinds: tuple[str, ...] = ("set", "get", "delete")
    weights: tuple[float, ...] = (spec.writes, spec.reads, spec.deletes)
    conditional = (spec.setnx, spec.setxx, spec.cas, spec.incr)
    if any(conditional):  # else the op sequence of a seed is what it always was
        kinds += ("setnx", "setxx", "cas", "incr")
        weights += conditional
    try:
        while not stop.is_set():
            n += 1
            ns = rng.choice(spec.namespaces)
            key = f"{spec.key_prefix}k{rng.randrange(spec.keys)}"
            f = rng.choices(kinds, weights)[0]
            if f == "incr":
                key = f"{spec.key_prefix}i{rng.randrange(spec.counters)}"
            value = f"{spec.name}:{n}" if f in VALUE_WRITES else None
            record: dict[str, Any] = {
                "type": "invoke",
                "p": spec.name,
                "n": n,
                "f": f,
                "ns": ns,
                "key": key,
            }
            if value is not None:
                record["value"] = value
            if node is not None:
                record["node"] = node
            history.write(record)
            done: dict[str, Any] = {"p": spec.name, "n": n, "f": f}
            try:
                if f == "set":
                    assert value is not None
                    client.set(key, value.encode(), namespace=ns)
                elif f == "delete":
                    client.delete(key, namespace=ns)
                elif f == "get":
                    got = client.get(key, namespace=ns)
                    done["value"] = None if got is None else got.decode("utf-8", "replace")
                else:
                    _conditional(client, f, ns, key, value, done, rng.uniform(0.0, CAS_PAUSE))
                done["type"] = OK
            except _GetsFailed as failed:  # a cas whose GETS failed wrote nothing
                done["type"], done["error"] = FAIL, _outcome("get", failed.error)[1]
            except Exception as exc:  # every outcome is recorded, a client bug's too
                done["type"], done["error"] = _outcome(f, exc)
            done["t"] = now()
            history.write(done)
            if period:
                next_at = max(next_at + period, time.monotonic() - period)
                stop.wait(max(0.0, next_at - time.monotonic()))  # pacing, not a condition
    finally:
        client.close()


def run_worker(spec: WorkerSpec) -> int:
    """Run every client of ``spec`` until stdin closes or ``stop_after`` passes; exit code."""
    stop = threading.Event()
    history = HistoryWriter(Path(spec.history))

    def watch_stdin() -> None:
        try:
            sys.stdin.buffer.read()
        finally:
            stop.set()

    threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()
    threads = [
        threading.Thread(target=run_client, args=(c, history, stop), name=c.name)
        for c in spec.clients
    ]
    for t in threads:
        t.start()
    stop.wait(spec.stop_after)
    stop.set()
    for t in threads:
        t.join()
    history.close()
    return 0


__all__ = [
    "HOT_LEASE",
    "HOT_NAMESPACE",
    "HOT_POLICY",
    "LEVEL_OF",
    "NAMESPACES",
    "ClientSpec",
    "WorkerSpec",
    "run_client",
    "run_hot_client",
    "run_worker",
]
