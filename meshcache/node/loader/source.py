"""Sources: the databases a node loads missing keys from.

A :class:`Source` is what the loader needs of a database: check that a query prepares and has
the right shape, load one key, load many, and listen on a channel. :class:`PgSource` is
PostgreSQL through asyncpg on the :class:`~meshcache.node.loader.bridge.AsyncioBridge`; the
simulation has its own. Sources are node-local: built from the node's ``[sources.NAME]``
settings, their DSNs never leave the node.

Keys are passed to SQL as the query's ``$1`` parameter type says: text types get the key as
UTF-8 text, integer types its base-10 text as a number, ``uuid`` its text, ``bytea`` the
bytes. Values come back from one column of type text, varchar, char, json, jsonb or bytea.
asyncpg's errors are translated here into the three this module defines.

A reload after a NOTIFY can start on the driver's own loop as the NOTIFY arrives
(:attr:`PgSource.early_query`, :class:`EarlyLoad`): the query is then on its way to the
database before the node's event loop has even heard of the NOTIFY, rather than after a hop
to the node's loop and another back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from meshcache.node.loader.bridge import AsyncioBridge
from meshcache.node.loader.timing import Timings
from meshcache.settings import SourceSettings

TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "name"})
INT_TYPES = frozenset({"int2", "int4", "int8"})
INT_RANGES = {
    name: (-(1 << bits - 1), (1 << bits - 1) - 1)
    for name, bits in (("int2", 16), ("int4", 32), ("int8", 64))
}
NAME_BYTES = 63  # PostgreSQL cuts a ``name`` longer than this
REFUSED_FOR = 1.0  # seconds a load's refused query is answered as refused without asking
KEY_TYPES = TEXT_TYPES | INT_TYPES | {"bytea", "uuid"}
VALUE_TYPES = TEXT_TYPES | {"json", "jsonb", "bytea"}


class SourceFailure(Exception):
    """The source did not answer: unreachable, wrong password, timed out, or it refused the
    query. Counts against the source's circuit breaker."""


class BadResult(Exception):
    """The source answered, but not with one value: several rows, a value too large, or a
    value of a type that cannot be cached. Does not count against the breaker."""


class QueryRefused(Exception):
    """A query does not prepare on the source (PostgreSQL's message), or has the wrong shape."""


class KeyNotLoadable(Exception):
    """The key cannot be a parameter of the query (not UTF-8 text, not an integer...): a miss."""


class EarlyLoad:
    """One key's query sent on its way before a task waits for it: as a NOTIFY arrived (see
    :attr:`PgSource.early_query`) or as a load started (:meth:`PgSource.start_one`); settled
    on trio's thread, awaited with :meth:`result`."""

    __slots__ = (
        "cancelled",
        "done",
        "error",
        "key",
        "query",
        "started",
        "taken",
        "task",
        "value",
    )

    def __init__(self, query: str, key: bytes, started: float) -> None:
        self.query = query
        self.key = key
        self.started = started  # time.perf_counter() when it was sent on its way
        self.done = trio.Event()
        self.value: bytes | None = None
        self.error: BaseException | None = None
        self.taken = False  # a load of the node's took it over
        self.cancelled = False
        self.task: asyncio.Task[None] | None = None

    def settle(self, value: bytes | None, error: BaseException | None) -> None:
        """On trio's thread: the query's answer is in."""
        self.value, self.error = value, error
        self.done.set()

    async def result(self) -> bytes | None:
        """The value, as :meth:`PgSource.fetch_one` answers it (or raises); the query is
        cancelled with the caller."""
        try:
            await self.done.wait()
        except BaseException:
            self.cancel()
            raise
        if self.error is not None:
            raise self.error
        return self.value

    def cancel(self) -> None:
        """Cancel the query (from trio's thread); nothing if it is over already."""
        self.cancelled = True
        task = self.task
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs
                task.get_loop().call_soon_threadsafe(task.cancel)


