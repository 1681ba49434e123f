"""Handlers of the hash, list, set and sorted-set ops (docs/protocol.md).

Same calling convention as :mod:`meshcache.store.ops_plain`. Growing writes go through
:meth:`Keyspace.begin_write` / :meth:`Keyspace.end_write` (creation, bounds, rollback);
shrinking writes through :meth:`Keyspace.shrunk` (an emptied value is deleted). Every size
change is applied to the value's ``size`` as it happens, with the per-item costs of
``meshcache/store/sizes.py``, so the namespace's byte count stays exact.
"""

from __future__ import annotations

import math
import weakref
from bisect import bisect_left
from itertools import islice
from typing import Any

from meshcache.errors import BadRequestError, NotFloatError
from meshcache.store import sizes
from meshcache.store.keyspace import Keyspace
from meshcache.store.ops_plain import check_int64, parse_int
from meshcache.store.values import HashValue, ListValue, SetValue, ZSetValue

_BYTES = sizes.BYTES_OVERHEAD
_HASH_PER = sizes.HASH_ITEM + 2 * _BYTES
_LIST_PER = sizes.LIST_ITEM + _BYTES
_SET_PER = sizes.SET_ITEM + _BYTES
_ZSET_PER = sizes.ZSET_ITEM + _BYTES


def clamp_range(start: int, stop: int, n: int) -> tuple[int, int]:
    """Redis's inclusive ``start..stop`` with negative indexes, as a half-open ``[lo, hi)``
    (empty when ``lo >= hi``)."""
    if start < 0:
        start = max(start + n, 0)
    if stop < 0:
        stop += n
    if stop >= n:
        stop = n - 1
    return start, stop + 1


# ------------------------------------------------------------------------------------ hashes


def op_hset(ks: Keyspace, args: list[Any]) -> int:
    write = ks.begin_write(args[0], HashValue, args[1:])
    obj = write.obj
    assert isinstance(obj, HashValue)
    data = obj.data
    size = obj.size
    new = 0
    for i in range(1, len(args), 2):
        field = args[i]
        value = args[i + 1]
        old = data.get(field)
        if old is None:
            new += 1
            size += len(field) + len(value) + _HASH_PER
        else:
            size += len(value) - len(old)
        data[field] = value
    obj.size = size
    ks.end_write(write, True)
    return new


def op_hget(ks: Keyspace, args: list[Any]) -> bytes | None:
    obj = ks.read_typed(args[0], HashValue)
    return None if obj is None else obj.data.get(args[1])


def op_hdel(ks: Keyspace, args: list[Any]) -> int:
    key = args[0]
    obj = ks.live_typed(key, HashValue)
    if obj is None:
        return 0
    data = obj.data
    old_size = obj.size
    removed = 0
    for field in args[1:]:
        value = data.pop(field, None)
        if value is not None:
            removed += 1
            obj.size -= len(field) + len(value) + _HASH_PER
    if removed:
        ks.shrunk(key, obj, old_size)
    return removed


def op_hgetall(ks: Keyspace, args: list[Any]) -> dict[bytes, bytes]:
    obj = ks.read_typed(args[0], HashValue)
    return {} if obj is None else dict(obj.data)


def op_hincrby(ks: Keyspace, args: list[Any]) -> int:
    key, field, by = args
    write = ks.begin_write(key, HashValue, args[1:])
    obj = write.obj
    assert isinstance(obj, HashValue)
    old = obj.data.get(field)
    number = check_int64((0 if old is None else parse_int(old)) + by)
    value = b"%d" % number
    obj.data[field] = value
    if old is None:
        obj.size += len(field) + len(value) + _HASH_PER
    else:
        obj.size += len(value) - len(old)
    ks.end_write(write, True)
    return number


def op_hlen(ks: Keyspace, args: list[Any]) -> int:
    obj = ks.read_typed(args[0], HashValue)
    return 0 if obj is None else len(obj.data)


# ------------------------------------------------------------------------------------- lists


def op_lpush(ks: Keyspace, args: list[Any]) -> int:
    write = ks.begin_write(args[0], ListValue, args[1:])
    obj = write.obj
    assert isinstance(obj, ListValue)
    push = obj.data.appendleft
    for value in args[1:]:
        push(value)
        obj.size += len(value) + _LIST_PER
    ks.end_write(write, True)
    return len(obj.data)


def op_rpush(ks: Keyspace, args: list[Any]) -> int:
    write = ks.begin_write(args[0], ListValue, args[1:])
    obj = write.obj
    assert isinstance(obj, ListValue)
    push = obj.data.append
    for value in args[1:]:
        push(value)
        obj.size += len(value) + _LIST_PER
    ks.end_write(write, True)
    return len(obj.data)


