"""``meshcache.Client``: the blocking, thread-safe client with a connection pool.

.. code-block:: python

    with meshcache.Client("127.0.0.1:7400") as client:
        client.set("user:1", b"ada", ttl=60)
        client.get("user:1")            # b"ada"
        with client.pipeline() as pipe:
            pipe.incr("hits").get("user:1")
            pipe.execute()              # [1, b"ada"]
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Self, TypeVar

from meshcache.client.commands import CommandQueue, Commands, SyncExecutor
from meshcache.client.core import ClientProtocol, Command, Exchange, batch_route
from meshcache.client.ring_router import FETCH_RING, default_router
from meshcache.client.routing import Address, Router
from meshcache.client.sockets import RECV_SIZE, readable_check
from meshcache.client.split import SPLIT_OPS, Group, Plan, plan
from meshcache.errors import (
    ConfigError,
    MeshcacheConnectionError,
    MeshcacheError,
    MeshcacheTimeout,
)
from meshcache.wire import DEFAULT_MAX_FRAME

T = TypeVar("T")

# A blocking call may run this much past its deadline before the socket's timeout is re-armed
# (each settimeout is a syscall); see _Connection.exchange.
_DEADLINE_SLACK = 0.001


class _Connection:
    """One socket and its protocol state; used by one thread at a time (the pool sees to it).

    The socket keeps one standing timeout (the client's), set at connect: each settimeout is an
    ioctl, so it is changed only when an exchange needs several reads and its deadline is nearer
    than the standing timeout.
    """

    __slots__ = ("_idle_check", "_timeout", "address", "protocol", "sock")

    def __init__(
        self, address: Address, sock: socket.socket, max_frame: int, timeout: float | None
    ) -> None:
        self.address = address
        self.sock = sock
        self.protocol = ClientProtocol(max_frame)
        sock.settimeout(timeout)
        self._timeout = timeout
        self._idle_check = readable_check(sock)

    @classmethod
    def open(
        cls, address: Address, connect_timeout: float | None, max_frame: int, timeout: float | None
    ) -> _Connection:
        """Connect; raise OSError (TimeoutError included) when the node does not accept."""
        sock = socket.create_connection((address.host, address.port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return cls(address, sock, max_frame, timeout)
        except BaseException:
            sock.close()
            raise

    def _arm(self, seconds: float | None) -> None:
        self.sock.settimeout(seconds)
        self._timeout = seconds

    def exchange(self, commands: Sequence[Command[Any]], timeout: float | None) -> Exchange:
        """Send the commands in one write and read until each has its reply.

        Raises:
            MeshcacheTimeout: the replies did not all arrive within ``timeout`` seconds.
            MeshcacheConnectionError: the connection broke or the node closed it.
            RemoteProtocolError: the node broke the protocol.
        In every case the connection must be discarded.
        """
        exchange = Exchange(self.protocol, commands)
        sock = self.sock
        try:
            if timeout is None:
                if self._timeout is not None:
                    self._arm(None)
                sock.sendall(exchange.outgoing)
                while True:
                    data = sock.recv(RECV_SIZE)
                    if not data:
                        raise MeshcacheConnectionError(f"{self.address} closed the connection")
                    if exchange.receive_data(data):
                        return exchange
            deadline = time.monotonic() + timeout
            if self._timeout != timeout:  # a previous exchange re-armed it
                self._arm(timeout)
            armed = timeout
            sock.sendall(exchange.outgoing)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                if armed > remaining + _DEADLINE_SLACK:
                    self._arm(remaining)
                    armed = remaining
                data = sock.recv(RECV_SIZE)
                if not data:
                    raise MeshcacheConnectionError(f"{self.address} closed the connection")
                if exchange.receive_data(data):
                    return exchange
        except TimeoutError:
            raise MeshcacheTimeout(f"no answer from {self.address} within {timeout} s") from None
        except OSError as exc:
            raise MeshcacheConnectionError(f"connection to {self.address} broke: {exc}") from exc

    @property
    def reusable(self) -> bool:
        """False when the node closed the idle connection (or sent something unasked)."""
        if self.protocol.error is not None or self.protocol.pending:
            return False
        try:
            return not self._idle_check()
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        self.sock.close()


class ConnectionPool:
    """Connections per node address, each lent to one thread at a time.

    At most ``max_connections`` are lent out at once across all addresses; a thread that finds none
    free waits up to ``timeout`` seconds. Idle connections the node has closed are dropped
    when found, before they are lent again.
    """

    def __init__(
        self,
        router: Router,
        *,
        connect_timeout: float | None,
        timeout: float | None,
        max_connections: int,
        max_frame: int,
    ) -> None:
        if max_connections < 1:
            raise ConfigError("max_connections must be at least 1")
        self.router = router
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_frame = max_frame
        self.max_connections = max_connections
        # One lock guards the count of lent connections and the idle lists; threads wait on
        # the condition only when every connection is lent (a semaphore would take its own
        # Python-level lock on every acquire and release).
        self._lock = threading.Lock()
        self._slot_freed = threading.Condition(self._lock)
        self._lent = 0
        self._waiting = 0
        self._idle: dict[Address, list[_Connection]] = {}
        self._closed = False

    def acquire(self, key: bytes | None, prefer: Address | None = None) -> _Connection:
        """A connection to the node the router picks for ``key``, failing over down its list.

        ``prefer``: try this node first, then the router's list.

        Raises:
            MeshcacheTimeout: every connection stayed busy for ``timeout`` seconds.
            MeshcacheConnectionError: no candidate node accepted a connection.
        """
        if self._closed:
            raise MeshcacheConnectionError("the client is closed")
        candidates = self.router.candidates(key)
        if prefer is not None:
            candidates = [prefer, *(a for a in candidates if a != prefer)]
        with self._lock:
            if self._lent >= self.max_connections:
                self._wait_for_slot()
            self._lent += 1
            idle = self._idle.get(candidates[0]) if candidates else None
            conn = idle.pop() if idle else None
        try:
            if conn is not None:
                if conn.reusable:
                    return conn
                conn.close()
            return self._connect(candidates)
        except BaseException:
            self._free_slot()
            raise

    def _wait_for_slot(self) -> None:
        """Wait (the lock held) until a connection is given back; MeshcacheTimeout if none is."""
        self._waiting += 1
        try:
            freed = self._slot_freed.wait_for(
                lambda: self._lent < self.max_connections, self.timeout
            )
        finally:
            self._waiting -= 1
        if not freed:
            raise MeshcacheTimeout(f"no free connection within {self.timeout} s")

    def _free_slot(self) -> None:
        with self._lock:
            self._lent -= 1
            if self._waiting:
                self._slot_freed.notify()

    def _connect(self, candidates: Sequence[Address]) -> _Connection:
        failures: list[str] = []
        for address in candidates:
            conn = self._take_idle(address)
            if conn is not None:
                return conn
            try:
                conn = _Connection.open(address, self.connect_timeout, self.max_frame, self.timeout)
            except OSError as exc:
                self.router.failed(address)
                failures.append(f"{address}: {exc or type(exc).__name__}")
                continue
            self.router.connected(address)
            return conn
        raise MeshcacheConnectionError(
            "could not connect to any node (" + "; ".join(failures) + ")"
        )

    def _take_idle(self, address: Address) -> _Connection | None:
        while True:
            with self._lock:
                idle = self._idle.get(address)
                if not idle:
                    return None
                conn = idle.pop()
            if conn.reusable:
                return conn
            conn.close()

    def release(self, conn: _Connection) -> None:
        """Give a connection back after a complete exchange."""
        with self._lock:
            self._lent -= 1
            if self._waiting:
                self._slot_freed.notify()
            if not self._closed and conn.protocol.error is None:
                idle = self._idle.get(conn.address)
                if idle is None:
                    self._idle[conn.address] = [conn]
                else:
                    idle.append(conn)
                return
        conn.close()

    def discard(self, conn: _Connection) -> None:
        """Close a connection whose state is unknown (timeout, breakage, interruption)."""
        try:
            conn.close()
        finally:
            self._free_slot()

    def close(self) -> None:
        """Close idle connections now and busy ones when they come back."""
        with self._lock:
            self._closed = True
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()


class Client(Commands, SyncExecutor):
    """Blocking client; share one instance between threads.

    Args:
        addresses: ``"host:port"``, several as ``"h:p,h:p"`` (the first that answers is used,
            the next ones on failure), or a list of them.
        timeout: seconds to wait for the answer to a request or pipeline (None: forever); also
            how long to wait for a free pooled connection.
        connect_timeout: seconds to wait for a node to accept a connection.
        max_connections: how many connections the pool may hold at once.
        router: picks the node per key; overrides ``smart``.
        smart: route by the cluster ring (a :class:`RingRouter` over ``addresses``): each key's
            requests go to its first owner, batches of many keys are split by node and sent in
            parallel. False: every request goes to the first seed that answers (a
            :class:`SeedRouter`), e.g. to talk to exactly one node.

    The ring is fetched (``RING``, ``NS_LIST``) before the first request, and again by one
    caller when a response carries a newer ring version; a node outside a mesh has no ring,
    and then the client routes by seed as with ``smart=False``.

    A request whose op is idempotent (``OpSpec.idempotent``: reads, SET, DELETE, ...) is sent a
    second time, on a new connection, when the connection breaks before its answer arrives;
    others (INCR, LPUSH, CAS, ...) raise :class:`MeshcacheConnectionError` since they may have
    been applied. Timeouts raise :class:`MeshcacheTimeout` and are never retried.
    """

    def __init__(
        self,
        addresses: str | Address | Sequence[str | Address] = "127.0.0.1:7400",
        *,
        timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        max_connections: int = 64,
        router: Router | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        smart: bool = True,
    ) -> None:
        self.router: Router = router or default_router(addresses, smart=smart)
        self.timeout = timeout
        # True until a first request has asked the router whether it wants the ring.
        self._ring_unasked = True
        self._split_lock = threading.Lock()
        self._split_executor: ThreadPoolExecutor | None = None
        self._pool = ConnectionPool(
            self.router,
            connect_timeout=connect_timeout,
            timeout=timeout,
            max_connections=max_connections,
            max_frame=max_frame,
        )

    def _execute(self, command: Command[T]) -> T:
        result: T = self._run((command,), raise_on_error=True)[0]
        return result

    def _run(self, commands: Sequence[Command[Any]], *, raise_on_error: bool) -> list[Any]:
        if self._ring_unasked:
            self._ring_unasked = False
            if self.router.observe_ring_version(0):
                self._fetch_ring(None)
        if len(commands) > 1 or commands[0].spec.name in SPLIT_OPS:
            batches = plan(commands, self.router.primary)
            if batches is not None:
                return self._run_plan(batches, raise_on_error)
        key, retryable = batch_route(commands)
        return self._send(commands, key, retryable, raise_on_error)

    def _send(
        self,
        commands: Sequence[Command[Any]],
        key: bytes | None,
        retryable: bool,
        raise_on_error: bool,
        prefer: Address | None = None,
    ) -> list[Any]:
        """Send the batch to the router's node for ``key`` (retried once if ``retryable``)."""
        pool = self._pool
        attempts = 2 if retryable else 1
        for attempt in range(attempts):
            conn = pool.acquire(key, prefer)
            try:
                exchange = conn.exchange(commands, self.timeout)
            except MeshcacheConnectionError:
                pool.discard(conn)
                if attempt + 1 < attempts:
                    continue
                raise
            except BaseException:
                pool.discard(conn)
                raise
            pool.release(conn)
            if self.router.observe_ring_version(conn.protocol.ring_version):
                self._fetch_ring(conn.address)
            return exchange.results(raise_on_error=raise_on_error)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch_ring(self, prefer: Address | None) -> None:
        """Fetch the ring (from ``prefer`` first: it answered with the newer version)."""
        replies = None
        try:
            with contextlib.suppress(MeshcacheError):
                replies = self._send(FETCH_RING, None, True, True, prefer)
        finally:
            self.router.ring_fetched(replies)

    def _run_plan(self, batches: Plan, raise_on_error: bool) -> list[Any]:
        """Send every group at once (the first on this thread), then merge the results."""
        groups = batches.groups
        executor = self._executor()
        futures = [executor.submit(self._send_group, group) for group in groups[1:]]
        outcomes = [self._send_group(groups[0]), *(future.result() for future in futures)]
        done: list[list[Any]] = []
        for outcome in outcomes:
            if isinstance(outcome, MeshcacheError):
                raise outcome
            done.append(outcome)
        return batches.results(done, raise_on_error=raise_on_error)

    def _send_group(self, group: Group) -> list[Any] | MeshcacheError:
        # The error is returned, not raised, so the caller waits for every group before it
        # raises (no request left running behind its back).
        try:
            return self._send(group.commands, group.key, group.retryable, False)
        except MeshcacheError as exc:
            return exc

    def _executor(self) -> ThreadPoolExecutor:
        executor = self._split_executor
        if executor is None:
            with self._split_lock:
                executor = self._split_executor
                if executor is None:
                    workers = min(self._pool.max_connections, 32)
                    executor = ThreadPoolExecutor(workers, thread_name_prefix="meshcache-split")
                    self._split_executor = executor
        return executor

    def pipeline(self, *, raise_on_error: bool = True) -> Pipeline:
        """A pipeline: queue calls on it, then ``execute()`` sends them in one write."""
        return Pipeline(self, raise_on_error=raise_on_error)

    def close(self) -> None:
        """Close every pooled connection; the client cannot be used afterwards."""
        self._pool.close()
        with self._split_lock:
            executor, self._split_executor = self._split_executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Pipeline(Commands, CommandQueue):
    """Commands queued to be sent in one write by :meth:`execute`.

    Every method queues its command and returns the pipeline, so calls chain. ``execute``
    returns the results in order. With ``raise_on_error`` (the default) it raises the first
    error after every reply has arrived, as redis-py does; without it, the exception objects
    stand in the list where their results would be. A pipeline made only of idempotent ops is
    retried once on a broken connection; any other is not. Leaving a ``with`` block discards
    what was queued and not executed.
    """

    def __init__(self, client: Client, *, raise_on_error: bool = True) -> None:
        self._client = client
        self.raise_on_error = raise_on_error
        self._commands: list[Command[Any]] = []

    def _execute(self, command: Command[Any]) -> Self:
        self._commands.append(command)
        return self

    def __len__(self) -> int:
        return len(self._commands)

    def execute(self, *, raise_on_error: bool | None = None) -> list[Any]:
        """Send every queued command, wait for all replies, return the results in order."""
        commands, self._commands = self._commands, []
        if not commands:
            return []
        if raise_on_error is None:
            raise_on_error = self.raise_on_error
        return self._client._run(commands, raise_on_error=raise_on_error)

    def reset(self) -> None:
        """Forget the queued commands."""
        self._commands = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.reset()


__all__ = ["Client", "ConnectionPool", "Pipeline"]
