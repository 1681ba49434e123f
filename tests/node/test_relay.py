"""Relayed GETs: a non-owner passes a plain client's GETs on to their owner as they came, a
round's worth in one ``RELAY`` frame, and writes the owner's response frames to its client as
they are; the owner answers each body as its client would have been answered.

The non-owner's side runs a real data port, dispatcher, coordinator and peer pool against a
peer socket the test controls; the owner's side runs a real dispatcher and coordinator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.errors import MeshcacheConnectionError, MeshcacheTimeout
from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.data.coordinator import Coordinator
from meshcache.node.data.hot import HotKeys
from meshcache.node.net import dispatch, relay
from meshcache.node.net.dataport import DataPort, open_listener
from meshcache.node.net.dispatch import Dispatcher
from meshcache.node.net.peer_pool import PeerPool
from meshcache.node.net.relay import MAX_BATCH_ITEMS
from meshcache.node.net.resp_port import RespPort
from meshcache.settings import LimitSettings
from meshcache.store.hotpolicy import HotKeyPolicy
from meshcache.wire.frame import (
    HEADER,
    FrameReader,
    Response,
    decode_response,
    encode_error,
    encode_ok,
    encode_request,
)
from meshcache.wire.ops import Limits
from meshcache.wire.pending import Later, Parts
from tests.node.test_peer_batching import (
    connected,
    coordinator,
    peer,
    running,
    wait_until,
)


def body_of(frame: bytes) -> bytes:
    return frame[HEADER.size :]


def port_for(plane: Coordinator, pool: PeerPool) -> tuple[DataPort, NodeCounters]:
    """The non-owner's data port, wired as a node wires it."""
    counters = NodeCounters()
    dispatcher = Dispatcher(
        execute=plane.execute,
        routes={"FWD": plane.execute_forwarded},
        limits=Limits(),
        counters=counters,
        ring_version=3,
    )
    dispatcher.relay = plane.execute
    port = DataPort(open_listener("127.0.0.1", 0), dispatcher, LimitSettings(), peers=pool)
    return port, counters


async def answers_of(client: trio.socket.SocketType, n: int) -> list[Response]:
    reader = FrameReader(1 << 20)
    out: list[Response] = []
    with trio.fail_after(10):
        while len(out) < n:
            data = await client.recv(1 << 16)
            assert data, "the port closed the connection"
            reader.feed(data)
            while (body := reader.next_body()) is not None:
                out.append(decode_response(body))
    return out


async def served(nursery: trio.Nursery, port: DataPort | RespPort) -> trio.socket.SocketType:
    """Run ``port``; a client connected to it."""
    await nursery.start(port.serve)
    client = trio.socket.socket()
    await client.connect(port.address)
    return client


async def serving(
    nursery: trio.Nursery, plane: Coordinator, port: DataPort, p: Any, owner: Any
) -> trio.socket.SocketType:
    """Run ``plane`` (answering the clock it asks its peer for as it starts) and ``port``; a
    client connected to the port."""
    await nursery.start(plane.run)
    (clock,) = await p.requests(owner, 1)
    await owner.send(encode_ok(clock.id, 1, 9))
    client = await served(nursery, port)
    return client


def foreign_keys(plane: Coordinator, n: int) -> list[bytes]:
    keys = (b"key-%d" % i for i in range(2000))
    return [k for k in keys if not plane.coordinates("default", k)][:n]


