"""The peer pool's batched requests, against a real peer socket the test controls.

Requests submitted in one scheduler turn leave in one write, answers are matched by request id
whatever their order, a connection that breaks fails exactly the requests in flight on it, and
a forward that times out resets its connection, so the peer never receives what was still
queued on it. Then the coordinator's side: what it submits, and how each answer or failure of
a submitted forward becomes its client's answer.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from meshcache.control import ClusterConfig
from meshcache.errors import (
    CommandError,
    MeshcacheConnectionError,
    MeshcacheTimeout,
    UnavailableError,
)
from meshcache.hlc import HLC
from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.data.coordinator import Coordinator
from meshcache.node.data.replication import HintQueue, VersionClamp
from meshcache.node.data.replicator import Replicator
from meshcache.node.net.dataport import DataPort, open_listener
from meshcache.node.net.dispatch import Dispatcher
from meshcache.node.net.peer_pool import (
    ANSWERS_CHECK,
    WRITE_PIECE,
    Address,
    PeerPool,
    PeerUnreachable,
)
from meshcache.ring import RingMember
from meshcache.security.guard import Guard
from meshcache.settings import LimitSettings
from meshcache.store.policy import NamespacePolicy
from meshcache.store.store import Store
from meshcache.testing.instrument import longest_step
from meshcache.wire.frame import (
    FrameReader,
    Response,
    decode_request,
    decode_response,
    encode_error,
    encode_ok,
    encode_request,
    pack_frame,
)
from meshcache.wire.ops import Limits
from meshcache.wire.pending import Later


class Peer:
    """A listening socket standing in for a peer's data port; the test decides what it reads
    and answers."""

    def __init__(self) -> None:
        self.listener = trio.socket.socket()
        self.conns: list[trio.socket.SocketType] = []
        self.reader = FrameReader(1 << 20, requests=True)

    async def bind(self) -> tuple[str, int]:
        await self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        host, port = self.listener.getsockname()[:2]
        return host, port

    async def accept(self) -> trio.socket.SocketType:
        sock, _ = await self.listener.accept()
        self.conns.append(sock)
        return sock

    async def requests(self, sock: trio.socket.SocketType, n: int) -> list[Any]:
        """Read until ``n`` request frames are in; their decoded requests."""
        out: list[Any] = []
        while len(out) < n:
            data = await sock.recv(1 << 16)
            assert data, "the pool closed the connection"
            self.reader.feed(data)
            while (body := self.reader.next_body()) is not None:
                out.append(decode_request(body))
        return out

    def close(self) -> None:
        for sock in self.conns:
            sock.close()
        self.listener.close()


@asynccontextmanager
async def running(pool: PeerPool) -> AsyncIterator[PeerPool]:
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        yield pool
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def peer() -> AsyncIterator[tuple[Peer, tuple[str, int]]]:
    p = Peer()
    try:
        yield p, await p.bind()
    finally:
        p.close()


def collect(into: dict[int, Response | BaseException], i: int) -> Any:
    def answered(response: Response | BaseException) -> None:
        assert i not in into
        into[i] = response

    return answered


async def wait_until(condition: Any, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.001)  # polling for a condition, with a deadline


async def connected(pool: PeerPool, peer: Peer, address: tuple[str, int]) -> Any:
    """Open the pool's connection with one awaited request; the peer's side of it."""
    async with trio.open_nursery() as nursery:
        result: list[Response] = []

        async def ask() -> None:
            result.append(await pool.request(address, "PING", "default", [], timeout=10))

        nursery.start_soon(ask)
        sock = await peer.accept()
        (request,) = await peer.requests(sock, 1)
        await sock.send(encode_ok(request.id, "PONG"))
    assert result[0].value == "PONG"
    return sock


@pytest.mark.trio
async def test_requests_of_one_turn_leave_in_one_write_and_are_matched_by_id() -> None:
    async with peer() as (p, address), running(PeerPool()) as pool:
        sock = await connected(pool, p, address)
        writes = pool.stats["writes"]
        answers: dict[int, Response | BaseException] = {}
        for i in range(200):  # one turn: no checkpoint between the submits
            assert pool.submit(
                address, "GET", "default", [b"k%d" % i], timeout=10, answered=collect(answers, i)
            )
        requests = await p.requests(sock, 200)
        assert pool.stats["writes"] == writes + 1
        assert [r.args for r in requests] == [[b"k%d" % i] for i in range(200)]  # in order
        # Answered in reverse order: each answer still reaches its own request.
        await sock.send(b"".join(encode_ok(r.id, r.args[0]) for r in reversed(requests)))
        await wait_until(lambda: len(answers) == 200)
        for i in range(200):
            response = answers[i]
            assert isinstance(response, Response) and response.value == b"k%d" % i


@pytest.mark.trio
async def test_a_large_outbox_is_written_a_piece_at_a_time() -> None:
    """Hand-off batches queued at once (and one request larger than a piece) leave in bounded
    writes, one per step of the loop, in order: no step joins and sends all of them."""
    async with peer() as (p, address), running(PeerPool()) as pool:
        sock = await connected(pool, p, address)
        writes = pool.stats["writes"]
        sizes = [60_000] * 20 + [700_000] + [60_000] * 10  # 2.5 MB, ~10 pieces
        answers: dict[int, Response | BaseException] = {}
        with longest_step(clock=lambda: float(pool.stats["writes"])) as probe:
            for i, size in enumerate(sizes):  # one turn
                assert pool.submit(
                    address,
                    "SET",
                    "default",
                    [b"k%d" % i, b"v" * size, {}],
                    timeout=10,
                    answered=collect(answers, i),
                )
            requests = await p.requests(sock, len(sizes))
        assert [r.args[0] for r in requests] == [b"k%d" % i for i in range(len(sizes))]
        assert [len(r.args[1]) for r in requests] == sizes
        pieces = pool.stats["writes"] - writes
        assert pieces >= sum(sizes) // WRITE_PIECE, pieces
        assert probe.longest <= 1, f"{probe.longest:.0f} writes in one step of {probe.task}"
        await sock.send(b"".join(encode_ok(r.id, r.args[0]) for r in requests))
        await wait_until(lambda: len(answers) == len(sizes))
        assert all(isinstance(a, Response) for a in answers.values())
        assert pool.stats["connects"] == 1


def slow_answers(into: dict[int, Response | BaseException], i: int) -> Any:
    """A waiter whose callback costs ``SLOW_ANSWER_S`` of CPU (a forward's client answer)."""

    def answered(response: Response | BaseException) -> None:
        end = time.thread_time() + SLOW_ANSWER_S
        while time.thread_time() < end:
            pass
        into[i] = response

    return answered


SLOW_ANSWER_S = 0.00005


class NoClients:
    """The dispatcher of a port that no client talks to: the port is there to drive the pool."""

    def __init__(self) -> None:
        self.counters = NodeCounters()
        self.guard = Guard()

    def handle(self, body: bytes, session: Any = None) -> bytes:
        raise AssertionError("no client connects")


@pytest.mark.trio
@pytest.mark.parametrize("driven", [False, True], ids=["pump task", "reactor"])
async def test_a_read_full_of_answers_is_handed_out_a_budget_at_a_time(driven: bool) -> None:
    """64 KiB of small answers arrive in one read: the pump hands out ANSWERS_CHECK of them per
    step once the budget (2 ms) is spent, not thousands."""
    n = 3000
    async with peer() as (p, address), running(PeerPool()) as pool:
        sock = await connected(pool, p, address)
        async with trio.open_nursery() as nursery:
            if driven:
                port = DataPort(
                    open_listener("127.0.0.1", 0),
                    NoClients(),  # type: ignore[arg-type]
                    LimitSettings(),
                    peers=pool,
                )
                await nursery.start(port.serve)
                assert port._epoll is not None
                pool.drive(port._epoll)
            answers: dict[int, Response | BaseException] = {}
            for i in range(n):
                pool.submit(
                    address, "GET", "default", [b"k"], timeout=30, answered=slow_answers(answers, i)
                )
            requests = await p.requests(sock, n)
            with longest_step(clock=lambda: float(len(answers))) as probe:
                await sock.send(b"".join(encode_ok(r.id, None) for r in requests))
                await wait_until(lambda: len(answers) == n)
            nursery.cancel_scope.cancel()
        task = "Reactor.serve" if driven else "PeerPool._pumper"
        figures = probe.of(task)
        assert figures.total == n, probe.by_task
        assert figures.longest <= ANSWERS_CHECK, f"{figures.longest:.0f} answers in one step"


@pytest.mark.trio
async def test_submit_without_an_open_connection_is_refused_so_the_caller_connects() -> None:
    async with peer() as (_, address), running(PeerPool()) as pool:
        assert not pool.submit(address, "GET", "default", [b"k"], timeout=1, answered=print)
        assert pool.stats["requests"] == 0


@pytest.mark.trio
async def test_a_peer_that_dies_fails_exactly_its_pending_requests() -> None:
    async with peer() as (a, at_a), peer() as (b, at_b), running(PeerPool()) as pool:
        sock_a = await connected(pool, a, at_a)
        sock_b = await connected(pool, b, at_b)
        answers: dict[int, Response | BaseException] = {}
        for i in range(40):  # one batch, mixed owners
            target = at_a if i % 2 else at_b
            assert pool.submit(
                target, "GET", "default", [b"k%d" % i], timeout=10, answered=collect(answers, i)
            )
        from_a = await a.requests(sock_a, 20)
        from_b = await b.requests(sock_b, 20)
        # A answers half of its requests, then dies; B answers all of its own.
        await sock_a.send(b"".join(encode_ok(r.id, r.args[0]) for r in from_a[:10]))
        await wait_until(lambda: len(answers) == 10)
        sock_a.close()
        await wait_until(lambda: len(answers) == 20)
        await sock_b.send(b"".join(encode_ok(r.id, r.args[0]) for r in from_b))
        await wait_until(lambda: len(answers) == 40)
        answered_by_a = {r.args[0] for r in from_a[:10]}
        for i in range(40):
            response = answers[i]
            if i % 2 == 0 or b"k%d" % i in answered_by_a:
                assert isinstance(response, Response) and response.value == b"k%d" % i
            else:
                assert isinstance(response, MeshcacheConnectionError)


@pytest.mark.trio
async def test_a_plain_time_out_leaves_the_connection_usable() -> None:
    async with peer() as (p, address), running(PeerPool()) as pool:
        sock = await connected(pool, p, address)
        answers: dict[int, Response | BaseException] = {}
        pool.submit(
            address, "GET", "default", [b"slow"], timeout=0.05, answered=collect(answers, 0)
        )
        pool.submit(address, "GET", "default", [b"fast"], timeout=10, answered=collect(answers, 1))
        slow, fast = await p.requests(sock, 2)
        await wait_until(lambda: 0 in answers)
        assert isinstance(answers[0], MeshcacheTimeout)
        await sock.send(encode_ok(slow.id, b"late") + encode_ok(fast.id, b"fast"))
        await wait_until(lambda: 1 in answers)
        response = answers[1]
        assert isinstance(response, Response) and response.value == b"fast"
        assert len(answers) == 2  # the late answer was dropped
        assert pool.stats["connects"] == 1


@pytest.mark.trio
async def test_a_forward_that_times_out_resets_its_connection_so_nothing_queued_arrives() -> None:
    async with peer() as (p, address), running(PeerPool()) as pool:
        sock = await connected(pool, p, address)
        # The peer stops reading: the forwards pile up in the kernel's buffers, undelivered.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        answers: dict[int, Response | BaseException] = {}
        big = b"x" * 200_000
        pool.submit(
            address,
            "FWD",
            "default",
            ["SET", [b"k", big, {}]],
            timeout=0.2,
            answered=collect(answers, 0),
            abort_on_timeout=True,
        )
        pool.submit(address, "GET", "default", [b"other"], timeout=10, answered=collect(answers, 1))
        await wait_until(lambda: len(answers) == 2)
        assert isinstance(answers[0], MeshcacheTimeout)
        # Every other request on that connection fails with it: the peer may never get them.
        assert isinstance(answers[1], MeshcacheConnectionError)
        assert pool.stats["reset_after_timeout"] == 1
        # The peer, reading now, meets a reset, not the rest of the write it was sent.
        received = 0
        with pytest.raises(ConnectionResetError):
            while True:
                data = await sock.recv(1 << 16)
                received += len(data)
                assert data, "a clean end of stream: the queued bytes were delivered"
        assert received < len(big)
        # The next request opens a new connection.
        async with trio.open_nursery() as nursery:
            result: list[Response] = []

            async def ask() -> None:
                result.append(await pool.request(address, "PING", "default", [], timeout=10))

            nursery.start_soon(ask)
            again = await p.accept()
            (request,) = await p.requests(again, 1)
            await again.send(encode_ok(request.id, "PONG"))
        assert result[0].value == "PONG"
        assert pool.stats["connects"] == 2


async def lane_call(pool: PeerPool, address: Address, n: int, into: list[Any]) -> None:
    """A copy update on the hot-key lane; its result (or error) goes to ``into``."""
    try:
        into.append(await pool.call(address, "HOT_PUSH", "default", [n], timeout=10, lane="hot"))
    except MeshcacheConnectionError as exc:
        into.append(exc)


@pytest.mark.trio
async def test_a_lane_is_a_kept_connection_whose_answers_do_not_wait_behind_the_pool() -> None:
    """Requests on a lane go on a second connection to the peer, opened once and kept: each
    later one costs a frame on it, and their answers come while the pooled connection's
    request still waits for its own."""
    async with peer() as (p, address), running(PeerPool()) as pool:
        pooled = await connected(pool, p, address)
        answers: dict[int, Response | BaseException] = {}
        assert pool.submit(
            address, "FWD", "default", ["SET", [b"k"]], timeout=10, answered=collect(answers, 0)
        )
        (slow,) = await p.requests(pooled, 1)  # the peer holds this answer back
        results: list[Any] = []
        lane: trio.socket.SocketType | None = None
        for n in range(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lane_call, pool, address, n, results)
                if lane is None:
                    lane = await p.accept()
                (update,) = await p.requests(lane, 1)
                assert (update.op, update.args) == ("HOT_PUSH", [n])
                await lane.send(encode_ok(update.id, [n]))
        assert results == [[n] for n in range(5)]
        assert not answers, "the pooled request was answered"
        assert len(p.conns) == 2
        assert (pool.stats["connects"], pool.stats["lane_connects"]) == (2, 1)
        assert pool.stats["lane_requests"] == 5
        await pooled.send(encode_ok(slow.id, True))
        await wait_until(lambda: 0 in answers)
        response = answers[0]
        assert isinstance(response, Response) and response.value is True


@pytest.mark.trio
async def test_a_lane_that_breaks_fails_its_requests_and_is_replaced() -> None:
    """The peer closes the lane's connection with an update in flight: that update fails, the
    next one opens a new lane connection and is answered, and the pooled connection is left
    as it was."""
    async with peer() as (p, address), running(PeerPool()) as pool:
        pooled = await connected(pool, p, address)
        results: list[Any] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lane_call, pool, address, 1, results)
            lane = await p.accept()
            await p.requests(lane, 1)
            lane.close()
        assert len(results) == 1 and isinstance(results[0], MeshcacheConnectionError)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lane_call, pool, address, 2, results)
            again = await p.accept()
            (update,) = await p.requests(again, 1)
            assert update.args == [2]
            await again.send(encode_ok(update.id, [7]))
        assert results[1:] == [[7]]
        assert pool.stats["lane_connects"] == 2
        # The pooled connection still serves.
        async with trio.open_nursery() as nursery:
            got: list[Response] = []

            async def ask() -> None:
                got.append(await pool.request(address, "PING", "default", [], timeout=10))

            nursery.start_soon(ask)
            (ping,) = await p.requests(pooled, 1)
            await pooled.send(encode_ok(ping.id, "PONG"))
        assert got[0].value == "PONG"
        assert pool.stats["connects"] == 3
        pool.close(address)  # the peer's lane goes with its pooled connection
        with trio.fail_after(10):
            assert await again.recv(16) == b""
            assert await pooled.recv(16) == b""


