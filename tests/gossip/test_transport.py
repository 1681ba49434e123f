from __future__ import annotations

import functools
import math
import random
import socket
import time
from collections import Counter
from collections.abc import Callable

import pytest
import trio

from meshcache.gossip import GossipConfig, Keyring, MemberState, NodeMeta, SwimNode
from meshcache.gossip.endpoint import Address, Datagram, Outgoing, StreamRequest
from meshcache.gossip.transport import bind_gossip, receive_frame, run_endpoint, send_frame


@pytest.mark.trio
async def test_two_nodes_over_real_sockets() -> None:
    key = b"s" * 32
    converged = trio.Event()
    nodes: list[SwimNode] = []
    pokes: list[Callable[[], None]] = []

    def check() -> None:
        if len(nodes) == 2 and all(
            [m.state for m in n.members()] == [MemberState.ALIVE] * 2 for n in nodes
        ):
            converged.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            socks = []
            for i in range(2):
                udp, listener = await bind_gossip("127.0.0.1", 0)
                socks.append((udp, listener))
                address = ("127.0.0.1", udp.getsockname()[1])
                node = SwimNode(
                    GossipConfig.local(),
                    f"t{i}",
                    address,
                    NodeMeta(),
                    keyring=Keyring([key]),
                    rng=random.Random(i),
                    now=trio.current_time(),
                )
                nodes.append(node)
                pokes.append(
                    await nursery.start(
                        functools.partial(run_endpoint, node, udp, listener, on_progress=check)
                    )
                )
            nodes[1].join([nodes[0].address], trio.current_time())
            pokes[1]()
            await converged.wait()
            nursery.cancel_scope.cancel()
        for udp, listener in socks:
            udp.close()
            await listener.aclose()
    assert nodes[0].stats["bad_mac"] == 0


@pytest.mark.trio
async def test_frame_roundtrip_and_limit() -> None:
    a, b = trio.testing.memory_stream_pair()
    await send_frame(a, b"hello")
    assert await receive_frame(b, 10) == b"hello"
    await send_frame(a, b"x" * 11)
    assert await receive_frame(b, 10) is None


@pytest.mark.trio
async def test_exchange_hook_without_listener() -> None:
    """Push/pull carried by the caller (as the node does over its data port)."""
    nodes: dict[tuple[str, int], SwimNode] = {}
    joined = trio.Event()
    calls: list[tuple[str, int]] = []

    async def exchange(dst: tuple[str, int], payload: bytes) -> bytes | None:
        calls.append(dst)
        if dst not in nodes:
            raise OSError("unreachable")
        return nodes[dst].handle_stream_request(("127.0.0.1", 0), payload, trio.current_time())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            udp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            await udp.bind(("127.0.0.1", 0))
            address = ("127.0.0.1", udp.getsockname()[1])
            node = SwimNode(
                GossipConfig.local(),
                "solo",
                address,
                NodeMeta(),
                keyring=Keyring(),
                rng=random.Random(1),
                now=trio.current_time(),
            )
            seed = SwimNode(
                GossipConfig.local(),
                "seed",
                ("127.0.0.1", 1),
                NodeMeta(),
                keyring=Keyring(),
                rng=random.Random(2),
                now=trio.current_time(),
            )
            nodes[seed.address] = seed

            def progress() -> None:
                # Both exchanges settled: one answered, one failed (in either order).
                if node.joined and node.stats["push_pull_failed"] == 1:
                    joined.set()

            poke = await nursery.start(
                functools.partial(
                    run_endpoint, node, udp, None, exchange=exchange, on_progress=progress
                )
            )
            node.join([("127.0.0.1", 2), seed.address], trio.current_time())
            poke()
            await joined.wait()
            nursery.cancel_scope.cancel()
        udp.close()
    assert {m.name for m in node.members()} == {"solo", "seed"}
    assert ("127.0.0.1", 2) in calls and node.stats["push_pull_failed"] == 1