@pytest.mark.trio
async def test_a_rounds_reads_for_an_owner_leave_in_one_relay_frame_and_come_back_as_sent() -> None:
    async with peer() as (p, address), running(PeerPool()) as pool:
        owner = await connected(pool, p, address)
        plane = coordinator(pool, f"{address[0]}:{address[1]}", replicas=1)
        keys = foreign_keys(plane, 16)
        port, counters = port_for(plane, pool)
        async with trio.open_nursery() as nursery:
            client = await served(nursery, port)
            frames = [encode_request(i, "GET", "default", [k]) for i, k in enumerate(keys, 1)]
            frames[7] = encode_request(8, "HGET", "default", [keys[7], b"field"])
            await client.send(b"".join(frames))
            (relay,) = await p.requests(owner, 1)
            # One frame for the 16 GETs, each the client's body byte for byte.
            assert relay.op == "RELAY" and relay.args == [[body_of(f) for f in frames]]
            # The owner's frames, passed on as they are: its ring version, its hints.
            replies = [encode_ok(i, b"v%d" % i, 9) for i in range(1, 16)]
            replies.append(encode_error(16, "WRONGTYPE", "not a plain value", 9))
            await owner.send(encode_ok(relay.id, replies))
            answers = await answers_of(client, 16)
            assert [(a.id, a.value, a.ring_version) for a in answers[:15]] == [
                (i, b"v%d" % i, 9) for i in range(1, 16)
            ]
            assert answers[15].value == ["WRONGTYPE", "not a plain value"]
            assert counters.requests["GET"] == 15 and counters.requests["HGET"] == 1
            assert counters.errors["WRONGTYPE"] == 1  # counted here, as a forward's refusal
            assert pool.stats["relayed"] == 16 and plane.stats["forwarded_out"] == 16
            client.close()
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_write_between_gets_closes_the_relay_frame_so_the_owner_sees_them_in_order() -> (
    None
):
    async with peer() as (p, address), running(PeerPool()) as pool:
        owner = await connected(pool, p, address)
        plane = coordinator(pool, f"{address[0]}:{address[1]}", replicas=1)
        (key,) = foreign_keys(plane, 1)
        port, _ = port_for(plane, pool)
        async with trio.open_nursery() as nursery:
            client = await served(nursery, port)
            await client.send(
                encode_request(1, "GET", "default", [key])
                + encode_request(2, "SET", "default", [key, b"new"])
                + encode_request(3, "GET", "default", [key])
            )
            first, write, second = await p.requests(owner, 3)
            assert [first.op, write.op, second.op] == ["RELAY", "FWD", "RELAY"]
            await owner.send(
                encode_ok(first.id, [encode_ok(1, b"old", 9)])
                + encode_ok(write.id, True, 9)
                + encode_ok(second.id, [encode_ok(3, b"new", 9)])
            )
            answers = await answers_of(client, 3)
            assert [(a.id, a.value) for a in answers] == [(1, b"old"), (2, True), (3, b"new")]
            client.close()
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_with_hot_keys_on_a_copy_answers_here_and_the_other_reads_are_relayed() -> None:
    """In a namespace with hot keys, a read of a key this node holds a fresh copy of is answered
    from the copy; every other read of a key owned elsewhere is relayed as without hot keys."""
    async with peer() as (p, address), running(PeerPool()) as pool:
        owner = await connected(pool, p, address)
        plane = coordinator(pool, f"{address[0]}:{address[1]}", replicas=1)
        store = plane.store
        store.set_policy(
            "default",
            dataclasses.replace(store.policy("default"), hot=HotKeyPolicy(lease=30.0)),
        )
        hot = HotKeys(
            store,
            plane.node_id,
            ring=lambda: (plane.ring, plane.ring_version),
            alive=lambda _: True,
            call=_no_call,
            wall_clock=lambda: 1_700_000_000.0,
        )
        hot.tick()  # follows the namespace's policy: hot keys on
        plane.hot = hot
        held, other = foreign_keys(plane, 2)
        owner_id = plane.ring.owners(held, 1)[0].node_id
        assert hot.handle_push(
            "default", [owner_id, plane.ring_version, 30.0, [[held, b"copy", 5, None]]]
        ) == [0]
        port, _ = port_for(plane, pool)
        async with trio.open_nursery() as nursery:
            client = await served(nursery, port)
            await client.send(
                encode_request(1, "GET", "default", [held])
                + encode_request(2, "GET", "default", [other])
            )
            (relay,) = await p.requests(owner, 1)
            assert relay.op == "RELAY"
            assert relay.args == [[body_of(encode_request(2, "GET", "default", [other]))]]
            await owner.send(encode_ok(relay.id, [encode_ok(2, b"owned", 9)]))
            answers = await answers_of(client, 2)
            assert [(a.id, a.value) for a in answers] == [(1, b"copy"), (2, b"owned")]
            assert hot.stats["reads_from_copies"] == 1 and pool.stats["relayed"] == 1
            client.close()
            nursery.cancel_scope.cancel()


