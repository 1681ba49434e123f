"""Lifeguard behaviour of one node, driven packet by packet."""

from __future__ import annotations

import dataclasses
import random

from meshcache.gossip import Datagram, GossipConfig, Keyring, MemberState, NodeMeta, SwimNode
from meshcache.gossip.codec import (
    Ack,
    Alive,
    Message,
    Nack,
    Ping,
    PingReq,
    Suspect,
    decode_envelope,
)
from tests.gossip.packets import SRC, Peer, lone_node

X = ("127.0.0.1", 7100)
R = ("127.0.0.1", 7200)


def sent(node: object) -> list[tuple[tuple[str, int], list[Message]]]:
    out = []
    for o in node.take_outgoing():  # type: ignore[attr-defined]
        assert isinstance(o, Datagram)
        env = decode_envelope(Keyring(), o.data, stream=False, max_size=1400)
        out.append((o.dst, list(env.messages)))
    return out


def test_buddy_system_ping_tells_suspect() -> None:
    node = lone_node()
    peer = Peer()
    node.handle_datagram(SRC, peer.packet(Alive("x", 3, X, NodeMeta())), 0.0)
    node.handle_datagram(SRC, peer.packet(Suspect("x", 3, "n9")), 0.0)
    node.take_outgoing()
    node.tick(node.config.probe_interval)
    (dst, msgs), *_ = sent(node)
    assert dst == X
    assert msgs[0] == Suspect("x", 3, "me") and isinstance(msgs[1], Ping)


def test_suspect_node_refutes_in_its_ack() -> None:
    node = lone_node()
    node.handle_datagram(SRC, Peer().packet(Suspect("me", 0, "n9"), Ping(5, "me")), 0.0)
    ((dst, msgs),) = sent(node)
    assert dst == SRC and Alive("me", 1, node.address, NodeMeta()) in msgs


def test_answers_to_stale_claims_leave_the_refutation_its_sends() -> None:
    """Members that missed our refutation and still suspect us get our alive directly, once
    per packet; those answers do not use up the refutation's retransmits, which are what
    reaches the members that have not told us they suspect us."""
    node = lone_node()
    peer = Peer()
    node.handle_datagram(SRC, peer.packet(Suspect("me", 0, "n9")), 0.0)
    node.take_outgoing()
    alive = Alive("me", 1, node.address, NodeMeta())
    assert node.incarnation == 1 and node.pending_broadcasts() == 1
    limit = node.config.retransmit_mult  # one member: ceil(log10(1 + 1)) = 1
    for _ in range(limit + 1):
        node.handle_datagram(SRC, peer.packet(Suspect("me", 0, "n9")), 0.0)
    answers = sent(node)
    assert answers == [(SRC, [alive])] * (limit + 1)
    assert node.pending_broadcasts() == 1


def probe_until_indirect(nack: bool) -> int:
    """Probe x (never answers) with r as the only relay; return the health score after."""
    node = lone_node()
    peer, peer_r = Peer(), Peer("r", boot=9)
    node.handle_datagram(SRC, peer.packet(Alive("x", 1, X, NodeMeta())), 0.0)
    node.handle_datagram(SRC, peer.packet(Alive("r", 1, R, NodeMeta())), 0.0)
    node.take_outgoing()
    for _ in range(20):
        t = node.next_deadline()
        node.tick(t)
        x = node.member("x")
        if x is not None and x.state is MemberState.SUSPECT:
            return node.health_score
        for dst, msgs in sent(node):
            for m in msgs:
                if isinstance(m, Ping) and dst == R:
                    node.handle_datagram(R, peer_r.packet(Ack(m.seq)), t)
                if isinstance(m, PingReq) and nack:
                    node.handle_datagram(R, peer_r.packet(Nack(m.seq)), t)
    raise AssertionError("x never suspected")


def test_missing_nack_raises_awareness() -> None:
    assert probe_until_indirect(nack=True) == 0
    assert probe_until_indirect(nack=False) == 1


def test_relay_pings_and_nacks() -> None:
    node = lone_node()
    node.handle_datagram(SRC, Peer().packet(PingReq(77, "x", X)), 0.0)
    ((dst, msgs),) = sent(node)
    assert dst == X and isinstance(msgs[0], Ping) and msgs[0].target == "x"
    node.tick(node.config.nack_fraction * node.config.probe_timeout)
    assert [msgs for dst, msgs in sent(node) if dst == SRC] == [[Nack(77)]]


PEERS: dict[str, Peer] = {}


def peer(name: str) -> Peer:
    """One sender per name across a test (the replay guard drops a reused envelope counter)."""
    return PEERS.setdefault(name, Peer(name, boot=5))


def drive(node: SwimNode, until: float, answer: frozenset[str] = frozenset()) -> None:
    """Tick ``node`` at every deadline up to ``until``, as a driver whose loop is never held;
    pings to members named in ``answer`` are acked at once."""
    while node.next_deadline() <= until:
        t = node.next_deadline()
        node.tick(t)
        ack_pings(node, t, answer)


