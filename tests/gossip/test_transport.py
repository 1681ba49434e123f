from __future__ import annotations

import functools
import random
from collections.abc import Callable

import pytest
import trio

from meshcache.gossip import GossipConfig, Keyring, MemberState, NodeMeta, SwimNode
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