@dataclasses.dataclass
class SecondOwner:
    """A non-owner that is its keys' second owner (replicas 2), serving a connected client;
    the test plays the first owner on its connection ``owner``. Every key holds ``old``."""

    p: Any
    owner: Any
    plane: Coordinator
    client: trio.socket.SocketType
    keys: list[bytes]
    nursery: trio.Nursery

    def break_first_owner(self) -> None:
        """The first owner's connection breaks, having applied nothing; it comes back stale:
        whatever reaches it again is answered with the old value."""
        self.owner.close()
        self.nursery.start_soon(_stale_owner, self.p)


async def _stale_owner(p: Any) -> None:
    sock = await p.accept()
    while True:
        for r in await p.requests(sock, 1):
            await sock.send(encode_ok(r.id, b"old" if r.args[0] == "GET" else True, 9))


@asynccontextmanager
async def second_owner(n: int) -> AsyncIterator[SecondOwner]:
    async with peer() as (p, address), running(PeerPool()) as pool:
        owner = await connected(pool, p, address)
        plane = coordinator(pool, f"{address[0]}:{address[1]}", replicas=2)
        keys = foreign_keys(plane, n)
        for key in keys:
            plane.store.execute("default", "SET", [key, b"old", {}])
        port, _ = port_for(plane, pool)
        async with trio.open_nursery() as nursery:
            client = await serving(nursery, plane, port, p, owner)
            yield SecondOwner(p, owner, plane, client, keys, nursery)
            client.close()
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_relay_answered_in_part_before_a_break_fails_over_before_the_write_after_it() -> (
    None
):
    """GET, GET K, SET K through K's second owner; the first owner sends the first frame of a
    two-frame answer, then its connection breaks: the GET of K left fails over before the SET
    sent after it, and reads what was there before the SET."""
    async with second_owner(2) as mesh:
        other, key = mesh.keys
        await mesh.client.send(
            encode_request(1, "GET", "default", [other])
            + encode_request(2, "GET", "default", [key])
            + encode_request(3, "SET", "default", [key, b"new"])
        )
        relay_frame, write = await mesh.p.requests(mesh.owner, 2)
        assert relay_frame.op == "RELAY" and write.op == "FWD"
        await mesh.owner.send(encode_ok(relay_frame.id, [encode_ok(1, b"v1", 9)]))
        (first,) = await answers_of(mesh.client, 1)
        assert (first.id, first.value) == (1, b"v1")
        mesh.break_first_owner()
        answers = await answers_of(mesh.client, 2)
        assert [(a.id, a.value) for a in answers] == [(2, b"old"), (3, True)]
        assert mesh.plane.store.execute("default", "GET", [key]) == b"new"


@pytest.mark.trio
@pytest.mark.parametrize("attempt", range(6))  # trio wakes failed tasks in either order
async def test_a_forward_made_in_a_task_fails_over_after_the_read_sent_before_it(
    attempt: int,
) -> None:
    """GET K (relayed), then MSET K J (its part for the owner forwarded in a task) through K's
    second owner; the connection to the first breaks before it applied anything. The GET
    fails over first and reads what was there before the MSET."""
    async with second_owner(2) as mesh:
        key, other = mesh.keys
        await mesh.client.send(
            encode_request(1, "GET", "default", [key])
            + encode_request(2, "MSET", "default", [key, b"new", other, b"x"])
        )
        assert [r.op for r in await mesh.p.requests(mesh.owner, 2)] == ["RELAY", "FWD"]
        mesh.break_first_owner()
        answers = await answers_of(mesh.client, 2)
        assert [(a.id, a.value) for a in answers] == [(1, b"old"), (2, True)]


