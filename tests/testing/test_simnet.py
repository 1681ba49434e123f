"""Tests for the deterministic network simulator, driven by tiny fake endpoints."""

from __future__ import annotations

import heapq
import math
import os
import random
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.gossip.endpoint import Address, Datagram, Outgoing, StreamRequest
from meshcache.testing.faults import LinkFaults, SimulationError
from meshcache.testing.simnet import SimNetwork

A = Address("10.0.0.1", 7946)
B = Address("10.0.0.2", 7946)
C = Address("10.0.0.3", 7946)


@dataclass
class Fake:
    """A scriptable endpoint: sends what it is told at given times and records what it gets."""

    address: Address
    born: float
    rng: random.Random
    echo: bool = False
    received: list[tuple[float, Address, bytes]] = field(default_factory=list)
    requests: list[tuple[float, Address, bytes]] = field(default_factory=list)
    replies: list[tuple[float, int, bytes | None]] = field(default_factory=list)
    ticks: list[float] = field(default_factory=list)
    _timers: list[tuple[float, int, Outgoing]] = field(default_factory=list)
    _out: list[Outgoing] = field(default_factory=list)
    _seq: int = 0

    def send_at(self, t: float, msg: Outgoing) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (t, self._seq, msg))

    def handle_datagram(self, src: Address, data: bytes, now: float) -> None:
        self.received.append((now, src, data))
        if self.echo and not data.startswith(b"echo:"):
            self._out.append(Datagram(src, b"echo:" + data))

    def handle_stream_request(self, src: Address, data: bytes, now: float) -> bytes | None:
        self.requests.append((now, src, data))
        return None if data == b"no-answer" else b"re:" + data

    def handle_stream_reply(self, tag: int, data: bytes | None, now: float) -> None:
        self.replies.append((now, tag, data))

    def tick(self, now: float) -> None:
        self.ticks.append(now)
        while self._timers and self._timers[0][0] <= now:
            self._out.append(heapq.heappop(self._timers)[2])

    def next_deadline(self) -> float:
        return self._timers[0][0] if self._timers else math.inf

    def take_outgoing(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out


def make_net(
    seed: int = 1, *addresses: Address, echo: bool = False, **kw: object
) -> tuple[SimNetwork, dict[Address, Fake]]:
    net = SimNetwork(seed, **kw)  # type: ignore[arg-type]
    fakes: dict[Address, Fake] = {}
    for addr in addresses or (A, B, C):

        def factory(now: float, rng: random.Random, addr: Address = addr) -> Fake:
            fakes[addr] = Fake(addr, now, rng, echo=echo)
            return fakes[addr]

        net.add_node(addr, factory)
    return net, fakes


def burst(fake: Fake, dst: Address, n: int, *, start: float = 0.0, every: float = 0.001) -> None:
    for i in range(n):
        fake.send_at(start + i * every, Datagram(dst, b"%d" % i))


def payloads(fake: Fake) -> list[bytes]:
    return [data for _, _, data in fake.received]


# ---------------------------------------------------------------- loss, duplication, delay


@settings(max_examples=15, deadline=None)
@given(loss=st.floats(0.0, 1.0), seed=st.integers(0, 2**32))
def test_loss_rate_matches_configuration(loss: float, seed: int) -> None:
    n = 2000
    net, f = make_net(seed, default_link=LinkFaults(loss=loss, delay=0.001, jitter=0.0))
    burst(f[A], B, n)
    net.apply(A, lambda ep, now: None)  # pick up the new timers
    net.run_for(5)
    got = len(f[B].received)
    # Six standard deviations of a binomial: fails by chance about once in 10^9 runs.
    sigma = math.sqrt(n * loss * (1 - loss))
    assert abs(got - n * (1 - loss)) <= 6 * sigma + 1, f"seed={seed}"
    assert net.stats.dropped["loss"] == n - got
    assert net.stats.sent == n and net.stats.delivered == got


def test_duplication_delivers_extra_copies(sim_seed: int) -> None:
    n = 5000
    net, f = make_net(sim_seed, default_link=LinkFaults(duplicate=0.2, delay=0.001, jitter=0.0))
    burst(f[A], B, n)
    net.apply(A, lambda ep, now: None)
    net.run_for(10)
    extra = len(f[B].received) - n
    assert extra == net.stats.duplicated
    assert 0.17 * n < extra < 0.23 * n, f"seed={sim_seed}"
    assert set(payloads(f[B])) == {b"%d" % i for i in range(n)}


def test_delay_without_jitter_keeps_order_and_timing() -> None:
    net, f = make_net(default_link=LinkFaults(delay=0.05, jitter=0.0))
    burst(f[A], B, 100, start=1.0, every=0.01)
    net.apply(A, lambda ep, now: None)
    net.run_for(5)
    assert payloads(f[B]) == [b"%d" % i for i in range(100)]
    for i, (t, src, _) in enumerate(f[B].received):
        assert src == A
        assert t == pytest.approx(1.0 + i * 0.01 + 0.05)


def test_per_link_delay_overrides_are_directional() -> None:
    net, f = make_net(default_link=LinkFaults(delay=0.01, jitter=0.0))
    net.set_link(A, C, LinkFaults(delay=0.5, jitter=0.0))
    f[A].send_at(0.0, Datagram(C, b"slow"))
    f[B].send_at(0.1, Datagram(C, b"fast"))
    f[C].send_at(0.0, Datagram(A, b"back"))
    for addr in (A, B, C):
        net.apply(addr, lambda ep, now: None)
    net.run_for(1)
    assert payloads(f[C]) == [b"fast", b"slow"]
    assert f[C].received[1][0] == pytest.approx(0.5)
    assert f[A].received[0][0] == pytest.approx(0.01)  # C -> A keeps the default


def test_jitter_reorders_within_bounds(sim_seed: int) -> None:
    net, f = make_net(sim_seed, default_link=LinkFaults(delay=0.02, jitter=0.01))
    burst(f[A], B, 500, every=0.001)
    net.apply(A, lambda ep, now: None)
    net.run_for(2)
    got = [int(p) for p in payloads(f[B])]
    assert sorted(got) == list(range(500))
    assert got != sorted(got), f"seed={sim_seed}: jitter 10x the send gap must reorder"
    for t, _, data in f[B].received:
        sent = int(data) * 0.001
        assert 0.02 <= t - sent <= 0.03 + 1e-9, f"seed={sim_seed}"


# ---------------------------------------------------------------- partitions


def test_symmetric_partition_and_heal() -> None:
    net, f = make_net()
    net.partition([A, B], [C])
    for src, dst in [(A, C), (C, A), (B, C), (A, B)]:
        f[src].send_at(0.1, Datagram(dst, b"p"))
        net.apply(src, lambda ep, now: None)
    net.run_until(1)
    assert not f[C].received and not f[A].received
    assert [src for _, src, _ in f[B].received] == [A]
    assert net.stats.dropped["partition"] == 3
    assert not net.reachable(A, C) and not net.reachable(C, A) and net.reachable(A, B)

    net.heal()
    f[A].send_at(1.5, Datagram(C, b"after"))
    net.apply(A, lambda ep, now: None)
    net.run_until(2)
    assert payloads(f[C]) == [b"after"]


def test_one_way_partition_blocks_one_direction_only() -> None:
    net, f = make_net()
    net.partition([A], one_way=True)  # A cannot reach anyone; everyone reaches A
    f[A].send_at(0.1, Datagram(B, b"from-a"))
    f[B].send_at(0.1, Datagram(A, b"to-a"))
    net.apply(A, lambda ep, now: None)
    net.apply(B, lambda ep, now: None)
    net.run_until(1)
    assert payloads(f[A]) == [b"to-a"]
    assert not f[B].received
    assert net.stats.dropped["partition"] == 1


def test_partition_does_not_touch_packets_in_flight() -> None:
    net, f = make_net(default_link=LinkFaults(delay=0.5, jitter=0.0))
    f[A].send_at(0.0, Datagram(B, b"already-sent"))
    net.apply(A, lambda ep, now: None)
    net.run_until(0.1)
    net.partition([A], [B])
    net.run_until(1)
    assert payloads(f[B]) == [b"already-sent"]


# ---------------------------------------------------------------- pause, crash, restart


def test_pause_queues_packets_and_fires_timers_late() -> None:
    net, f = make_net(default_link=LinkFaults(delay=0.01, jitter=0.0))
    f[B].send_at(0.5, Datagram(A, b"timer-of-b"))
    net.apply(B, lambda ep, now: None)
    net.call_at(0.2, lambda: net.pause(B, 2.0))
    burst(f[A], B, 10, start=1.0, every=0.1)
    net.apply(A, lambda ep, now: None)

    net.run_until(2.1)
    assert net.is_paused(B)
    assert not f[B].received and not f[A].received
    assert all(t < 0.2 for t in f[B].ticks)
    net.run_until(2.3)
    assert not net.is_paused(B)
    # Everything queued is processed at the resume instant, in arrival order, then the late timer.
    assert payloads(f[B]) == [b"%d" % i for i in range(10)]
    assert all(t == pytest.approx(2.2) for t, _, _ in f[B].received)
    assert f[B].ticks[-1] == pytest.approx(2.2)
    assert f[A].received[0][0] == pytest.approx(2.21)


def test_paused_receive_buffer_is_bounded() -> None:
    net, f = make_net(recv_buffer=5)
    net.pause(B, 1.0)
    burst(f[A], B, 8, start=0.1)
    net.apply(A, lambda ep, now: None)
    net.run_until(2)
    assert payloads(f[B]) == [b"%d" % i for i in range(5)]
    assert net.stats.dropped["buffer_full"] == 3


def test_crash_drops_in_flight_and_stops_ticks_restart_rebuilds() -> None:
    net, f = make_net(default_link=LinkFaults(delay=0.3, jitter=0.0))
    old_b = f[B]
    old_b.send_at(1.0, Datagram(A, b"never"))
    f[A].send_at(0.0, Datagram(B, b"in-flight"))
    net.apply(B, lambda ep, now: None)
    net.apply(A, lambda ep, now: None)
    net.run_until(0.1)
    net.crash(B)
    assert not net.is_up(B)
    with pytest.raises(KeyError):
        net.endpoint(B)
    f[A].send_at(0.5, Datagram(B, b"while-down"))
    net.apply(A, lambda ep, now: None)
    net.run_until(2)
    assert not old_b.received and old_b.ticks == []
    assert not f[A].received
    assert net.stats.dropped["down"] == 2

    net.restart(B)
    assert f[B] is not old_b and f[B].born == 2.0
    assert f[B].rng.random() != old_b.rng.random()  # a fresh derived stream per start
    f[A].send_at(2.5, Datagram(B, b"hello-again"))
    net.apply(A, lambda ep, now: None)
    net.run_until(3)
    assert payloads(f[B]) == [b"hello-again"]


def test_crash_during_pause_forgets_the_queue() -> None:
    net, f = make_net()
    net.pause(B, 1.0)
    burst(f[A], B, 3, start=0.1)
    net.apply(A, lambda ep, now: None)
    net.run_until(0.5)
    net.restart(B)
    net.run_until(2)
    assert not f[B].received and not net.is_paused(B)


# ---------------------------------------------------------------- streams


def test_stream_request_and_reply() -> None:
    net, f = make_net(default_link=LinkFaults(delay=0.02, jitter=0.0))
    net.set_link(B, A, LinkFaults(delay=0.03, jitter=0.0))
    f[A].send_at(1.0, StreamRequest(B, b"pull", 7))
    net.apply(A, lambda ep, now: None)
    net.run_until(3)
    assert f[B].requests == [(pytest.approx(1.02), A, b"pull")]
    assert f[A].replies == [(pytest.approx(1.05), 7, b"re:pull")]
    assert net.stats.streams_completed == 1 and net.stats.streams_failed == 0


def test_stream_reliable_despite_loss() -> None:
    net, f = make_net(default_link=LinkFaults(loss=1.0, delay=0.001, jitter=0.0))
    f[A].send_at(0.0, StreamRequest(B, b"x", 1))
    net.apply(A, lambda ep, now: None)
    net.run_until(2)
    assert [data for _, _, data in f[A].replies] == [b"re:x"]


@pytest.mark.parametrize("fault", ["partition", "reply-partition", "crash", "no-node"])
def test_stream_fails_after_timeout_when_unreachable(fault: str) -> None:
    net, f = make_net(stream_timeout=2.0)
    dst = B
    if fault == "partition":
        net.partition([A], [B])
    elif fault == "reply-partition":
        net.partition([B], [A], one_way=True)
    elif fault == "crash":
        net.crash(B)
    else:
        dst = ("10.9.9.9", 1)
    f[A].send_at(1.0, StreamRequest(dst, b"x", 3))
    net.apply(A, lambda ep, now: None)
    net.run_until(5)
    assert f[A].replies == [(pytest.approx(3.0), 3, None)]
    assert net.stats.streams_failed == 1


def test_stream_to_paused_peer() -> None:
    net, f = make_net(stream_timeout=1.0)
    net.pause(B, 0.5)
    net.pause(C, 5.0)
    f[A].send_at(0.0, StreamRequest(B, b"short-pause", 1))
    f[A].send_at(0.0, StreamRequest(C, b"long-pause", 2))
    net.apply(A, lambda ep, now: None)
    net.run_until(10)
    assert f[A].replies == [
        (pytest.approx(0.501), 1, b"re:short-pause"),
        (pytest.approx(1.0), 2, None),
    ]
    # C still answers when it wakes up, but the requester gave up: nothing more is delivered.
    assert f[C].requests == [(pytest.approx(5.0), A, b"long-pause")]


def test_stream_no_answer_and_paused_requester() -> None:
    net, f = make_net(stream_timeout=1.0)
    f[A].send_at(0.0, StreamRequest(B, b"no-answer", 4))
    f[A].send_at(0.0, StreamRequest(C, b"late", 5))
    net.apply(A, lambda ep, now: None)
    net.call_at(0.0015, lambda: net.pause(A, 3.0))
    net.run_until(10)
    # Both outcomes reach A when it wakes up.
    assert f[A].replies == [
        (pytest.approx(3.0015), 4, None),
        (pytest.approx(3.0015), 5, b"re:late"),
    ]


# ---------------------------------------------------------------- running and determinism


def test_run_until_condition() -> None:
    net, f = make_net(default_link=LinkFaults(delay=0.1, jitter=0.0))
    f[A].send_at(1.0, Datagram(B, b"x"))
    net.apply(A, lambda ep, now: None)
    assert net.run_until_condition(lambda: bool(f[B].received), timeout=5)
    assert net.now == pytest.approx(1.1)
    assert not net.run_until_condition(lambda: bool(f[C].received), timeout=2)
    assert net.now == pytest.approx(3.1)
    assert not net.run_until_condition(lambda: False, timeout=1, poll_interval=0.3)
    assert net.now == pytest.approx(4.1)


def test_tick_loop_is_reported() -> None:
    class Stuck(Fake):
        def next_deadline(self) -> float:
            return 0.0

    net = SimNetwork(1)
    net.add_node(A, lambda now, rng: Stuck(A, now, rng))
    with pytest.raises(SimulationError, match="tick"):
        net.run_for(1)


class Gossiper:
    """Every `interval` sends its counter to `fanout` random peers; echoes are counted too."""

    def __init__(self, peers: list[Address], rng: random.Random, now: float) -> None:
        self.peers = peers
        self.rng = rng
        self.next = now + rng.random() * 0.2
        self.out: list[Outgoing] = []
        self.heard = 0

    def handle_datagram(self, src: Address, data: bytes, now: float) -> None:
        self.heard += 1
        if data.startswith(b"g"):
            self.out.append(Datagram(src, b"a" + data[1:]))

    def handle_stream_request(self, src: Address, data: bytes, now: float) -> bytes | None:
        return data

    def handle_stream_reply(self, tag: int, data: bytes | None, now: float) -> None:
        self.heard += 1

    def tick(self, now: float) -> None:
        while self.next <= now:
            for peer in self.rng.sample(self.peers, 3):
                self.out.append(Datagram(peer, b"g%d" % self.heard))
            if self.rng.random() < 0.05:
                self.out.append(StreamRequest(self.rng.choice(self.peers), b"s", self.heard))
            self.next += 0.2

    def next_deadline(self) -> float:
        return self.next

    def take_outgoing(self) -> list[Outgoing]:
        out, self.out = self.out, []
        return out


def run_gossip(seed: int, n: int = 30, seconds: float = 5.0) -> SimNetwork:
    net = SimNetwork(
        seed,
        default_link=LinkFaults(loss=0.1, duplicate=0.05, delay=0.01, jitter=0.02),
        trace=True,
    )
    addrs = [(f"10.0.{i // 250}.{i % 250}", 7946) for i in range(n)]
    for a in addrs:
        others = [p for p in addrs if p != a]
        net.add_node(a, lambda now, rng, o=others: Gossiper(o, rng, now))
    net.call_at(1.0, lambda: net.partition(addrs[:5], addrs[5:10]))
    net.call_at(1.5, lambda: net.pause(addrs[3], 0.7))
    net.call_at(2.0, lambda: net.crash(addrs[7]))
    net.call_at(3.0, lambda: net.restart(addrs[7]))
    net.call_at(3.5, net.heal)
    net.run_for(seconds)
    return net


def test_same_seed_same_trace_different_seed_different_trace(sim_seed: int) -> None:
    first = run_gossip(sim_seed)
    second = run_gossip(sim_seed)
    assert first.trace_digest() == second.trace_digest(), f"seed={sim_seed}"
    assert first.trace == second.trace
    assert first.stats == second.stats
    other = run_gossip(sim_seed + 1)
    assert other.trace_digest() != first.trace_digest(), f"seed={sim_seed}"
    assert first.stats.dropped["loss"] and first.stats.dropped["partition"]
    assert first.stats.duplicated and first.stats.streams_completed


def test_trace_is_identical_across_processes(sim_seed: int) -> None:
    """Hash randomisation must not leak into the run: replay in two fresh interpreters."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_simnet import run_gossip
        print(run_gossip({sim_seed}, n=15, seconds=2.0).trace_digest())
        """
    )
    digests = set()
    for hashseed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1, f"seed={sim_seed}"
    assert digests == {run_gossip(sim_seed, n=15, seconds=2.0).trace_digest()}


