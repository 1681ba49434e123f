"""Simulation tests on meshcache.testing.simnet. Every assertion message carries the seed."""

from __future__ import annotations

import functools
import random

import pytest

from meshcache.gossip import Address, EventKind, Keyring
from meshcache.gossip.codec import Suspect
from meshcache.testing.faults import LinkFaults
from tests.gossip.packets import Peer
from tests.gossip.simcluster import A, D, L, S, SimCluster, median

LOSSY = LinkFaults(loss=0.02, delay=0.0005, jitter=0.002)


@pytest.mark.parametrize("seed", [11])
def test_sim_50_nodes_converge(seed: int) -> None:
    c = SimCluster(seed, 50, link=LOSSY, stagger=0.02)
    assert c.wait(lambda: len(c.up()) == 50 and c.converged(), 20.0), f"seed={seed}"
    t = c.net.now
    c.net.run_for(10.0)
    c.collect()
    assert c.converged(), f"seed={seed}"
    dead = [e for _, e in c.events if e.kind is EventKind.DEAD]
    assert not dead, f"seed={seed}: false positives {dead[:3]}"
    assert t < 8.0, f"seed={seed}: converged only at {t}"


@pytest.mark.parametrize("seed", [21])
def test_sim_crash_detected_fast_without_false_positives(seed: int) -> None:
    c = SimCluster(seed, 16, link=LOSSY)
    assert c.wait(c.converged, 10.0), f"seed={seed}"
    rng = random.Random(seed)
    times = []
    for _ in range(5):
        victim = rng.choice(c.up()[1:])
        name = c.node(victim).name
        others = [a for a in c.up() if a != victim]
        c.net.run_for(rng.uniform(0, 1))
        t0 = c.net.now
        c.net.crash(victim)
        assert c.wait(functools.partial(c.all_see, name, {D}, others), 10.0), f"seed={seed}"
        times.append(c.net.now - t0)
    assert median(times) < 2.0, f"seed={seed}: detection times {times}"
    crashed = {e.member.name for _, e in c.events if e.kind is EventKind.DEAD}
    assert len(crashed) == 5, f"seed={seed}: dead events for {crashed}"


@pytest.mark.parametrize("seed", [31])
def test_sim_paused_node_is_suspected_and_refutes(seed: int) -> None:
    c = SimCluster(seed, 8)
    assert c.wait(c.converged, 10.0), f"seed={seed}"
    victim = c.addrs[3]
    inc = c.node(victim).incarnation
    others = [a for a in c.up() if a != victim]
    # A 0.5 s stall is not always noticed (nobody may probe n3 then): stall until it is.
    for _ in range(20):
        c.net.pause(victim, 0.5)
        if c.wait(lambda: not c.all_see("n3", {A}, others), 0.6):
            break
        c.net.run_for(0.5)
    else:
        raise AssertionError(f"seed={seed}: n3 never suspected")
    assert c.wait(lambda: c.converged() and c.node(victim).incarnation > inc, 5.0), f"seed={seed}"
    assert any(e.kind is EventKind.ALIVE and e.member.name == "n3" for _, e in c.events)
    # Gossip is probabilistic: a node that missed the refutation may declare n3 dead before
    # hearing of it, but it must come back at once (stale claims are answered directly).
    c.net.run_for(2.0)
    assert c.converged(), f"seed={seed}"


