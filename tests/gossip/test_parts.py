"""Unit tests of the small pieces: suspicion formula, awareness, broadcast queue, keyring..."""

from __future__ import annotations

import math

import pytest

from meshcache.errors import ConfigError
from meshcache.gossip import GossipConfig, Keyring, NodeMeta
from meshcache.gossip.awareness import Awareness
from meshcache.gossip.broadcast import BroadcastQueue, retransmit_limit
from meshcache.gossip.codec import Alive, Ping, decode_envelope
from meshcache.gossip.replay import ReplayGuard
from meshcache.gossip.suspicion import Suspicion, suspicion_bounds
from tests.gossip.packets import SRC, Peer, lone_node


def test_suspicion_bounds_memberlist_formula() -> None:
    low, high = suspicion_bounds(4, 6, 100, 1.0)
    assert low == pytest.approx(8.0) and high == pytest.approx(48.0)
    assert suspicion_bounds(4, 6, 1, 1.0) == (1.0, 6.0)  # floor: one probe interval


def test_suspicion_shrinks_with_confirmations() -> None:
    s = Suspicion(start=10.0, k=3, min_timeout=2.0, max_timeout=12.0, by="a")
    assert s.deadline == pytest.approx(22.0)
    assert not s.confirm("a")  # the accuser does not count
    expected = [12 - 10 * math.log(c + 1) / math.log(4) for c in (1, 2, 3)]
    for c, who in enumerate(["b", "c", "d"]):
        assert s.confirm(who)
        assert s.timeout() == pytest.approx(expected[c])
    assert s.timeout() == pytest.approx(2.0)
    assert not s.confirm("e")  # enough confirmations
    assert Suspicion(start=0, k=0, min_timeout=2, max_timeout=12, by="a").timeout() == 2


def test_awareness_scales_and_clamps() -> None:
    a = Awareness(8)
    a.apply_delta(-3)
    assert a.score == 0 and a.scale(0.5) == 0.5
    a.apply_delta(20)
    assert a.score == 8 and a.scale(0.5) == 4.5


def test_retransmit_limit() -> None:
    assert retransmit_limit(4, 1) == 4
    assert retransmit_limit(4, 9) == 4
    assert retransmit_limit(4, 10) == 8
    assert retransmit_limit(4, 1000) == 16


def test_broadcast_queue_order_replace_and_limit() -> None:
    q = BroadcastQueue()
    q.queue("a", b"A" * 10)
    q.queue("b", b"B" * 10)
    assert q.take(15, 3) == [b"B" * 10]  # newest first, only one fits
    assert q.take(100, 3) == [b"A" * 10, b"B" * 10]  # least-sent first
    q.queue("a", b"a" * 5)  # newer update about "a" replaces and resets
    assert q.transmits("a") == 0 and len(q) == 2
    q.take(100, 3)
    q.take(100, 3)
    assert q.transmits("b") is None and q.transmits("a") == 2


def test_packets_filled_up_to_packet_size() -> None:
    node = lone_node()
    peer = Peer()
    for i in range(200):
        meta = NodeMeta(zone="zone-" + "x" * 40)
        node.handle_datagram(
            SRC, peer.packet(Alive(f"member-{i:04d}", 1, ("10.0.0.1", i), meta)), 0
        )
    node.take_outgoing()
    node.handle_datagram(SRC, peer.packet(Ping(1, "me")), 0.0)
    (ack,) = node.take_outgoing()
    size = len(ack.data)
    assert node.config.packet_size - 120 < size <= node.config.packet_size
    env = decode_envelope(Keyring(), ack.data, stream=False, max_size=1400)
    assert len(env.messages) > 5


def test_keyring_rotation_rules() -> None:
    k1, k2 = b"1" * 16, b"2" * 32
    ring = Keyring([k1])
    ring.install(k2)
    assert ring.primary == k1
    with pytest.raises(ConfigError):
        ring.remove(k1)
    ring.use(k2)
    ring.remove(k1)
    assert ring.keys() == [k2]
    with pytest.raises(ConfigError):
        ring.install(b"short")
    with pytest.raises(ConfigError):
        ring.use(k1)
    sig = ring.sign(b"data")
    assert ring.verify(b"data", sig) and not ring.verify(b"datb", sig)
    ring.remove(k2)
    assert not ring.enabled and ring.sign(b"x") == b""


def test_replay_guard_window_and_memory_bound() -> None:
    g = ReplayGuard(window=4, max_senders=2)
    assert g.accept("a", 1, 10)
    assert g.accept("a", 1, 8)
    assert not g.accept("a", 1, 8)
    assert not g.accept("a", 1, 6)  # outside the window
    assert g.accept("a", 1, 100)
    assert g.accept("b", 1, 1) and g.accept("c", 1, 1)  # evicts "a"
    assert g.accept("a", 1, 10)


def test_config_validation() -> None:
    import dataclasses

    with pytest.raises(ConfigError):
        dataclasses.replace(GossipConfig.lan(), probe_timeout=2.0)
    with pytest.raises(ConfigError):
        dataclasses.replace(GossipConfig.lan(), packet_size=100)
    local = GossipConfig.local()
    assert local.probe_interval < GossipConfig.lan().probe_interval