@pytest.mark.trio
async def test_after_a_break_a_relayed_read_goes_on_down_the_owners_as_the_write_did() -> None:
    """GET K, SET K, GET K through a non-owner that is K's second owner; the connection to the
    first breaks before it applied anything. The SET fails over to this node (the next owner),
    and so does the GET after it: it reads the write its client was told was done."""
    async with second_owner(1) as mesh:
        (key,) = mesh.keys
        await mesh.client.send(
            encode_request(1, "GET", "default", [key])
            + encode_request(2, "SET", "default", [key, b"new"])
            + encode_request(3, "GET", "default", [key])
        )
        ops = [r.op for r in await mesh.p.requests(mesh.owner, 3)]
        assert ops == ["RELAY", "FWD", "RELAY"]
        mesh.break_first_owner()
        answers = await answers_of(mesh.client, 3)
        assert [(a.id, a.value) for a in answers] == [(1, b"old"), (2, True), (3, b"new")]
        assert mesh.plane.store.execute("default", "GET", [key]) == b"new"


async def _no_call(*_: Any) -> Any:
    raise AssertionError("no call to a peer expected")


@pytest.mark.trio
async def test_gets_the_owner_did_not_answer_in_its_relay_are_forwarded_one_at_a_time() -> None:
    """An owner that refuses RELAY (an older node), and one whose answer left bodies out (an
    older node past its answer limit): those GETs are forwarded again with FWD, and their
    clients get the values, in request order."""
    async with peer() as (p, address), running(PeerPool()) as pool:
        owner = await connected(pool, p, address)
        plane = coordinator(pool, f"{address[0]}:{address[1]}", replicas=1)
        keys = foreign_keys(plane, 4)
        port, counters = port_for(plane, pool)
        async with trio.open_nursery() as nursery:
            await nursery.start(plane.run)
            client = await served(nursery, port)
            # Starting, the coordinator asks its peer's clock.
            (clock,) = await p.requests(owner, 1)
            assert clock.op == "CLOCK"
            await owner.send(encode_ok(clock.id, 1, 9))
            await client.send(encode_request(1, "GET", "default", [keys[0]]))
            (refused,) = await p.requests(owner, 1)
            await owner.send(encode_error(refused.id, "UNKNOWN_OP", "unknown op 'RELAY'", 9))
            (again,) = await p.requests(owner, 1)
            assert again.op == "FWD" and again.args == ["GET", [keys[0]]]
            await owner.send(encode_ok(again.id, b"v1", 9))
            (answer,) = await answers_of(client, 1)
            assert (answer.id, answer.value, answer.ring_version) == (1, b"v1", 3)

            await client.send(
                b"".join(
                    encode_request(i, "GET", "default", [k]) for i, k in enumerate(keys[:3], 1)
                )
                + encode_request(4, "HGET", "default", [keys[3], b"f"])
            )
            (relay,) = await p.requests(owner, 1)
            assert len(relay.args[0]) == 4
            await owner.send(
                encode_ok(relay.id, [encode_ok(1, b"v1", 9), encode_ok(2, b"v2", 9), None, None])
            )
            forwards = await p.requests(owner, 2)
            # Each in a task of its own: in either order.
            assert sorted(r.args for r in forwards) == [
                ["GET", [keys[2]]],
                ["HGET", [keys[3], b"f"]],
            ]
            await owner.send(b"".join(encode_ok(r.id, b"late", 9) for r in forwards))
            answers = await answers_of(client, 4)
            assert [(a.id, a.value) for a in answers] == [
                (1, b"v1"),
                (2, b"v2"),
                (3, b"late"),
                (4, b"late"),
            ]
            assert plane.stats["relay_failures"] == 3
            assert counters.requests["GET"] == 4 and counters.requests["HGET"] == 1
            client.close()
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_relay_that_times_out_resets_its_connection_and_fails_each_get() -> None:
    async with peer() as (p, address), running(PeerPool()) as pool:
        sock = await connected(pool, p, address)
        failed: list[tuple[bytes, BaseException]] = []
        bodies = [body_of(encode_request(i, "GET", "default", [b"k%d" % i])) for i in (1, 2)]
        for body in bodies:
            queued = pool.relay(
                address,
                body,
                Later(),
                timeout=0.2,
                failed=lambda b, _later, error: failed.append((b, error)),
            )
            assert queued
        (relay,) = await p.requests(sock, 1)
        assert relay.op == "RELAY" and relay.args == [bodies]
        await wait_until(lambda: len(failed) == 2)
        assert [b for b, _ in failed] == bodies
        assert all(isinstance(error, MeshcacheTimeout) for _, error in failed)
        assert pool.stats["reset_after_timeout"] == 1