@dataclass(slots=True)
class Notice:
    """The NOTIFY being delivered to the node's loop (see :attr:`PgSource.delivering`): when
    the driver received it (``time.perf_counter``), and the load started for it, if any."""

    arrived: float
    early: EarlyLoad | None

    def take(self, query: str, key: bytes) -> EarlyLoad | None:
        """The load started for this NOTIFY, if it asks ``query`` for ``key``: the caller's
        from now on."""
        early = self.early
        if early is None or early.taken or early.query != query or early.key != key:
            return None
        early.taken = True
        return early


class Listening(Protocol):
    """A live LISTEN; closing it stops it."""

    async def aclose(self) -> None: ...


class Source(Protocol):
    """A database the loader reads from (see the module docstring)."""

    name: str

    async def check(self, query: str, *, batch: bool) -> None:
        """Raise QueryRefused (or SourceFailure) unless ``query`` prepares with the right
        shape: one key parameter and one value column, or (``batch``) an array parameter and
        (key, value) columns."""
        ...

    async def fetch_one(self, query: str, key: bytes) -> bytes | None:
        """The value of ``key`` (None: no row, or a NULL value)."""
        ...

    async def fetch_many(self, query: str, keys: list[bytes]) -> dict[bytes, bytes]:
        """The values of those ``keys`` that have a row."""
        ...

    async def listen(
        self, channel: str, on_payload: Callable[[str], None], on_lost: Callable[[], None]
    ) -> Listening:
        """LISTEN on ``channel``: ``on_payload`` and ``on_lost`` are called on trio's thread."""
        ...


@dataclass(frozen=True, slots=True)
class Shape:
    """A prepared query's parameter type (of the keys) and key/value column types."""

    key_type: str
    value_type: str
    key_column: str | None  # the batch query's key column type; None for a single-key query


def key_argument(key_type: str, key: bytes) -> Any:
    """``key`` as the query parameter of ``key_type``.

    A key is loadable only in the form PostgreSQL itself writes the value as text — the form
    a batch query's key column and a NOTIFY of the trigger give back: ``7``, not ``007`` or
    ``+7``, an integer within the type's range, a uuid in lower case with hyphens, a ``char``
    key without trailing spaces (``char`` compares without them), a ``name`` of at most 63
    bytes (longer ones are cut). Another form of the same row's key would be cached apart
    from it, and missed by the batch query and the invalidations.

    Raises:
        KeyNotLoadable: the key is not valid for that type.
    """
    if key_type == "bytea":
        return key
    try:
        text = key.decode("utf-8")
        if key_type in INT_TYPES:
            number = int(text) if text.isascii() else None
            low, high = INT_RANGES[key_type]
            if number is None or str(number) != text or not low <= number <= high:
                raise ValueError(text)
            return number
        if key_type == "uuid":
            value = uuid.UUID(text)
            if str(value) != text:
                raise ValueError(text)
            return value
        if "\x00" in text:
            raise ValueError("NUL in text")
        if key_type == "bpchar" and text.endswith(" "):
            raise ValueError("trailing spaces in a char key")
        if key_type == "name" and len(key) > NAME_BYTES:
            raise ValueError("a name over 63 bytes")
        return text
    except ValueError:
        raise KeyNotLoadable(f"the key is not a valid {key_type}") from None


