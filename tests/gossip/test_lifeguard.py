"""Lifeguard behaviour of one node, driven packet by packet."""

from __future__ import annotations

from meshcache.gossip import Datagram, Keyring, MemberState, NodeMeta
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
