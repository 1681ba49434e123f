"""Where the console's figures come from: a live cluster, or a recording of one.

The widgets never talk to a node. They read :class:`~meshcache.tui.model.Snapshot` objects that
the model builds from :class:`Poll` objects, and a :class:`DataSource` produces those polls:

* :class:`LiveSource` polls every node it is given **directly and concurrently**, each node in
  its own task with its own deadline, so one slow or dead node delays nothing: ``poll`` returns
  after at most ``budget`` seconds with the latest answer of every node (older ones for nodes
  still busy), and the node's reply says how old it is.
* :class:`RecordedSource` replays a list of polls (from :func:`read_recording` or built by a
  test) and then waits forever, so a test or a screenshot sees exactly the same screen every
  time.

Actions (drain, remove a member, a policy change) go through the source as well, so a recorded
source can refuse them and a test can count them.

A node is asked, in one pipelined batch, for INFO, MEMBERS, RING, RAFT_STATUS, CONFIG_GET and
HOTKEYS, and its admin port for ``/metrics`` (request and error counters by op and code,
which INFO does not carry). With TLS (an ``ssl_context``) the data ports are asked over TLS,
and ``/metrics`` over HTTPS first (a node with ``tls_admin``), else plain HTTP; what worked is
remembered per admin port. An op the node refuses (a lone node has no ring, no Raft group)
leaves that field None; a node that cannot be reached, answers out of time or breaks the
protocol is a reply with ``problem`` set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from meshcache.errors import (
    CommandError,
    MeshcacheConnectionError,
    MeshcacheError,
    MeshcacheTimeout,
    RemoteProtocolError,
)
from meshcache.wire.address import format_address, parse_address

#: Seconds the admin port may take to answer ``/metrics`` (it is skipped after that).
METRICS_TIMEOUT = 2.0
#: The most of a ``/metrics`` answer read; the counters the console uses come early.
METRICS_MAX_BYTES = 4 * 1024 * 1024

_SAMPLE = re.compile(r'^(meshcache_(?:requests|errors)_total)\{(op|code)="([^"]*)"\}\s+(\S+)')


@dataclass(frozen=True, slots=True)
class NodeReply:
    """What one node answered to one poll (or why it did not).

    Attributes:
        address: the data address polled, ``host:port``.
        at: when the answer arrived, on the source's monotonic clock (seconds).
        wall: the same moment as a Unix time, for display.
        problem: None when the node answered; otherwise one line saying why not (connection
            refused, no answer in time, not the meshcache protocol). The fields below are then
            None.
        info, members, ring, raft, config: the answers to INFO, MEMBERS, RING, RAFT_STATUS
            and CONFIG_GET; None for an op the node refused.
        hotkeys: the answer to HOTKEYS as it came (the model reads it warily); None when
            refused.
        requests: client requests counted by op (``meshcache_requests_total`` of /metrics);
            None when the admin port did not answer.
        errors: error frames sent by code (``meshcache_errors_total``); None likewise.
        elapsed: seconds the batch took.
        pending: the node's first poll is still under way (nothing known yet, no failure).
    """

    address: str
    at: float
    wall: float
    problem: str | None = None
    info: Mapping[str, Any] | None = None
    members: Sequence[Mapping[str, Any]] | None = None
    ring: Mapping[str, Any] | None = None
    raft: Mapping[str, Any] | None = None
    config: Mapping[str, Any] | None = None
    requests: Mapping[str, float] | None = None
    errors: Mapping[str, float] | None = None
    hotkeys: Any = None
    elapsed: float = 0.0
    pending: bool = False

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_mapping(self) -> dict[str, Any]:
        """A JSON-able map (the recording format); :meth:`from_mapping` reads it back."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> NodeReply:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in mapping.items() if k in known})


