"""The history of a chaos run: every client operation and every fault, as JSON lines.

One file per run; any number of threads and processes append to it (each record is one
``write`` on an ``O_APPEND`` descriptor, so records never interleave). Times are
``time.monotonic()`` seconds, which all processes of one machine share.

Records (``p``: the process that wrote it: a client's name, ``nemesis`` or ``harness``):

* ``{"type": "invoke", "p", "n", "f", "ns", "key", "value", "t"}`` — client ``p`` starts its
  ``n``-th operation on ``key`` of namespace ``ns``: ``f`` is ``set`` (``value``: the unique
  value written), ``get``, ``delete``, or a conditional write: ``setnx`` / ``setxx`` (``SET``
  with ``nx`` / ``xx``, ``value`` as for ``set``), ``cas`` (``GETS``, then ``CAS`` of ``value``
  with the version read, when there was one) or ``incr`` (``INCR`` of a counter key);
* ``{"type": "ok" | "fail" | "unknown", "p", "n", "t", ...}`` — how it ended: ``ok`` was
  acknowledged (a ``get`` carries the ``value`` it read, null for a miss; a conditional
  write ``stored``: whether its condition held and it wrote; ``incr`` its ``result``; ``cas``
  the value its ``GETS`` ``seen``, when that answered, ``seen_at``, and when the ``CAS`` was
  sent, ``cas_at``); ``fail`` certainly did
  not take effect; ``unknown`` may have (a timeout, a broken connection, ``WRITE_FAILED``,
  ``UNAVAILABLE``); ``error`` says why. An invoke with no completion (the client was killed)
  counts as unknown;
* ``{"type": "info", "p": "nemesis", "f", "value", "t"}`` — a fault started or ended (``f``:
  ``faults``, ``heal``, ``kill``, ``restart``, ``pause``, ``resume``, ``ns_set``, ...);
* ``{"type": "meta", ...}`` — anything else the harness notes (a cycle's seed and schedule).

:func:`load` pairs invocations with completions into :class:`Op` values for the checkers.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OK = "ok"
FAIL = "fail"
UNKNOWN = "unknown"
COMPLETIONS = frozenset({OK, FAIL, UNKNOWN})
#: Operations that write: plain ones and conditional ones.
WRITES = frozenset({"set", "delete", "setnx", "setxx", "cas", "incr"})
#: Writes whose effect is a unique value (``value``), when they take effect.
VALUE_WRITES = frozenset({"set", "setnx", "setxx", "cas"})


def now() -> float:
    """The history's clock: ``time.monotonic()``, the same in every process of the machine."""
    return time.monotonic()


class HistoryWriter:
    """Appends records to a history file; share one per process between threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (``t`` is added when missing)."""
        record.setdefault("t", now())
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd is None:
                raise ValueError("history closed")
            os.write(self._fd, line)

    def event(self, f: str, value: Any = None, **extra: Any) -> None:
        """A nemesis record: fault ``f`` with its description ``value``."""
        self.write({"type": "info", "p": "nemesis", "f": f, "value": value, **extra})

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class Op:
    """One client operation, invocation and completion together.

    ``complete`` is None when the operation never completed; ``type`` is then ``unknown``.
    ``value`` is the value written (``set``, ``setnx``, ``setxx``, ``cas``) or read (``get``).
    ``stored``: an acknowledged conditional write's answer (its condition held); ``result``:
    an acknowledged ``incr``'s new value; ``seen`` / ``seen_at``: what a ``cas``'s ``GETS``
    read and when it answered; ``cas_at``: when its ``CAS`` was sent.
    """

    process: str
    n: int
    f: str
    ns: str
    key: str
    invoke: float
    type: str = UNKNOWN
    complete: float | None = None
    value: str | None = None
    error: str | None = None
    node: str | None = None
    stored: bool | None = None
    result: int | None = None
    seen: str | None = None
    seen_at: float | None = None
    cas_at: float | None = None

    @property
    def latency(self) -> float | None:
        return None if self.complete is None else self.complete - self.invoke

    @property
    def end(self) -> float:
        """By when the op had certainly taken effect (or not): an acknowledged or refused op's
        completion; never for an unknown one, which may apply long after its client gave up
        (a request held in TCP's retransmission queue across a partition arrives at the heal).
        """
        if self.complete is None or self.type == UNKNOWN:
            return float("inf")
        return self.complete

    @property
    def is_write(self) -> bool:
        return self.f in WRITES

    @property
    def may_write_value(self) -> bool:
        """Whether this op may have stored its ``value``: a value write acknowledged (and, if
        conditional, its condition held) or whose outcome is unknown."""
        if self.f not in VALUE_WRITES:
            return False
        return self.type == UNKNOWN or (self.type == OK and self.stored is not False)