def _pop(ks: Keyspace, key: bytes, left: bool) -> bytes | None:
    obj = ks.live_typed(key, ListValue)
    if obj is None:
        return None
    old_size = obj.size
    value = obj.data.popleft() if left else obj.data.pop()
    obj.size -= len(value) + _LIST_PER
    ks.shrunk(key, obj, old_size)
    return value


def _pop_many(ks: Keyspace, key: bytes, count: int, left: bool) -> list[bytes] | None:
    """Up to ``count`` elements from one end, in the order they are popped; None when the
    list is missing (an empty array when ``count`` is 0)."""
    obj = ks.live_typed(key, ListValue)
    if obj is None:
        return None
    data = obj.data
    out = [data.popleft() if left else data.pop() for _ in range(min(count, len(data)))]
    if out:
        old_size = obj.size
        obj.size -= sum(len(value) for value in out) + len(out) * _LIST_PER
        ks.shrunk(key, obj, old_size)
    return out


def _count(op: str, options: dict[str, Any]) -> int | None:
    count = options.get("count")
    if count is not None and count < 0:
        raise BadRequestError(message=f"{op}: count must be >= 0, got {count}")
    return count


def op_lpop(ks: Keyspace, args: list[Any]) -> bytes | list[bytes] | None:
    count = _count("LPOP", args[1])
    return _pop(ks, args[0], True) if count is None else _pop_many(ks, args[0], count, True)


def op_rpop(ks: Keyspace, args: list[Any]) -> bytes | list[bytes] | None:
    count = _count("RPOP", args[1])
    return _pop(ks, args[0], False) if count is None else _pop_many(ks, args[0], count, False)


def op_lrange(ks: Keyspace, args: list[Any]) -> list[bytes]:
    key, start, stop = args
    obj = ks.read_typed(key, ListValue)
    if obj is None:
        return []
    data = obj.data
    n = len(data)
    lo, hi = clamp_range(start, stop, n)
    if lo >= hi:
        return []
    if lo > n - hi:
        # Closer to the tail: walk from the right end instead of over the whole head.
        out = list(islice(reversed(data), n - hi, n - lo))
        out.reverse()
        return out
    return list(islice(data, lo, hi))


def op_llen(ks: Keyspace, args: list[Any]) -> int:
    obj = ks.read_typed(args[0], ListValue)
    return 0 if obj is None else len(obj.data)


# -------------------------------------------------------------------------------------- sets


def op_sadd(ks: Keyspace, args: list[Any]) -> int:
    write = ks.begin_write(args[0], SetValue, args[1:])
    obj = write.obj
    assert isinstance(obj, SetValue)
    data = obj.data
    new = 0
    for member in args[1:]:
        if member not in data:
            data.add(member)
            new += 1
            obj.size += len(member) + _SET_PER
    ks.end_write(write, new > 0)
    return new


def op_srem(ks: Keyspace, args: list[Any]) -> int:
    key = args[0]
    obj = ks.live_typed(key, SetValue)
    if obj is None:
        return 0
    data = obj.data
    old_size = obj.size
    removed = 0
    for member in args[1:]:
        if member in data:
            data.remove(member)
            removed += 1
            obj.size -= len(member) + _SET_PER
    if removed:
        ks.shrunk(key, obj, old_size)
    return removed


def op_sismember(ks: Keyspace, args: list[Any]) -> bool:
    obj = ks.read_typed(args[0], SetValue)
    return obj is not None and args[1] in obj.data


def op_smembers(ks: Keyspace, args: list[Any]) -> list[bytes]:
    obj = ks.read_typed(args[0], SetValue)
    return [] if obj is None else sorted(obj.data)


def op_scard(ks: Keyspace, args: list[Any]) -> int:
    obj = ks.read_typed(args[0], SetValue)
    return 0 if obj is None else len(obj.data)


def op_spop(ks: Keyspace, args: list[Any]) -> bytes | list[bytes] | None:
    """Remove random members (drawn with the keyspace's seeded ``rng`` from the members in
    bytewise order, so a seed replays the same draws): without ``count`` one member or nil,
    with it up to ``count`` members (an empty array for a missing key). The members are sorted
    for the first pop after any other write of the set; a pop leaves them in order for the
    next one (:attr:`Keyspace.set_order`), so a run of pops costs O(members) each."""
    key, options = args
    count = _count("SPOP", options)
    obj = ks.live_typed(key, SetValue)
    if obj is None:
        return None if count is None else []
    wanted = 1 if count is None else min(count, len(obj.data))
    if not wanted:
        return []
    order = ks.set_order
    if order is not None and order[0]() is obj and order[1] == obj.version:
        members = order[2]  # this set's order, left by the pop before and no write since
    else:
        members = sorted(obj.data)
    # A count that takes every member needs no draw: they come in bytewise order.
    popped = members if wanted == len(members) else ks.rng.sample(members, wanted)
    old_size = obj.size
    for member in popped:
        obj.data.remove(member)
    obj.size -= sum(len(member) for member in popped) + wanted * _SET_PER
    ks.shrunk(key, obj, old_size)
    if obj.data:
        for member in popped:
            del members[bisect_left(members, member)]
        ks.set_order = (weakref.ref(obj), obj.version, members)
    else:
        ks.set_order = None
    return popped[0] if count is None else popped