@pytest.mark.trio
async def test_a_broken_connection_fails_the_gets_of_its_open_relay_frame_too() -> None:
    async with peer() as (p, address), running(PeerPool()) as pool:
        await connected(pool, p, address)
        failed: list[BaseException] = []
        assert pool.relay(
            address,
            body_of(encode_request(1, "GET", "default", [b"k"])),
            Later(),
            timeout=10,
            failed=lambda _b, _later, error: failed.append(error),
        )
        # Still queued (no round wrote it): the connection breaks under it.
        (conn,) = pool._conns.values()
        conn.fail(MeshcacheConnectionError("gone"))
        assert len(failed) == 1 and isinstance(failed[0], MeshcacheConnectionError)
        assert not pool.relay(address, b"x", Later(), timeout=10, failed=lambda *_: None), (
            "no open connection: the caller forwards the usual way"
        )


@pytest.mark.trio
async def test_a_resp_clients_reads_are_relayed_and_answered_in_resp() -> None:
    async with peer() as (p, address), running(PeerPool()) as pool:
        owner = await connected(pool, p, address)
        plane = coordinator(pool, f"{address[0]}:{address[1]}", replicas=1)
        keys = foreign_keys(plane, 4)
        port = RespPort(
            open_listener("127.0.0.1", 0),
            execute=plane.execute,
            routes={},
            limits=LimitSettings(),
            op_limits=Limits(),
            counters=NodeCounters(),
            peers=pool,
        )
        port.server.relay = plane.execute_or_relay
        async with trio.open_nursery() as nursery:
            client = await served(nursery, port)
            await client.send(
                b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k) for k in keys[:3])
                + b"*2\r\n$7\r\nHGETALL\r\n$%d\r\n%s\r\n" % (len(keys[3]), keys[3])
            )
            (relay,) = await p.requests(owner, 1)
            assert relay.op == "RELAY"
            assert [msgpack.unpackb(b) for b in relay.args[0]] == [
                *([1, "GET", "default", [k]] for k in keys[:3]),
                [1, "HGETALL", "default", [keys[3]]],
            ]
            await owner.send(
                encode_ok(
                    relay.id,
                    [
                        encode_ok(1, b"v1", 9),
                        encode_ok(1, None, 9),
                        encode_error(1, "WRONGTYPE", "not a plain value", 9),
                        encode_ok(1, {b"f": b"v"}, 9),  # a map with bin keys
                    ],
                )
            )
            got = b""
            with trio.fail_after(10):
                while not got.endswith(b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n"):
                    data = await client.recv(1 << 16)
                    assert data, got
                    got += data
            assert got.startswith(b"$2\r\nv1\r\n$-1\r\n-WRONGTYPE")
            client.close()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("rid", [1, 127, 128, 255, 256, 65_536, 2**32, 2**63])
def test_the_status_of_a_response_frame_is_read_without_decoding_it(rid: int) -> None:
    assert dispatch._status_of(encode_ok(rid, b"v")) == 0
    assert dispatch._status_of(encode_error(rid, "WRONGTYPE", "no")) == 1
    assert dispatch._status_of(b"\x00\x00\x00\x01\x94") == 1  # too short to say: an error


# --- the owner's side --------------------------------------------------------------------------


class _Counting(Dispatcher):
    """A dispatcher that notes the request id of each relayed read's frame it makes."""

    made: list[int]

    def _relay_frame(self, rid: int, value: Any) -> bytes:
        self.made.append(rid)
        return super()._relay_frame(rid, value)


def owner_dispatcher(
    answer_bytes: int = relay.MAX_ANSWER_BYTES,
    cls: type[Dispatcher] = Dispatcher,
    routes: dict[str, Any] | None = None,
) -> tuple[Dispatcher, Coordinator]:
    """An owner: a dispatcher whose FWD route is its coordinator's, as a node wires it (and
    ``routes`` besides)."""
    pool = PeerPool()
    plane = coordinator(pool, replicas=1)
    dispatcher = cls(
        execute=plane.execute,
        routes={"FWD": plane.execute_forwarded, **(routes or {})},
        limits=Limits(max_key_bytes=64, max_value_bytes=1 << 20),
        counters=NodeCounters(),
        ring_version=7,
        answer_bytes=answer_bytes,
    )
    return dispatcher, plane


async def owner_serving(
    nursery: trio.Nursery,
    dispatcher: Dispatcher,
    plane: Coordinator,
    limits: LimitSettings | None = None,
    window: int | None = None,
) -> tuple[DataPort, trio.socket.SocketType]:
    """Run the owner ``plane`` and a data port with its ``dispatcher``; a client connected to
    it (with a receive buffer of ``window`` bytes, when given: a client that reads slowly
    fills it soon)."""
    limits = limits or LimitSettings()
    port = DataPort(open_listener("127.0.0.1", 0), dispatcher, limits, peers=None)
    await nursery.start(plane.run)
    await nursery.start(port.serve)
    client = trio.socket.socket()
    if window is not None:
        client.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, window)
    await client.connect(port.address)
    return port, client


