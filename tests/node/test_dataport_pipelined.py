"""Pipelined requests whose answers wait on node ops: run concurrently, answered in order.

In process: a real data port on a real socket, with an executor whose ``slow*`` keys return
coroutines the test releases (the Dispatcher's ``execute`` seam), so what runs when is decided
by the test, not by timing. Across processes: a 3-node mesh, pipelines through a non-owner.
"""

from __future__ import annotations

import signal
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from meshcache.errors import UnavailableError
from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.net.dataport import MAX_PENDING, DataPort, open_listener
from meshcache.node.net.dispatch import Dispatcher
from meshcache.settings import LimitSettings
from meshcache.testing.mesh import Direct, Mesh, wait_for
from meshcache.wire.frame import HEADER, FrameReader, Response, decode_response, encode_request
from meshcache.wire.ops import Limits

BIG = b"x" * 10_000


class SlowPlane:
    """A store whose ops on ``slow*`` keys answer only once the test opens their gate.

    A slow op takes effect when it starts, as a forward does once the peer connection has it
    (the owner executes a connection's requests in the order they were sent); its answer waits.
    """

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {b"big": BIG}
        self.gates: dict[bytes, trio.Event] = {}
        self.open_all = False
        self.started: list[bytes] = []  # keys of slow ops, in the order the ops began running
        self.log: list[tuple[str, bytes]] = []  # (op, key) of slow ops, the same order
        self.cancelled: list[bytes] = []
        self.ran: Counter[str] = Counter()  # ops executed

    def execute(self, namespace: str, op: str, args: list[Any]) -> Any:
        if any(isinstance(a, bytes) and a.startswith(b"slow") for a in args):
            return self._slow(op, args)
        return self._now(op, args)

    def _now(self, op: str, args: list[Any]) -> Any:
        self.ran[op] += 1
        if op == "SET":
            self.data[args[0]] = args[1]
            return True
        if op == "GET":
            return self.data.get(args[0])
        assert op == "MGET"
        return [self.data.get(k) for k in args]

    async def _slow(self, op: str, args: list[Any]) -> Any:
        key = args[0]
        self.started.append(key)  # before its first checkpoint: when its task first ran
        self.log.append((op, key))
        result = self._now(op, args)
        try:
            if not self.open_all:
                await self.gates.setdefault(key, trio.Event()).wait()
        except trio.Cancelled:
            self.cancelled.append(key)
            raise
        if key.startswith(b"slowfail"):
            raise UnavailableError(message="no owner answered")
        return result

    def release(self, key: bytes) -> None:
        self.gates.setdefault(key, trio.Event()).set()

    def release_all(self) -> None:
        self.open_all = True
        for gate in self.gates.values():
            gate.set()


ROUTES = {"PING": lambda namespace, args: "PONG"}


@asynccontextmanager
async def serving(plane: SlowPlane, **limits: Any) -> AsyncIterator[DataPort]:
    dispatcher = Dispatcher(
        execute=plane.execute, routes=ROUTES, limits=Limits(), counters=NodeCounters()
    )
    port = DataPort(open_listener("127.0.0.1", 0), dispatcher, replace(LimitSettings(), **limits))
    async with trio.open_nursery() as nursery:
        await nursery.start(port.serve)
        yield port
        nursery.cancel_scope.cancel()