@dataclass(slots=True)
class History:
    """A loaded history: operations in invocation order, nemesis events and meta records."""

    ops: list[Op] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    meta: list[dict[str, Any]] = field(default_factory=list)

    def writes(self, ns: str | None = None) -> Iterator[Op]:
        return (op for op in self.ops if op.is_write and (ns is None or op.ns == ns))

    def keys(self) -> set[tuple[str, str]]:
        """Every ``(namespace, key)`` some operation touched."""
        return {(op.ns, op.key) for op in self.ops}

    def between(self, start: float, end: float) -> list[Op]:
        """Operations invoked in ``[start, end)``."""
        return [op for op in self.ops if start <= op.invoke < end]

    def select(self, *, prefix: str) -> History:
        """The operations on keys starting with ``prefix`` (one cycle's), with every event."""
        return History([op for op in self.ops if op.key.startswith(prefix)], self.events, self.meta)


def read_records(path: Path, offset: int = 0) -> Iterator[dict[str, Any]]:
    """The records of a history file from byte ``offset`` on; a torn line (a writer killed
    mid-write) is skipped."""
    with open(path, "rb") as f:
        f.seek(offset)
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


class HistoryTail:
    """Reads the records appended to a history file since the last :meth:`read`."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records


def build(records: Iterable[dict[str, Any]]) -> History:
    """Pair invocations with completions (by ``p`` and ``n``)."""
    history = History()
    open_ops: dict[tuple[str, int], Op] = {}
    for r in sorted(records, key=lambda r: float(r.get("t", 0.0))):
        kind = r.get("type")
        if kind == "invoke":
            op = Op(
                process=str(r["p"]),
                n=int(r["n"]),
                f=str(r["f"]),
                ns=str(r.get("ns", "")),
                key=str(r.get("key", "")),
                invoke=float(r["t"]),
                value=r.get("value") if r["f"] in VALUE_WRITES else None,
                node=r.get("node"),
            )
            open_ops[(op.process, op.n)] = op
            history.ops.append(op)
        elif kind in COMPLETIONS:
            found = open_ops.pop((str(r["p"]), int(r["n"])), None)
            if found is None:
                continue
            op = found
            op.type = str(kind)
            op.complete = float(r["t"])
            op.error = r.get("error")
            if op.f == "get" and kind == OK:
                op.value = r.get("value")
            elif kind == OK and op.f != "get":
                stored, result = r.get("stored"), r.get("result")
                op.stored = stored if isinstance(stored, bool) else None
                op.result = result if type(result) is int else None
            if op.f == "cas":
                op.seen = r.get("seen")
                seen_at, cas_at = r.get("seen_at"), r.get("cas_at")
                op.seen_at = float(seen_at) if isinstance(seen_at, int | float) else None
                op.cas_at = float(cas_at) if isinstance(cas_at, int | float) else None
        elif kind == "info":
            history.events.append(r)
        elif kind == "meta":
            history.meta.append(r)
    return history


def load(path: Path) -> History:
    """Read and pair a history file (see the module doc for its records)."""
    return build(read_records(path))


__all__ = [
    "COMPLETIONS",
    "FAIL",
    "OK",
    "UNKNOWN",
    "VALUE_WRITES",
    "WRITES",
    "History",
    "HistoryTail",
    "HistoryWriter",
    "Op",
    "build",
    "load",
    "now",
    "read_records",
]
