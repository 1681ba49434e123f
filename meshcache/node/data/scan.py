"""Walking a namespace's keys over the whole mesh: ``SCAN``'s cursor and steps.

A key lives on several members (its owners, copies of hot keys aside), so each member gives
only the keys whose first read owner, by its ring, it is: over one ring, every key comes from
exactly one member. A cursor names a member and a position among the tables its store keeps
the namespace's keys in (:meth:`~meshcache.store.Store.table_items`): ``slot << 20 |
position``, where the slot is a number of the member's id (a hash, plus one, so that only a
walk's end is 0). Members are walked in slot order, each from its first table to its last; a
step asks the member under the cursor (itself, or another over ``SCAN_PART``) for the keys of
its tables from the cursor's on, at least one whole table, until ``count`` keys matched (so
``count`` is a hint, as in Redis), and goes on to the next member while fewer did and what it
found weighs less than its aim (:data:`SLICE_BYTES`, a quarter of the frame limit when that is
smaller). A table whose keys would make an answer of more than the aim is given in slices by
key token instead, a slice a step (the position says how many slices and which is next). A
member that joins or leaves meanwhile takes its place by slot, so the others' places do not
move.

What a walk promises is Redis's: a key held from its start to its end, on a ring that did not
change meanwhile, comes back at least once; one written or removed meanwhile may come back or
not; a key can come back twice (a namespace's first table splits into many once it grows, and
a ring that changed moves keys between members). A member that does not answer fails the step
with ``UNAVAILABLE``; the same cursor can be tried again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from itertools import compress
from typing import Any, cast

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
from meshcache.ring.tokens import RangeSet, key_token
from meshcache.store.keyglob import compile_glob
from meshcache.store.store import Store
from meshcache.store.values import TypedValue

#: A cursor is ``slot << POSITION_BITS | position``; a position within a member is ``table <<
#: 14 | shift << 10 | slice``: its table (a namespace uses at most 61), and which of the table's
#: ``2 ** shift`` slices (by key token) comes next when the table's keys are too many bytes for
#: one answer.
POSITION_BITS = 20
SHIFT_BITS, SLICE_BITS = 4, 10
#: The most slices a table is cut into: ``2 ** MAX_SHIFT``.
MAX_SHIFT = SLICE_BITS
#: The bytes of keys a step's answer aims at most for: a table whose found keys weigh more is
#: walked in slices (so an answer stays far below the frame limit whatever the keys). A node
#: whose frame limit is small aims lower (:func:`slice_bytes_for`).
SLICE_BYTES = 1 << 20
#: What a key weighs in an answer beyond its bytes (msgpack's header of a bin).
KEY_OVERHEAD = 3
#: The keys a step returns by default, as Redis's ``COUNT``.
DEFAULT_COUNT = 10
#: Keys filtered between two checkpoints (the ownership test costs about 0.4 us a key).
CHUNK = 2048
#: How long a step waits for another member's part.
PART_TIMEOUT = 10.0
#: Times a mesh-wide count is taken again when the members answered by different rings.
MESH_COUNT_ROUNDS = 3
#: How long a mesh-wide count waits for one member's owned count.
MESH_COUNT_TIMEOUT = 30.0
#: Keys a step looks at, at least, before it returns with fewer than ``count`` found (times
#: ``count``; a table is always looked at whole): a pattern that matches little does not make
#: one step walk a member's every key.
LOOK_PER_COUNT = 10


def slice_bytes_for(max_frame_bytes: int) -> int:
    """The bytes of keys a step aims for under a frame limit: a part of a step may carry up
    to about twice its aim, and a step up to about three times, so a quarter of the limit at
    most."""
    return max(1, min(SLICE_BYTES, max_frame_bytes // 4))


def weight(keys: list[bytes]) -> int:
    """What ``keys`` weigh in an answer."""
    return sum(map(len, keys)) + KEY_OVERHEAD * len(keys)


def member_slot(node_id: str) -> int:
    """The member's place in a walk: a 40-bit hash of its id, plus one (two members with one
    place would be walked as one)."""
    return int.from_bytes(hashlib.blake2b(node_id.encode(), digest_size=5).digest(), "big") + 1


def position(table: int, shift: int = 0, slice_: int = 0) -> int:
    """A position within a member: its ``table``, and slice ``slice_`` of ``2 ** shift``."""
    return table << (SHIFT_BITS + SLICE_BITS) | shift << SLICE_BITS | slice_


def _unpack(where: int) -> tuple[int, int, int]:
    mask = (1 << SLICE_BITS) - 1
    return (
        where >> (SHIFT_BITS + SLICE_BITS),
        min(MAX_SHIFT, (where >> SLICE_BITS) & ((1 << SHIFT_BITS) - 1)),
        where & mask,
    )


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
    store: Store,
    namespace: str,
    where: int,
    keep: ScanFilter,
    owned: RangeSet | None,
    slice_bytes: int = SLICE_BYTES,
) -> tuple[int, list[bytes]]:
    """This node's part of a step: the live keys of its tables from position ``where`` on,
    owned by it (``owned``: the ranges of its ring it is the first read owner of; None: all),
    matching ``keep``, whole tables until ``keep.count`` keys are found or ``LOOK_PER_COUNT``
    times as many were looked at, or the next table's would take them past ``slice_bytes``.
    A table whose found keys alone weigh more is given a slice at a time, by key token, each
    slice a step. Returns the next position (-1: none left) and the keys.

    Raises:
        CommandError: ``NO_SUCH_NAMESPACE``.
    """
    match: Callable[[bytes], bool] | None = None
    if keep.match is not None and keep.match != b"*":
        match = compile_glob(keep.match)  # (``*`` is every key, the empty one too, as in Redis)
    table, shift, slice_ = _unpack(where)
    found: list[bytes] = []
    looked = carried = 0  # keys looked at; bytes of the keys found
    while True:
        part = store.table_items(namespace, table)
        if part is None:
            return -1, found
        keys, entries = part
        looked += len(keys)
        if keep.type is not None:
            wanted = keep.type
            keys = [k for k, e in zip(keys, entries, strict=True) if _type_name(e) == wanted]
        mine: list[bytes] = []
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            if owned is not None:
                chunk = list(compress(chunk, owned.mask(chunk)))
            if match is not None:
                chunk = [k for k in chunk if match(k)]
            mine += chunk
            if len(keys) > CHUNK:
                await trio.lowlevel.checkpoint()
        if not shift:
            heavy = weight(mine)
            if found and carried + heavy > slice_bytes:
                return position(table), found  # the next step starts with it
            carried += heavy
            while heavy >> shift > slice_bytes and shift < MAX_SHIFT:
                shift += 1
        if shift:
            last = (1 << shift) - 1
            return (
                position(table, shift, slice_ + 1) if slice_ < last else position(table + 1),
                found + [k for k in mine if key_token(k) & last == slice_],
            )
        found += mine
        table += 1
        if len(found) >= keep.count or looked >= LOOK_PER_COUNT * keep.count:
            return position(table), found


def _type_name(entry: bytes | TypedValue) -> str:
    """``string`` for a plain value, else the typed value's kind (``TYPE``'s names)."""
    return "string" if type(entry) is bytes else cast(TypedValue, entry).kind


class KeyScan:
    """The steps of walks over one node's mesh (see the module docstring), and the counts of
    the keys each member is the first read owner of, which add up to the mesh's.

    Args:
        node_id: this node.
        store: its store.
        ring: the ring it routes by, now.
        alive: whether a member is worth asking.
        call: a request to another member, ``(node_id, op, namespace, args, timeout=)``.
        slice_bytes: the bytes of keys a part of a step aims for (:func:`slice_bytes_for` the
            frame limit), and a step across members goes on to the next one only below it.
    """

    def __init__(
        self,
        node_id: str,
        store: Store,
        *,
        ring: Callable[[], Any],
        alive: Callable[[str], bool],
        call: Callable[..., Awaitable[Any]],
        slice_bytes: int = SLICE_BYTES,
    ) -> None:
        self._node_id = node_id
        self._store = store
        self._ring = ring
        self._alive = alive
        self._call = call
        self._slice_bytes = slice_bytes

    def owned(self, ring: Any) -> RangeSet | None:
        """The ranges of ``ring`` this node is the first read owner of; None when the ring has
        no read member (a node outside a mesh coordinates every key it has)."""
        if not any(m.state in READ_STATES for m in ring.members):
            return None
        return RangeSet(ring.owned_ranges(self._node_id))

    async def part(
        self, namespace: str, where: int, keep: ScanFilter, aim: int | None = None
    ) -> tuple[int, list[bytes]]:
        """This node's part of a step from position ``where``: the next position (-1: none
        left) and the keys. ``aim``: the asking member's, when it asked (its frame limit may
        be smaller than this node's)."""
        owned = self.owned(self._ring())
        limit = self._slice_bytes if aim is None else max(1, min(aim, self._slice_bytes))
        return await scan_tables(self._store, namespace, where, keep, owned, limit)

    def owned_count(self, namespace: str) -> Any:
        """``{"count": n, "ring_version": v}``: the live keys of ``namespace`` whose first
        read owner by this node's ring (config version ``v``) is this node. At once for a small
        namespace; a coroutine for a large one, which counts a table at a time in pieces of
        :data:`CHUNK` keys with a checkpoint after each.

        Raises:
            CommandError: ``NO_SUCH_NAMESPACE``.
        """
        store = self._store
        count: int = store.execute(namespace, "DBSIZE", [])  # drops expired keys first
        ring = self._ring()
        mine = self.owned(ring)
        if mine is None:
            return {"count": count, "ring_version": ring.version}
        if count <= CHUNK:
            owned = sum(sum(mine.mask(part)) for part in store.key_parts(namespace))
            return {"count": owned, "ring_version": ring.version}
        return _count_in_pieces(mine, store.key_parts(namespace), ring.version)

    async def mesh_count(self, namespace: str) -> int:
        """The namespace's keys on the whole mesh, each counted once: every read member's
        :meth:`owned_count` (asked with ``DBSIZE``), all at one ring version, taken again
        while the versions differ, :data:`MESH_COUNT_ROUNDS` times at most.

        Raises:
            CommandError: ``UNAVAILABLE`` (a member did not answer, or the ring kept changing),
                ``NO_SUCH_NAMESPACE``.
        """
        for _ in range(MESH_COUNT_ROUNDS):
            ring = self._ring()
            readers = [m.node_id for m in ring.members if m.state in READ_STATES]
            answers: list[Any] = []
            for node_id in readers or [self._node_id]:
                if node_id == self._node_id:
                    answer = self.owned_count(namespace)
                    if not isinstance(answer, dict):
                        answer = await answer
                else:
                    answer = await self._ask(
                        node_id, "DBSIZE", namespace, [{"owned": True}], MESH_COUNT_TIMEOUT
                    )
                if (
                    not isinstance(answer, dict)
                    or type(answer.get("count")) is not int
                    or type(answer.get("ring_version")) is not int
                ):
                    raise UnavailableError(message=f"DBSIZE: {node_id} answered {answer!r}"[:200])
                answers.append(answer)
            # Every member at the ring the readers were taken from: one that moved on may
            # count keys a member left out of this list owns by now.
            if {a["ring_version"] for a in answers} == {ring.version}:
                return sum(a["count"] for a in answers)
        raise UnavailableError(message="DBSIZE: the ring kept changing while counting; try again")

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
        slot, where = cursor >> POSITION_BITS, cursor & ((1 << POSITION_BITS) - 1)
        found: list[bytes] = []
        carried = 0  # what the keys found weigh: a step goes on to the next member below aim
        for member_slot_, node_id in members:
            if member_slot_ < slot:
                continue
            if member_slot_ > slot:
                where = 0  # the member the cursor named is gone: the next one from its start
            if node_id == self._node_id:
                following, keys = await self.part(namespace, where, keep)
            else:
                following, keys = await self._remote(node_id, namespace, where, keep)
            found += keys
            carried += weight(keys)
            if following >= 0:
                return member_slot_ << POSITION_BITS | following, found
            slot, where = member_slot_ + 1, 0
            if len(found) >= keep.count or carried >= self._slice_bytes:
                break
        else:
            return 0, found
        later = [s for s, _ in members if s >= slot]
        return (later[0] << POSITION_BITS if later else 0), found

    async def _remote(
        self, node_id: str, namespace: str, where: int, keep: ScanFilter
    ) -> tuple[int, list[bytes]]:
        """Another member's part of a step (``SCAN_PART``).

        Raises:
            CommandError: ``UNAVAILABLE`` when it is down, does not answer in time or answers
                something that is no part; its own refusal as it is.
        """
        options = keep.to_options()
        if self._slice_bytes < SLICE_BYTES:  # a frame limit under 4 MiB here: say so
            options["aim"] = self._slice_bytes
        answer = await self._ask(node_id, "SCAN_PART", namespace, [where, options], PART_TIMEOUT)
        if (
            type(answer) is not list
            or len(answer) != 2
            or type(answer[0]) is not int
            or not -1 <= answer[0] < 1 << POSITION_BITS
            or type(answer[1]) is not list
            or not all(type(k) is bytes for k in answer[1])
        ):
            raise UnavailableError(
                message=f"SCAN: member {node_id} answered no part: {answer!r}"[:200]
            )
        return answer[0], answer[1]

    async def _ask(
        self, node_id: str, op: str, namespace: str, args: list[Any], timeout: float
    ) -> Any:
        """Another member's answer to ``op``.

        Raises:
            CommandError: ``UNAVAILABLE`` when it is down or does not answer in time; its own
                refusal as it is.
        """
        if not self._alive(node_id):
            raise UnavailableError(message=f"{op}: member {node_id} is down; try again")
        try:
            return await self._call(node_id, op, namespace, args, timeout=timeout)
        except (
            MeshcacheConnectionError,
            MeshcacheTimeout,
            RemoteProtocolError,
            LocalProtocolError,
        ) as exc:
            raise UnavailableError(
                message=f"{op}: member {node_id} did not answer ({exc}); try again"
            ) from exc


async def _count_in_pieces(
    mine: RangeSet, parts: Iterator[list[bytes]], ring_version: int
) -> dict[str, int]:
    """:meth:`KeyScan.owned_count` of a large namespace: a store table at a time (each copied
    when it is reached), in pieces of at most :data:`CHUNK` keys with a checkpoint after each."""
    owned = 0
    for part in parts:
        for start in range(0, len(part), CHUNK):
            owned += sum(mine.mask(part[start : start + CHUNK]))
            await trio.lowlevel.checkpoint()
    return {"count": owned, "ring_version": ring_version}


__all__ = [
    "CHUNK",
    "DEFAULT_COUNT",
    "LOOK_PER_COUNT",
    "MESH_COUNT_ROUNDS",
    "PART_TIMEOUT",
    "POSITION_BITS",
    "SLICE_BYTES",
    "KeyScan",
    "ScanFilter",
    "member_slot",
    "position",
    "scan_tables",
    "slice_bytes_for",
    "weight",
]