# ------------------------------------------------------------------------------- sorted sets


def _zset_score(obj: ZSetValue, member: bytes, score: float) -> bool:
    """Give ``member`` ``score``; return whether it was new. ``obj.size`` follows."""
    scores = obj.scores
    old = scores.get(member)
    if old is None:
        scores[member] = score
        obj.order.add((score, member))
        obj.size += len(member) + _ZSET_PER
        return True
    if old != score:
        obj.order.remove((old, member))
        obj.order.add((score, member))
        scores[member] = score
    return False


def zadd_flags(options: dict[str, Any]) -> tuple[bool, bool, bool, bool, bool, bool]:
    """ZADD's options as ``(nx, xx, gt, lt, ch, incr)``, checked as Redis checks them.

    Raises:
        BadRequestError: ``nx`` with ``xx``, or two of ``gt``, ``lt`` and ``nx``.
    """
    nx, xx, gt, lt, ch, incr = (
        bool(options.get(name)) for name in ("nx", "xx", "gt", "lt", "ch", "incr")
    )
    if nx and xx:
        raise BadRequestError(message="ZADD: nx and xx exclude each other")
    if (gt and nx) or (lt and nx) or (gt and lt):
        raise BadRequestError(message="ZADD: gt, lt and nx exclude each other")
    return nx, xx, gt, lt, ch, incr


def op_zadd(ks: Keyspace, args: list[Any]) -> int | float | None:
    """Give each member its score, pair by pair, under the options (Redis's ZADD).

    ``nx``: only add new members; ``xx``: only update existing ones (a missing key stays
    missing); ``gt``/``lt``: update an existing member only when its new score is greater /
    less (new members are still added); ``ch``: count the members whose score changed as well
    as those added; ``incr``: add the score to the member's (one pair only) and answer the new
    score, or None when a condition stopped it.

    Returns:
        How many members were added (and, with ``ch``, changed); with ``incr`` the new score
        or None.
    """
    key, pairs, options = args[0], args[1:-1], args[-1]
    nx, xx, gt, lt, ch, incr = zadd_flags(options) if options else _NO_FLAGS
    if incr and len(pairs) != 2:
        raise BadRequestError(message="ZADD: incr takes a single score and member")
    write = ks.begin_write(key, ZSetValue, pairs)
    obj = write.obj
    assert isinstance(obj, ZSetValue)
    if xx and write.created:
        ks.end_write(write, False)  # nothing to update: the key is not created
        return None if incr else 0
    scores = obj.scores
    added = updated = 0
    done = False  # with incr: whether the member was added or updated
    score = 0.0
    for i in range(0, len(pairs), 2):
        score = pairs[i]
        member = pairs[i + 1]
        old = scores.get(member)
        if old is None:
            if xx:
                continue
            _zset_score(obj, member, score)
            added += 1
            done = True
            continue
        if nx:
            continue
        if incr:
            score += old
            if math.isnan(score):
                ks.end_write(write, bool(added or updated))
                raise NotFloatError(message="ZADD: the resulting score is not a number")
        if (lt and score >= old) or (gt and score <= old):
            continue
        done = True
        if score != old:
            _zset_score(obj, member, score)
            updated += 1
    ks.end_write(write, bool(added or updated))
    if incr:
        return score if done else None
    return added + updated if ch else added


_NO_FLAGS = (False, False, False, False, False, False)


def op_zrem(ks: Keyspace, args: list[Any]) -> int:
    key = args[0]
    obj = ks.live_typed(key, ZSetValue)
    if obj is None:
        return 0
    old_size = obj.size
    removed = 0
    for member in args[1:]:
        score = obj.scores.pop(member, None)
        if score is not None:
            obj.order.remove((score, member))
            removed += 1
            obj.size -= len(member) + _ZSET_PER
    if removed:
        ks.shrunk(key, obj, old_size)
    return removed


def op_zscore(ks: Keyspace, args: list[Any]) -> float | None:
    obj = ks.read_typed(args[0], ZSetValue)
    return None if obj is None else obj.scores.get(args[1])