def relay_answer(dispatcher: Dispatcher, bodies: list[Any]) -> Response:
    out = dispatcher.handle(body_of(encode_request(5, "RELAY", "", [bodies])))
    assert isinstance(out, bytes)
    return decode_response(out[HEADER.size :])


def test_the_owner_answers_each_body_with_the_frame_its_client_would_have_had() -> None:
    dispatcher, plane = owner_dispatcher()
    plane.store.execute("default", "SET", [b"a", b"alpha", {}])
    plane.store.execute("default", "HSET", [b"h", b"f", b"v"])
    bodies = [
        body_of(encode_request(11, "GET", "default", [b"a"])),
        body_of(encode_request(12, "GET", "default", [b"missing"])),
        body_of(encode_request(13, "GET", "default", [b"h"])),
        body_of(encode_request(14, "GET", "nowhere", [b"a"])),
        body_of(encode_request(15, "SET", "default", [b"a", b"b"])),
        b"\xc1 not msgpack",
        body_of(encode_request(17, "HGET", "default", [b"h", b"f"])),
    ]
    answer = relay_answer(dispatcher, bodies)
    assert answer.ok and answer.id == 5
    frames = [decode_response(f[HEADER.size :]) for f in answer.value]
    assert [(f.id, f.ok, f.ring_version) for f in frames[:3]] == [
        (11, True, 7),
        (12, True, 7),
        (13, False, 7),
    ]
    assert frames[0].value == b"alpha" and frames[1].value is None
    assert frames[2].value[0] == "WRONGTYPE"
    assert frames[3].value[0] == "NO_SUCH_NAMESPACE"
    assert frames[4].id == 15 and frames[4].value[0] == "BAD_REQUEST"  # only reads are relayed
    assert frames[5].id == 0 and frames[5].value[0] == "BAD_REQUEST"
    assert (frames[6].id, frames[6].value) == (17, b"v")
    assert plane.store.execute("default", "GET", [b"a"]) == b"alpha"
    assert plane.stats["forwarded_in"] == 5


