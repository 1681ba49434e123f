"""Read-through: a miss in a namespace with a loader is loaded from its source, once.

The coordinator calls :meth:`Loader.on_read` after a read it coordinates in such a namespace,
and :meth:`Loader.on_write` after a write. A read is coordinated by the key's first live
owner (a non-owner forwards it there, and a forwarded request is never forwarded again), so
loads happen at the owner, and there:

* **one load per key at a time** (singleflight): every concurrent miss of the key — its own
  clients', forwarded ones, MGET parts — waits on the one :class:`Flight`; the load runs in the
  loader's own nursery, so a waiter that goes away (or times out) cancels nothing, and a
  failed or cancelled load ends its flight, so the next miss loads again;
* **the value is stored with the loader's TTL and replicated like a write**;
* **no stale sets**: a flight remembers the key's record version when it started; if a write,
  a replica's record or an invalidation lands meanwhile, the loaded value is not stored (the
  waiters get what the write left, or the loaded value after an invalidation);
* **negative caching**: a key the source has no row for is answered nil for ``negative_ttl``;
* **refresh-ahead**: a read of a loaded key past ``refresh_ahead`` of its TTL starts one
  background load (a flight nobody waits for) while the current value is served;
* **stale-if-error**: a loaded value is stored for ``ttl + stale_if_error``; once less than
  ``stale_if_error`` of that is left it is stale, and a GET of it waits for a load (joining
  any in flight), answered with the stale value if the load fails;
* **a circuit breaker per source** (:mod:`~meshcache.node.breaker`): while it is open,
  misses fail at once with ``LOADER_UNAVAILABLE``; hits never touch it;
* **invalidation**: for each (source, channel) the namespaces name, a listener task LISTENs;
  a payload is a key. The key's coordinator decides for all its owners: it drops the key and
  replicates the drop, or, with ``on_notify = "reload"`` and the key held or being loaded
  there, loads it again at once (one flight, which misses join) and replicates the new value;
  that reload's query is started on the driver's loop as the NOTIFY arrives. The other nodes
  drop only their hot-key copy and keep their loads in flight from storing. After a lost
  listener connection comes back, what was announced meanwhile is unknown: the namespaces on
  that channel drop every key this node holds (counted as ``resyncs``);
* **timing**: load latency per namespace and source, and every step of a miss and of an
  invalidation, as histograms (:mod:`~meshcache.node.loader.timing`).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
import trio

from meshcache.errors import (
    CommandError,
    ConfigError,
    InvalidCommandError,
    LoaderUnavailableError,
)
from meshcache.node.breaker import Breaker, BreakerState
from meshcache.node.loader.source import (
    BadResult,
    EarlyLoad,
    KeyNotLoadable,
    Notice,
    QueryRefused,
    Source,
    SourceFailure,
)
from meshcache.node.loader.timing import Timings
from meshcache.store.loader_policy import LoaderPolicy
from meshcache.store.policy import NamespacePolicy
from meshcache.store.store import Store
from meshcache.wire.pending import Later

log = structlog.get_logger("meshcache.loader")

#: Keys being loaded at once on one node; a miss beyond it fails at once (``overloaded``), so a
#: flood of distinct missing keys cannot queue without bound in front of the source.
MAX_FLIGHTS = 10_000
#: Keys remembered as missing (negative caching); beyond it the oldest are forgotten.
MAX_NEGATIVE = 100_000
#: A lost listener is tried again after this long, doubling up to LISTEN_RETRY_MAX.
LISTEN_RETRY = 0.5
LISTEN_RETRY_MAX = 10.0
#: How often a listening connection is checked (a silent dead connection loses NOTIFYs).
LISTEN_PING = 2.0
#: A node forwarding a miss waits this much longer than the load timeout before failing over.
FORWARD_MARGIN = 1.0

_WRITE_KEYS: dict[str, Callable[[list[Any]], list[Any]]] = {
    "DELETE": lambda args: args,
    "MSET": lambda args: args[::2],
}


@dataclass(eq=False, slots=True)
class Flight:
    """One load of one key in progress; its waiters wait on ``done`` (a task) or are called
    back when it ends (:meth:`then`: a miss answered with no task of its own)."""

    before: int | None  # the key's record version when the load started (None: no record)
    done: trio.Event = field(default_factory=trio.Event)
    value: bytes | None = None
    error: CommandError | None = field(
        default_factory=lambda: LoaderUnavailableError(message="the load was cancelled")
    )
    dirty: bool = False  # a write or an invalidation landed while it was in flight
    invalidated: bool = False  # the source said the row changed while it was in flight
    reload_since: float | None = None  # a reload after a NOTIFY: when the driver received it
    early: EarlyLoad | None = None  # its query, sent when the flight started (one key)
    ended: list[Callable[[], None]] = field(default_factory=list)

    def then(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the flight ends (at once if it has); it must not raise."""
        if self.done.is_set():
            callback()
        else:
            self.ended.append(callback)

    def end(self) -> None:
        """The load is over (``value`` or ``error`` says how): wake and call its waiters."""
        self.done.set()
        callbacks, self.ended = self.ended, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a waiter's bug must not keep the others from their answer
                log.exception("loader_waiter_failed")