def test_sim_a_claim_from_the_far_future_does_not_silence_a_live_node(sim_seed: int) -> None:
    """One packet claims n2 suspect at an incarnation no peer would accept from n2; n2 must
    not adopt it, so that when it is really suspected later its refutation is believed."""
    c = SimCluster(sim_seed, 5)
    assert c.wait(c.converged, 10.0), f"seed={sim_seed}"
    victim = c.addrs[2]
    forged = Peer("stranger").packet(Suspect("n2", 2**62, "stranger"))
    c.net.apply(victim, lambda ep, now: ep.handle_datagram(Address("10.9.9.9", 1), forged, now))
    c.net.run_for(1.0)
    assert c.node(victim).stats["future_incarnation"] == 1, f"seed={sim_seed}"
    others = [a for a in c.addrs if a != victim]
    for _ in range(20):
        c.net.pause(victim, 0.5)
        if c.wait(lambda: not c.all_see("n2", {A}, others), 0.6):
            break
        c.net.run_for(0.5)
    else:
        raise AssertionError(f"seed={sim_seed}: n2 never suspected")
    assert c.wait(c.converged, 5.0), f"seed={sim_seed}: {[c.view(a)['n2'] for a in others]}"
    c.net.run_for(5.0)
    assert c.converged(), f"seed={sim_seed}"
    assert c.total_stats("future_incarnation") == 1, f"seed={sim_seed}"


@pytest.mark.parametrize("seed", [41])
def test_sim_partition_heals_by_itself(seed: int) -> None:
    c = SimCluster(seed, 10, link=LOSSY)
    assert c.wait(c.converged, 10.0), f"seed={seed}"
    half = c.addrs[:5]
    rest = c.addrs[5:]
    c.net.partition(half)
    assert c.wait(
        lambda: c.converged(half) and c.converged(rest) and c.all_see("n9", {D}, half), 30.0
    ), f"seed={seed}"
    c.net.heal()
    t0 = c.net.now
    assert c.wait(c.converged, 60.0), f"seed={seed}: not merged, views {c.view(c.addrs[0])}"
    assert c.net.now - t0 < 20.0, f"seed={seed}: merge took {c.net.now - t0}"


@pytest.mark.parametrize("seed", [51])
def test_sim_restart_rejoins_under_same_name(seed: int) -> None:
    c = SimCluster(seed, 8)
    assert c.wait(c.converged, 10.0), f"seed={seed}"
    victim = c.addrs[5]
    before = c.node(victim).incarnation
    others = [a for a in c.addrs if a != victim]
    c.net.crash(victim)
    assert c.wait(lambda: c.all_see("n5", {D}, others), 10.0), f"seed={seed}"
    c.net.restart(victim)
    assert c.wait(c.converged, 10.0), f"seed={seed}"
    assert c.node(victim).incarnation > before, f"seed={seed}"
    # ... and a quick restart, before anyone noticed the crash.
    c.net.restart(victim)
    assert c.wait(c.converged, 10.0), f"seed={seed}"
    c.net.run_for(5.0)
    assert c.converged(), f"seed={seed}"


@pytest.mark.parametrize("seed", [61])
def test_sim_graceful_leave(seed: int) -> None:
    c = SimCluster(seed, 8)
    assert c.wait(c.converged, 10.0), f"seed={seed}"
    leaver = c.addrs[2]
    c.net.apply(leaver, lambda ep, now: ep.leave(now))  # type: ignore[attr-defined]
    others = [a for a in c.addrs if a != leaver]
    assert c.wait(lambda: c.all_see("n2", {L}, others), 3.0), f"seed={seed}"
    c.net.crash(leaver)
    c.net.run_for(10.0)
    assert c.all_see("n2", {L}, others), f"seed={seed}"


@pytest.mark.parametrize("seed", [71])
def test_sim_key_rotation_under_loss(seed: int) -> None:
    k1, k2 = b"1" * 32, b"2" * 32
    c = SimCluster(seed, 10, keys=[k1], link=LOSSY)
    assert c.wait(c.converged, 10.0), f"seed={seed}"
    for step in ("install", "use", "remove"):
        for a in c.addrs:
            ring = c.keyrings[a]
            if step == "install":
                ring.install(k2)
            elif step == "use":
                ring.use(k2)
            else:
                ring.remove(k1)
            c.net.run_for(0.2)
    c.net.run_for(10.0)
    c.collect()
    assert c.converged(), f"seed={seed}"
    assert not [e for _, e in c.events if e.kind in (EventKind.DEAD,)], f"seed={seed}"
    assert c.total_stats("bad_mac") == 0 and c.total_stats("unsigned") == 0, f"seed={seed}"
    # A node with only the old key is now locked out, and counted.
    c.keyrings[c.addrs[9]] = Keyring([k1])
    c.net.restart(c.addrs[9])
    assert c.wait(lambda: c.all_see("n9", {S, D}, c.addrs[:9]), 10.0), f"seed={seed}"
    assert c.total_stats("bad_mac") > 0, f"seed={seed}"