@pytest.mark.trio
async def test_a_port_writes_its_rounds_forwards_and_reads_the_answers_itself() -> None:
    """A client's pipeline through a port whose ops submit forwards: the round's forwards leave
    in one write, the port's reactor then reads the pool's connections, and the answers reach
    the client in request order whatever order the owner answers in. Once the port stops, the
    pool reads its connections itself again."""
    async with peer() as (p, address), running(PeerPool()) as pool:
        owner = await connected(pool, p, address)
        assert not pool.driven

        def forward(namespace: str, op: str, args: list[Any]) -> Later:
            later = Later()

            def answered(response: Response | BaseException) -> None:
                if isinstance(response, Response):
                    later.resolve(response.value)
                else:
                    later.fail(response)

            assert pool.submit(address, "FWD", namespace, [op, args], timeout=10, answered=answered)
            return later

        dispatcher = Dispatcher(
            execute=forward, routes={}, limits=Limits(), counters=NodeCounters()
        )
        port = DataPort(open_listener("127.0.0.1", 0), dispatcher, LimitSettings(), peers=pool)
        async with trio.open_nursery() as nursery:
            await nursery.start(port.serve)
            client = trio.socket.socket()
            await client.connect(port.address)
            writes = pool.stats["writes"]
            await client.send(
                b"".join(encode_request(i, "GET", "default", [b"k%d" % i]) for i in range(1, 17))
            )
            requests = await p.requests(owner, 16)
            assert pool.stats["writes"] == writes + 1  # the 16 forwards in one write
            assert pool.driven
            await owner.send(b"".join(encode_ok(r.id, r.args[1][0]) for r in reversed(requests)))
            reader = FrameReader(1 << 20)
            answers: list[Response] = []
            with trio.fail_after(10):
                while len(answers) < 16:
                    data = await client.recv(1 << 16)
                    assert data
                    reader.feed(data)
                    while (body := reader.next_body()) is not None:
                        answers.append(decode_response(body))
            assert [(a.id, a.value) for a in answers] == [(i, b"k%d" % i) for i in range(1, 17)]
            client.close()
            nursery.cancel_scope.cancel()
        assert not pool.driven
        async with trio.open_nursery() as nursery:
            result: list[Response] = []

            async def ask() -> None:
                result.append(await pool.request(address, "PING", "default", [], timeout=10))

            nursery.start_soon(ask)
            (request,) = await p.requests(owner, 1)
            await owner.send(encode_ok(request.id, "PONG"))
        assert result[0].value == "PONG"