def test_past_the_answer_limit_the_owner_goes_on_in_more_frames_under_the_relays_id() -> None:
    """Every body is executed where the RELAY stands; an answer past the limit takes several
    frames, each with the next response frames, all under the RELAY's id. The limit is half
    the frame limit when that is under 2 MiB."""
    assert relay.answer_bytes_for(16 << 20) == relay.MAX_ANSWER_BYTES
    assert relay.answer_bytes_for(2000) == 1000
    dispatcher, plane = owner_dispatcher(relay.answer_bytes_for(2000))
    for key, value in ((b"a", b"x" * 600), (b"b", b"y" * 300), (b"c", b"z" * 300)):
        plane.store.execute("default", "SET", [key, value, {}])
    bodies = [
        body_of(encode_request(i, "GET", "default", [k]))
        for i, k in enumerate((b"a", b"b", b"c", b"a"), 1)
    ]
    out = dispatcher.handle(body_of(encode_request(5, "RELAY", "", [bodies])))
    assert isinstance(out, Parts)  # more than one frame: written a part at a time
    reader = FrameReader(1 << 20)
    reader.feed(out.whole())
    parts = []
    while (body := reader.next_body()) is not None:
        parts.append(decode_response(body))
    assert all(p.ok for p in parts)
    assert [len(p.value) for p in parts] == [2, 2]  # 600 + 300 | 300 + 600 bytes of values
    assert [p.id for p in parts] == [5, 5]
    frames = [decode_response(f[HEADER.size :]) for p in parts for f in p.value]
    assert [(f.id, len(f.value)) for f in frames] == [(1, 600), (2, 300), (3, 300), (4, 600)]
    assert plane.stats["forwarded_in"] == 4


def test_the_frames_of_a_long_answer_are_made_as_its_parts_are_written() -> None:
    """An answer over many large values is not held whole: the owner keeps the reads'
    results and makes each part's frames when the part before it was written, all at the
    values the reads found where the RELAY stood."""
    dispatcher, plane = owner_dispatcher(relay.answer_bytes_for(2000), _Counting)
    made = dispatcher.made = []  # type: ignore[attr-defined]
    keys = [b"k%d" % i for i in range(8)]
    for i, key in enumerate(keys):
        plane.store.execute("default", "SET", [key, bytes([65 + i]) * 600, {}])
    bodies = [body_of(encode_request(i, "GET", "default", [k])) for i, k in enumerate(keys, 1)]
    out = dispatcher.handle(body_of(encode_request(5, "RELAY", "", [bodies])))
    assert isinstance(out, Parts)
    # The frames of reads 1 and 2 were made with the reads (the answer fit one frame until
    # the second: 600 + 600 bytes of values pass the 1,000-byte limit); read 3's for the
    # second part, made ahead; the rest wait for theirs.
    assert made == [3]
    for key in keys:  # written after the RELAY: its answer keeps what the reads found
        plane.store.execute("default", "SET", [key, b"new", {}])
    rest = list(out.rest)
    assert made == list(range(3, 9)) and len(rest) == 7
    frames = []
    for part in (out.first, *rest):
        frames += [decode_response(f[HEADER.size :]) for f in decode_response(part[4:]).value]
    assert [(f.id, f.value) for f in frames] == [
        (i, bytes([65 + i - 1]) * 600) for i in range(1, 9)
    ]