class Loader:
    """A node's read-through part (see the module docstring).

    Args:
        store: this node's store.
        node_id: this node's id (in messages).
        sources: this node's sources by name.
        replicate: ships a key's record to its other owners (as after a write).
        max_key_bytes: a NOTIFY payload longer than this is not a key.
        wall_clock: seconds since the epoch (the store's expiry clock).
        clock: trio's clock (timeouts, breaker, negative entries).
        drop_copy: drops this node's hot-key copy of a key (an invalidation reaches copies
            too); None: no copies.
        coordinates: whether this node coordinates a key now (its first live owner): only
            the coordinator drops and reloads an announced key for its owners; None: always
            (a single node). Also called from the source's database thread, so it must only
            read.
    """

    def __init__(
        self,
        store: Store,
        node_id: str,
        *,
        sources: Mapping[str, Source],
        replicate: Callable[[str, bytes], None],
        max_key_bytes: int,
        wall_clock: Callable[[], float],
        clock: Callable[[], float] = trio.current_time,
        drop_copy: Callable[[str, bytes], None] | None = None,
        coordinates: Callable[[str, bytes], bool] | None = None,
    ) -> None:
        self.store = store
        self._drop_copy = drop_copy
        self._coordinates = coordinates
        self.timings = Timings()
        for name, source in sources.items():
            if hasattr(source, "timings"):
                source.timings = self.timings
            if hasattr(source, "early_query"):
                source.early_query = partial(self._early_query, name)
        self.node_id = node_id
        self.sources = dict(sources)
        self.breakers = {name: Breaker() for name in self.sources}
        self._replicate = replicate
        self._max_key = max_key_bytes
        self._wall = wall_clock
        self._clock = clock
        #: namespace -> its loader; the coordinator calls the hooks only for these.
        self.policies: dict[str, LoaderPolicy] = {}
        self.flights: dict[tuple[str, bytes], Flight] = {}
        self._negative: dict[tuple[str, bytes], float] = {}
        self.stats: Counter[str] = Counter()
        self._nursery: trio.Nursery | None = None
        self._listeners: dict[tuple[str, str], trio.CancelScope] = {}
        self.listening: set[tuple[str, str]] = set()

    # --- policies ----------------------------------------------------------------------------

    def install(self, namespaces: Mapping[str, NamespacePolicy]) -> None:
        """Load by these namespaces' loaders from now on; listen on the channels they name."""
        policies = {n: p.loader for n, p in namespaces.items() if p.loader is not None}
        changed = {
            n
            for n in self.policies.keys() | policies.keys()
            if self.policies.get(n) != policies.get(n)
        }
        self.policies = policies
        if changed and self._negative:
            # A key remembered as missing by another query, source or negative_ttl is not
            # known to be missing by this one.
            self._negative = {k: v for k, v in self._negative.items() if k[0] not in changed}
        if self._nursery is not None:
            self._sync_listeners()

    async def check(self, policy: LoaderPolicy) -> None:
        """Refuse a loader this node cannot run: unknown source, or a query that does not
        prepare on it with the right shape (PostgreSQL's message).

        Raises:
            InvalidCommandError: why.
        """
        source = self.sources.get(policy.source)
        if source is None:
            known = ", ".join(sorted(self.sources)) or "none"
            raise InvalidCommandError(
                message=f"node {self.node_id} has no source {policy.source!r} (its sources: "
                f"{known}); sources are set in each node's [sources.NAME] settings"
            )
        queries = [(policy.query, False)]
        if policy.batch_query is not None:
            queries.append((policy.batch_query, True))
        for query, batch in queries:
            what = "batch query" if batch else "query"
            try:
                with trio.fail_after(max(policy.load_timeout, 5.0)):
                    await source.check(query, batch=batch)
            except QueryRefused as exc:
                raise InvalidCommandError(
                    message=f"the loader {what} is refused by source {policy.source!r}: {exc}"
                ) from None
            except (SourceFailure, trio.TooSlowError) as exc:
                reason = str(exc) or "it did not answer in time"
                raise InvalidCommandError(
                    message=f"cannot check the loader {what} on source {policy.source!r}: {reason}"
                ) from None

    async def check_fields(self, fields: Mapping[str, Any]) -> None:
        """:meth:`check` the ``loader`` of an NS_SET's fields, when it names one."""
        raw = fields.get("loader")
        if raw is None:
            return
        try:
            policy = LoaderPolicy.from_mapping(raw)
        except ConfigError as exc:
            raise InvalidCommandError(message=str(exc)) from None
        await self.check(policy)

    def forward_timeout(self, namespace: str, default: float) -> float:
        """How long a node waits for a forwarded read of ``namespace`` before failing over."""
        policy = self.policies.get(namespace)
        return default if policy is None else policy.load_timeout + FORWARD_MARGIN

    # --- the coordinator's hooks ----------------------------------------------------------------

    def timed_forward(self, answer: Any) -> Any:
        """A non-owner's forward of a read in a loader namespace, timed until its answer is
        back (``forward``): ``answer`` is a coroutine, or a result delivered by callback (a
        :class:`~meshcache.wire.pending.Later`), answered as the same kind."""
        started = time.perf_counter()
        if isinstance(answer, Coroutine):
            return self._timed_forwarding(answer, started)
        then = getattr(answer, "then", None)
        if then is None:
            return answer
        timed = type(answer)()

        def arrived(value: Any, error: BaseException | None) -> None:
            self.timings.step("forward", time.perf_counter() - started)
            if error is None:
                timed.resolve(value)
            else:
                timed.fail(error)

        then(arrived)
        return timed

    async def _timed_forwarding(self, forwarding: Coroutine[Any, Any, Any], started: float) -> Any:
        try:
            return await forwarding
        finally:
            self.timings.step("forward", time.perf_counter() - started)

    def on_read(
        self, namespace: str, op: str, args: list[Any], result: Any
    ) -> Coroutine[Any, Any, Any] | Later | None:
        """After a read coordinated here: None when ``result`` stands, else the answer once
        the misses are loaded: a :class:`~meshcache.wire.pending.Later` for a GET's miss
        (settled when its flight ends, with no task), a coroutine otherwise.

        The misses join their flights (or start them) now, not when the coroutine first runs:
        a request answered later (pipelined, queued) must not start a second load of a key
        whose first load finished meanwhile."""
        policy = self.policies.get(namespace)
        if policy is None:
            return None
        if op == "GET":
            key = args[0]
            if result is None:
                joined = self.flights.get((namespace, key))
                flight = self._join(namespace, policy, key)
                if flight is None:
                    return None
                return self._answer_later(flight, flight is joined)
            if policy.stale_if_error is not None and self._stale(namespace, policy, key):
                flight = self._join(namespace, policy, key)
                return None if flight is None else self._revalidate(flight, result)
            if policy.refresh_ahead is not None:
                self._refresh_ahead(namespace, policy, key)
            return None
        if op == "MGET" and None in result:
            waits = self._join_many(namespace, policy, args, result)
            return self._answer_many(args, result, waits) if waits else None
        return None

    def on_write(self, namespace: str, op: str, args: list[Any]) -> None:
        """After a write coordinated here: a load of those keys in flight must not store."""
        if not self.flights:
            return
        pick = _WRITE_KEYS.get(op)
        for key in pick(args) if pick is not None else args[:1]:
            flight = self.flights.get((namespace, key))
            if flight is not None:
                flight.dirty = True

    # --- loading --------------------------------------------------------------------------------

    def _join(self, namespace: str, policy: LoaderPolicy, key: bytes) -> Flight | None:
        """The flight a miss of ``key`` waits on: the one in progress, or one started now;
        None when the key is remembered as missing."""
        if self._negative_hit(namespace, key):
            return None
        flight = self.flights.get((namespace, key))
        if flight is None:
            return self._launch(namespace, policy, [key])[0]
        self.stats["coalesced"] += 1
        return flight

    @staticmethod
    async def _answer(flight: Flight) -> bytes | None:
        await flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.value

    def _answer_later(self, flight: Flight, joined: bool) -> Later:
        """A GET's miss answered when its flight ends, by callback: no task waits for it (a
        port stores the answer in its place when it comes). A miss that joined a load in
        flight has its wait timed (``coalesce_wait``)."""
        later = Later()
        started = time.perf_counter()
        timings = self.timings

        def ended() -> None:
            if joined:
                timings.step("coalesce_wait", time.perf_counter() - started)
            if flight.error is not None:
                later.fail(flight.error)
            else:
                later.resolve(flight.value)

        flight.then(ended)
        return later

    def _stale(self, namespace: str, policy: LoaderPolicy, key: bytes) -> bool:
        entry = self.store.get_entry(namespace, key)
        if entry is None or entry.expires_at is None:
            return False
        assert policy.stale_if_error is not None
        return entry.expires_at - self._wall() < policy.stale_if_error

    async def _revalidate(self, flight: Flight, stale: bytes) -> bytes | None:
        """A stale value's GET: the fresh load's answer, or ``stale`` when the load fails."""
        try:
            return await self._answer(flight)
        except LoaderUnavailableError:
            self.stats["stale_served"] += 1
            return stale

    def _join_many(
        self, namespace: str, policy: LoaderPolicy, keys: list[bytes], found: list[Any]
    ) -> list[tuple[int, Flight]]:
        """An MGET's misses joined to their flights; the keys without one are loaded together
        (one batch query, or one query each without a batch query)."""
        waits: list[tuple[int, Flight]] = []
        fresh: list[int] = []
        asked: set[bytes] = set()
        for i, value in enumerate(found):
            if value is not None or keys[i] in asked or self._negative_hit(namespace, keys[i]):
                continue
            asked.add(keys[i])
            flight = self.flights.get((namespace, keys[i]))
            if flight is not None:
                self.stats["coalesced"] += 1
                waits.append((i, flight))
            else:
                fresh.append(i)
        if fresh:
            if policy.batch_query is not None and len(fresh) > 1:
                flights = self._launch(namespace, policy, [keys[i] for i in fresh])
            else:
                flights = [self._launch(namespace, policy, [keys[i]])[0] for i in fresh]
            waits += zip(fresh, flights, strict=True)
        return waits

    @staticmethod
    async def _answer_many(
        keys: list[bytes], found: list[Any], waits: list[tuple[int, Flight]]
    ) -> list[Any]:
        for _, flight in waits:
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
        by_key = {keys[i]: flight.value for i, flight in waits}
        return [by_key.get(keys[i]) if value is None else value for i, value in enumerate(found)]

    def _launch(
        self,
        namespace: str,
        policy: LoaderPolicy,
        keys: list[bytes],
        reload_since: float | None = None,
        early: EarlyLoad | None = None,
    ) -> list[Flight]:
        """Start one load of ``keys`` (one query, or the batch query); their flights.
        ``reload_since``: a reload after a NOTIFY the driver received at that time
        (``perf_counter``); ``early``: its query, sent then (one key).

        A one-key load's query is sent now, from the caller's turn, when the source can
        (:meth:`PgSource.start_one`) and the breaker is closed: it is on its way to the
        database before the load's task first runs."""
        if self._nursery is None:
            raise LoaderUnavailableError(message="the loader is not running")
        started = self._clock()
        if len(self.flights) + len(keys) > MAX_FLIGHTS:
            self.stats["overloaded"] += 1
            raise LoaderUnavailableError(
                message=f"{len(self.flights)} loads are in flight on this node: try again"
            )
        flights = []
        for key in keys:
            record = self.store.get_entry(namespace, key)
            before = record.version if record is not None else None
            if before is None:
                before = self.store.get_tombstone(namespace, key)
            flight = Flight(before, reload_since=reload_since, early=early)
            self.flights[(namespace, key)] = flight
            flights.append(flight)
        if early is None and len(keys) == 1:
            flights[0].early = self._start_one(policy, keys[0])
        self._nursery.start_soon(self._load, namespace, policy, keys, flights, started)
        return flights

    def _start_one(self, policy: LoaderPolicy, key: bytes) -> EarlyLoad | None:
        start = getattr(self.sources.get(policy.source), "start_one", None)
        breaker = self.breakers.get(policy.source)
        if start is None or breaker is None or breaker.state is not BreakerState.CLOSED:
            return None  # the load's task asks (a half-open breaker lets one probe through)
        try:
            early: EarlyLoad = start(policy.query, key)
        except Exception as exc:  # no bridge: the load's own call says why
            log.debug("loader_start_failed", error=str(exc))
            return None
        return early

    async def _load(
        self,
        namespace: str,
        policy: LoaderPolicy,
        keys: list[bytes],
        flights: list[Flight],
        started: float,
    ) -> None:
        """Load ``keys`` for ``flights``, which started at ``started`` (the loader's clock):
        the load's time (``timings.load``) counts from then, its query being on its way."""
        try:
            found = await self._query(policy, keys, flights[0].early)
            for key, flight in zip(keys, flights, strict=True):
                self._settle(namespace, policy, key, flight, found.get(key))
        except CommandError as exc:
            for flight in flights:
                flight.error = exc
        except Exception as exc:  # a bug: its waiters get an answer, the node keeps serving
            log.exception("loader_failed", namespace=namespace)
            self.stats["internal_errors"] += 1
            for flight in flights:
                flight.error = LoaderUnavailableError(message=f"the load failed: {exc!r}")
        finally:
            self.timings.load(namespace, policy.source, self._clock() - started)
            for key, flight in zip(keys, flights, strict=True):
                if self.flights.get((namespace, key)) is flight:
                    del self.flights[(namespace, key)]
                if flight.reload_since is not None and flight.error is not None:
                    # A failed reload: the other owners drop the key as this node did.
                    with contextlib.suppress(CommandError):
                        self._replicate(namespace, key)
                flight.end()

    async def _query(
        self, policy: LoaderPolicy, keys: list[bytes], early: EarlyLoad | None = None
    ) -> dict[bytes, bytes | None]:
        """Ask the source, through its breaker; ``early``: the query already on its way.

        Raises:
            LoaderUnavailableError: no such source here, breaker open, failure or timeout.
        """
        name = policy.source
        source = self.sources.get(name)
        if source is None:
            self.stats["unknown_source"] += 1
            raise LoaderUnavailableError(
                message=f"node {self.node_id} has no source {name!r} (set [sources.{name}])"
            )
        breaker = self.breakers[name]
        now = self._clock()
        if not breaker.allow(now):
            if early is not None:
                early.cancel()
            self.stats["fast_failures"] += 1
            raise LoaderUnavailableError(
                message=f"source {name!r} is unavailable: its circuit breaker is open after "
                f"{breaker.failures} failures (next probe in {breaker.retry_in(now):.1f}s)"
            )
        self.stats["queries"] += 1
        self.stats["keys_queried"] += len(keys)
        asked = time.perf_counter() if early is None else early.started
        try:
            with trio.fail_after(policy.load_timeout):
                if early is not None:
                    found = {keys[0]: await early.result()}
                elif len(keys) == 1:
                    found = {keys[0]: await source.fetch_one(policy.query, keys[0])}
                else:
                    assert policy.batch_query is not None
                    many = await source.fetch_many(policy.batch_query, keys)
                    found = {key: many.get(key) for key in keys}
        except trio.TooSlowError:
            self._failed(name, "load_timeouts")
            raise LoaderUnavailableError(
                message=f"source {name!r} did not answer within {policy.load_timeout}s"
            ) from None
        except SourceFailure as exc:
            self._failed(name, "load_failures")
            raise LoaderUnavailableError(message=f"source {name!r}: {exc}") from None
        except BadResult as exc:
            breaker.success()
            self.stats["bad_results"] += 1
            raise LoaderUnavailableError(message=f"source {name!r}: {exc}") from None
        except KeyNotLoadable:
            breaker.success()
            self.stats["keys_not_loadable"] += 1
            return {keys[0]: None}
        self.timings.step("query", time.perf_counter() - asked)
        breaker.success()
        return found

    def _failed(self, source: str, what: str) -> None:
        self.stats[what] += 1
        breaker = self.breakers[source]
        opened = breaker.opened
        breaker.failure(self._clock())
        if breaker.opened != opened:
            self.stats["breaker_opened"] += 1
            log.warning("loader_breaker_open", source=source, failures=breaker.failures)

    def _settle(
        self,
        namespace: str,
        policy: LoaderPolicy,
        key: bytes,
        flight: Flight,
        value: bytes | None,
    ) -> None:
        """Store what a load found, unless a write or invalidation landed meanwhile."""
        flight.error = None
        flight.value = value
        entry = self.store.get_entry(namespace, key)
        now = entry.version if entry is not None else self.store.get_tombstone(namespace, key)
        if flight.dirty or now != flight.before:
            self.stats["stale_sets_prevented"] += 1
            if now != flight.before:  # a write won: answer what it left
                # (A typed value now: the loaded value answers this read.)
                with contextlib.suppress(CommandError):
                    held = self.store.execute(namespace, "GET", [key])
                    # Nothing held after an invalidation's own drop: the read, concurrent
                    # with the row's change, is answered the row as loaded (not stored).
                    if held is not None or not flight.invalidated:
                        flight.value = held
            return
        if value is None:
            self.stats["loaded_missing"] += 1
            if entry is not None:  # a refresh or revalidation: the row is gone, so is the key
                self.store.execute(namespace, "DELETE", [key])
                self._replicate(namespace, key)
            if policy.negative_ttl is not None:
                self._remember_missing(namespace, key, policy.negative_ttl)
            return
        ttl = policy.ttl or self.store.policy(namespace).default_ttl
        if ttl is not None and policy.stale_if_error is not None:
            ttl += policy.stale_if_error
        options = {} if ttl is None else {"ttl": ttl}
        started = time.perf_counter()
        try:
            self.store.execute(namespace, "SET", [key, value, options])
        except CommandError as exc:  # over the namespace's bounds with eviction "none"
            self.stats["store_refused"] += 1
            flight.error = exc
            return
        stored = time.perf_counter()
        self.stats["loaded"] += 1
        self._replicate(namespace, key)
        timings = self.timings
        timings.step("store", stored - started)
        timings.step("replicate", time.perf_counter() - stored)
        if flight.reload_since is not None:
            self.stats["reloaded"] += 1
            timings.step("notify_reload", stored - flight.reload_since)

    def _refresh_ahead(self, namespace: str, policy: LoaderPolicy, key: bytes) -> None:
        if (namespace, key) in self.flights or self._nursery is None:
            return
        entry = self.store.get_entry(namespace, key)
        if entry is None or entry.expires_at is None:
            return
        ttl = policy.ttl or self.store.policy(namespace).default_ttl
        assert policy.refresh_ahead is not None
        fresh_left = entry.expires_at - self._wall() - (policy.stale_if_error or 0.0)
        if ttl is None or fresh_left > ttl * (1 - policy.refresh_ahead):
            return
        self.stats["refreshes"] += 1
        self._launch(namespace, policy, [key])

    # --- negative caching -----------------------------------------------------------------------

    def _negative_hit(self, namespace: str, key: bytes) -> bool:
        until = self._negative.get((namespace, key))
        if until is None:
            return False
        if until > self._clock():
            self.stats["negative_hits"] += 1
            return True
        del self._negative[(namespace, key)]
        return False

    def _remember_missing(self, namespace: str, key: bytes, ttl: float) -> None:
        negative = self._negative
        negative.pop((namespace, key), None)
        while len(negative) >= MAX_NEGATIVE:
            del negative[next(iter(negative))]
        negative[(namespace, key)] = self._clock() + ttl

    # --- invalidation ---------------------------------------------------------------------------

    def invalidate(self, namespace: str, key: bytes, notice: Notice | None = None) -> bool:
        """The source says ``key`` changed: this node's hot-key copy of it goes, a load in
        flight here must not store, a negative entry is forgotten.

        The key's coordinator decides for its owners: it drops the key and replicates the
        drop; with a loader that reloads on change, when it held the key (or was loading it),
        it loads it again at once instead — misses from then on join that load — and
        replicates the new value (or, when the reload fails, the drop). The other owners
        leave their record to that replication: a drop of their own, at a version of their
        clock, could land after the coordinator's new value (NOTIFYs reach nodes at
        different times) and win over it.

        ``notice``: the NOTIFY as the source delivers it (when the driver received it, and
        the reload's query if one was started then).

        Returns whether this node dropped the key."""
        started = time.perf_counter()
        self.stats["invalidations"] += 1
        flight = self.flights.get((namespace, key))
        if flight is not None:
            flight.dirty = flight.invalidated = True
        self._negative.pop((namespace, key), None)
        if self._drop_copy is not None:
            self._drop_copy(namespace, key)
        if self._coordinates is not None and not self._coordinates(namespace, key):
            self.stats["invalidations_left_to_owner"] += 1
            self.timings.step("notify_drop", time.perf_counter() - started)
            return False
        held = bool(self.store.execute(namespace, "DELETE", [key]))
        self.stats["invalidations_dropped"] += held
        self.timings.step("notify_drop", time.perf_counter() - started)
        policy = self.policies.get(namespace)
        if (
            policy is not None
            and policy.reloads
            and (held or flight is not None)
            and self._nursery is not None
        ):
            early = None if notice is None else notice.take(policy.query, key)
            self.stats["early_reloads"] += early is not None
            since = started if notice is None else notice.arrived
            try:
                self._launch(namespace, policy, [key], reload_since=since, early=early)
                return held
            except LoaderUnavailableError as exc:  # overloaded: the next miss loads it
                log.debug("loader_reload_refused", error=exc.message)
        self._replicate(namespace, key)
        return held

    def _early_query(self, source: str, channel: str, payload: str) -> str | None:
        """On the source's database thread, as a NOTIFY arrives: the query to start at once
        for a reload this node will make (see :meth:`invalidate`), or None.

        It only reads: the policies (replaced whole by :meth:`install`), the breaker's
        state, the flights and the store's keys (one dictionary lookup each) and
        ``coordinates``. A wrong guess costs a query (``early_reloads_unused``) or the
        hop it would have saved, never a wrong value: :meth:`invalidate` decides again."""
        key = payload.encode("utf-8", "surrogateescape")
        if not key or len(key) > self._max_key:
            return None
        breaker = self.breakers.get(source)
        if breaker is None or breaker.state is not BreakerState.CLOSED:
            return None
        for namespace, policy in self.policies.items():
            if policy.source != source or policy.channel != channel or not policy.reloads:
                continue
            if self._coordinates is not None and not self._coordinates(namespace, key):
                continue
            if (namespace, key) in self.flights or self._holds(namespace, key):
                return policy.query
        return None

    def _holds(self, namespace: str, key: bytes) -> bool:
        """Whether the store has ``key`` (expired or not), with no side effect."""
        try:
            return key in self.store.keyspace(namespace)
        except CommandError:
            return False

    def _on_payload(self, source: str, channel: str, payload: str) -> None:
        key = payload.encode("utf-8", "surrogateescape")
        if not key or len(key) > self._max_key:
            self.stats["notify_bad_payload"] += 1
            log.warning(
                "loader_bad_notify",
                source=source,
                channel=channel,
                payload=payload[:64],
                reason="empty" if not key else f"{len(key)} bytes, over max_key_bytes",
            )
            return
        notice = getattr(self.sources.get(source), "delivering", None)
        for namespace, policy in self.policies.items():
            if policy.source == source and policy.channel == channel:
                try:
                    self.invalidate(namespace, key, notice)
                except CommandError as exc:  # the namespace was dropped meanwhile
                    log.debug("loader_invalidate_failed", error=str(exc))
        if notice is not None and notice.early is not None and not notice.early.taken:
            self.stats["early_reloads_unused"] += 1

    def _resync(self, source: str, channel: str) -> None:
        """NOTIFYs may have been missed: drop every key of the namespaces on ``channel``."""
        for namespace, policy in self.policies.items():
            if policy.source == source and policy.channel == channel:
                self.stats["resyncs"] += 1
                self._negative = {k: v for k, v in self._negative.items() if k[0] != namespace}
                for flight_key, flight in self.flights.items():
                    if flight_key[0] == namespace:
                        flight.dirty = True
                try:
                    self.store.execute(namespace, "FLUSH", [])
                except CommandError as exc:
                    log.debug("loader_resync_failed", error=str(exc))

    def _sync_listeners(self) -> None:
        assert self._nursery is not None
        wanted = {
            (p.source, p.channel)
            for p in self.policies.values()
            if p.channel is not None and p.source in self.sources
        }
        for gone in set(self._listeners) - wanted:
            self._listeners.pop(gone).cancel()
        for source, channel in wanted - set(self._listeners):
            scope = trio.CancelScope()
            self._listeners[(source, channel)] = scope
            self._nursery.start_soon(self._listen, source, channel, scope)

    async def _listen(self, source_name: str, channel: str, scope: trio.CancelScope) -> None:
        source = self.sources[source_name]
        pair = (source_name, channel)
        missed = False  # NOTIFYs may have gone unheard since the namespaces loaded keys
        retry = LISTEN_RETRY
        with scope:
            while True:
                lost = trio.Event()
                try:
                    handle = await source.listen(
                        channel, partial(self._on_payload, source_name, channel), lost.set
                    )
                except SourceFailure as exc:
                    self.stats["listen_failures"] += 1
                    log.warning("loader_listen_failed", source=source_name, error=str(exc))
                    # Loads may go on before a later try connects (the database is back, the
                    # back-off runs): what was announced until then is unknown, as after a
                    # lost connection.
                    missed = True
                    await trio.sleep(retry)
                    retry = min(retry * 2, LISTEN_RETRY_MAX)
                    continue
                retry = LISTEN_RETRY
                if missed:
                    self._resync(source_name, channel)
                missed = True  # from when this connection ends
                self.listening.add(pair)
                try:
                    await self._watch(handle, lost)
                finally:
                    self.listening.discard(pair)
                    with trio.CancelScope(shield=True):
                        try:
                            await handle.aclose()
                        except Exception as exc:  # the connection is gone anyway
                            log.debug("loader_listen_close", error=str(exc))
                self.stats["listener_lost"] += 1
                log.warning("loader_listener_lost", source=source_name, channel=channel)

    async def _watch(self, handle: Any, lost: trio.Event) -> None:
        """Return once the listening connection is lost (or stops answering pings)."""
        while True:
            with trio.move_on_after(LISTEN_PING):
                await lost.wait()
                return
            try:
                with trio.fail_after(LISTEN_PING):
                    await handle.ping()
            except (SourceFailure, trio.TooSlowError):
                return

    # --- life and figures -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the loads and listeners until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._sync_listeners()
            task_status.started()
            await trio.sleep_forever()

    def figures(self) -> dict[str, Any]:
        """Counters (loads, coalesced waiters, ...), gauges, and the timing histograms."""
        gauges: dict[str, int] = {
            "loads_in_flight": len(self.flights),
            "negative_entries": len(self._negative),
            "listening": len(self.listening),
        }
        for name, breaker in self.breakers.items():
            gauges[f"breaker_state:{name}"] = int(breaker.state)
        return {"counters": dict(self.stats), "gauges": gauges, "timings": self.timings.to_wire()}


__all__ = ["FORWARD_MARGIN", "MAX_FLIGHTS", "Flight", "Loader"]
