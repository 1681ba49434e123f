"""Answers in parts (a ``RELAY``'s long answer) on a real data port: every one is written, in
request order, a client that stops reading is reaped, and a fan-out op behind one still holds
its connection."""

from __future__ import annotations

import select
import socket
import time
from typing import Any

import pytest
import trio
import trio.testing

from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.net import relay
from meshcache.node.net.dataport import DataPort, _Conn, open_listener
from meshcache.node.net.dispatch import Dispatcher
from meshcache.node.net.peer_pool import PeerPool
from meshcache.node.net.relay import MAX_BATCH_ITEMS
from meshcache.node.net.resp_port import RespPort
from meshcache.node.net.resp_port import _Conn as RespConn
from meshcache.settings import LimitSettings
from meshcache.wire.frame import FrameReader, decode_response, encode_request
from meshcache.wire.ops import Limits
from tests.node.test_peer_batching import coordinator, wait_until
from tests.node.test_relay import body_of, owner_dispatcher, owner_serving, served

KEYS = [b"k%d" % i for i in range(4)]


def _relay(rid: int, keys: list[bytes], first: int = 1) -> bytes:
    bodies = [body_of(encode_request(i, "GET", "default", [k])) for i, k in enumerate(keys, first)]
    return encode_request(rid, "RELAY", "", [bodies])


def _small_frames_owner(routes: dict[str, Any] | None = None) -> tuple[Dispatcher, Any]:
    """An owner whose RELAY answers over KEYS take four frames (600-byte values, 1,000-byte
    parts)."""
    dispatcher, plane = owner_dispatcher(relay.answer_bytes_for(2000), routes=routes)
    for i, key in enumerate(KEYS):
        plane.store.execute("default", "SET", [key, bytes([65 + i]) * 600, {}])
    return dispatcher, plane


async def _ids(client: trio.socket.SocketType, until: Any) -> list[int]:
    reader = FrameReader(1 << 20)
    ids: list[int] = []
    with trio.fail_after(5):
        while not until(ids):
            data = await client.recv(1 << 16)
            assert data, "the port closed the connection"
            reader.feed(data)
            while (body := reader.next_body()) is not None:
                ids.append(decode_response(body).id)
    return ids


@pytest.mark.trio
@pytest.mark.parametrize("relays", [1, 2, 3, 4])
async def test_relays_pipelined_on_an_idle_node_are_each_answered_in_parts(relays: int) -> None:
    """One answer in parts started while another's writing resumed reading lands outside any
    round: the drainer writes it, with no other connection waking the node."""
    dispatcher, plane = _small_frames_owner()
    async with trio.open_nursery() as nursery:
        _, client = await owner_serving(nursery, dispatcher, plane)
        await client.send(b"".join(_relay(100 + r, KEYS) for r in range(relays)))
        ids = await _ids(client, lambda ids: len(ids) == 4 * relays)
        assert ids == [r for r in range(100, 100 + relays) for _ in range(4)]
        client.close()
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_client_that_stops_reading_an_answer_in_parts_is_reaped_when_idle() -> None:
    dispatcher, plane = owner_dispatcher(relay.answer_bytes_for(256 << 10))
    for i, key in enumerate(KEYS):
        plane.store.execute("default", "SET", [key, bytes([i]) * 200_000, {}])
    limits = LimitSettings(idle_timeout=0.5)
    async with trio.open_nursery() as nursery:
        port, client = await owner_serving(nursery, dispatcher, plane, limits, window=64 << 10)
        keys = [KEYS[i % 4] for i in range(MAX_BATCH_ITEMS)]
        await client.send(_relay(5, keys))  # then reads nothing
        await wait_until(lambda: port.connection_count == 0, timeout=5)
        assert dispatcher.counters.connections_closed["idle_timeout"] == 1
        client.close()
        nursery.cancel_scope.cancel()