class Pipe:
    """One raw client connection: sends a burst in one write, reads answers as they come."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address)
        self.sock.setblocking(False)
        self.reader = FrameReader()
        self.rid = 0

    def send(self, requests: list[tuple[str, list[Any]]]) -> list[int]:
        ids = list(range(self.rid + 1, self.rid + 1 + len(requests)))
        self.rid += len(requests)
        burst = b"".join(
            encode_request(rid, op, "default", args)
            for rid, (op, args) in zip(ids, requests, strict=True)
        )
        self.sock.setblocking(True)
        self.sock.sendall(burst)
        self.sock.setblocking(False)
        return ids

    def send_raw(self, data: bytes) -> None:
        self.sock.setblocking(True)
        self.sock.sendall(data)
        self.sock.setblocking(False)

    def readable(self) -> int:
        """Bytes the node has written that the test did not read yet (without waiting)."""
        try:
            return len(self.sock.recv(65536, socket.MSG_PEEK))
        except BlockingIOError:
            return 0

    async def recv(self, n: int) -> list[Response]:
        out: list[Response] = []
        with trio.fail_after(10):
            while len(out) < n:
                body = self.reader.next_body()
                if body is not None:
                    out.append(decode_response(body))
                    continue
                await trio.lowlevel.wait_readable(self.sock)
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError(f"closed after {len(out)} of {n} answers")
                self.reader.feed(data)
        return out

    async def closed(self) -> bool:
        """True once the node closed the connection (after everything it wrote)."""
        with trio.fail_after(10):
            while True:
                await trio.lowlevel.wait_readable(self.sock)
                if not self.sock.recv(65536):
                    return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def pipes() -> Iterator[list[Pipe]]:
    opened: list[Pipe] = []
    yield opened
    for pipe in opened:
        pipe.close()


async def settle() -> None:
    """Let the node run until every task waits on something the test controls."""
    await trio.testing.wait_all_tasks_blocked()


@pytest.mark.trio
async def test_later_requests_run_while_an_earlier_one_waits_and_answers_keep_order(
    pipes: list[Pipe],
) -> None:
    plane = SlowPlane()
    async with serving(plane) as port:
        pipe = Pipe(port.address)
        pipes.append(pipe)
        ids = pipe.send(
            [
                ("SET", [b"slow1", b"a"]),
                ("GET", [b"big"]),  # answered at once, written after slow1's answer
                ("SET", [b"slow2", b"b"]),
                ("GET", [b"slow1"]),
                ("SET", [b"k", b"v"]),
            ]
        )
        await settle()
        # Every request ran or started although the first one still waits ...
        assert sorted(plane.started) == [b"slow1", b"slow1", b"slow2"]
        assert plane.ran == {"SET": 3, "GET": 2}
        assert plane.log.index(("SET", b"slow1")) < plane.log.index(("GET", b"slow1"))
        # ... and nothing was written: the head answer is not there yet.
        assert pipe.readable() == 0
        plane.release(b"slow2")  # a later op finishes first: still nothing is written
        await settle()
        assert pipe.readable() == 0
        plane.release(b"slow1")
        answers = await pipe.recv(5)
    assert [a.id for a in answers] == ids
    assert [a.result() for a in answers] == [True, BIG, True, b"a", True]


@pytest.mark.trio
@pytest.mark.parametrize("run", range(4))
async def test_waiting_requests_on_one_key_start_in_request_order(
    pipes: list[Pipe], run: int
) -> None:
    # trio runs the tasks of one batch in either order, so without the port's chaining a GET
    # would often start before the SET of its key ahead of it.
    plane = SlowPlane()
    keys = [b"slowa", b"slowb", b"slowc"]
    requests: list[tuple[str, list[Any]]] = []
    for i in range(10):
        for key in keys:
            requests += [("SET", [key, b"%s%d" % (key, i)]), ("GET", [key])]
    async with serving(plane) as port:
        pipe = Pipe(port.address)
        pipes.append(pipe)
        ids = pipe.send(requests)
        await settle()
        for key in keys:
            assert [op for op, k in plane.log if k == key] == ["SET", "GET"] * 10
        plane.release_all()
        answers = await pipe.recv(len(requests))
    assert [a.id for a in answers] == ids
    assert [a.result() for a in answers] == [
        True if op == "SET" else b"%s%d" % (args[0], i // (2 * len(keys)))
        for i, (op, args) in enumerate(requests)
    ]


@pytest.mark.trio
async def test_waiting_answers_per_connection_are_bounded(pipes: list[Pipe]) -> None:
    plane = SlowPlane()
    n = MAX_PENDING + 72
    async with serving(plane) as port:
        pipe = Pipe(port.address)
        pipes.append(pipe)
        ids = pipe.send([("SET", [b"slow%d" % i, b"v"]) for i in range(n)])
        await settle()
        assert len(plane.started) == MAX_PENDING  # the rest is not even read yet
        plane.release(b"slow0")  # the head is written: the connection is read again
        assert [a.id for a in await pipe.recv(1)] == ids[:1]
        await settle()
        assert len(plane.started) == MAX_PENDING + 1
        plane.release_all()
        answers = await pipe.recv(n - 1)
    assert [a.id for a in answers] == ids[1:]
    assert plane.ran["SET"] == n


@pytest.mark.trio
async def test_ready_answers_held_behind_a_waiting_one_are_bounded(pipes: list[Pipe]) -> None:
    plane = SlowPlane()
    async with serving(plane, max_buffered_bytes=64 * 1024) as port:
        pipe = Pipe(port.address)
        pipes.append(pipe)
        ids = pipe.send([("SET", [b"slow", b"v"])] + [("GET", [b"big"])] * 100)
        await settle()
        # 64 KiB of 10 kB answers queue behind the waiting SET; then reading stops.
        assert 6 <= plane.ran["GET"] <= 8
        plane.release_all()
        answers = await pipe.recv(101)
    assert [a.id for a in answers] == ids
    assert [a.result() for a in answers] == [True] + [BIG] * 100


@pytest.mark.trio
async def test_an_op_that_fans_out_runs_nothing_after_it_until_done(pipes: list[Pipe]) -> None:
    plane = SlowPlane()
    async with serving(plane) as port:
        pipe = Pipe(port.address)
        pipes.append(pipe)
        ids = pipe.send([("MGET", [b"slow", b"big"]), ("SET", [b"k", b"v"])])
        await settle()
        assert plane.started == [b"slow"]
        assert b"k" not in plane.data  # a many-key op may still be reaching other nodes
        plane.release_all()
        answers = await pipe.recv(2)
    assert [a.id for a in answers] == ids
    assert [a.result() for a in answers] == [[None, BIG], True]


@pytest.mark.trio
async def test_a_failed_op_is_answered_with_its_error_in_place(pipes: list[Pipe]) -> None:
    plane = SlowPlane()
    async with serving(plane) as port:
        pipe = Pipe(port.address)
        pipes.append(pipe)
        ids = pipe.send([("SET", [b"slowfail", b"v"]), ("GET", [b"big"]), ("SET", [b"slow", b"w"])])
        plane.release_all()
        answers = await pipe.recv(3)
    assert [a.id for a in answers] == ids
    assert not answers[0].ok and answers[0].value[0] == "UNAVAILABLE"
    assert [a.result() for a in answers[1:]] == [BIG, True]


@pytest.mark.trio
async def test_a_lost_frame_is_answered_after_the_answers_before_it(pipes: list[Pipe]) -> None:
    plane = SlowPlane()
    async with serving(plane, max_frame_bytes=1024) as port:
        pipe = Pipe(port.address)
        pipes.append(pipe)
        ids = pipe.send([("SET", [b"slow", b"v"]), ("GET", [b"big"])])
        pipe.send_raw(HEADER.pack(4096) + b"\0" * 16)
        await settle()
        assert pipe.readable() == 0 and port.connection_count == 1
        plane.release_all()
        answers = await pipe.recv(3)
        assert await pipe.closed()
    assert [a.id for a in answers[:2]] == ids
    assert [a.result() for a in answers[:2]] == [True, BIG]
    assert not answers[2].ok and answers[2].value[0] == "TOO_LARGE"


@pytest.mark.trio
async def test_a_closed_connection_cancels_its_waiting_ops(pipes: list[Pipe]) -> None:
    plane = SlowPlane()
    async with serving(plane) as port:
        pipe = Pipe(port.address)
        pipe.send([("SET", [b"slow%d" % i, b"v"]) for i in range(10)])
        await settle()
        assert len(plane.started) == 10
        pipe.close()
        with trio.fail_after(5):
            while len(plane.cancelled) < 10 or port.connection_count:
                await trio.sleep(0.01)  # poll interval; the deadline bounds the wait
        # The port serves on: a new connection is answered.
        other = Pipe(port.address)
        pipes.append(other)
        other.send([("GET", [b"big"])])
        assert [a.result() for a in await other.recv(1)] == [BIG]
    assert sorted(plane.cancelled) == sorted(plane.started)


@pytest.mark.trio
async def test_stopping_the_port_cancels_waiting_ops(pipes: list[Pipe]) -> None:
    plane = SlowPlane()
    async with serving(plane) as port:
        pipe = Pipe(port.address)
        pipes.append(pipe)
        pipe.send([("SET", [b"slow%d" % i, b"v"]) for i in range(5)])
        await settle()
    assert sorted(plane.cancelled) == sorted(plane.started) and len(plane.started) == 5
    assert await pipe.closed()


# --- a real 3-node mesh ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with ExitStack() as stack:
        m = Mesh(stack, Path(tmp_path_factory.mktemp("fwd")), 3)
        m.wait_namespace("q", {"replicas": 2, "consistency": "quorum"})
        yield m


def _keys(mesh: Mesh, n: int, *, replicas: int, owned_by: set[str], prefix: str) -> list[bytes]:
    """``n`` keys whose owners are exactly ``owned_by``."""
    ring = mesh.current_ring()
    found: list[bytes] = []
    i = 0
    while len(found) < n:
        key = b"%s%d" % (prefix.encode(), i)
        if {m.node_id for m in ring.owners(key, replicas)} == owned_by:
            found.append(key)
        i += 1
    return found


def _answers(sock: socket.socket, n: int) -> list[Response]:
    reader = FrameReader()
    out: list[Response] = []
    while len(out) < n:
        body = reader.next_body()
        if body is not None:
            out.append(decode_response(body))
            continue
        data = sock.recv(1 << 20)
        if not data:
            raise ConnectionError(f"closed after {len(out)} of {n} answers")
        reader.feed(data)
    return out


@pytest.mark.slow
def test_a_pipelined_burst_through_a_non_owner_is_answered_in_order(mesh: Mesh) -> None:
    a, b, c = mesh.nodes
    keys = _keys(mesh, 150, replicas=2, owned_by={b.node_id, c.node_id}, prefix="burst")
    ring = mesh.current_ring()
    with Direct(a.data_address) as warm:
        # Open a's pooled connections to b and c first: while one is being opened, a request
        # can still overtake an earlier one waiting for it (PeerPool._connection's fast path).
        for owner in (b, c):
            first = next(k for k in keys if ring.owners(k, 2)[0].node_id == owner.node_id)
            warm.call("EXISTS", [first])
    requests: list[tuple[str, list[Any]]] = []
    for i, key in enumerate(keys):
        # Each GET right behind the SET of its key: the writes must reach the owner first.
        requests += [("SET", [key, b"v%d" % i]), ("GET", [key])]
    requests += [("MGET", keys[:20]), ("DELETE", keys[:10]), ("GET", [keys[0]])]
    burst = b"".join(
        encode_request(rid, op, "default", args) for rid, (op, args) in enumerate(requests, 1)
    )
    with socket.create_connection(a.data_address, timeout=20) as sock:
        sock.sendall(burst)
        answers = _answers(sock, len(requests))
    assert [r.id for r in answers] == list(range(1, len(requests) + 1))
    expected: list[Any] = []
    for i in range(len(keys)):
        expected += [True, b"v%d" % i]
    expected += [[b"v%d" % i for i in range(20)], 10, None]
    assert [r.result() for r in answers] == expected


@pytest.mark.slow
def test_a_write_waiting_for_a_stopped_replica_does_not_hold_up_the_next(mesh: Mesh) -> None:
    a, b, c = mesh.nodes
    # slow: owned by b and c (quorum of 2 needs c's ack); fast: owned by a and b.
    slow = _keys(mesh, 1, replicas=2, owned_by={b.node_id, c.node_id}, prefix="stuck")[0]
    fast = _keys(mesh, 1, replicas=2, owned_by={a.node_id, b.node_id}, prefix="free")[0]
    requests = [
        ("SET", [slow, b"late"]),
        ("SET", [fast, b"early"]),
        ("GET", [fast]),
    ]
    burst = b"".join(
        encode_request(rid, op, "q", args) for rid, (op, args) in enumerate(requests, 1)
    )
    c.signal(signal.SIGSTOP)
    try:
        with (
            socket.create_connection(a.data_address, timeout=20) as sock,
            Direct(b.data_address) as observer,
        ):
            sock.sendall(burst)
            # The SET behind the stuck one is applied while the stuck one still waits (the
            # node gives up on an ack after 2 s; this is seen within milliseconds) ...
            wait_for(lambda: observer.local_get(fast, "q") == b"early", 1.5, "the second SET")
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1, socket.MSG_PEEK)  # ... and no answer overtook the stuck one's
            sock.setblocking(True)
            c.signal(signal.SIGCONT)
            answers = _answers(sock, len(requests))
    finally:
        c.signal(signal.SIGCONT)
    assert [r.id for r in answers] == [1, 2, 3]
    assert answers[1].result() is True and answers[2].result() == b"early"
    # The stuck write: acked once c woke, or refused if c's ack came after the 2 s timeout.
    assert answers[0].ok or answers[0].value[0] == "WRITE_FAILED"


@pytest.mark.slow
def test_a_node_stops_on_sigterm_with_forwards_waiting(tmp_path: Path) -> None:
    with ExitStack() as stack:
        two = Mesh(stack, tmp_path, 2)
        a, b = two.nodes
        ring = two.current_ring()
        keys = [
            k for k in (b"t%d" % i for i in range(400)) if ring.owners(k, 2)[0].node_id == b.node_id
        ]
        burst = b"".join(
            encode_request(rid, "GET", "default", [k]) for rid, k in enumerate(keys[:20], 1)
        )

        def forwarded() -> int:
            counters = two.mesh_info(a).get("counters", {})
            return int(counters.get("dataplane", {}).get("forwarded_out", 0))

        b.signal(signal.SIGSTOP)  # b takes the forwards and never answers them
        try:
            with socket.create_connection(a.data_address, timeout=20) as sock:
                sock.sendall(burst)
                wait_for(lambda: forwarded() >= 20, 10, "a to forward every GET")
                assert a.stop(timeout=5.0) == 0  # the waiting forwards are cancelled
        finally:
            b.signal(signal.SIGCONT)
