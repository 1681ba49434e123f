"""Build SwimNode clusters on meshcache.testing.simnet for the simulation tests."""

from __future__ import annotations

import functools
import random
import statistics
from collections.abc import Callable

from meshcache.gossip import (
    Address,
    GossipConfig,
    Keyring,
    MemberEvent,
    MemberState,
    NodeMeta,
    SwimNode,
)
from meshcache.testing.faults import LinkFaults
from meshcache.testing.simnet import SimNetwork

A, S, D, L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT


def addr(i: int) -> Address:
    return Address(f"10.0.0.{i // 200 + 1}", 7000 + i % 200)


class SimCluster:
    """``n`` SwimNodes named ``n0..``; node 0 is everyone's seed. Events are collected."""

    def __init__(
        self,
        seed: int,
        n: int,
        *,
        config: GossipConfig | None = None,
        link: LinkFaults | None = None,
        keys: list[bytes] | None = None,
        stagger: float = 0.0,
        trace: bool = False,
    ) -> None:
        self.seed = seed
        self.config = config or GossipConfig.local()
        self.net = SimNetwork(
            seed,
            default_link=link or LinkFaults(delay=0.0005, jitter=0.001),
            stream_timeout=1.0,
            trace=trace,
        )
        self.keyrings: dict[Address, Keyring] = {}
        self.events: list[tuple[str, MemberEvent]] = []
        self.addrs = [addr(i) for i in range(n)]
        for i, a in enumerate(self.addrs):
            self.keyrings[a] = Keyring(keys or [])
            if stagger and i:
                self.net.call_at(i * stagger, functools.partial(self.start, i))
            else:
                self.start(i)

    def factory(self, i: int) -> Callable[[float, random.Random], SwimNode]:
        a = self.addrs[i]

        def build(now: float, rng: random.Random) -> SwimNode:
            node = SwimNode(
                self.config,
                f"n{i}",
                a,
                NodeMeta(zone=f"z{i % 3}", data_port=9000 + i),
                keyring=self.keyrings[a],
                rng=rng,
                now=now,
            )
            node.join([self.addrs[0]], now)
            return node

        return build

    def start(self, i: int) -> None:
        self.net.add_node(self.addrs[i], self.factory(i))

    def node(self, a: Address) -> SwimNode:
        ep = self.net.endpoint(a)
        assert isinstance(ep, SwimNode)
        return ep

    def up(self) -> list[Address]:
        return [a for a, ep in self.net.endpoints() if isinstance(ep, SwimNode)]

    def collect(self) -> None:
        for a in self.up():
            node = self.node(a)
            self.events += [(node.name, e) for e in node.take_events()]

    def view(self, a: Address) -> dict[str, MemberState]:
        return {m.name: m.state for m in self.node(a).members()}

    def all_see(self, name: str, states: set[MemberState], among: list[Address]) -> bool:
        return all(self.view(a).get(name) in states for a in among)

    def converged(self, among: list[Address] | None = None) -> bool:
        among = self.up() if among is None else among
        names = {self.node(a).name for a in among}
        return all({n for n, s in self.view(a).items() if s is A} == names for a in among)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        ok = self.net.run_until_condition(predicate, timeout, poll_interval=0.01)
        self.collect()
        return ok

    def total_stats(self, key: str) -> int:
        return sum(self.node(a).stats[key] for a in self.up())


def median(xs: list[float]) -> float:
    return statistics.median(xs)
