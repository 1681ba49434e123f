"""The chaos workload: clients that write, read and delete, recording every op in the history.

A worker is one process (``python -m meshcache.testing.chaos worker SPEC``), started by the
harness inside an endpoint's network namespace, running one thread per :class:`ClientSpec`.
Each thread owns a :class:`meshcache.Client` — smart (ring-routed over every node) or plain
(``smart=False``, one node) — and loops: pick an op from its seeded rng, record ``invoke``,
run it, record ``ok`` / ``fail`` / ``unknown``, wait for its next slot (``rate`` ops/s; 0 runs
back to back). Values are unique (``<client>:<n>``), so a read names the write it saw.

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
from pathlib import Path
from typing import Any

from meshcache.errors import CommandError, ErrorCode
from meshcache.testing.chaos.history import FAIL, OK, UNKNOWN, HistoryWriter, now

#: Consistency level → the chaos namespace whose policy acknowledges writes at that level.
NAMESPACES = {"one": "chaos-one", "quorum": "chaos-quorum", "all": "chaos-all"}
LEVEL_OF = {ns: level for level, ns in NAMESPACES.items()}

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
        rate: ops per second (0: back to back).
        timeout: the client's timeout for a whole call (meshcache.Client ``timeout``).
        seed: the rng seed of its op sequence.
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
    rate: float = 40.0
    timeout: float = 5.0
    seed: int = 0

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


def run_client(spec: ClientSpec, history: HistoryWriter, stop: threading.Event) -> None:
    """Run one client until ``stop`` is set, recording every op in ``history``."""
    import meshcache

    rng = random.Random(spec.seed)
    seeds = list(spec.seeds) if spec.smart else list(spec.seeds[:1])
    client = meshcache.Client(
        seeds, timeout=spec.timeout, connect_timeout=spec.timeout, smart=spec.smart
    )
    node = None if spec.smart else seeds[0]
    period = 1.0 / spec.rate if spec.rate > 0 else 0.0
    next_at = time.monotonic()
    n = 0
    try:
        while not stop.is_set():
            n += 1
            ns = rng.choice(spec.namespaces)
            key = f"{spec.key_prefix}k{rng.randrange(spec.keys)}"
            f = rng.choices(("set", "get", "delete"), (spec.writes, spec.reads, spec.deletes))[0]
            value = f"{spec.name}:{n}" if f == "set" else None
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
                if value is not None:
                    client.set(key, value.encode(), namespace=ns)
                elif f == "delete":
                    client.delete(key, namespace=ns)
                else:
                    got = client.get(key, namespace=ns)
                    done["value"] = None if got is None else got.decode("utf-8", "replace")
                done["type"] = OK
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


__all__ = ["LEVEL_OF", "NAMESPACES", "ClientSpec", "WorkerSpec", "run_client", "run_worker"]
