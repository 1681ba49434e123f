"""``meshcache.Client``: the blocking, thread-safe client with a connection pool.

.. code-block:: python

    with meshcache.Client("127.0.0.1:7400") as client:
        client.set("user:1", b"ada", ttl=60)
        client.get("user:1")            # b"ada"
        with client.pipeline() as pipe:
            pipe.incr("hits").get("user:1")
            pipe.execute()              # [1, b"ada"]

The client is the shared :class:`~meshcache.client.engine.ClientEngine` driven through blocking
sockets: the adapter's coroutines block the calling thread and never suspend, so each call runs
the engine to completion on the caller's thread. Share one instance between threads: each
connection is lent to one thread at a time, and the groups of a batch split by node are sent
from worker threads at once.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from meshcache.client.commands import SyncExecutor
from meshcache.client.core import ClientProtocol, Command, Exchange
from meshcache.client.engine import ClientEngine, PipelineBase, Waiter, run_blocking
from meshcache.client.sockets import RECV_SIZE, IdleChecked, readable_check
from meshcache.client.tlsconf import handshake_error
from meshcache.errors import MeshcacheConnectionError
from meshcache.wire import Address

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

T = TypeVar("T")

# How far the socket's timeout may be from what is left of a call's deadline before it is set
# again (each settimeout is an ioctl): a blocking read may run this much past the deadline.
_DEADLINE_SLACK = 0.001

# Threads sending the groups of a batch split by node: at most this many at once per client.
_MAX_SPLIT_THREADS = 32


class BlockingConnection(IdleChecked):
    """One blocking socket and its protocol state; used by one thread at a time.

    The socket keeps a standing timeout (the client's), set at connect; it is set again only when
    what is left of a call's deadline differs from it by more than a millisecond, so successive
    calls on one connection cost no ioctl.
    """

    __slots__ = ("_armed", "_idle_check", "address", "protocol", "sock")

    def __init__(
        self, address: Address, sock: socket.socket, max_frame: int, timeout: float | None
    ) -> None:
        self.address = address
        self.sock = sock
        self.protocol = ClientProtocol(max_frame, str(address))
        sock.settimeout(timeout)
        self._armed = timeout
        self._idle_check = readable_check(sock)

    @classmethod
    def open(
        cls,
        address: Address,
        deadline: float | None,
        max_frame: int,
        timeout: float | None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> BlockingConnection:
        """Connect by ``deadline`` (on ``time.monotonic``), through a TLS handshake with
        ``ssl_context``.

        Raises:
            TimeoutError: the node did not accept by ``deadline``.
            OSError: the node refused, the name did not resolve, or the TLS handshake failed
                (:class:`~meshcache.client.tlsconf.TlsHandshakeError`).
        """
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            raise TimeoutError
        sock = socket.create_connection((address.host, address.port), timeout=wait)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ssl_context is not None:
                try:
                    sock = ssl_context.wrap_socket(sock, server_hostname=address.host)
                except ssl.SSLError as exc:
                    raise handshake_error(address, exc) from None
            return cls(address, sock, max_frame, timeout)
        except BaseException:
            sock.close()
            raise

    def _arm(self, seconds: float | None) -> None:
        self.sock.settimeout(seconds)
        self._armed = seconds

    async def exchange(self, commands: Sequence[Command[Any]], deadline: float | None) -> Exchange:
        """Send the commands in one write and read until each has its reply (blocking).

        Raises:
            TimeoutError: ``deadline`` (on ``time.monotonic``) passed first.
            MeshcacheConnectionError: the connection broke or the node closed it.
            RemoteProtocolError: the node (or whatever answered) broke the protocol.
        """
        exchange = Exchange(self.protocol, commands)
        sock = self.sock
        try:
            if deadline is None:
                if self._armed is not None:
                    self._arm(None)
                sock.sendall(exchange.outgoing)
                while True:
                    data = sock.recv(RECV_SIZE)
                    if not data:
                        raise MeshcacheConnectionError(f"{self.address} closed the connection")
                    if exchange.receive_data(data):
                        return exchange
            remaining = deadline - time.monotonic()
            armed = self._armed
            if armed is None or not -_DEADLINE_SLACK <= armed - remaining <= _DEADLINE_SLACK:
                if remaining <= 0:
                    raise TimeoutError
                self._arm(armed := remaining)
            sock.sendall(exchange.outgoing)
            while True:
                try:
                    data = sock.recv(RECV_SIZE)
                except TimeoutError:
                    # The standing timeout may be a little short of the deadline.
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise
                    self._arm(armed := remaining)
                    continue
                if not data:
                    raise MeshcacheConnectionError(f"{self.address} closed the connection")
                if exchange.receive_data(data):
                    return exchange
                # More reads: each may wait only for what is left of the deadline.
                remaining = deadline - time.monotonic()
                if armed > remaining + _DEADLINE_SLACK:
                    if remaining <= 0:
                        raise TimeoutError
                    self._arm(armed := remaining)
        except TimeoutError:
            raise
        except ssl.SSLError as exc:  # TLS 1.3 refuses a client certificate at the first read
            raise MeshcacheConnectionError(str(handshake_error(self.address, exc))) from exc
        except OSError as exc:
            raise MeshcacheConnectionError(f"connection to {self.address} broke: {exc}") from exc

    def close_now(self) -> None:
        self.sock.close()


class Client(ClientEngine[BlockingConnection], SyncExecutor):
    """Blocking client; share one instance between threads.

    .. code-block:: python

        client = meshcache.Client("10.0.0.1:7400,10.0.0.2:7400", namespace="sessions")
        client = meshcache.from_url("meshcache://10.0.0.1:7400/sessions?timeout=2")

    The arguments (:meth:`ClientEngine.__init__`) and the rules for deadlines, retries and
    routing are those of every front end: see :mod:`meshcache.client.engine`.
    """

    _split_executor: ThreadPoolExecutor | None = None
    _now = staticmethod(time.monotonic)

    async def _open(self, address: Address, deadline: float | None) -> BlockingConnection:
        return BlockingConnection.open(
            address, deadline, self.max_frame, self.timeout, self.ssl_context
        )

    def _new_waiter(self) -> Waiter:
        return threading.Event()

    async def _wait(self, waiter: Waiter, deadline: float | None) -> None:
        assert isinstance(waiter, threading.Event)
        if not waiter.wait(None if deadline is None else deadline - time.monotonic()):
            raise TimeoutError

    async def _gather(self, jobs: Sequence[Callable[[], Coroutine[Any, Any, T]]]) -> list[T]:
        """The first job on this thread, the others on worker threads, all at once."""
        executor = self._executor()
        futures = [executor.submit(run_blocking, job()) for job in jobs[1:]]
        first = await jobs[0]()
        return [first, *(future.result() for future in futures)]

    def _executor(self) -> ThreadPoolExecutor:
        executor = self._split_executor
        if executor is None:
            with self._lock:
                executor = self._split_executor
                if executor is None:
                    # Imported on first use: a client that never splits a batch (a one-shot
                    # CLI command) does not load it, nor the logging module it imports.
                    from concurrent.futures import ThreadPoolExecutor

                    workers = min(self.max_connections, _MAX_SPLIT_THREADS)
                    executor = ThreadPoolExecutor(workers, thread_name_prefix="meshcache-split")
                    self._split_executor = executor
        return executor

    def _execute(self, command: Command[T]) -> T:
        # run_blocking, inlined: this is every method's path.
        call = self._run((command,), raise_on_error=True)
        try:
            call.send(None)
        except StopIteration as done:
            result: T = done.value[0]
            return result
        call.close()
        raise RuntimeError("a blocking client's coroutine suspended")

    def pipeline(self, *, raise_on_error: bool = True) -> Pipeline:
        """A pipeline: queue calls on it, then ``execute()`` sends them in one write."""
        return Pipeline(self, raise_on_error=raise_on_error)

    def close(self) -> None:
        """Close idle connections now and lent ones when they come back; refuse further calls."""
        for conn in self._close_pool():
            conn.close_now()
        with self._lock:
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


class Pipeline(PipelineBase):
    """Commands queued on a :class:`Client`, sent in one write by :meth:`execute`.

    Calls chain (``pipe.set(k, v).get(k)``); see :class:`~meshcache.client.engine.PipelineBase`
    for results, errors and retries. Leaving a ``with`` block discards what was queued and not
    executed.
    """

    def execute(self, *, raise_on_error: bool | None = None) -> list[Any]:
        """Send every queued command, wait for all replies, return the results in order."""
        call = self._take(raise_on_error)
        return [] if call is None else run_blocking(call)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.reset()


__all__ = ["BlockingConnection", "Client", "Pipeline"]
