"""The one client engine: pool, routing, retries, ring refresh, split batches, pipelines.

Every front end — the blocking :class:`~meshcache.Client`, :class:`~meshcache.TrioClient` and
:class:`~meshcache.AsyncClient` — is a :class:`ClientEngine` plus a small I/O adapter. The
engine's logic is written once, as coroutines; the adapter supplies what differs:

* ``_now()``: the clock deadlines are measured on;
* ``_open(address, deadline)``: a connection (:class:`Connection`) to a node;
* ``_new_waiter()`` and ``_wait(waiter, deadline)``: waiting for a pooled connection;
* ``_gather(jobs)``: running the groups of a split batch at once.

Adapter coroutines signal a passed deadline with the builtin :class:`TimeoutError`; the engine
turns it into a :class:`~meshcache.errors.MeshcacheTimeout` that says what was waited for. The
blocking front end's adapter blocks inside its coroutines and never suspends, so it runs the
engine's coroutines to completion with one ``send`` (:func:`run_blocking`).

**Deadlines.** ``timeout`` bounds a whole call — waiting for a pooled connection, connecting,
the ring fetch before a first request, the retry — not each step: ``Client(timeout=2).get(k)``
raises :class:`~meshcache.errors.MeshcacheTimeout` within 2 s, whatever happens.

**Retries.** A batch made only of idempotent ops (``OpSpec.idempotent``: reads, SET, DELETE,
...) is sent once more when its connection breaks before every answer arrived; other batches
raise :class:`~meshcache.errors.MeshcacheConnectionError`, since they may have been applied.
The retry takes no connection to the node that failed: its idle ones are closed, and the router
puts it last (a node being killed may still accept a connection), so the retry goes to the next
candidate when there is one. Timeouts are never retried. A connection whose exchange did not
complete is closed, never reused.

**Size.** A request whose frame is over ``max_frame`` is refused with
:class:`~meshcache.errors.TooLargeError` before a byte of its batch is sent (the connection
stays usable); in a batch split by node, the other nodes' groups are sent.

**Unreachable nodes.** A circuit breaker per node (:class:`~meshcache.client.breaker.Breakers`)
opens when a connection to it fails or times out, or a request on it times out or breaks: the
node goes to the end of every candidate list for a back-off (1 s doubling to 30 s), so requests
for its keys go at once to the next owner or to any node that answers (which forwards them, or
stands in for owners it cannot reach). After a failure, the next call first checks every node at
once: a fresh connection within the probe timeout (a node whose kernel does not accept one is
unreachable: opened, without waiting for gossip to suspect it or for a busy node to answer) and
``MEMBERS`` on it (the members a node holds dead are opened too; a node that answered serves,
and its breaker closes). So a partition costs one timed-out call, not one per unreachable node.
When a back-off ends the client checks again: a node still unreachable or held dead stays open
for another back-off; otherwise one caller probes it (its connection attempt bounded by
``probe_timeout``), and a completed request closes the breaker.
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, Protocol, Self, TypeVar

from meshcache.client import results
from meshcache.client.breaker import Breakers
from meshcache.client.commands import DEFAULT_NAMESPACE, CommandQueue, Commands
from meshcache.client.core import ClientProtocol, Command, Exchange, batch_route
from meshcache.client.routing import Router, SeedRouter
from meshcache.client.split import Group, Plan, plan
from meshcache.client.tlsconf import client_context
from meshcache.client.url import MAX_TIMEOUT, check_timeout, parse_url
from meshcache.errors import (
    ConfigError,
    MeshcacheConnectionError,
    MeshcacheError,
    MeshcacheTimeout,
    TooLargeError,
)
from meshcache.wire import DEFAULT_MAX_FRAME, OPS, Address, OpKind, parse_addresses

T = TypeVar("T")
C = TypeVar("C", bound="Connection")

_GET, _HOT_GET = OPS["GET"], OPS["HOT_GET"]

# The defaults of every front end (one __init__ below is the only place they are used).
DEFAULT_ADDRESS = "127.0.0.1:7400"
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 64

FETCH_MEMBERS: tuple[Command[Any], ...] = (
    Command.build("MEMBERS", [], DEFAULT_NAMESPACE, results.map_list),
)


def _default_router(addresses: str | Address | Sequence[str | Address], *, smart: bool) -> Router:
    """The router a client builds for ``addresses``: by ring when ``smart``, else by seed.

    The ring's code is imported only by a client that routes by it (a one-shot CLI command
    does not).

    Raises:
        ConfigError: no address, or one that does not parse.
    """
    seeds = parse_addresses(addresses)
    if not smart:
        return SeedRouter(seeds)
    from meshcache.client.ring_router import RingRouter

    return RingRouter(seeds)


class Connection(Protocol):
    """One pooled connection of a front end; lent to one caller at a time."""

    address: Address
    protocol: ClientProtocol

    async def exchange(self, commands: Sequence[Command[Any]], deadline: float | None) -> Exchange:
        """Send the commands in one write and read until each has its reply.

        Raises:
            TimeoutError: ``deadline`` (on the front end's clock) passed first.
            MeshcacheConnectionError: the connection broke or the node closed it.
            RemoteProtocolError: the node (or whatever answered) broke the protocol.
        """
        ...

    @property
    def reusable(self) -> bool:
        """False when the node has closed the idle connection (or sent something unasked)."""
        ...

    def close_now(self) -> None:
        """Close without waiting (safe in cancelled or failing code paths)."""
        ...


class Waiter(Protocol):
    """A one-shot event handed to a caller waiting for a pooled connection."""

    def set(self) -> None: ...


class ClientEngine(ABC, Commands, Generic[C]):
    """What every front end shares: see the module docstring for the rules it applies.

    The ring is fetched (``RING``, ``NS_LIST``) before the first request, and again, by the one
    caller whose response first carries a newer ring version, before that call returns; other
    callers keep routing by the ring they have. A node outside a mesh has no ring, and then the
    client routes by seed as with ``smart=False``.
    """

    def __init__(
        self,
        addresses: str | Address | Sequence[str | Address] = DEFAULT_ADDRESS,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        decode_responses: bool = False,
        smart: bool = True,
        router: Router | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | os.PathLike[str] | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """A client of the nodes at ``addresses``; it connects on first use.

        Args:
            addresses: ``"host:port"``, several as ``"h:p,h:p"`` (any that answers is used, the
                next ones on failure), or a list of them.
            namespace: the namespace of calls that name none.
            timeout: seconds a whole call may take, retries included (None: no limit); also
                bounds the wait for a free pooled connection. At most :data:`MAX_TIMEOUT`
                (one year): what the OS's waits take.
            connect_timeout: seconds to wait for a node to accept a connection (within
                ``timeout``; at most :data:`MAX_TIMEOUT`).
            max_connections: how many connections may be lent out at once, over all nodes.
            decode_responses: return stored data (values, fields, members) as ``str`` decoded
                from UTF-8 instead of ``bytes``.
            smart: route by the cluster ring (a :class:`~meshcache.client.RingRouter` over
                ``addresses``): each key's requests go to its first owner, batches of many keys
                are split by node and sent at once. False: every request goes to the first seed
                that answers (a :class:`~meshcache.client.SeedRouter`), e.g. to talk to exactly
                one node.
            router: picks the node per key; overrides ``smart``.
            max_frame: the largest frame, in bytes, sent or accepted: a request over it
                raises :class:`~meshcache.errors.TooLargeError` without being sent (the node
                refuses frames over its ``max_frame_bytes``, 16 MiB by default, as well).
            username, password: the user every new connection authenticates as (``AUTH``)
                before its first request, for nodes that have users (docs/security.md). A
                refused ``AUTH`` raises :class:`~meshcache.errors.WrongPassError`.
            tls: speak TLS to the nodes (their ``tls_cert_file`` is set); the node's
                certificate is verified against ``ca_file`` (else the system's CAs) and must
                name the address connected to.
            ca_file, cert_file, key_file: PEM files: the CA that signed the nodes'
                certificates, and a client certificate and its key for nodes that require one
                (``tls_client_auth``). Giving any of them implies ``tls``.
            ssl_context: a context of your own, used as it is (implies ``tls``).

        Raises:
            ConfigError: an address does not parse, a setting is out of range, or only one of
                ``username`` and ``password`` is given.
        """
        if type(max_connections) is not int or max_connections < 1:
            raise ConfigError(f"max_connections must be an integer >= 1, not {max_connections!r}")
        timeout = check_timeout("timeout", timeout)
        connect_timeout = check_timeout("connect_timeout", connect_timeout)
        if type(namespace) is not str or not namespace:
            raise ConfigError(f"namespace must be a non-empty str, not {namespace!r}")
        if (username is None) != (password is None):
            raise ConfigError("username and password go together: give both or neither")
        #: The ``AUTH`` each new connection sends first (None: no authentication).
        self._auth: Command[Any] | None = None
        if username is not None and password is not None:
            if type(username) is not str or type(password) is not str or not username:
                raise ConfigError("username and password must be non-empty str")
            self._auth = Command.build(
                "AUTH", [username, password], DEFAULT_NAMESPACE, results.any_value
            )
        #: What every connection is wrapped with (None: plaintext).
        self.ssl_context: ssl.SSLContext | None = ssl_context
        if ssl_context is None and (tls or ca_file or cert_file or key_file):
            self.ssl_context = client_context(ca_file, cert_file, key_file)
        self.router: Router = router or _default_router(addresses, smart=smart)
        self._namespace = namespace
        self._decoders = results.TEXT if decode_responses else results.BINARY
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.max_frame = max_frame
        # True until a first request has asked the router whether it wants the ring.
        self._ring_unasked = True
        # The pool: idle connections per node, how many are lent, callers waiting for one. One
        # lock guards all three (threads share a blocking client; on an event loop it is never
        # contended). A freed connection's slot is handed straight to the first waiter.
        self._lock = threading.Lock()
        self._idle: dict[Address, list[C]] = {}
        self._lent = 0
        self._waiters: deque[Waiter] = deque()
        self._closed = False
        #: The circuit breaker of every node this client failed to reach.
        self.breakers = Breakers(self._now)
        self._learning = threading.Lock()
        #: Nodes whose last check (:meth:`_learn_members`) could not connect to them.
        self._unreachable: set[Address] = set()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A client for ``meshcache://host:port[,host:port...][/namespace][?option=value&...]``.

        Options in the query are the keyword arguments of the constructor (``timeout``,
        ``connect_timeout``, ``max_connections``, ``decode_responses``, ``smart``, ``namespace``,
        ``max_frame``); keyword arguments given here override what the URL says.

        Raises:
            ConfigError: the URL is not a meshcache URL, or an option is unknown or malformed.
        """
        return cls(**{**parse_url(url), **options})

    @property
    def namespace(self) -> str:
        """The namespace of calls that name none."""
        return self._namespace

    @property
    def decode_responses(self) -> bool:
        """True when stored data comes back as ``str``."""
        return self._decoders is results.TEXT

    # -- what a front end supplies --------------------------------------------------------------

    @abstractmethod
    def _now(self) -> float:
        """Seconds on the clock that deadlines passed to the adapter are measured on."""

    @abstractmethod
    async def _open(self, address: Address, deadline: float | None) -> C:
        """Connect to ``address``; TimeoutError at ``deadline``, OSError when it refuses."""

    @abstractmethod
    def _new_waiter(self) -> Waiter:
        """A new one-shot event for :meth:`_wait`."""

    @abstractmethod
    async def _wait(self, waiter: Waiter, deadline: float | None) -> None:
        """Wait until ``waiter`` is set; TimeoutError at ``deadline``."""

    @abstractmethod
    async def _gather(self, jobs: Sequence[Callable[[], Coroutine[Any, Any, T]]]) -> list[T]:
        """Run the jobs at once; their results in order. The jobs never raise MeshcacheError."""

    # -- a call ---------------------------------------------------------------------------------

    async def _run(self, commands: Sequence[Command[Any]], *, raise_on_error: bool) -> list[Any]:
        """Send a call's commands where they belong; their results in order.

        With ``raise_on_error`` the first error is raised (after every reply arrived); without
        it, errors stand in the list in place of their results.
        """
        timeout = self.timeout
        deadline = None if timeout is None else self._now() + timeout
        if self._ring_unasked:
            self._ring_unasked = False
            if self.router.observe_ring_version(0):
                await self._fetch_ring(None, deadline, before_request=True)
        breakers = self.breakers
        if breakers.open and (breakers.wants_members or breakers.due()):
            await self._learn_members(deadline)
        router = self.router
        hot_source = router.hot_due()
        if hot_source is not None:
            await self._fetch_hot(hot_source, deadline)
        if router.written:
            commands = _demand_versions(router, commands)
        if len(commands) > 1 or commands[0].spec.multi_key:
            batches = plan(commands, router.primary)
            if batches is not None:
                return await self._run_plan(batches, raise_on_error, deadline)
        key, retryable = batch_route(commands)
        hot = router.hot
        if (
            hot
            and key is not None
            and key in hot
            and any(command.spec.kind is OpKind.WRITE for command in commands)
        ):
            # To the owner, whose answer says the version the write left (read-your-writes).
            owner = router.primary(key)
            return await self._send(commands, key, retryable, raise_on_error, deadline, owner)
        return await self._send(commands, key, retryable, raise_on_error, deadline)

    async def _send(
        self,
        commands: Sequence[Command[Any]],
        key: bytes | None,
        retryable: bool,
        raise_on_error: bool,
        deadline: float | None,
        prefer: Address | None = None,
    ) -> list[Any]:
        """Send the batch to the router's node for ``key`` (``prefer`` first when given)."""
        retries = 1 if retryable else 0
        while True:
            conn = self._lend_idle(key, prefer)
            if conn is None:
                conn = await self._acquire(key, prefer, deadline)
            try:
                exchange = await conn.exchange(commands, deadline)
            except MeshcacheConnectionError:
                self._discard(conn)
                # The node may be going away: its other connections are as likely broken, and a
                # new one may still be accepted by a listener about to close. The retry takes
                # none of them, and goes to the next candidate if the router has one.
                self._drop_idle(conn.address)
                self.router.failed(conn.address)
                self.breakers.failure(conn.address)
                if retries:
                    retries -= 1
                    continue
                raise
            except TimeoutError:
                self._discard(conn)
                # Its other connections would hang the same way (a partition, a paused node).
                self._drop_idle(conn.address)
                self.breakers.failure(conn.address)
                raise MeshcacheTimeout(conn.protocol.no_answer(self.timeout)) from None
            except TooLargeError:
                self._release(conn)  # refused before anything was sent: the connection is sound
                raise
            except BaseException:
                self._discard(conn)
                raise
            self._release(conn)
            if self.breakers.open:
                self.breakers.success(conn.address)
            router = self.router
            if router.observe_ring_version(conn.protocol.ring_version):
                await self._fetch_ring(conn.address, deadline)
            if conn.protocol.hot_version:
                router.hot_hint(conn.address, conn.protocol.hot_version)
            if exchange.hinted or router.hot:
                for command, version, versions in exchange.write_versions():
                    router.wrote(_written_keys(command), version, versions)
            return exchange.results(raise_on_error=raise_on_error)

    async def _fetch_ring(
        self, prefer: Address | None, deadline: float | None, *, before_request: bool = False
    ) -> None:
        """Fetch the ring (from ``prefer`` first: it answered with the newer version).

        A failed fetch leaves the router as it was and the call goes on, except a timeout
        before the call's request: the call has no time left, and its error says why.
        """
        from meshcache.client.ring_router import FETCH_RING  # loaded with the RingRouter

        replies = None
        try:
            replies = await self._send(FETCH_RING, None, True, True, deadline, prefer)
        except MeshcacheTimeout:
            if before_request:
                raise
        except MeshcacheError:
            pass
        finally:
            self.router.ring_fetched(replies)

    async def _fetch_hot(self, address: Address, deadline: float | None) -> None:
        """Ask ``address`` for its hot keys; a failure only leaves the router without them."""
        from meshcache.client.ring_router import FETCH_HOT  # loaded with the RingRouter

        replies = None
        try:
            replies = await self._send(FETCH_HOT, None, True, False, deadline, address)
        except MeshcacheError:
            pass
        finally:
            self.router.hot_fetched(address, replies)

    async def _learn_members(self, deadline: float | None) -> None:
        """Find out which nodes this client can reach, and which of them serve; one caller at
        a time. Run after a breaker opened on a failure, and when a back-off ended.

        Every node not found unreachable by the last check is checked at once
        (:meth:`_check_node`): a fresh connection within ``probe_timeout``, then ``MEMBERS``
        on it. A node whose kernel does not accept the connection (a cut, a host down) is
        opened: that needs no gossip suspicion and no answer from a busy process, so after one
        failure every unreachable node is routed around, not one per timed-out call. The
        members a node that answered holds dead are opened too (a node that accepts
        connections but does not answer, e.g. a paused one). A node that answered is serving:
        its breaker closes (a request to it may have timed out while it waited on a node it
        could not reach itself). A node that accepted but did not answer in time is left as it
        was: under load that is slowness, not unreachability. Then the nodes found unreachable
        before whose back-off is over and that no answer holds dead are checked the same way
        (when an answer holds them dead they stay open without a connection attempt). The
        whole check takes at most half the call's remaining time.
        """
        if not self._learning.acquire(blocking=False):
            return
        try:
            breakers = self.breakers
            breakers.wants_members = False
            now = self._now()
            until = now + 2 * breakers.probe_timeout
            if deadline is not None and deadline - now < 2 * (until - now):
                until = now + (deadline - now) / 2
            known = list(dict.fromkeys(self.router.candidates(None)))
            unreachable = self._unreachable
            await self._check_nodes([a for a in known if a not in unreachable], until)
            due = [
                a
                for a in known
                if a in unreachable and breakers.state(a) == "half-open" and not breakers.probing(a)
            ]
            if due:
                await self._check_nodes(due, until)
        finally:
            self._learning.release()

    async def _check_nodes(self, addresses: Sequence[Address], until: float) -> None:
        """Check ``addresses`` at once (:meth:`_learn_members`) and act on what was found."""
        if not addresses:
            return
        breakers = self.breakers
        jobs = [functools.partial(self._check_node, a, until) for a in addresses]
        outcomes = await self._gather(jobs)
        for address, accepted, _answered, _members in outcomes:
            if accepted:
                self._unreachable.discard(address)
                continue
            self._unreachable.add(address)
            if breakers.state(address) != "open":
                breakers.failure(address, learn=False)
                self._drop_idle(address)
        for _address, _accepted, answered, members in outcomes:
            if answered and members is not None:
                for down in breakers.learn(members):
                    self._drop_idle(down)
        for address, _accepted, answered, _members in outcomes:
            if answered:
                breakers.success(address)

    async def _check_node(self, address: Address, until: float) -> tuple[Address, bool, bool, Any]:
        """Connect to ``address`` (within ``probe_timeout``, by ``until``) and ask ``MEMBERS``
        on that connection (by ``until``): ``(address, accepted, answered, members)`` —
        ``answered`` when any reply came (an error reply too: the node serves), ``members``
        the answer when it was one. A connection that answered joins the idle pool; any other
        is closed. Never raises a MeshcacheError."""
        connect_by = min(until, self._now() + self.breakers.probe_timeout)
        try:
            conn = await self._open(address, connect_by)
        except (TimeoutError, OSError, MeshcacheError):
            return address, False, False, None
        try:
            if self._auth is not None:
                (await conn.exchange([self._auth], until)).results()
            exchange = await conn.exchange(FETCH_MEMBERS, until)
        except (TimeoutError, OSError, MeshcacheError):
            conn.close_now()
            return address, True, False, None
        except BaseException:
            conn.close_now()
            raise
        with self._lock:
            keep = not self._closed and conn.protocol.error is None
            if keep:
                self._idle.setdefault(address, []).append(conn)
        if not keep:
            conn.close_now()
        members = exchange.results(raise_on_error=False)[0]
        return address, True, True, None if isinstance(members, MeshcacheError) else members

    async def _run_plan(
        self, batches: Plan, raise_on_error: bool, deadline: float | None
    ) -> list[Any]:
        """Send every group at once, then merge the results in the caller's order."""
        jobs = [functools.partial(self._send_group, group, deadline) for group in batches.groups]
        outcomes = await self._gather(jobs)
        done: list[list[Any]] = []
        for outcome in outcomes:
            if isinstance(outcome, MeshcacheError):
                raise outcome
            done.append(outcome)
        return batches.results(done, raise_on_error=raise_on_error)

    async def _send_group(self, group: Group, deadline: float | None) -> list[Any] | MeshcacheError:
        # The error is returned, not raised: one group failing must not cancel the others
        # (whose connections would be closed half-read), and the caller raises it once every
        # group is done.
        try:
            return await self._send(group.commands, group.key, group.retryable, False, deadline)
        except MeshcacheError as exc:
            return exc

    # -- the pool -------------------------------------------------------------------------------

    def _lend_idle(self, key: bytes | None, prefer: Address | None = None) -> C | None:
        """The usual case, without a coroutine: a free slot and an idle usable connection to
        ``prefer``, or else to the router's first candidate for ``key``, lent out; None
        (nothing taken) otherwise."""
        if self._closed or self.breakers.open:
            return None
        if prefer is None:
            candidates = self.router.candidates(key)
            if not candidates:
                return None
            prefer = candidates[0]
        with self._lock:
            if self._lent >= self.max_connections:
                return None
            idle = self._idle.get(prefer)
            if not idle:
                return None
            conn = idle.pop()
            self._lent += 1
        if conn.reusable:
            return conn
        conn.close_now()
        self._free_slot()
        return None

    async def _acquire(
        self, key: bytes | None, prefer: Address | None = None, deadline: float | None = None
    ) -> C:
        """A connection to the router's node for ``key``, failing over down its list.

        Raises:
            MeshcacheTimeout: no connection was free, or none could be made, by ``deadline``.
            MeshcacheConnectionError: the client is closed, or no candidate accepted.
        """
        if self._closed:
            raise MeshcacheConnectionError("the client is closed")
        with self._lock:
            if self._lent < self.max_connections:
                self._lent += 1
                waiter = None
            else:
                waiter = self._new_waiter()
                self._waiters.append(waiter)
        if waiter is not None:
            await self._wait_for_slot(waiter, deadline)
        try:
            candidates = self.router.candidates(key)
            if prefer is not None:
                candidates = [prefer, *(a for a in candidates if a != prefer)]
            return await self._connect(self.breakers.order(candidates), deadline)
        except BaseException:
            self._free_slot()
            raise

    async def _wait_for_slot(self, waiter: Waiter, deadline: float | None) -> None:
        """Wait until a slot is handed to ``waiter``; MeshcacheTimeout at ``deadline``.

        On any error the caller holds no slot.
        """
        try:
            await self._wait(waiter, deadline)
        except BaseException as exc:
            with self._lock:
                try:
                    self._waiters.remove(waiter)
                    handed = False
                except ValueError:
                    handed = True
            if handed:  # a slot came with the wake-up: pass it on
                self._free_slot()
            if isinstance(exc, TimeoutError):
                raise MeshcacheTimeout(
                    f"no free connection within {self.timeout:g} s"
                    f" (all {self.max_connections} are in use)"
                ) from None
            raise

    def _free_slot(self) -> None:
        with self._lock:
            if not self._waiters:
                self._lent -= 1
                return
            waiter = self._waiters.popleft()
        waiter.set()

    def _take_idle(self, address: Address) -> C | None:
        """An idle connection to ``address`` that is still usable, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(address)
                if not idle:
                    return None
                conn = idle.pop()
            if conn.reusable:
                return conn
            conn.close_now()

    async def _connect(self, candidates: Sequence[Address], deadline: float | None) -> C:
        """An idle or new connection to the first candidate that has or accepts one."""
        failures: list[str] = []
        for address in candidates:
            conn = self._take_idle(address)
            if conn is not None:
                return conn
            until = deadline
            call_bound = deadline is not None  # the call's deadline limits this attempt
            connect_timeout = self.connect_timeout
            if self.breakers.probing(address):
                # A half-open node's probe: a short attempt, then the next candidate.
                probe = self.breakers.probe_timeout
                if connect_timeout is None or probe < connect_timeout:
                    connect_timeout = probe
            if connect_timeout is not None:
                by_connect = self._now() + connect_timeout
                if deadline is None or by_connect < deadline:
                    until, call_bound = by_connect, False
            try:
                conn = await self._open(address, until)
            except TimeoutError:
                self.router.failed(address)
                self.breakers.failure(address)
                failures.append(f"{address}: timed out")
                if call_bound:
                    raise MeshcacheTimeout(
                        f"could not connect within {self.timeout:g} s (" + "; ".join(failures) + ")"
                    ) from None
                continue
            except OSError as exc:
                self.router.failed(address)
                self.breakers.failure(address)
                failures.append(f"{address}: {exc or type(exc).__name__}")
                continue
            if self._auth is not None:
                await self._authenticate(conn, deadline)
            self.router.connected(address)
            return conn
        raise MeshcacheConnectionError(
            "could not connect to any node (" + "; ".join(failures) + ")"
        )

    async def _authenticate(self, conn: C, deadline: float | None) -> None:
        """Send ``AUTH`` on a new connection; close it and raise when the node refuses."""
        assert self._auth is not None
        try:
            exchange = await conn.exchange([self._auth], deadline)
            exchange.results()
        except BaseException:
            conn.close_now()  # the caller frees its slot
            raise

    def _release(self, conn: C) -> None:
        """Give back a connection whose exchange completed."""
        with self._lock:
            keep = not self._closed and conn.protocol.error is None
            if keep:
                idle = self._idle.get(conn.address)
                if idle is None:
                    self._idle[conn.address] = [conn]
                else:
                    idle.append(conn)
            if self._waiters:
                waiter = self._waiters.popleft()
            else:
                self._lent -= 1
                waiter = None
        if not keep:
            conn.close_now()
        if waiter is not None:
            waiter.set()

    def _discard(self, conn: C) -> None:
        """Close a connection whose state is unknown (timeout, breakage, interruption)."""
        try:
            conn.close_now()
        finally:
            self._free_slot()

    def _drop_idle(self, address: Address) -> None:
        """Close every idle connection to ``address``."""
        with self._lock:
            idle = self._idle.pop(address, ())
        for conn in idle:
            conn.close_now()

    def _close_pool(self) -> list[C]:
        """Refuse further calls; the idle connections, for the front end to close."""
        self._closed = True
        with self._lock:
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        return idle


class PipelineBase(Commands, CommandQueue):
    """Commands queued to be sent in one write by the front end's ``execute``.

    Every method queues its command and returns the pipeline, so calls chain. ``execute``
    returns the results in order. With ``raise_on_error`` (the default) it raises the first
    error after every reply has arrived, as redis-py does; without it, the exception objects
    stand in the list where their results would be. A pipeline made only of idempotent ops is
    retried once on a broken connection; any other is not. Its commands use the client's
    namespace and ``decode_responses``.
    """

    def __init__(self, client: ClientEngine[Any], *, raise_on_error: bool = True) -> None:
        self._client = client
        self._namespace = client._namespace
        self._decoders = client._decoders
        self.raise_on_error = raise_on_error
        self._commands: list[Command[Any]] = []

    def _execute(self, command: Command[Any]) -> Self:
        self._commands.append(command)
        return self

    def __len__(self) -> int:
        return len(self._commands)

    def _take(self, raise_on_error: bool | None) -> Coroutine[Any, Any, list[Any]] | None:
        """The call that sends what is queued (None when nothing is), emptying the queue."""
        commands, self._commands = self._commands, []
        if not commands:
            return None
        if raise_on_error is None:
            raise_on_error = self.raise_on_error
        return self._client._run(commands, raise_on_error=raise_on_error)

    def reset(self) -> None:
        """Forget the queued commands."""
        self._commands = []


def _demand_versions(router: Router, commands: Sequence[Command[Any]]) -> Sequence[Command[Any]]:
    """``commands`` with each ``GET`` of a key this client wrote lately (a hot key) sent as
    ``HOT_GET`` with the version its write left: no copy older than it answers."""
    out: list[Command[Any]] | None = None
    for i, command in enumerate(commands):
        if command.spec is _GET:
            version = router.min_version(command.args[0])
            if version is not None:
                if out is None:
                    out = list(commands)
                key = command.args[0]
                out[i] = Command(_HOT_GET, command.namespace, [key, version], command.decode)
    return commands if out is None else out


def _written_keys(command: Command[Any]) -> list[bytes]:
    """The keys a write command writes."""
    args = command.args
    if command.spec.name == "MSET":
        return args[::2]
    if command.spec.multi_key:
        return args
    return args[:1] if command.spec.keyed else []


def run_blocking(call: Coroutine[Any, Any, T]) -> T:
    """Run an engine coroutine whose adapter blocks instead of suspending; its result."""
    try:
        call.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    call.close()
    raise RuntimeError("a blocking client's coroutine suspended")


__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT",
    "FETCH_MEMBERS",
    "MAX_TIMEOUT",
    "ClientEngine",
    "Connection",
    "PipelineBase",
    "Waiter",
    "run_blocking",
]
