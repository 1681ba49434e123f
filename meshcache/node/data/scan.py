"""Walking a namespace's keys over the whole mesh: ``SCAN``'s cursor and steps.

A key lives on several members (its owners, copies of hot keys aside), so each member gives
only the keys whose first read owner, by its ring, it is: over one ring, every key comes from
exactly one member. A cursor names a member and one of the tables its store keeps the
namespace's keys in (:meth:`~meshcache.store.Store.table_items`): ``slot << 8 | table``, where
the slot is a number of the member's id (a hash, plus one, so that only a walk's end is 0).
Members are walked in slot order, each from its first table to its last; a step asks the
member under the cursor (itself, or another over ``SCAN_PART``) for the keys of its tables from
the cursor's on, at least one whole table, until ``count`` keys matched (so ``count`` is a
hint, as in Redis), and goes on to the next member while fewer did. A member that joins or
leaves meanwhile takes its place by slot, so the others' places do not move.

What a walk promises is Redis's: a key held from its start to its end, on a ring that did not
change meanwhile, comes back at least once; one written or removed meanwhile may come back or
not; a key can come back twice (a namespace's first table splits into many once it grows, and
a ring that changed moves keys between members). A member that does not answer fails the step
with ``UNAVAILABLE``; the same cursor can be tried again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import compress
from typing import Any

import trio

from meshcache.errors import (
    BadRequestError,
    LocalProtocolError,
    MeshcacheConnectionError,
    MeshcacheTimeout,
    RemoteProtocolError,
    UnavailableError,
)
from meshcache.ring import READ_STATES
from meshcache.ring.tokens import RangeSet
from meshcache.store.keyglob import compile_glob
from meshcache.store.store import Store
from meshcache.store.values import TypedValue

#: Bits of a cursor that name the table (a namespace uses at most 61).
TABLE_BITS = 8
#: The keys a step returns by default, as Redis's ``COUNT``.
DEFAULT_COUNT = 10
#: Keys filtered between two checkpoints (the ownership test costs about 0.4 us a key).
CHUNK = 2048
#: How long a step waits for another member's part.
PART_TIMEOUT = 10.0
#: Keys a step looks at, at least, before it returns with fewer than ``count`` found (times
#: ``count``; a table is always looked at whole): a pattern that matches little does not make
#: one step walk a member's every key.
LOOK_PER_COUNT = 10


def member_slot(node_id: str) -> int:
    """The member's place in a walk: a 48-bit hash of its id, plus one (two members with one
    place would be walked as one)."""
    return int.from_bytes(hashlib.blake2b(node_id.encode(), digest_size=6).digest(), "big") + 1


@dataclass(frozen=True, slots=True)
class ScanFilter:
    """What a step keeps: ``count`` keys at least (a hint), those matching ``match`` (a Redis
    glob) and of type ``type``."""

    count: int = DEFAULT_COUNT
    match: bytes | None = None
    type: str | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ScanFilter:
        """From a request's options map (``count``, ``match``, ``type``).

        Raises:
            BadRequestError: ``count`` below 1, ``match`` not text or bytes.
        """
        count = options.get("count")
        if count is None:
            count = DEFAULT_COUNT
        elif count < 1:
            raise BadRequestError(message=f"SCAN: count must be at least 1, not {count}")
        match = options.get("match")
        if isinstance(match, str):
            match = match.encode()
        type_ = options.get("type")
        return cls(count, match, type_.lower() if isinstance(type_, str) else None)

    def to_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"count": self.count}
        if self.match is not None:
            options["match"] = self.match
        if self.type is not None:
            options["type"] = self.type
        return options


async def scan_tables(
    store: Store, namespace: str, table: int, keep: ScanFilter, owned: RangeSet | None
) -> tuple[int, list[bytes]]:
    """This node's part of a step: the live keys of its tables from ``table`` on, owned by it
    (``owned``: the ranges of its ring it is the first read owner of; None: all), matching
    ``keep``, whole tables until ``keep.count`` keys are found or ``LOOK_PER_COUNT`` times as
    many were looked at. Returns the next table to walk (-1: none left) and the keys.

    Raises:
        CommandError: ``NO_SUCH_NAMESPACE``.
    """
    match: Callable[[bytes], bool] | None = None
    if keep.match is not None and keep.match != b"*":
        match = compile_glob(keep.match)  # (``*`` is every key, the empty one too, as in Redis)
    found: list[bytes] = []
    looked = 0
    while True:
        part = store.table_items(namespace, table)
        if part is None:
            return -1, found
        keys, entries = part
        looked += len(keys)
        if keep.type is not None:
            wanted = keep.type
            kinds = ["string" if type(e) is bytes else _kind(e) for e in entries]
            keys = [k for k, kind in zip(keys, kinds, strict=True) if kind == wanted]
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            if owned is not None:
                chunk = list(compress(chunk, owned.mask(chunk)))
            if match is not None:
                chunk = [k for k in chunk if match(k)]
            found += chunk
            if len(keys) > CHUNK:
                await trio.lowlevel.checkpoint()
        table += 1
        if len(found) >= keep.count or looked >= LOOK_PER_COUNT * keep.count:
            return table, found


def _kind(entry: bytes | TypedValue) -> str:
    assert isinstance(entry, TypedValue)
    return entry.kind


class KeyScan:
    """The steps of walks over one node's mesh (see the module docstring).

    Args:
        node_id: this node.
        store: its store.
        ring: the ring it routes by, now.
        alive: whether a member is worth asking.
        call: a request to another member, ``(node_id, op, namespace, args, timeout=)``.
    """

    def __init__(
        self,
        node_id: str,
        store: Store,
        *,
        ring: Callable[[], Any],
        alive: Callable[[str], bool],
        call: Callable[..., Awaitable[Any]],
    ) -> None:
        self._node_id = node_id
        self._store = store
        self._ring = ring
        self._alive = alive
        self._call = call

    def owned(self) -> RangeSet | None:
        """The ranges this node is the first read owner of; None when the ring has no read
        member (a node alone holds every key it has)."""
        ring = self._ring()
        if not any(m.state in READ_STATES for m in ring.members):
            return None
        return RangeSet(ring.owned_ranges(self._node_id))

    async def part(self, namespace: str, table: int, keep: ScanFilter) -> tuple[int, list[bytes]]:
        """This node's part of a step another member asked for."""
        return await scan_tables(self._store, namespace, table, keep, self.owned())

    async def step(self, namespace: str, cursor: int, keep: ScanFilter) -> tuple[int, list[bytes]]:
        """One step of a walk from ``cursor`` (0: the start): the next cursor (0: the walk is
        over) and the keys found.

        Raises:
            CommandError: ``UNAVAILABLE`` (a member did not answer: the same cursor can be
                tried again), ``NO_SUCH_NAMESPACE``.
        """
        ring = self._ring()
        members = sorted(
            (member_slot(m.node_id), m.node_id) for m in ring.members if m.state in READ_STATES
        )
        if not members:
            members = [(member_slot(self._node_id), self._node_id)]
        slot, table = cursor >> TABLE_BITS, cursor & ((1 << TABLE_BITS) - 1)
        found: list[bytes] = []
        for member_slot_, node_id in members:
            if member_slot_ < slot:
                continue
            if member_slot_ > slot:
                table = 0  # the member the cursor named is gone: the next one from its start
            if node_id == self._node_id:
                following, keys = await self.part(namespace, table, keep)
            else:
                following, keys = await self._remote(node_id, namespace, table, keep)
            found += keys
            if following >= 0:
                return member_slot_ << TABLE_BITS | following, found
            slot, table = member_slot_ + 1, 0
            if len(found) >= keep.count:
                break
        else:
            return 0, found
        later = [s for s, _ in members if s >= slot]
        return (later[0] << TABLE_BITS if later else 0), found

    async def _remote(
        self, node_id: str, namespace: str, table: int, keep: ScanFilter
    ) -> tuple[int, list[bytes]]:
        """Another member's part of a step (``SCAN_PART``).

        Raises:
            CommandError: ``UNAVAILABLE`` when it is down, does not answer in time or answers
                something that is no part; its own refusal as it is.
        """
        if not self._alive(node_id):
            raise UnavailableError(message=f"SCAN: member {node_id} is down; try the cursor again")
        try:
            answer = await self._call(
                node_id, "SCAN_PART", namespace, [table, keep.to_options()], timeout=PART_TIMEOUT
            )
        except (
            MeshcacheConnectionError,
            MeshcacheTimeout,
            RemoteProtocolError,
            LocalProtocolError,
        ) as exc:
            raise UnavailableError(
                message=f"SCAN: member {node_id} did not answer ({exc}); try the cursor again"
            ) from exc
        if (
            type(answer) is not list
            or len(answer) != 2
            or type(answer[0]) is not int
            or type(answer[1]) is not list
            or not all(type(k) is bytes for k in answer[1])
        ):
            raise UnavailableError(
                message=f"SCAN: member {node_id} answered no part: {answer!r}"[:200]
            )
        return answer[0], answer[1]


__all__ = [
    "DEFAULT_COUNT",
    "LOOK_PER_COUNT",
    "PART_TIMEOUT",
    "TABLE_BITS",
    "KeyScan",
    "ScanFilter",
    "member_slot",
    "scan_tables",
]
