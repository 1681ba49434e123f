"""A tiny in-test network: SwimNodes in a dict, instant delivery, a virtual clock.

Not a simulator (that is meshcache.testing.simnet): no delay or loss, only crash (``down``)
and partitions (``blocked``), enough for happy-path and protocol tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from meshcache.gossip import (
    Address,
    Datagram,
    GossipConfig,
    Keyring,
    MemberState,
    NodeMeta,
    StreamRequest,
    SwimNode,
)


def addr(i: int) -> Address:
    return Address("127.0.0.1", 7000 + i)


class Loopback:
    def __init__(self, seed: int = 0, config: GossipConfig | None = None) -> None:
        self.rng = random.Random(seed)
        self.config = config or GossipConfig.local()
        self.now = 0.0
        self.nodes: dict[Address, SwimNode] = {}
        self.down: set[Address] = set()
        self.blocked: Callable[[Address, Address], bool] = lambda a, b: False
        self.sent: list[tuple[Address, Address, bytes]] = []  # every datagram, for replay tests

    def add(self, i: int, *, keys: list[bytes] | None = None, name: str | None = None) -> SwimNode:
        node = SwimNode(
            self.config,
            name or f"n{i}",
            addr(i),
            NodeMeta(zone=f"z{i % 3}", data_port=8000 + i),
            keyring=Keyring(keys or []),
            rng=random.Random(self.rng.getrandbits(64)),
            now=self.now,
        )
        self.nodes[addr(i)] = node
        return node

    def reachable(self, src: Address, dst: Address) -> bool:
        return (
            dst in self.nodes
            and dst not in self.down
            and src not in self.down
            and not self.blocked(src, dst)
        )

    def flush(self) -> None:
        """Deliver everything queued, instantly, until nothing is left to send."""
        busy = True
        while busy:
            busy = False
            for src, node in list(self.nodes.items()):
                if src in self.down:
                    node.take_outgoing()
                    continue
                for out in node.take_outgoing():
                    busy = True
                    if isinstance(out, Datagram):
                        self.sent.append((src, out.dst, out.data))
                        if self.reachable(src, out.dst):
                            self.nodes[out.dst].handle_datagram(src, out.data, self.now)
                    else:
                        assert isinstance(out, StreamRequest)
                        reply = None
                        if self.reachable(src, out.dst) and self.reachable(out.dst, src):
                            reply = self.nodes[out.dst].handle_stream_request(
                                src, out.data, self.now
                            )
                        node.handle_stream_reply(out.tag, reply, self.now)

    def run(self, duration: float) -> None:
        end = self.now + duration
        self.flush()
        while True:
            live = [n for a, n in self.nodes.items() if a not in self.down]
            nxt = min(n.next_deadline() for n in live)
            if nxt > end:
                self.now = end
                return
            self.now = max(self.now, nxt)
            for node in live:
                if node.next_deadline() <= self.now:
                    node.tick(self.now)
            self.flush()

    def views(self, of: list[Address] | None = None) -> dict[str, dict[str, MemberState]]:
        addrs = of if of is not None else [a for a in self.nodes if a not in self.down]
        return {
            self.nodes[a].name: {m.name: m.state for m in self.nodes[a].members()} for a in addrs
        }

    def all_see(self, name: str, state: MemberState, of: list[Address] | None = None) -> bool:
        return all(v.get(name) is state for v in self.views(of).values())