# --- the coordinator's submitted forwards -----------------------------------------------------


class RecordingPool(PeerPool):
    """Takes every submit (as an open connection would) and keeps its callback; a forward in a
    task finds no peer to connect to."""

    def __init__(self) -> None:
        super().__init__()
        self.submitted: list[tuple[Address, list[Any], dict[str, Any]]] = []

    def submit(
        self, address: Address, op: str, namespace: str, args: list[Any], **kwargs: Any
    ) -> bool:
        self.submitted.append((address, args, kwargs))
        return True

    async def request(self, address: Address, *args: Any, **kwargs: Any) -> Response:
        raise PeerUnreachable("no peer in this test")


ME, OTHER = "10.0.0.1:7400", "10.0.0.2:7400"


def coordinator(pool: PeerPool, other: str = OTHER, replicas: int = 2) -> Coordinator:
    hlc = HLC(lambda: 1_700_000_000_000)
    store = Store(
        clock=lambda: 1_700_000_000.0,
        hlc=hlc,
        policies={"default": NamespacePolicy(replicas=replicas, max_bytes=1 << 20)},
    )
    replicator = Replicator(
        pool,
        address_of=lambda _: None,
        alive=lambda _: False,
        hints=HintQueue(max_bytes=1 << 20, max_bytes_per_target=1 << 18, max_age_s=60),
        clock=lambda: 0.0,
    )
    plane = Coordinator(
        store,
        ME,
        pool=pool,
        replicator=replicator,
        clamp=VersionClamp(hlc),
        alive=lambda node: True,
        limits=Limits(max_key_bytes=64, max_value_bytes=1024),
    )
    members = tuple(RingMember(node_id=m, address=m) for m in (ME, other))
    plane.install(ClusterConfig(version=3, members=members))
    return plane