async def _two_rounds_by_hand(
    port: Any, plane: Any, conn_of: Any, first: bytes, second: bytes
) -> bytes:
    """Two rounds of ``port`` over one connection (``conn_of(socket)``), driven by hand as the
    reactor runs them: ``first`` is read (a turn answers part of it and defers the rest) and
    the round ends; ``second`` arrives, the backlog turn answers the rest (its answers wait for
    the round's end), the connection is read again and the round ends. What the client got."""
    async with trio.open_nursery() as nursery:
        await nursery.start(plane.run)
        port._nursery = nursery
        port._epoll = select.epoll()
        server, client = socket.socketpair()
        try:
            server.setblocking(False)
            conn = conn_of(server)
            port._conns[conn.fd] = conn
            port._epoll.register(conn.fd, select.EPOLLIN | select.EPOLLRDHUP)
            port._in_round = True
            port._until = time.perf_counter() + 10
            client.sendall(first)
            port._read(conn)
            assert conn.deferred
            port._round_end()
            client.sendall(second)
            port._serve_backlog(time.perf_counter() + 10)
            assert [c for c, _ in port._round_out] == [conn]
            port._read(conn)
            port._round_end()
            port._in_round = False
            await trio.testing.wait_all_tasks_blocked()
            client.setblocking(False)
            data: bytes = client.recv(1 << 22)
            return data
        finally:
            port._conns.clear()
            port._epoll.close()
            port._listener.close()  # not served: the rounds are driven by hand
            server.close()
            client.close()
            nursery.cancel_scope.cancel()


async def _scan_part(ns: str, args: list[Any]) -> Any:
    """A fan-out op that waits (a SCAN_PART's shape)."""
    await trio.sleep(0)
    return []


@pytest.mark.trio
@pytest.mark.parametrize(
    ("second", "tail"),
    [
        (_relay(500, KEYS, first=1000), [500] * 4),
        (
            encode_request(900, "FWD", "default", ["GET", [b"k0"]]) + _relay(500, KEYS),
            [900] + [500] * 4,
        ),
        (
            encode_request(900, "FWD", "default", ["GET", [b"k0"]])
            + encode_request(901, "SCAN_PART", "default", [0]),
            [900, 901],
        ),
    ],
    ids=["relay", "answer-then-relay", "answer-then-waiting-op"],
)
async def test_answers_of_a_backlog_turn_go_before_those_read_in_the_same_round(
    second: bytes, tail: list[int]
) -> None:
    """Rounds driven by hand, as the reactor runs them: a turn answers 64 of 70 pipelined reads
    and defers the rest; in the next round the backlog turn answers them (written at the
    round's end) and the connection is read again: what that read answers goes after them,
    whether it is an answer in parts, an answer written before a waiting op, or both."""
    dispatcher, plane = _small_frames_owner({"SCAN_PART": _scan_part})
    port = DataPort(open_listener("127.0.0.1", 0), dispatcher, LimitSettings(), peers=None)
    session = dispatcher.guard.session("test")
    reads = [encode_request(i, "FWD", "default", ["GET", [b"k0"]]) for i in range(1, 71)]
    data = await _two_rounds_by_hand(
        port,
        plane,
        lambda sock: _Conn(sock, "test", 0.0, LimitSettings().max_frame_bytes, session),
        b"".join(reads),
        second,
    )
    reader = FrameReader(1 << 20)
    reader.feed(data)
    ids = []
    while (body := reader.next_body()) is not None:
        ids.append(decode_response(body).id)
    assert ids == [*range(1, 71), *tail]