@pytest.mark.trio
async def test_an_answer_in_parts_waits_for_a_slow_client_and_keeps_its_place() -> None:
    """A real data port writes a RELAY's long answer a part at a time: while the client reads
    nothing, the owner has made only the parts the kernel took; the request behind the RELAY
    is answered after every part, and the client gets everything in order."""
    dispatcher, plane = owner_dispatcher(relay.answer_bytes_for(256 << 10), _Counting)
    made = dispatcher.made = []  # type: ignore[attr-defined]
    value = 200_000  # four of them fit the namespace; 64 reads of them are 12.8 MB of answer
    keys = [b"k%d" % (i % 4) for i in range(MAX_BATCH_ITEMS)]
    for i in range(4):
        plane.store.execute("default", "SET", [b"k%d" % i, bytes([i]) * value, {}])
    bodies = [body_of(encode_request(i, "GET", "default", [k])) for i, k in enumerate(keys, 1)]
    async with trio.open_nursery() as nursery:
        _, client = await owner_serving(nursery, dispatcher, plane, window=64 << 10)
        await client.send(
            encode_request(5, "RELAY", "", [bodies])
            + encode_request(6, "GET", "default", [keys[0]])
        )
        # The port writes what the kernel takes, then waits for room: made stops growing.
        with trio.fail_after(10):
            while True:
                before = len(made)
                await trio.testing.wait_all_tasks_blocked(0.05)
                if made and len(made) == before:
                    break
        assert len(made) < len(keys) // 2, f"{len(made)} of {len(keys)} frames made unread"
        reader = FrameReader(1 << 20)
        answers: list[Response] = []
        with trio.fail_after(10):
            while len(answers) < 2 or answers[-1].id == 5:
                data = await client.recv(1 << 16)
                assert data
                reader.feed(data)
                while (body := reader.next_body()) is not None:
                    answers.append(decode_response(body))
        assert [a.id for a in answers] == [5] * (len(answers) - 1) + [6]
        frames = [decode_response(f[HEADER.size :]) for a in answers[:-1] for f in a.value]
        assert [(f.id, f.value) for f in frames] == [
            (i, bytes([(i - 1) % 4]) * value) for i in range(1, len(keys) + 1)
        ]
        assert answers[-1].value == bytes([0]) * value
        client.close()
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_relay_answered_in_several_frames_reaches_each_client_in_order() -> None:
    """The non-owner takes the frames of a RELAY's answer until every body has one; a write
    sent after the reads reaches the owner after the RELAY, which the owner executed whole."""
    async with peer() as (p, address), running(PeerPool()) as pool:
        owner = await connected(pool, p, address)
        plane = coordinator(pool, f"{address[0]}:{address[1]}", replicas=1)
        keys = foreign_keys(plane, 3)
        port, _ = port_for(plane, pool)
        async with trio.open_nursery() as nursery:
            client = await served(nursery, port)
            await client.send(
                b"".join(encode_request(i, "GET", "default", [k]) for i, k in enumerate(keys, 1))
                + encode_request(4, "SET", "default", [keys[2], b"new"])
            )
            relay_frame, write = await p.requests(owner, 2)
            assert relay_frame.op == "RELAY" and write.op == "FWD"
            await owner.send(
                encode_ok(relay_frame.id, [encode_ok(1, b"v1", 9), encode_ok(2, b"v2", 9)])
            )
            await owner.send(encode_ok(relay_frame.id, [encode_ok(3, b"old", 9)]))
            await owner.send(encode_ok(write.id, True, 9))
            answers = await answers_of(client, 4)
            assert [(a.id, a.value) for a in answers] == [
                (1, b"v1"),
                (2, b"v2"),
                (3, b"old"),
                (4, True),
            ]
            assert plane.stats["relay_failures"] == 0
            client.close()
            nursery.cancel_scope.cancel()


def test_a_relay_over_the_batch_limit_or_of_anything_but_bodies_is_refused() -> None:
    dispatcher, _ = owner_dispatcher()
    body = body_of(encode_request(1, "GET", "default", [b"a"]))
    too_many = relay_answer(dispatcher, [body] * (MAX_BATCH_ITEMS + 1))
    assert not too_many.ok and too_many.value[0] == "BAD_REQUEST"
    not_bodies = relay_answer(dispatcher, [body, 42])
    assert not not_bodies.ok and not_bodies.value[0] == "BAD_REQUEST"
    assert dispatcher.counters.bad_input["bad_request"] == 2


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.builds(
                lambda rid, op, ns, args: msgpack.packb([rid, op, ns, args], use_bin_type=True),
                st.integers(-5, 2**64 - 1),
                st.sampled_from(["GET", "SET", "RELAY", "FWD", "", "get"]),
                st.sampled_from(["default", "nowhere", ""]),
                st.lists(
                    st.one_of(st.binary(max_size=80), st.integers(-(2**63), 2**63 - 1), st.none()),
                    max_size=3,
                ),
            ),
        ),
        max_size=MAX_BATCH_ITEMS,
    )
)
def test_whatever_bodies_a_relay_carries_each_gets_one_response_frame(bodies: list[bytes]) -> None:
    dispatcher, plane = owner_dispatcher()
    before = plane.store.execute("default", "DBSIZE", [])
    answer = relay_answer(dispatcher, bodies)
    assert answer.ok and len(answer.value) == len(bodies)
    for frame in answer.value:
        assert HEADER.unpack_from(frame)[0] == len(frame) - HEADER.size
        decode_response(frame[HEADER.size :])
    assert plane.store.execute("default", "DBSIZE", []) == before  # a relay writes nothing