def foreign_key(plane: Coordinator) -> bytes:
    return next(
        k
        for k in (b"key-%d" % i for i in range(500))
        if plane.ring.owners(k, 2)[0].node_id == OTHER
    )


def settled(later: Later) -> list[tuple[Any, BaseException | None]]:
    out: list[tuple[Any, BaseException | None]] = []
    later.then(lambda value, error: out.append((value, error)))
    return out


@pytest.mark.trio
async def test_a_forward_is_submitted_with_reset_on_time_out_and_answered_later() -> None:
    pool = RecordingPool()
    plane = coordinator(pool)
    key = foreign_key(plane)
    later = plane.execute("default", "GET", [key])
    assert isinstance(later, Later)
    ((address, payload, kwargs),) = pool.submitted
    assert address == ("10.0.0.2", 7400) and payload == ["GET", [key]]
    assert kwargs["abort_on_timeout"] is True
    got = settled(later)
    kwargs["answered"](Response(1, True, b"value", 3))
    assert got == [(b"value", None)]


@pytest.mark.trio
async def test_a_refusal_from_the_owner_is_the_answer() -> None:
    pool = RecordingPool()
    plane = coordinator(pool)
    later = plane.execute("default", "INCR", [foreign_key(plane)])
    got = settled(later)
    pool.submitted[0][2]["answered"](Response(1, False, ["WRONGTYPE", "not a counter"], 3))
    ((_, error),) = got
    assert isinstance(error, CommandError) and error.code == "WRONGTYPE"