def key_bytes(value: Any) -> bytes:
    """A key column's value as the cache key (the inverse of :func:`key_argument`)."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def value_bytes(value: Any, max_bytes: int) -> bytes | None:
    """A value column's value as the bytes cached (None for NULL).

    Raises:
        BadResult: larger than ``max_bytes``, or of a type that is not cached.
    """
    if value is None:
        return None
    if isinstance(value, str):
        out = value.encode("utf-8")
    elif isinstance(value, bytes | bytearray | memoryview):
        out = bytes(value)
    else:
        raise BadResult(f"a value of type {type(value).__name__} cannot be cached")
    if len(out) > max_bytes:
        raise BadResult(f"the value is {len(out)} bytes, over the limit of {max_bytes}")
    return out


class PgSource:
    """PostgreSQL through an asyncpg pool that lives on the bridge's loop.

    The pool is created on first use, so a node starts while its database is down. Each
    connection runs with ``statement_timeout`` and the ``application_name`` ``meshcache``.
    With a pool of two or more, one connection is kept out of it between loads, for the next
    load to use with no acquire and no reset (see :meth:`_timed_fetch`).

    Args:
        name: the source's name (``[sources.NAME]``).
        settings: its settings (DSN, pool size, timeouts).
        bridge: the node's asyncio bridge.
        max_value_bytes: values larger than this are refused (BadResult).
    """

    def __init__(
        self,
        name: str,
        settings: SourceSettings,
        bridge: AsyncioBridge,
        *,
        max_value_bytes: int,
    ) -> None:
        self.name = name
        self._dsn = settings.resolve_dsn(name)
        self._settings = settings
        self._bridge = bridge
        self._max_value = max_value_bytes
        self._pool: Any = None
        self._pool_lock: asyncio.Lock | None = None
        self._shapes: dict[tuple[str, bool], Shape] = {}
        # A load's query PostgreSQL refused to prepare, why, and until when (time.monotonic)
        # loads answer that without asking again.
        self._refused: dict[tuple[str, bool], tuple[str, float]] = {}
        self._releasing: set[asyncio.Task[None]] = set()  # connections going back to the pool
        # One connection kept out of the pool between loads (with a pool of two or more): a
        # load takes it when it is free, and it is not reset after the load.
        self._keep = settings.pool_size > 1
        self._idle: Any = None
        self._waiting = 0  # loads waiting for a pooled connection
        #: Where the query's own time (on the asyncio loop) and each NOTIFY's hop to trio are
        #: recorded; the node's loader sets it.
        self.timings: Timings | None = None
        #: Called on the driver's thread as a NOTIFY arrives, with (channel, payload): the
        #: query to start for the payload's key at once (a reload), or None. It must only
        #: read what the node's loop owns. The node's loader sets it.
        self.early_query: Callable[[str, str], str | None] | None = None
        #: While a NOTIFY's ``on_payload`` runs on trio's thread: that NOTIFY's :class:`Notice`.
        self.delivering: Notice | None = None
        bridge.on_close(self._close)

    # --- trio side ------------------------------------------------------------------------

    async def check(self, query: str, *, batch: bool) -> None:
        await self._bridge.run(self._shape, query, batch, True)

    async def fetch_one(self, query: str, key: bytes) -> bytes | None:
        value: bytes | None = await self._bridge.run(self._fetch_one, query, key)
        return value

    async def fetch_many(self, query: str, keys: list[bytes]) -> dict[bytes, bytes]:
        values: dict[bytes, bytes] = await self._bridge.run(self._fetch_many, query, keys)
        return values

    def start_one(self, query: str, key: bytes) -> EarlyLoad:
        """:meth:`fetch_one`, sent on its way now from trio's thread, without waiting for a
        task to run; its answer is awaited with :meth:`EarlyLoad.result`.

        Raises:
            BridgeClosedError: the bridge is not running.
        """
        token = trio.lowlevel.current_trio_token()
        early = EarlyLoad(query, key, time.perf_counter())
        self._bridge.loop.call_soon_threadsafe(self._begin, early, token)
        return early

    async def listen(
        self, channel: str, on_payload: Callable[[str], None], on_lost: Callable[[], None]
    ) -> Listening:
        """LISTEN on ``channel``. Each NOTIFY may first start a load on the driver's loop
        (:attr:`early_query`); ``on_payload`` then runs with :attr:`delivering` set."""
        token = trio.lowlevel.current_trio_token()

        def deliver(text: str, arrived: float, early: EarlyLoad | None) -> None:
            if self.timings is not None:
                self.timings.step("notify_hop", time.perf_counter() - arrived)
            self.delivering = Notice(arrived, early)
            try:
                on_payload(text)
            finally:
                self.delivering = None
            # A load nobody took (the node decided otherwise meanwhile) runs to its end and
            # is dropped: cancelling a query costs the database more than answering it.

        def payload(_conn: Any, _pid: int, _channel: str, text: str) -> None:
            arrived = time.perf_counter()
            early = self._start_early(channel, text, token)
            try:
                token.run_sync_soon(deliver, text, arrived, early)
            except trio.RunFinishedError:
                if early is not None and early.task is not None:
                    early.task.cancel()

        def lost(_conn: Any) -> None:
            try:
                token.run_sync_soon(on_lost)
            except trio.RunFinishedError:
                return

        conn = await self._bridge.run(self._listen, channel, payload, lost)
        return _PgListening(self._bridge, conn)

    # --- asyncio side -----------------------------------------------------------------------

    def _start_early(
        self, channel: str, text: str, token: trio.lowlevel.TrioToken
    ) -> EarlyLoad | None:
        """On the driver's thread, as a NOTIFY arrives: start the load :attr:`early_query`
        asks for, if any."""
        decide = self.early_query
        if decide is None:
            return None
        try:
            query = decide(channel, text)
        except Exception:  # a hint only: the node's loop decides again and loads without it
            return None
        if query is None:
            return None
        early = EarlyLoad(query, text.encode("utf-8", "surrogateescape"), time.perf_counter())
        self._begin(early, token)
        return early

    def _begin(self, early: EarlyLoad, token: trio.lowlevel.TrioToken) -> None:
        """On the driver's thread: run ``early``'s query; its answer is settled on trio's."""
        if early.cancelled:
            return
        early.task = self._bridge.loop.create_task(self._run_early(early, token))

    async def _run_early(self, early: EarlyLoad, token: trio.lowlevel.TrioToken) -> None:
        """``early``'s query, settled on trio's thread by this task's last step (a
        done-callback would run one loop iteration later)."""
        value: bytes | None = None
        error: BaseException | None = None
        try:
            value = await self._fetch_one(early.query, early.key)
        except asyncio.CancelledError:
            error = SourceFailure("the load was cancelled")
        except BaseException as exc:  # its caller on trio's side decides what it means
            error = exc
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(early.settle, value, error)

    async def _get_pool(self) -> Any:
        import asyncpg

        if self._pool is not None:
            return self._pool
        if self._pool_lock is None:
            self._pool_lock = asyncio.Lock()
        async with self._pool_lock:
            if self._pool is None:
                s = self._settings
                self._pool = await _guard(
                    asyncpg.create_pool(
                        self._dsn,
                        min_size=0,
                        max_size=s.pool_size,
                        timeout=s.connect_timeout,
                        server_settings={
                            "statement_timeout": str(int(s.statement_timeout * 1000)),
                            "application_name": "meshcache",
                        },
                    )
                )
        return self._pool

    async def _shape(self, query: str, batch: bool, fresh: bool = False) -> Shape:
        import asyncpg

        known = self._shapes.get((query, batch))
        if known is not None and not fresh:
            return known
        pool = await self._get_pool()
        try:
            async with pool.acquire(timeout=self._settings.connect_timeout) as conn:
                statement = await conn.prepare(query)
                params, attributes = statement.get_parameters(), statement.get_attributes()
        except asyncpg.PostgresError as exc:
            if isinstance(exc, _connection_errors()):
                raise SourceFailure(f"source {self.name!r}: {_describe(exc)}") from None
            raise QueryRefused(_describe(exc)) from None
        except Exception as exc:
            raise SourceFailure(f"source {self.name!r}: {_describe(exc)}") from None
        shape = _check_shape(params, attributes, batch)
        self._shapes[(query, batch)] = shape
        self._refused.pop((query, batch), None)
        return shape

    async def _fetch_one(self, query: str, key: bytes) -> bytes | None:
        shape = await self._shape_for_load(query, False)
        argument = key_argument(shape.key_type, key)
        pool = await self._get_pool()
        rows = await self._timed_fetch(pool, query, argument)
        if not rows:
            return None
        if len(rows) > 1:
            raise BadResult(f"the loader query returned {len(rows)} rows for one key")
        return value_bytes(rows[0][0], self._max_value)

    async def _fetch_many(self, query: str, keys: list[bytes]) -> dict[bytes, bytes]:
        shape = await self._shape_for_load(query, True)
        arguments = []
        for key in keys:
            try:
                arguments.append(key_argument(shape.key_type, key))
            except KeyNotLoadable:
                continue  # such a key is a miss
        if not arguments:
            return {}
        pool = await self._get_pool()
        rows = await self._timed_fetch(pool, query, arguments)
        padded = shape.key_column == "bpchar"  # char(n) comes back padded to n
        out: dict[bytes, bytes] = {}
        for row in rows:
            value = value_bytes(row[1], self._max_value)
            if value is not None:
                out[key_bytes(row[0].rstrip(" ") if padded else row[0])] = value
        return out

    async def _timed_fetch(self, pool: Any, query: str, argument: Any) -> Any:
        """The query's rows, on the kept connection when it is free, else on a pooled one.

        A load that ends normally leaves its connection as the kept one when there is none
        and no load waits for the pool: the next load uses it as it is, with no acquire and
        no reset (``RESET ALL``, ``UNLISTEN *``, ...: a second round trip to the server per
        load, and a second wake-up of the driver's thread). A loader query is one statement
        run outside a transaction (asyncpg prepares it once per connection and keeps it),
        which leaves nothing a reset would undo. Any other connection, and one whose load
        failed or was cancelled, goes back to the pool in a task of its own, started here
        and run after this task's step: the reset follows the answer's wake-up of trio."""
        started = time.perf_counter()
        conn, self._idle = self._idle, None
        if conn is not None and not _usable(conn):
            self._release_soon(pool, conn)  # the server closed it: the pool replaces it
            conn = None
        if conn is None:
            self._waiting += 1
            try:
                conn = await _guard(pool.acquire())
            finally:
                self._waiting -= 1
        ok = False
        try:
            rows = await _guard(
                conn.fetch(query, argument, timeout=self._settings.statement_timeout),
                query_errors=True,
            )
            ok = True
        finally:
            self._put_back(pool, conn, ok)
        if self.timings is not None:
            self.timings.step("query_on_source", time.perf_counter() - started)
        return rows

    def _put_back(self, pool: Any, conn: Any, ok: bool) -> None:
        """Keep ``conn`` for the next load (see :meth:`_timed_fetch`), or release it."""
        if (
            ok
            and self._keep
            and self._idle is None
            and not self._waiting
            and self._pool is pool
            and _usable(conn)
            and not conn.is_in_transaction()
        ):
            self._idle = conn
        else:
            self._release_soon(pool, conn)

    def _release_soon(self, pool: Any, conn: Any) -> None:
        """Give ``conn`` back to ``pool`` (reset and all) in a task; closing the pool waits for
        it."""
        task = asyncio.get_running_loop().create_task(pool.release(conn))
        self._releasing.add(task)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releasing.discard(task)
        if not task.cancelled():
            task.exception()  # a reset that failed terminated its connection: nothing to do

    async def _shape_for_load(self, query: str, batch: bool) -> Shape:
        """The query's shape; a query PostgreSQL refuses (e.g. its table was dropped after the
        policy was set) is a bad result — the namespace's query is wrong, not the source, so
        the other namespaces on it go on — remembered for :data:`REFUSED_FOR` seconds."""
        refused = self._refused.get((query, batch))
        if refused is not None:
            if time.monotonic() < refused[1]:
                raise BadResult(f"the query is refused: {refused[0]}")
            del self._refused[(query, batch)]
        try:
            return await self._shape(query, batch)
        except QueryRefused as exc:
            self._refused[(query, batch)] = (str(exc), time.monotonic() + REFUSED_FOR)
            raise BadResult(f"the query is refused: {exc}") from None

    async def _listen(
        self, channel: str, payload: Callable[..., None], lost: Callable[[Any], None]
    ) -> Any:
        import asyncpg

        conn = await _guard(asyncpg.connect(self._dsn, timeout=self._settings.connect_timeout))
        try:
            conn.add_termination_listener(lost)
            await _guard(conn.add_listener(channel, payload))
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _close(self) -> None:
        conn, self._idle, self._keep = self._idle, None, False
        if self._pool is not None:
            try:
                if conn is not None:
                    await self._pool.release(conn)
            finally:
                await self._pool.close()