class Garbage:
    """An endpoint that sprays random bytes (and replays real packets) at everyone."""

    def __init__(
        self,
        rng: random.Random,
        targets: list[tuple[str, int]],
        now: float,
        sniffed: list[tuple[float, str, object, object, bytes]],
    ) -> None:
        self.rng, self.targets, self.next = rng, targets, now
        self.out: list[object] = []
        self.captured: list[bytes] = []
        self.sniffed = sniffed  # the simulator's trace: every packet on the wire

    def handle_datagram(self, src: object, data: bytes, now: float) -> None:
        self.captured.append(data)

    def handle_stream_request(self, src: object, data: bytes, now: float) -> bytes | None:
        return self.rng.randbytes(self.rng.randrange(100))

    def handle_stream_reply(self, tag: int, data: bytes | None, now: float) -> None:
        pass

    def tick(self, now: float) -> None:
        from meshcache.gossip import Datagram, StreamRequest

        self.next = now + 0.01
        dst = self.rng.choice(self.targets)
        if self.sniffed and self.rng.random() < 0.3:
            data = self.rng.choice(self.sniffed[-200:])[4]
        else:
            data = self.rng.randbytes(self.rng.randrange(1, 1500))
        self.out.append(Datagram(dst, data))
        if self.rng.random() < 0.05:
            self.out.append(StreamRequest(dst, self.rng.randbytes(200), 1))

    def next_deadline(self) -> float:
        return self.next

    def take_outgoing(self) -> list[object]:
        out, self.out = self.out, []
        return out


@pytest.mark.parametrize("seed", [81])
def test_sim_garbage_does_not_hurt(seed: int) -> None:
    c = SimCluster(seed, 6, keys=[b"g" * 32], trace=True)
    assert c.net.trace is not None
    trace = c.net.trace
    assert c.wait(c.converged, 10.0), f"seed={seed}"
    evil = ("10.9.9.9", 666)
    c.net.add_node(evil, lambda now, rng: Garbage(rng, list(c.addrs), now, trace))  # type: ignore[arg-type,return-value]
    c.net.run_for(10.0)
    c.collect()
    assert c.converged(c.addrs), f"seed={seed}"
    assert not [e for _, e in c.events if e.kind in (EventKind.DEAD, EventKind.SUSPECT)]
    drops = {r: c.total_stats(r) for r in ("bad_version", "bad_mac", "replay", "truncated")}
    assert sum(drops.values()) > 500 and drops["replay"] > 0, f"seed={seed}: {drops}"


@pytest.mark.parametrize("seed", [91])
def test_sim_long_stall_declared_dead_then_back(seed: int) -> None:
    c = SimCluster(seed, 8, link=LOSSY)
    assert c.wait(c.converged, 10.0), f"seed={seed}"
    victim = c.addrs[4]
    others = [a for a in c.addrs if a != victim]
    c.net.pause(victim, 4.0)
    assert c.wait(lambda: c.all_see("n4", {D}, others), 4.0), f"seed={seed}"
    assert c.wait(c.converged, 5.0), f"seed={seed}: {c.view(c.addrs[0])}"
    assert any(e.kind is EventKind.ALIVE and e.member.name == "n4" for _, e in c.events)


def test_sim_same_seed_same_trace() -> None:
    digests = []
    for _ in range(2):
        c = SimCluster(5, 6, link=LOSSY, trace=True)
        c.net.run_for(3.0)
        c.net.crash(c.addrs[2])
        c.net.run_for(3.0)
        digests.append(c.net.trace_digest())
    assert digests[0] == digests[1]