@dataclass(frozen=True, slots=True)
class Poll:
    """One round of polling: the latest reply of every node polled, by address.

    A node whose answer to this round has not arrived yet keeps its previous reply (its ``at``
    is older than the poll's); a node never answered has a reply with ``problem`` set.
    """

    at: float
    wall: float
    replies: Mapping[str, NodeReply] = field(default_factory=dict)

    def to_mapping(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "wall": self.wall,
            "replies": [r.to_mapping() for r in self.replies.values()],
        }

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Poll:
        replies = [NodeReply.from_mapping(r) for r in mapping.get("replies", [])]
        return cls(mapping["at"], mapping["wall"], {r.address: r for r in replies})


class ActionRefused(MeshcacheError):
    """The source will not run an action (a recording cannot drain a node)."""


class DataSource(Protocol):
    """What the console polls and sends its actions through."""

    entry: str
    """The address the operator gave: asked first, and again when nothing else answers."""

    async def poll(self, targets: Sequence[str]) -> Poll:
        """Ask every address in ``targets`` for its figures; return within the source's budget."""
        ...

    async def pause(self, seconds: float) -> None:
        """Wait until the next poll is due (a recording replays without waiting)."""
        ...

    async def config(self, targets: Sequence[str]) -> Mapping[str, Any]:
        """The committed cluster config (CONFIG_GET) from the first of ``targets`` that answers."""
        ...

    async def propose(
        self, targets: Sequence[str], command: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """CONFIG_PROPOSE ``command`` through the first of ``targets`` that answers.

        Raises:
            CommandError: the cluster refused it (``VERSION_CONFLICT`` for a lost
                compare-and-set, ...).
            MeshcacheError: no node could be asked.
        """
        ...

    async def leave(self, address: str, timeout: float) -> Mapping[str, Any]:
        """LEAVE sent to ``address``: drain that node; its answer (``moved``, ``ring_version``)."""
        ...

    async def aclose(self) -> None:
        """Close every connection the source holds."""
        ...


def describe_failure(address: str, exc: BaseException, timeout: float) -> str:
    """One line for a node that could not be polled, naming it and saying whose fault it was."""
    if isinstance(exc, MeshcacheTimeout | TimeoutError):
        return f"no answer from {address} within {timeout:g} s"
    if isinstance(exc, RemoteProtocolError):
        return f"{address} does not speak the meshcache protocol ({exc})"
    if isinstance(exc, MeshcacheConnectionError):
        return str(exc) or f"cannot reach {address}"
    if isinstance(exc, socket.timeout):
        return f"no answer from {address} within {timeout:g} s"
    if isinstance(exc, OSError):
        # asyncio's text ("Connect call failed (...)") says less than the errno's name.
        reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
        return f"cannot reach {address}: {reason}"
    return f"{address}: {exc}"


def parse_counters(text: str) -> tuple[dict[str, float], dict[str, float]]:
    """Requests by op and error frames by code from a node's ``/metrics`` text."""
    requests: dict[str, float] = {}
    errors: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("meshcache_"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        family, _, label, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        (requests if family == "meshcache_requests_total" else errors)[label] = number
    return requests, errors


async def fetch_metrics(
    host: str,
    port: int,
    timeout: float = METRICS_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
) -> str:
    """The body of ``GET /metrics`` from a node's admin port (HTTPS with ``ssl_context``).

    Raises:
        OSError, TimeoutError: the port could not be reached, did not answer in time, or the
            TLS handshake failed (:class:`ssl.SSLError` is an OSError).
        RemoteProtocolError: the answer is not an HTTP 200.
    """
    async with asyncio.timeout(timeout):
        if ssl_context is None:
            reader, writer = await asyncio.open_connection(host, port)
        else:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ssl_context, server_hostname=host
            )
        try:
            request = f"GET /metrics HTTP/1.1\r\nHost: {format_address(host, port)}\r\n"
            writer.write(f"{request}Connection: close\r\n\r\n".encode())
            data = await reader.read(METRICS_MAX_BYTES)
            while len(data) < METRICS_MAX_BYTES and (more := await reader.read(65536)):
                data += more
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split(b" ")
    if len(status) < 2 or status[1] != b"200":
        raise RemoteProtocolError(f"/metrics answered {head[:40]!r}")
    return body.decode("utf-8", "replace")


def _own_member(
    members: Sequence[Mapping[str, Any]] | None, node_id: object
) -> Mapping[str, Any] | None:
    for member in members or ():
        if member.get("name") == node_id:
            return member
    return None


def _maps(value: Any) -> list[Mapping[str, Any]] | None:
    """The maps of a list answer (others dropped), or None when it is not a list."""
    if not isinstance(value, list):
        return None
    return [item for item in value if isinstance(item, Mapping)]


def _with_maps(value: Any, key: str) -> Mapping[str, Any] | None:
    """A map answer whose ``key`` holds a list of maps (other items dropped), or None."""
    if not isinstance(value, Mapping):
        return None
    return {**value, key: _maps(value.get(key)) or []}


class LiveSource:
    """Polls real nodes over their data ports (and admin ports for ``/metrics``).

    One :class:`~meshcache.client.AsyncClient` per node address (``smart=False``: the request
    goes to exactly that node). Each node's poll runs in its own task; a node whose previous
    poll is still under way is not asked again until it finishes or times out.
    """

    def __init__(
        self,
        entry: str,
        *,
        timeout: float = 3.0,
        budget: float = 0.5,
        leave_slack: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        credentials: Mapping[str, Any] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """
        Args:
            entry: ``host:port`` of the node the operator named.
            credentials: the clients' ``username`` and ``password`` (every node checks them).
            ssl_context: speak TLS to the nodes with this context (the clients' ``tls``,
                ``ca_file``, ``cert_file``, ``key_file`` made into one), and ask their admin
                ports over HTTPS first; None: plaintext.
            timeout: seconds one node's poll may take before it counts as not answering.
            budget: the longest :meth:`poll` waits for answers before it returns.
            leave_slack: seconds a LEAVE's answer is awaited beyond its drain timeout.
            clock, wall: the monotonic and the Unix clock (injected for tests).
        """
        self.entry = entry
        self.timeout = timeout
        self.budget = budget
        self.leave_slack = leave_slack
        self._clock = clock
        self._wall = wall
        self._options: dict[str, Any] = dict(credentials or {})
        if ssl_context is not None:
            self._options["ssl_context"] = ssl_context
        self._ssl_context = ssl_context
        # (host, admin port) -> whether /metrics answered over HTTPS there.
        self._admin_https: dict[tuple[str, int], bool] = {}
        self._clients: dict[str, Any] = {}
        self._tasks: dict[str, asyncio.Task[NodeReply]] = {}
        self._latest: dict[str, NodeReply] = {}

    def _client(self, address: str) -> Any:
        client = self._clients.get(address)
        if client is None:
            from meshcache.client.asyncio_client import AsyncClient

            client = AsyncClient(
                address,
                smart=False,
                timeout=self.timeout,
                connect_timeout=min(self.timeout, 2.0),
                max_connections=4,
                **self._options,
            )
            self._clients[address] = client
        return client

    async def poll(self, targets: Sequence[str]) -> Poll:
        wanted = list(dict.fromkeys(targets))
        for address in wanted:
            if address not in self._tasks:
                self._tasks[address] = asyncio.create_task(
                    self._poll_node(address), name=f"meshcache-top poll {address}"
                )
        waiting = [self._tasks[a] for a in wanted]
        if waiting:
            await asyncio.wait(waiting, timeout=self.budget)
        for address, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[address]
                if task.cancelled():
                    continue
                failure = task.exception()
                if failure is None:
                    self._latest[address] = task.result()
                else:
                    # Not a failure foreseen by _poll_node: still one node's problem only.
                    self._latest[address] = NodeReply(
                        address,
                        self._clock(),
                        self._wall(),
                        problem=f"{address}: {type(failure).__name__}: {failure}",
                    )
        await self._forget(set(self._latest) - set(wanted))
        now, wall = self._clock(), self._wall()
        replies = {
            a: self._latest.get(a)
            or NodeReply(a, now, wall, problem=f"no answer from {a} yet", pending=True)
            for a in wanted
        }
        return Poll(now, wall, replies)

    async def _forget(self, addresses: Iterable[str]) -> None:
        """Drop what is kept for nodes no longer polled, and close their connections."""
        for address in addresses:
            self._latest.pop(address, None)
            task = self._tasks.get(address)
            if task is None:
                client = self._clients.pop(address, None)
                if client is not None:
                    await client.aclose()

    async def _poll_node(self, address: str) -> NodeReply:
        from meshcache.client import results
        from meshcache.client.commands import DEFAULT_NAMESPACE
        from meshcache.client.core import Command

        start = self._clock()
        try:
            client = self._client(address)
            pipe = client.pipeline(raise_on_error=False)
            pipe.info().members().ring().raft_status().config()
            pipe._execute(Command.build("HOTKEYS", [], DEFAULT_NAMESPACE, results.str_map))
            answers = await pipe.execute()
        except (MeshcacheError, OSError) as exc:
            if address in self._clients and not isinstance(exc, CommandError):
                # A broken or confused connection: start the next poll from a fresh client.
                with contextlib.suppress(Exception):
                    await self._clients.pop(address).aclose()
            problem = describe_failure(address, exc, self.timeout)
            if isinstance(exc, MeshcacheConnectionError):
                problem = await self._why_unreachable(address) or problem
            return NodeReply(
                address,
                self._clock(),
                self._wall(),
                problem=problem,
                elapsed=self._clock() - start,
            )
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, CommandError):
                return NodeReply(
                    address,
                    self._clock(),
                    self._wall(),
                    problem=describe_failure(address, answer, self.timeout),
                )
        info, members, ring, raft, config, hot = (
            None if isinstance(a, BaseException) else a for a in answers
        )
        if not isinstance(info, Mapping) or "node_id" not in info:
            return NodeReply(
                address,
                self._clock(),
                self._wall(),
                problem=f"{address} answered INFO without a node id: not a meshcache node",
            )
        members = _maps(members)
        ring = _with_maps(ring, "members")
        config = _with_maps(config, "members")
        raft = raft if isinstance(raft, Mapping) else None
        requests: dict[str, float] | None = None
        errors: dict[str, float] | None = None
        own = _own_member(members, info.get("node_id"))
        admin_port = own.get("admin_port") if own else None
        if isinstance(admin_port, int) and admin_port > 0:
            host = parse_address(address).host
            with contextlib.suppress(OSError, TimeoutError, MeshcacheError):
                requests, errors = parse_counters(await self._metrics(host, admin_port))
        return NodeReply(
            address,
            self._clock(),
            self._wall(),
            info=info,
            members=members,
            ring=ring,
            raft=raft,
            config=config,
            requests=requests,
            errors=errors,
            hotkeys=hot,
            elapsed=self._clock() - start,
        )

    async def _metrics(self, host: str, port: int) -> str:
        """``/metrics`` of one admin port: plain HTTP without TLS; with TLS the scheme that
        worked there last, or HTTPS then HTTP (a failure forgets what worked)."""
        timeout = min(self.timeout, METRICS_TIMEOUT)
        context = self._ssl_context
        if context is None:
            return await fetch_metrics(host, port, timeout)
        where = (host, port)
        known = self._admin_https.get(where)
        if known is not None:
            try:
                return await fetch_metrics(host, port, timeout, context if known else None)
            except (OSError, TimeoutError, MeshcacheError):
                del self._admin_https[where]
                raise
        try:
            text, https = await fetch_metrics(host, port, timeout, context), True
        except (OSError, TimeoutError, MeshcacheError):
            text, https = await fetch_metrics(host, port, timeout), False
        self._admin_https[where] = https
        return text

    async def _why_unreachable(self, address: str) -> str | None:
        """The OS's reason a node cannot be reached (refused, no route, ...), from one plain
        connect; None when that connect works (the failure was after it)."""
        host, port = parse_address(address)
        try:
            async with asyncio.timeout(min(self.timeout, 2.0)):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            return describe_failure(address, exc, min(self.timeout, 2.0))
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None

    async def _first(self, targets: Sequence[str], call: Callable[[Any], Any]) -> Any:
        """``call(client)`` on the first of ``targets`` that can be reached."""
        last: BaseException | None = None
        for address in dict.fromkeys([*targets, self.entry]):
            try:
                return await call(self._client(address))
            except CommandError:
                raise
            except (MeshcacheError, OSError) as exc:
                last = exc
        raise MeshcacheConnectionError(
            "no node answered" if last is None else describe_failure("", last, self.timeout)
        )

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def config(self, targets: Sequence[str]) -> Mapping[str, Any]:
        config: Mapping[str, Any] = await self._first(targets, lambda c: c.config())
        return config

    async def propose(
        self, targets: Sequence[str], command: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        answer: Mapping[str, Any] = await self._first(targets, lambda c: c.config_propose(command))
        return answer

    async def leave(self, address: str, timeout: float) -> Mapping[str, Any]:
        from meshcache.client import results
        from meshcache.client.asyncio_client import AsyncClient
        from meshcache.client.core import Command

        # A drain takes as long as it takes to hand the keys over: its own client, with a
        # deadline of the drain's timeout (the poller's client keeps its short one).
        async with AsyncClient(
            address,
            smart=False,
            timeout=timeout + self.leave_slack,
            connect_timeout=5.0,
            **self._options,
        ) as client:
            command = Command.build("LEAVE", [{"timeout": timeout}], "default", results.str_map)
            answer: dict[str, Any] = await client._execute(command)
        return answer

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()


class RecordedSource:
    """Replays recorded polls, one per :meth:`poll`, then waits forever (a still picture).

    Actions are refused with :class:`ActionRefused`, and counted in ``refused``.
    """

    def __init__(self, polls: Sequence[Poll], entry: str = "127.0.0.1:7400") -> None:
        self.entry = entry
        self.polls = list(polls)
        self.served = 0
        self.refused: list[str] = []
        self._forever = asyncio.Event()

    async def poll(self, targets: Sequence[str]) -> Poll:
        if self.served >= len(self.polls):
            await self._forever.wait()  # nothing more was recorded: the screen stays still
        poll = self.polls[self.served]
        self.served += 1
        return poll

    async def pause(self, seconds: float) -> None:
        return None  # replayed as fast as the app takes the polls

    @property
    def finished(self) -> bool:
        return self.served >= len(self.polls)

    def _refuse(self, what: str) -> ActionRefused:
        self.refused.append(what)
        return ActionRefused(f"{what}: this is a recording, not a live cluster")

    async def config(self, targets: Sequence[str]) -> Mapping[str, Any]:
        for poll in reversed(self.polls[: self.served]):
            for reply in poll.replies.values():
                if reply.config is not None:
                    return reply.config
        raise self._refuse("CONFIG_GET")

    async def propose(
        self, targets: Sequence[str], command: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        raise self._refuse(f"CONFIG_PROPOSE {command.get('op')}")

    async def leave(self, address: str, timeout: float) -> Mapping[str, Any]:
        raise self._refuse(f"LEAVE {address}")

    async def aclose(self) -> None:
        return None


def write_recording(path: Path, polls: Iterable[Poll]) -> None:
    """Save polls as JSON lines, one poll a line (read back with :func:`read_recording`)."""
    with path.open("w", encoding="utf-8") as out:
        for poll in polls:
            out.write(json.dumps(poll.to_mapping(), sort_keys=True) + "\n")


def read_recording(path: Path) -> list[Poll]:
    """The polls saved by :func:`write_recording`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Poll.from_mapping(json.loads(line)) for line in lines if line.strip()]


__all__ = [
    "ActionRefused",
    "DataSource",
    "LiveSource",
    "NodeReply",
    "Poll",
    "RecordedSource",
    "describe_failure",
    "fetch_metrics",
    "parse_counters",
    "read_recording",
    "write_recording",
]