class _PgListening:
    def __init__(self, bridge: AsyncioBridge, conn: Any) -> None:
        self._bridge = bridge
        self._conn = conn

    async def ping(self) -> None:
        """Raises SourceFailure when the listening connection is gone."""
        await self._bridge.run(_guard, self._conn.execute("SELECT 1", timeout=5))

    async def aclose(self) -> None:
        conn = self._conn

        async def close() -> None:
            conn.terminate()

        if self._bridge.running:
            await self._bridge.run(close)


@functools.cache
def _connection_errors() -> tuple[type[BaseException], ...]:
    import asyncpg  # only a node with a source pays for importing it

    return (
        asyncpg.exceptions.CannotConnectNowError,
        asyncpg.exceptions.InvalidAuthorizationSpecificationError,
        asyncpg.exceptions.InvalidPasswordError,
        asyncpg.exceptions.TooManyConnectionsError,
        asyncpg.exceptions.AdminShutdownError,
        asyncpg.exceptions.QueryCanceledError,
        asyncpg.exceptions.ConnectionFailureError,
    )


def _usable(conn: Any) -> bool:
    """Whether a pooled connection is still open and ours (the pool takes back a connection
    that closed, and its proxy then refuses every call)."""
    try:
        return not conn.is_closed()
    except Exception:
        return False


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    detail = getattr(exc, "detail", None)
    return f"{text} ({detail})" if detail else text