def ack_pings(node: SwimNode, t: float, answer: frozenset[str]) -> list[Ping]:
    """The pings ``node`` sent; those to members in ``answer`` are acked at ``t``."""
    pings = []
    for out in node.take_outgoing():
        if not isinstance(out, Datagram):
            continue  # push/pull: nobody answers it here
        env = decode_envelope(Keyring(), out.data, stream=False, max_size=1400)
        for m in env.messages:
            if isinstance(m, Ping):
                pings.append(m)
                if m.target in answer:
                    node.handle_datagram(out.dst, peer(m.target).packet(Ack(m.seq)), t)
    return pings


def two_peers(config: GossipConfig) -> SwimNode:
    PEERS.clear()
    node = SwimNode(
        config,
        "me",
        ("127.0.0.1", 7000),
        NodeMeta(),
        keyring=Keyring(),
        rng=random.Random(3),
        now=0.0,
    )
    node.handle_datagram(SRC, peer("n9").packet(Alive("x", 1, X, NodeMeta())), 0.0)
    node.handle_datagram(SRC, peer("n9").packet(Alive("r", 1, R, NodeMeta())), 0.0)
    node.take_outgoing()
    return node


BOTH = frozenset({"x", "r"})
ONLY_R = frozenset({"r"})


def test_a_stalled_prober_does_not_suspect_whom_it_probed() -> None:
    """The loop is held for a second right after a ping to x went out; x's ack waits in the
    socket and is handed over first when the loop runs again (the transport drains first)."""
    node = two_peers(GossipConfig.local())
    drive(node, 2.0, BOTH)
    while True:  # until a ping to x goes out
        t = node.next_deadline()
        node.tick(t)
        pings = [m for m in ack_pings(node, t, ONLY_R) if m.target == "x"]
        if pings:
            break
    node.handle_datagram(X, peer("x").packet(Ack(pings[0].seq)), t + 1.0)
    node.tick(t + 1.0)
    assert node.member("x").state is MemberState.ALIVE  # type: ignore[union-attr]
    assert node.stats["probes_failed"] == 0


def test_a_late_tick_is_counted_against_local_health() -> None:
    node = two_peers(GossipConfig.local())
    drive(node, 2.0, BOTH)
    assert node.health_score == 0 and node.stats["local_stalls"] == 0
    t = node.next_deadline() + 0.5
    node.tick(t)  # the loop was held half a second
    assert node.stats["local_stalls"] == 1
    assert node.health_score == 1
    ack_pings(node, t, BOTH)
    drive(node, t + 1.0, BOTH)
    assert node.stats["local_stalls"] == 1  # on time again: nothing more
    assert node.health_score == 0  # successful probes make up for it


def test_a_stalled_prober_gives_the_probe_its_time_back() -> None:
    """The ping to x was lost and the loop was held past the probe's deadline. Without the
    rule x is suspected at once, its indirect probe never given a chance."""
    for rule in (True, False):
        config = GossipConfig.local()
        if not rule:
            config = dataclasses.replace(config, local_stall_after=1000.0)
        node = two_peers(config)
        drive(node, 2.0, BOTH)
        while True:
            t = node.next_deadline()
            node.tick(t)
            if any(m.target == "x" for m in ack_pings(node, t, ONLY_R)):
                break  # the ping to x is lost: nobody acks it
        node.tick(t + 1.0)
        x = node.member("x")
        assert x is not None
        if not rule:
            assert x.state is MemberState.SUSPECT
            continue
        assert x.state is MemberState.ALIVE and node.stats["probes_failed"] == 0
        # The indirect probe goes out in time: r relays, x answers it.
        for _ in range(10):
            t = node.next_deadline()
            node.tick(t)
            for out in node.take_outgoing():
                assert isinstance(out, Datagram)
                env = decode_envelope(Keyring(), out.data, stream=False, max_size=1400)
                for m in env.messages:
                    if isinstance(m, PingReq):
                        node.handle_datagram(R, peer("r").packet(Ack(m.seq)), t)
            if node.stats["probes_failed"] or not node._probe:
                break
        assert node.member("x").state is MemberState.ALIVE  # type: ignore[union-attr]
        assert node.stats["probes_failed"] == 0


def test_suspicions_do_not_expire_while_this_node_is_stalled() -> None:
    node = two_peers(GossipConfig.local())
    drive(node, 1.0, BOTH)
    node.handle_datagram(SRC, peer("r").packet(Suspect("x", 1, "r")), 1.0)
    x = node.member("x")
    assert x is not None and x.state is MemberState.SUSPECT
    suspicion = node._members["x"].suspicion
    assert suspicion is not None
    ends = suspicion.deadline
    drive(node, ends - 0.1, BOTH)  # x acks our pings (no second suspicion), but stays suspect
    node.tick(ends + 1.0)  # held across the end of the suspicion
    assert node.stats["local_stalls"] == 1
    assert node.member("x").state is MemberState.SUSPECT  # type: ignore[union-attr]
    # x's refutation came while we were stalled; the driver hands it over now.
    node.handle_datagram(SRC, peer("r").packet(Alive("x", 2, X, NodeMeta())), ends + 1.0)
    assert node.member("x").state is MemberState.ALIVE  # type: ignore[union-attr]
    # Without a stall the suspicion ends on time.
    node.handle_datagram(SRC, peer("r").packet(Suspect("x", 2, "r")), ends + 1.0)
    suspicion = node._members["x"].suspicion
    assert suspicion is not None
    drive(node, suspicion.deadline + 0.01, BOTH)
    assert node.member("x").state is MemberState.DEAD  # type: ignore[union-attr]
