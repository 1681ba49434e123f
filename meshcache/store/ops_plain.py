"""Handlers of the meta and plain-value ops (docs/protocol.md, "Plain values").

Each handler takes the :class:`~meshcache.store.keyspace.Keyspace` and the op's arguments as
``meshcache.wire.ops.normalize_args`` returns them (keys and values as bytes, numbers checked,
the options dict last when the op has options) and returns the msgpack-able result.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from meshcache.errors import (
    BadRequestError,
    NotFloatError,
    NotIntegerError,
    OverflowCommandError,
    TooLargeError,
)
from meshcache.store import sizes
from meshcache.store.keyspace import TABLES, Keyspace, blob_version, pack_version, wrong_type
from meshcache.store.values import TypedValue

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_HEADER = sizes.VERSION_HEADER
_PLAIN_BASE = sizes.plain_cost(0, 0)


def parse_int(value: bytes) -> int:
    """``value`` as a base-10 signed 64-bit integer in canonical form, or ``NOT_INTEGER``."""
    if len(value) <= 20:
        try:
            number = int(value)
        except ValueError:
            pass
        else:
            # int() also takes " 7", "+7", "0_7": only the canonical spelling is a number here.
            if b"%d" % number == value and INT64_MIN <= number <= INT64_MAX:
                return number
    raise NotIntegerError(message="the value is not a base-10 signed 64-bit integer")


def check_int64(number: int) -> int:
    if not INT64_MIN <= number <= INT64_MAX:
        raise OverflowCommandError(message="the result does not fit in a signed 64-bit integer")
    return number


def check_ttl(ttl: Any) -> float | None:
    """The ``ttl`` option: ``None`` or a number of seconds > 0."""
    if ttl is None:
        return None
    if not ttl > 0:  # also refuses NaN
        raise BadRequestError(message=f"ttl must be > 0 seconds, got {ttl!r}")
    return float(ttl)


def restamp(ks: Keyspace, key: bytes, entry: bytes | TypedValue) -> None:
    """Give a live entry a new version (a write that changed only its metadata)."""
    if type(entry) is bytes:
        ks.table(key)[key] = pack_version(ks.new_version()) + entry[_HEADER:]
    else:
        assert isinstance(entry, TypedValue)
        entry.version = ks.new_version()


# ------------------------------------------------------------------------------------- meta


def op_dbsize(ks: Keyspace, args: list[Any]) -> int:
    ks.purge_expired()
    return ks.count


def op_flush(ks: Keyspace, args: list[Any]) -> bool:
    ks.flush()
    return True


# ------------------------------------------------------------------------------------- reads


def op_get(ks: Keyspace, args: list[Any]) -> bytes | None:
    key = args[0]
    table = ks.single  # ks.table(key), inlined
    if table is None:
        table = ks.tables[hash(key) % TABLES]
    entry = table.get(key)
    if entry is not None and ks.lfu is None and not ks.expires:
        # The hot path, inlined: no expiry to check, no LFU counter to bump.
        ks.hits += 1
        table.move_to_end(key)
    else:
        entry = ks.read(key)
    if type(entry) is bytes:
        return entry[_HEADER:]
    if entry is None:
        return None
    raise wrong_type(key, entry, "plain value")


def op_gets(ks: Keyspace, args: list[Any]) -> list[Any] | None:
    key = args[0]
    entry = ks.read(key)
    if type(entry) is bytes:
        return [entry[_HEADER:], blob_version(entry)]
    if entry is None:
        return None
    raise wrong_type(key, entry, "plain value")


def op_mget(ks: Keyspace, args: list[Any]) -> list[bytes | None]:
    read = ks.read
    out: list[bytes | None] = []
    for key in args:
        entry = read(key)
        out.append(entry[_HEADER:] if type(entry) is bytes else None)
    return out


def op_exists(ks: Keyspace, args: list[Any]) -> int:
    live = ks.live
    return sum(1 for key in args if live(key) is not None)


def op_strlen(ks: Keyspace, args: list[Any]) -> int:
    key = args[0]
    entry = ks.read(key)
    if type(entry) is bytes:
        return len(entry) - _HEADER
    if entry is None:
        return 0
    raise wrong_type(key, entry, "plain value")


def op_type(ks: Keyspace, args: list[Any]) -> str:
    """``none``, ``string`` (a plain value) or the typed value's kind (``hash``, ``list``,
    ``set``, ``zset``); an access neither counts as a hit nor refreshes the key."""
    entry = ks.live(args[0])
    if entry is None:
        return "none"
    if type(entry) is bytes:
        return "string"
    assert isinstance(entry, TypedValue)
    return entry.kind


def op_ttl(ks: Keyspace, args: list[Any]) -> float | int:
    key = args[0]
    if ks.live(key) is None:
        return -2
    expires_at = ks.expires.get(key)
    if expires_at is None:
        return -1
    return max(round(expires_at - ks.clock(), 3), 0.001)


# ------------------------------------------------------------------------------------- writes


def op_set(ks: Keyspace, args: list[Any]) -> Any:
    key, value, options = args
    if not options:
        blob = pack_version(ks.new_version()) + value
        if ks.plain_fast:
            # The hot path, inlined (no bounds, no default TTL, no LFU): what put() would do.
            table = ks.single  # ks.table(key), inlined
            if table is None:
                table = ks.tables[hash(key) % TABLES]
            old = table.get(key)
            if old is None:
                table[key] = blob
                ks.used += _PLAIN_BASE + len(key) + len(blob)
                ks.count += 1
                if ks.count > ks.split_at:
                    ks.split()
                return True
            if type(old) is bytes:
                table[key] = blob
                table.move_to_end(key)
                ks.used += len(blob) - len(old)
                if ks.expires and key in ks.expires:
                    ks.set_expiry(key, None)
                return True
        # Replacing an expired entry costs the same as replacing a live one, so no live() here.
        ks.put(key, blob, ks.expiry_for_write(None), False)
        return True
    ttl = check_ttl(options.get("ttl"))
    nx = options.get("nx")
    xx = options.get("xx")
    get = options.get("get")
    keepttl = options.get("keepttl")
    if nx and xx:
        raise BadRequestError(message="SET: nx and xx exclude each other")
    if keepttl and ttl is not None:
        raise BadRequestError(message="SET: ttl and keepttl exclude each other")
    old = ks.live(key)
    previous: bytes | None = None
    if get and old is not None:
        if type(old) is not bytes:
            raise wrong_type(key, old, "plain value")
        previous = old[_HEADER:]
    if (nx and old is not None) or (xx and old is None):
        return previous if get else False
    keep = bool(keepttl) and old is not None
    expires_at = None if keep else ks.expiry_for_write(ttl)
    ks.put(key, pack_version(ks.new_version()) + value, expires_at, keep)
    return previous if get else True


def op_mset(ks: Keyspace, args: list[Any]) -> bool:
    pairs: dict[bytes, bytes] = {}
    for i in range(0, len(args), 2):
        pairs[args[i]] = args[i + 1]
    expires_at = ks.expiry_for_write(None)
    items = list(pairs.items())
    if ks.max_bytes is not None or ks.max_items is not None:
        # All or nothing: refuse before the first write if any pair can never fit, or (under
        # none) if the whole batch does not; then apply the pairs that free room first.
        extra = ks.key_extra + (sizes.EXPIRY_COST if expires_at is not None else 0)
        deltas: dict[bytes, int] = {}
        total = 0
        new_keys = 0
        for key, value in items:
            new_full = sizes.plain_cost(len(key), _HEADER + len(value)) + extra
            old = ks.live(key)
            delta = new_full if old is None else new_full - ks.full_cost(key, old)
            new_keys += old is None
            ks.check_room(key, new_full, 0, False)
            deltas[key] = delta
            total += delta
        if ks.eviction == "none":
            _check_batch(ks, total, new_keys)
            items.sort(key=lambda item: deltas[item[0]])
    version = ks.new_version
    put = ks.put
    for key, value in items:
        put(key, pack_version(version()) + value, expires_at, False)
    return True


def _check_batch(ks: Keyspace, total: int, new_keys: int) -> None:
    def overflows() -> bool:
        mb, mi = ks.max_bytes, ks.max_items
        return (mb is not None and total > 0 and ks.used + total > mb) or (
            mi is not None and new_keys > 0 and ks.count + new_keys > mi
        )

    if overflows():
        ks.purge_expired()
        if overflows():
            raise ks.oom_error()


def op_delete(ks: Keyspace, args: list[Any]) -> int:
    live = ks.live
    remove = ks.remove
    removed = 0
    for key in args:
        if live(key) is not None:
            remove(key)
            removed += 1
        if ks.tomb_grace_ms is not None:
            # Even for a key missing here: a replica may hold it.
            ks.bury(key, ks.new_version())
    return removed


def op_getdel(ks: Keyspace, args: list[Any]) -> bytes | None:
    key = args[0]
    entry = ks.read(key)
    if entry is None:
        return None
    if type(entry) is not bytes:
        raise wrong_type(key, entry, "plain value")
    ks.delete(key)
    return entry[_HEADER:]


def op_append(ks: Keyspace, args: list[Any]) -> int:
    key, suffix = args
    old = ks.live(key)
    if old is None:
        ks.put(key, pack_version(ks.new_version()) + suffix, ks.expiry_for_write(None), False)
        return len(suffix)
    if type(old) is not bytes:
        raise wrong_type(key, old, "plain value")
    length = len(old) - _HEADER + len(suffix)
    limit = ks.max_value_bytes
    if limit is not None and length > limit:
        raise TooLargeError(
            message=f"APPEND: the value would be {length} bytes, the limit is {limit}"
        )
    ks.put(key, pack_version(ks.new_version()) + old[_HEADER:] + suffix, None, True)
    return length


#: Significant digits of INCRBYFLOAT's sums (Redis sums in ``long double``, ~19 digits).
_FLOAT_PRECISION = 80
NAN_OR_INFINITY = "increment would produce NaN or Infinity"


def op_incrbyfloat(ks: Keyspace, args: list[Any]) -> bytes:
    """Add a float to the decimal text stored at ``key``; the new text, as Redis prints it
    (17 decimals, trailing zeros dropped). The sum is computed in decimal from the texts
    (the increment as the shortest text that reads back as the same double)."""
    key, by = args
    if not math.isfinite(by):
        raise NotFloatError(message=f"INCRBYFLOAT: {NAN_OR_INFINITY}")
    old = ks.live(key)
    if old is None:
        current = Decimal(0)
    elif type(old) is bytes:
        current = _decimal(old[_HEADER:])
    else:
        raise wrong_type(key, old, "plain value")
    with localcontext() as context:
        context.prec = _FLOAT_PRECISION
        total = current + Decimal(repr(by))
    if not total.is_finite() or not math.isfinite(float(total)):
        raise NotFloatError(message=f"INCRBYFLOAT: {NAN_OR_INFINITY}")
    text = f"{total:.17f}".rstrip("0").rstrip(".")
    value = (text if text not in ("-0", "") else "0").encode()
    blob = pack_version(ks.new_version()) + value
    if old is None:
        ks.put(key, blob, ks.expiry_for_write(None), False)
    else:
        ks.put(key, blob, None, True)
    return value


def _decimal(data: bytes) -> Decimal:
    """A stored value as a decimal number, as Redis's ``strtold`` reads it (no spaces)."""
    if data and not data[:1].isspace() and not data[-1:].isspace() and b"_" not in data:
        try:
            number = Decimal(data.decode("ascii"))
        except (InvalidOperation, UnicodeDecodeError):
            pass
        else:
            if number.is_finite():
                return number
    raise NotFloatError(message="INCRBYFLOAT: the value is not a valid float")