class OrderEndpoint:
    """Records what the driver calls, in order; one timer due ``delay`` after it starts."""

    def __init__(self, due: float) -> None:
        self.due = due
        self.calls: list[str] = []
        self.both = trio.Event()

    def handle_datagram(self, src: Address, data: bytes, now: float) -> None:
        self.calls.append("datagram")
        if len(self.calls) == 2:
            self.both.set()

    def handle_stream_request(self, src: Address, data: bytes, now: float) -> bytes | None:
        return None

    def handle_stream_reply(self, tag: int, data: bytes | None, now: float) -> None:
        pass

    def tick(self, now: float) -> None:
        self.calls.append("tick")
        self.due = math.inf
        if len(self.calls) == 2:
            self.both.set()

    def next_deadline(self) -> float:
        return self.due

    def take_outgoing(self) -> list[Outgoing]:
        return []


@pytest.mark.trio
async def test_datagrams_that_came_while_the_loop_was_held_go_before_the_timers() -> None:
    """An ack waiting in the socket must be seen before a probe deadline that passed while
    the loop was held is judged (which of two ready tasks trio runs first is not fixed)."""
    for _ in range(20):
        udp, listener = await bind_gossip("127.0.0.1", 0)
        endpoint = OrderEndpoint(trio.current_time() + 0.02)
        with udp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(run_endpoint, endpoint, udp, None))
                peer.sendto(b"ack", udp.getsockname())
                time.sleep(0.05)  # hold the loop (on purpose) past the timer's deadline
                with trio.fail_after(5):
                    await endpoint.both.wait()
                nursery.cancel_scope.cancel()
        await listener.aclose()
        assert endpoint.calls == ["datagram", "tick"]


class ScriptedEndpoint:
    """Wants ``out`` sent once; records the stream replies it is handed."""

    def __init__(self, out: list[Outgoing]) -> None:
        self.out = out
        self.stats: Counter[str] = Counter()
        self.replies: list[tuple[int, bytes | None]] = []
        self.replied = trio.Event()

    def handle_datagram(self, src: Address, data: bytes, now: float) -> None:
        pass

    def handle_stream_request(self, src: Address, data: bytes, now: float) -> bytes | None:
        return None

    def handle_stream_reply(self, tag: int, data: bytes | None, now: float) -> None:
        self.replies.append((tag, data))
        self.replied.set()

    def tick(self, now: float) -> None:
        pass

    def next_deadline(self) -> float:
        return math.inf

    def take_outgoing(self) -> list[Outgoing]:
        out, self.out = self.out, []
        return out


@pytest.mark.trio
async def test_a_destination_the_socket_refuses_is_counted_not_fatal() -> None:
    """Hosts ``sendto`` rejects with TypeError (a NUL, no IDNA form), a port out of range and
    a push/pull to a host trio cannot encode: each is dropped and counted, and the driver goes
    on sending (the datagram after them arrives)."""
    udp, listener = await bind_gossip("127.0.0.1", 0)
    peer = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with udp, peer:
        await peer.bind(("127.0.0.1", 0))
        good = Address("127.0.0.1", peer.getsockname()[1])
        endpoint = ScriptedEndpoint(
            [
                Datagram(Address("a\x00b", 7000), b"nul"),
                Datagram(Address("\u00e9" * 70, 7000), b"idna"),
                Datagram(Address("127.0.0.1", 70000), b"port"),
                StreamRequest(Address("\u00e9" * 70, 7000), b"push/pull", 1),
                Datagram(good, b"good"),
            ]
        )
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(run_endpoint, endpoint, udp, listener))
                data, _ = await peer.recvfrom(100)
                await endpoint.replied.wait()
                nursery.cancel_scope.cancel()
    await listener.aclose()
    assert data == b"good"
    assert endpoint.replies == [(1, None)]
    assert endpoint.stats["unsendable_address"] == 4, dict(endpoint.stats)