def test_per_node_counters(sim_seed: int) -> None:
    net = run_gossip(sim_seed, n=10, seconds=2.0)
    per_node = [net.node_stats(a) for a in net.addresses]
    assert sum(s.datagrams_sent for s in per_node) == net.stats.sent
    assert all(s.datagram_bytes_sent >= s.datagrams_sent * 2 for s in per_node)
    assert sum(s.datagrams_received for s in per_node) == net.stats.delivered
    assert sum(s.streams_sent for s in per_node) == net.stats.streams_sent


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["pause", "crash", "restart", "partition", "one_way", "heal", "send"]),
        st.sampled_from([A, B, C]),
        st.floats(0.0, 3.0),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS, seed=st.integers(0, 2**32))
def test_every_datagram_is_accounted_for(ops: list[tuple[str, Address, float]], seed: int) -> None:
    """Whatever the faults, each copy sent is delivered or dropped exactly once."""
    net, f = make_net(
        seed,
        echo=True,
        default_link=LinkFaults(loss=0.2, duplicate=0.2, delay=0.01, jitter=0.05),
        recv_buffer=4,
    )
    for addr in (A, B, C):
        for other in (A, B, C):
            if other != addr:
                burst(f[addr], other, 20, every=0.1)
        net.apply(addr, lambda ep, now: None)

    def step(op: str, addr: Address, x: float) -> None:
        if op == "pause":
            net.pause(addr, x)
        elif op == "crash":
            net.crash(addr)
        elif op == "restart":
            fake = net.restart(addr)
            assert isinstance(fake, Fake)
            burst(fake, A if addr != A else B, 5, start=net.now, every=0.05)
            net.apply(addr, lambda ep, now: None)
        elif op == "partition":
            net.partition([addr])
        elif op == "one_way":
            net.partition([addr], one_way=True)
        elif op == "heal":
            net.heal()
        elif net.is_up(addr):
            fake = net.endpoint(addr)
            assert isinstance(fake, Fake)
            fake.send_at(net.now, Datagram(C if addr != C else A, b"extra"))
            net.apply(addr, lambda ep, now: None)

    for i, (op, addr, x) in enumerate(ops):
        net.call_at(i * 0.1, lambda op=op, addr=addr, x=x: step(op, addr, x))
    net.run_for(20)
    stats = net.stats
    assert stats.sent + stats.duplicated == stats.delivered + sum(stats.dropped.values()), (
        f"seed={seed} {stats}"
    )
    assert not any(net.is_paused(a) for a in (A, B, C))