#: SQLSTATE classes of an error in the query itself (22: data exception, 42: syntax error or
#: access rule violation — a dropped table or column, a missing privilege): the namespace's
#: query fails, not the source.
QUERY_ERROR_CLASSES = frozenset({"22", "42"})


async def _guard(awaitable: Any, query_errors: bool = False) -> Any:
    """Await ``awaitable``; every failure that is not ours becomes :class:`SourceFailure`, or
    with ``query_errors`` (a load's query) :class:`BadResult` when PostgreSQL refused the
    query itself (:data:`QUERY_ERROR_CLASSES`)."""
    try:
        return await awaitable
    except (BadResult, KeyNotLoadable, SourceFailure, QueryRefused):
        raise
    except TimeoutError:
        raise SourceFailure("the source did not answer in time") from None
    except Exception as exc:
        state = getattr(exc, "sqlstate", None)
        if query_errors and isinstance(state, str) and state[:2] in QUERY_ERROR_CLASSES:
            raise BadResult(f"the query failed: {_describe(exc)}") from None
        raise SourceFailure(_describe(exc)) from None


def _check_shape(params: Any, attributes: Any, batch: bool) -> Shape:
    if len(params) != 1:
        raise QueryRefused(f"the query takes {len(params)} parameters; it must take one ($1)")
    param = params[0]
    if batch:
        if param.kind != "array":
            raise QueryRefused(f"$1 of the batch query is {param.name}; it must be an array")
        key_type = param.name.removeprefix("_").removesuffix("[]")
        if len(attributes) != 2:
            raise QueryRefused(
                f"the batch query returns {len(attributes)} columns; it must return (key, value)"
            )
        key_column, value = attributes[0].type.name, attributes[1].type.name
        if key_column not in KEY_TYPES:
            raise QueryRefused(f"the batch query's key column has type {key_column}")
    else:
        key_type, key_column = param.name, None
        if len(attributes) != 1:
            raise QueryRefused(f"the query returns {len(attributes)} columns; it must return one")
        value = attributes[0].type.name
    if key_type not in KEY_TYPES:
        raise QueryRefused(
            f"$1 has type {key_type}; a key is passed as text, an integer, a uuid or bytea"
        )
    if value not in VALUE_TYPES:
        raise QueryRefused(
            f"the value column has type {value}; it must be text, varchar, json, jsonb or bytea"
        )
    return Shape(key_type, value, key_column)


__all__ = [
    "BadResult",
    "EarlyLoad",
    "KeyNotLoadable",
    "Listening",
    "Notice",
    "PgSource",
    "QueryRefused",
    "Shape",
    "Source",
    "SourceFailure",
    "key_argument",
    "value_bytes",
]