@pytest.mark.trio
async def test_a_lost_read_fails_over_and_a_lost_write_that_carries_no_version_does_not() -> None:
    pool = RecordingPool()
    plane = coordinator(pool)
    key = foreign_key(plane)
    plane.store.execute("default", "SET", [key, b"here", {}])
    async with trio.open_nursery() as nursery:
        await nursery.start(plane.run)
        read = plane.execute("default", "GET", [key])
        write = plane.execute("default", "INCR", [key + b"n"])
        got_read, got_write = settled(read), settled(write)
        lost = MeshcacheConnectionError("connection reset: a request timed out")
        for _, _, kwargs in pool.submitted:
            kwargs["answered"](lost)
        # The write: sent, then lost; it may have applied, so it is not repeated.
        ((_, error),) = got_write
        assert isinstance(error, UnavailableError)
        # The read: on to the next owner — this node, which stands in with what it holds.
        with trio.fail_after(5):
            while not got_read:
                await trio.sleep(0.001)  # the failover runs in a task; waiting for it
        assert got_read == [(b"here", None)]
        assert plane.stats["forward_failures"] == 2
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_each_forwarded_answer_reaches_its_client_as_the_owner_gave_it() -> None:
    """A client's pipeline through a non-owner: the owner's value, its refusal and an answer of
    5 elements (hints) each reach the client as that answer, with the client's request id and
    the non-owner's ring version, in request order whatever order the owner answers in; the
    refusal is counted as an error of the op."""
    async with peer() as (p, address), running(PeerPool()) as pool:
        owner = await connected(pool, p, address)
        other = f"{address[0]}:{address[1]}"
        plane = coordinator(pool, other, replicas=1)
        keys = [k for k in (b"key-%d" % i for i in range(500)) if plane.coordinates("default", k)]
        foreign = [k for k in (b"key-%d" % i for i in range(500)) if k not in keys][:3]
        counters = NodeCounters()
        dispatcher = Dispatcher(
            execute=plane.execute, routes={}, limits=Limits(), counters=counters, ring_version=3
        )
        port = DataPort(open_listener("127.0.0.1", 0), dispatcher, LimitSettings(), peers=pool)
        async with trio.open_nursery() as nursery:
            await nursery.start(port.serve)
            client = trio.socket.socket()
            await client.connect(port.address)
            await client.send(
                b"".join(encode_request(i, "GET", "default", [k]) for i, k in enumerate(foreign, 1))
            )
            first, second, third = await p.requests(owner, 3)
            assert [r.op for r in (first, second, third)] == ["FWD"] * 3
            await owner.send(
                pack_frame([third.id, 0, b"v3", 9, {"hot": 5}])
                + encode_error(second.id, "WRONGTYPE", "not a plain value", 9)
                + encode_ok(first.id, b"v1", 9)
            )
            reader = FrameReader(1 << 20)
            answers: list[Response] = []
            with trio.fail_after(10):
                while len(answers) < 3:
                    data = await client.recv(1 << 16)
                    assert data
                    reader.feed(data)
                    while (body := reader.next_body()) is not None:
                        answers.append(decode_response(body))
            assert [(a.id, a.ok, a.value, a.ring_version) for a in answers] == [
                (1, True, b"v1", 3),
                (2, False, ["WRONGTYPE", "not a plain value"], 3),
                (3, True, b"v3", 3),
            ]
            assert counters.errors["WRONGTYPE"] == 1
            assert counters.requests["GET"] == 3
            client.close()
            nursery.cancel_scope.cancel()