def op_expire(ks: Keyspace, args: list[Any]) -> bool:
    key, seconds, options = args
    entry = ks.live(key)
    if entry is None:
        return False
    if options and not _expire_allowed(ks, key, seconds, options):
        return False
    if seconds <= 0:
        ks.delete(key)
        return True
    expires_at = None if seconds == math.inf else ks.clock() + seconds
    if expires_at is not None and key not in ks.expires and ks.max_bytes is not None:
        # Gaining an expiry costs EXPIRY_COST: it must fit like any other growth.
        ks.check_room(key, ks.full_cost(key, entry) + sizes.EXPIRY_COST, sizes.EXPIRY_COST, False)
    ks.set_expiry(key, expires_at)
    restamp(ks, key, entry)
    ks.touch(key)
    if ks.over_limits():
        ks.evict_to_fit(key)
    return True


def _expire_allowed(ks: Keyspace, key: bytes, seconds: float, options: dict[str, Any]) -> bool:
    """EXPIRE's conditions, as Redis's: ``nx`` only without an expiry, ``xx`` only with one,
    ``gt`` only when the new expiry is later (no expiry counts as never), ``lt`` only when it
    is sooner."""
    nx, xx, gt, lt = (bool(options.get(name)) for name in ("nx", "xx", "gt", "lt"))
    if nx and (xx or gt or lt):
        raise BadRequestError(message="EXPIRE: nx excludes xx, gt and lt")
    if gt and lt:
        raise BadRequestError(message="EXPIRE: gt and lt exclude each other")
    current = ks.expires.get(key)
    if nx:
        return current is None
    if xx and current is None:
        return False
    new = math.inf if seconds == math.inf else ks.clock() + seconds
    if gt:
        return current is not None and new > current
    if lt:
        return current is None or new < current
    return True