@pytest.mark.trio
async def test_a_client_that_reads_an_answer_in_parts_slowly_is_not_reaped() -> None:
    """Reading steadily (64 KiB every 20 ms), it gets the whole 6 MB answer with an idle
    timeout of a quarter second, though the kernel asks the node for more bytes far less often
    than that once its buffers are full: the bytes the kernel holds for the client go down
    between two looks of the reaper."""
    dispatcher, plane = owner_dispatcher()
    for i, key in enumerate(KEYS):
        plane.store.execute("default", "SET", [key, bytes([i]) * 250_000, {}])
    limits = LimitSettings(idle_timeout=0.25)
    async with trio.open_nursery() as nursery:
        _, client = await owner_serving(nursery, dispatcher, plane, limits, window=64 << 10)
        await client.send(_relay(5, [KEYS[i % 4] for i in range(24)]))
        got = 0
        while got < 6_000_000:
            data = await client.recv(64 << 10)
            closed = dict(dispatcher.counters.connections_closed)
            assert data, f"closed after {got:,} bytes: {closed}"
            got += len(data)
            await trio.sleep(0.02)  # the pace of a slow reader, not a wait for a condition
        client.close()
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_fan_out_op_behind_an_answer_in_parts_still_holds_its_connection() -> None:
    """A RELAY one of whose reads waits is answered by a task, in parts; a fan-out op read
    after it holds the connection until it is done, whenever the parts' writing ends."""
    plane = coordinator(PeerPool(), replicas=1)
    slow, fan = trio.Event(), trio.Event()
    log: list[str] = []

    def fwd(ns: str, args: list[Any]) -> Any:
        key = args[1][0] if args[1] else None
        if key == b"slow":  # a read that waits, as a read-through load does

            async def later() -> Any:
                await slow.wait()
                return b"s"

            return later()
        if key == b"late":
            log.append("late read" + ("" if fan.is_set() else " before the fan-out op ended"))
        return plane.execute_forwarded(ns, args)

    async def fan_out(ns: str, args: list[Any]) -> Any:
        await fan.wait()
        log.append("fan-out op done")
        return []

    dispatcher = Dispatcher(
        execute=plane.execute,
        routes={"FWD": fwd, "SCAN_PART": fan_out},
        limits=Limits(max_key_bytes=64, max_value_bytes=1 << 20),
        counters=NodeCounters(),
        answer_bytes=relay.answer_bytes_for(2000),
    )
    for i, key in enumerate(KEYS):
        plane.store.execute("default", "SET", [key, bytes([65 + i]) * 600, {}])
    port = DataPort(open_listener("127.0.0.1", 0), dispatcher, LimitSettings(), peers=None)
    bodies = [body_of(encode_request(1, "GET", "default", [b"slow"]))] + [
        body_of(encode_request(i, "GET", "default", [k])) for i, k in enumerate(KEYS, 2)
    ]
    async with trio.open_nursery() as nursery:
        await nursery.start(plane.run)
        client = await served(nursery, port)
        await client.send(
            encode_request(5, "RELAY", "", [bodies])
            + encode_request(6, "SCAN_PART", "default", [0])
            + encode_request(7, "FWD", "default", ["GET", [b"late"]])
        )
        await trio.testing.wait_all_tasks_blocked(0.05)
        slow.set()  # the RELAY's answer is written in parts; the fan-out op still runs
        await trio.testing.wait_all_tasks_blocked(0.05)
        fan.set()
        ids = await _ids(client, lambda ids: 7 in ids)
        assert ids[-2:] == [6, 7] and set(ids[:-2]) == {5}
        assert log == ["fan-out op done", "late read"]
        client.close()
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_resp_replies_of_a_backlog_turn_go_before_those_read_in_the_same_round() -> None:
    """The same rounds on the RESP port, which has no request ids: a reply written at once
    before a waiting command goes after the backlog turn's replies."""
    plane = coordinator(PeerPool(), replicas=1)

    async def dbsize(ns: str, args: list[Any]) -> Any:
        await trio.sleep(0)
        return 7

    port = RespPort(
        open_listener("127.0.0.1", 0),
        execute=plane.execute,
        routes={"DBSIZE": dbsize},
        limits=LimitSettings(),
        op_limits=Limits(),
        counters=NodeCounters(),
        peers=None,
    )
    session = port.server.session("test", ("127.0.0.1", 0), "")
    replies = await _two_rounds_by_hand(
        port,
        plane,
        lambda sock: RespConn(sock, session, 0.0, port._reader_limits),
        b"".join(b"ECHO %d\r\n" % i for i in range(1, 71)),
        b"ECHO 900\r\nDBSIZE\r\n",
    )
    echoed = [b"%d" % i for i in [*range(1, 71), 900]]
    assert replies == b"".join(b"$%d\r\n%s\r\n" % (len(e), e) for e in echoed) + b":7\r\n"