def op_zincrby(ks: Keyspace, args: list[Any]) -> float:
    key, increment, member = args
    write = ks.begin_write(key, ZSetValue, args[1:])
    obj = write.obj
    assert isinstance(obj, ZSetValue)
    score: float = obj.scores.get(member, 0.0) + increment
    if math.isnan(score):
        raise NotFloatError(message="ZINCRBY: the resulting score is not a number")
    _zset_score(obj, member, score)
    ks.end_write(write, True)
    return score


def _with_scores(pairs: list[tuple[float, bytes]], withscores: bool) -> list[Any]:
    if withscores:
        return [[member, score] for score, member in pairs]
    return [member for _, member in pairs]


def op_zrange(ks: Keyspace, args: list[Any]) -> list[Any]:
    key, start, stop, options = args
    obj = ks.read_typed(key, ZSetValue)
    if obj is None:
        return []
    n = len(obj.order)
    lo, hi = clamp_range(start, stop, n)
    if lo >= hi:
        return []
    if options.get("rev"):
        pairs = obj.order[n - hi : n - lo]
        pairs.reverse()
    else:
        pairs = obj.order[lo:hi]
    return _with_scores(pairs, bool(options.get("withscores")))


def op_zrangebyscore(ks: Keyspace, args: list[Any]) -> list[Any]:
    key, low, high, options = args
    obj = ks.read_typed(key, ZSetValue)
    if obj is None or low > high:
        return []
    order = obj.order
    # (score,) sorts before every (score, member): bisect on 1-tuples finds score bounds.
    lo = order.bisect_left((low,))
    hi = len(order) if high == math.inf else order.bisect_left((math.nextafter(high, math.inf),))
    offset = options.get("offset") or 0
    count = options.get("count")
    if offset < 0:
        return []
    lo += offset
    if count is not None and count >= 0:
        hi = min(hi, lo + count)
    if lo >= hi:
        return []
    return _with_scores(order[lo:hi], bool(options.get("withscores")))


def op_zrank(ks: Keyspace, args: list[Any]) -> int | None:
    key, member = args
    obj = ks.read_typed(key, ZSetValue)
    if obj is None:
        return None
    score = obj.scores.get(member)
    if score is None:
        return None
    rank: int = obj.order.bisect_left((score, member))
    return rank


def _zpop(ks: Keyspace, args: list[Any], highest: bool) -> list[list[Any]]:
    """Remove the ``count`` (default 1) lowest or highest members; ``[member, score]`` pairs
    in the order they were popped."""
    key, options = args
    count = _count("ZPOPMAX" if highest else "ZPOPMIN", options)
    obj = ks.live_typed(key, ZSetValue)
    if obj is None:
        return []
    order = obj.order
    n = min(1 if count is None else count, len(order))
    if not n:
        return []
    lo, hi = (len(order) - n, len(order)) if highest else (0, n)
    pairs = order[lo:hi]
    del order[lo:hi]
    if highest:
        pairs.reverse()
    old_size = obj.size
    scores = obj.scores
    for _, member in pairs:
        del scores[member]
    obj.size -= sum(len(member) for _, member in pairs) + n * _ZSET_PER
    ks.shrunk(key, obj, old_size)
    return [[member, score] for score, member in pairs]


def op_zpopmin(ks: Keyspace, args: list[Any]) -> list[list[Any]]:
    return _zpop(ks, args, False)


def op_zpopmax(ks: Keyspace, args: list[Any]) -> list[list[Any]]:
    return _zpop(ks, args, True)


def op_zcard(ks: Keyspace, args: list[Any]) -> int:
    obj = ks.read_typed(args[0], ZSetValue)
    return 0 if obj is None else len(obj.scores)


HANDLERS = {
    "HSET": op_hset,
    "HGET": op_hget,
    "HDEL": op_hdel,
    "HGETALL": op_hgetall,
    "HINCRBY": op_hincrby,
    "HLEN": op_hlen,
    "LPUSH": op_lpush,
    "RPUSH": op_rpush,
    "LPOP": op_lpop,
    "RPOP": op_rpop,
    "LRANGE": op_lrange,
    "LLEN": op_llen,
    "SADD": op_sadd,
    "SREM": op_srem,
    "SISMEMBER": op_sismember,
    "SMEMBERS": op_smembers,
    "SCARD": op_scard,
    "ZADD": op_zadd,
    "ZREM": op_zrem,
    "ZSCORE": op_zscore,
    "ZINCRBY": op_zincrby,
    "ZRANGE": op_zrange,
    "ZRANGEBYSCORE": op_zrangebyscore,
    "ZRANK": op_zrank,
    "ZCARD": op_zcard,
    "ZPOPMIN": op_zpopmin,
    "ZPOPMAX": op_zpopmax,
    "SPOP": op_spop,
}