def op_persist(ks: Keyspace, args: list[Any]) -> bool:
    key = args[0]
    entry = ks.live(key)
    if entry is None or key not in ks.expires:
        return False
    ks.set_expiry(key, None)
    restamp(ks, key, entry)
    ks.touch(key)
    return True


def _incr(ks: Keyspace, key: bytes, by: int) -> int:
    old = ks.live(key)
    if old is None:
        current = 0
    elif type(old) is bytes:
        current = parse_int(old[_HEADER:])
    else:
        raise wrong_type(key, old, "plain value")
    number = check_int64(current + by)
    blob = pack_version(ks.new_version()) + b"%d" % number
    if old is None:
        ks.put(key, blob, ks.expiry_for_write(None), False)
    else:
        ks.put(key, blob, None, True)
    return number


def op_incr(ks: Keyspace, args: list[Any]) -> int:
    return _incr(ks, args[0], 1)


def op_decr(ks: Keyspace, args: list[Any]) -> int:
    return _incr(ks, args[0], -1)


def op_incrby(ks: Keyspace, args: list[Any]) -> int:
    return _incr(ks, args[0], args[1])


def op_decrby(ks: Keyspace, args: list[Any]) -> int:
    return _incr(ks, args[0], -args[1])


def op_cas(ks: Keyspace, args: list[Any]) -> bool:
    """Replace the value if its version is the one given; without ``ttl`` the expiry stays."""
    key, version, value, options = args
    ttl = check_ttl(options.get("ttl"))
    old = ks.live(key)
    if old is None:
        return False
    if type(old) is not bytes:
        raise wrong_type(key, old, "plain value")
    if blob_version(old) != version:
        return False
    blob = pack_version(ks.new_version()) + value
    if ttl is None:
        ks.put(key, blob, None, True)
    else:
        ks.put(key, blob, ks.expiry_for_write(ttl), False)
    return True


HANDLERS = {
    "DBSIZE": op_dbsize,
    "FLUSH": op_flush,
    "GET": op_get,
    "GETS": op_gets,
    "SET": op_set,
    "DELETE": op_delete,
    "EXISTS": op_exists,
    "EXPIRE": op_expire,
    "PERSIST": op_persist,
    "TTL": op_ttl,
    "INCR": op_incr,
    "DECR": op_decr,
    "INCRBY": op_incrby,
    "DECRBY": op_decrby,
    "MGET": op_mget,
    "MSET": op_mset,
    "CAS": op_cas,
    "GETDEL": op_getdel,
    "APPEND": op_append,
    "STRLEN": op_strlen,
    "INCRBYFLOAT": op_incrbyfloat,
    "TYPE": op_type,
}
