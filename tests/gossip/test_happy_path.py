from __future__ import annotations

import dataclasses

from meshcache.gossip import EventKind, GossipConfig, MemberState, NodeMeta
from tests.gossip.loopback import Loopback, addr

A, S, D, L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT


def make_cluster(n: int, seed: int = 1, keys: list[bytes] | None = None) -> Loopback:
    net = Loopback(seed)
    for i in range(n):
        net.add(i, keys=keys)
    for i in range(n):
        net.nodes[addr(i)].join([addr(0)], net.now)
    net.run(3.0)
    return net


def test_three_nodes_converge() -> None:
    net = make_cluster(3)
    for view in net.views().values():
        assert view == {"n0": A, "n1": A, "n2": A}
    assert all(n.joined for n in net.nodes.values())
    kinds = [e.kind for e in net.nodes[addr(1)].take_events()]
    assert kinds.count(EventKind.JOINED) == 2


def test_crash_is_detected_and_no_false_positive() -> None:
    net = make_cluster(5)
    net.run(30.0)
    assert all(v == dict.fromkeys(v, A) for v in net.views().values())
    net.down.add(addr(3))
    t0 = net.now
    while not net.all_see("n3", D, [a for a in net.nodes if a != addr(3)]):
        net.run(0.05)
        assert net.now - t0 < 10
    assert net.now - t0 < 4.0
    for a, node in net.nodes.items():
        if a != addr(3):
            assert node.stats["bad_mac"] == 0
            kinds = [e.kind for e in node.take_events() if e.member.name == "n3"]
            assert EventKind.DEAD in kinds


def test_graceful_leave() -> None:
    net = make_cluster(4)
    net.nodes[addr(2)].leave(net.now)
    net.run(1.0)
    net.down.add(addr(2))
    net.run(5.0)
    assert net.all_see("n2", L)


def test_restart_rejoins_with_higher_incarnation() -> None:
    net = make_cluster(4)
    old_inc = net.nodes[addr(2)].incarnation
    net.down.add(addr(2))
    net.run(10.0)
    assert net.all_see("n2", D, [addr(0), addr(1), addr(3)])
    net.down.discard(addr(2))
    node = net.add(2)  # same name, same address, fresh state (incarnation 0)
    node.join([addr(0)], net.now)
    net.run(3.0)
    assert net.all_see("n2", A)
    assert node.incarnation > old_inc


def test_restart_after_more_incarnations_than_the_plausible_jump() -> None:
    """A claim about ourselves too far ahead is ignored, except in the answer to our join:
    that is how a restarted node learns its previous life's incarnation, however high."""
    config = dataclasses.replace(GossipConfig.local(), max_incarnation_jump=3)
    net = Loopback(1, config)
    for i in range(4):
        net.add(i)
    for i in range(4):
        net.nodes[addr(i)].join([addr(0)], net.now)
    net.run(3.0)
    n2 = net.nodes[addr(2)]
    for load in range(1, 8):  # one step at a time: each is plausible to the others
        n2.update_meta(NodeMeta(zone="z2", data_port=8002, load=float(load)), net.now)
        net.run(0.5)
    old_inc = n2.incarnation
    assert old_inc > 3 and net.all_see("n2", A)
    assert {n.member("n2").incarnation for n in net.nodes.values()} == {old_inc}  # type: ignore[union-attr]
    net.down.add(addr(2))
    net.run(10.0)
    assert net.all_see("n2", D, [addr(0), addr(1), addr(3)])
    net.down.discard(addr(2))
    node = net.add(2)  # incarnation 0, its previous life more than 3 ahead
    node.join([addr(0)], net.now)
    net.run(3.0)
    assert net.all_see("n2", A)
    assert node.incarnation == old_inc + 1


def test_a_restarted_seed_without_seeds_joins_the_members_it_is_told_of() -> None:
    # No periodic push/pull or reconnect in this test: only its own join can teach the
    # restarted seed who is there.
    net = Loopback(1, GossipConfig(push_pull_interval=600.0, reconnect_interval=600.0))
    for i in range(3):
        net.add(i)
    for i in range(3):
        net.nodes[addr(i)].join([addr(0)], net.now)
    net.run(20.0)  # joined, and the join's updates all gossiped: nothing left to piggyback
    assert net.views()["n0"] == {"n0": A, "n1": A, "n2": A}
    net.down.add(addr(0))
    net.run(1.0)
    net.down.discard(addr(0))
    node = net.add(0)  # the seed restarted: no seeds of its own
    node.join([], net.now)
    net.run(3.0)
    assert set(net.views([addr(0)])["n0"]) == {"n0"}
    node.join_also([addr(1), addr(0)], net.now)  # what its config lists (itself included)
    net.run(1.0)
    assert net.views()["n0"] == {"n0": A, "n1": A, "n2": A}
    assert node.joined


def test_partition_heals_without_operator() -> None:
    net = make_cluster(6)
    left = {addr(i) for i in range(3)}
    net.blocked = lambda a, b: (a in left) != (b in left)
    net.run(20.0)
    assert net.all_see("n4", D, [addr(0), addr(1), addr(2)])
    assert net.all_see("n0", D, [addr(3), addr(4), addr(5)])
    net.blocked = lambda a, b: False
    t0 = net.now
    while not all(v == dict.fromkeys(v, A) for v in net.views().values()):
        net.run(0.5)
        assert net.now - t0 < 60, net.views()


def test_update_meta_spreads() -> None:
    net = make_cluster(4)
    node = net.nodes[addr(1)]
    inc = node.incarnation
    node.update_meta(NodeMeta(zone="zz", config_version=7, load=0.5), net.now)
    assert node.incarnation == inc + 1
    net.run(2.0)
    for other in net.nodes.values():
        m = other.member("n1")
        assert m is not None and m.meta.config_version == 7 and m.meta.zone == "zz"
    events = [e for e in net.nodes[addr(3)].take_events() if e.kind is EventKind.UPDATED]
    assert events and events[-1].member.meta.load == 0.5


def test_keyed_cluster_and_rotation() -> None:
    k1, k2 = b"k" * 32, b"j" * 32
    net = make_cluster(4, keys=[k1])
    assert all(v == dict.fromkeys(v, A) for v in net.views().values())
    for node in net.nodes.values():
        node.keyring.install(k2)
    net.run(1.0)
    for node in net.nodes.values():
        node.keyring.use(k2)
        net.run(0.3)
    for node in net.nodes.values():
        node.keyring.remove(k1)
        net.run(0.3)
    net.run(10.0)
    assert all(v == dict.fromkeys(v, A) for v in net.views().values())
    assert sum(n.stats["bad_mac"] for n in net.nodes.values()) == 0


def test_lan_profile_numbers() -> None:
    lan = GossipConfig.lan()
    assert (lan.probe_interval, lan.probe_timeout, lan.indirect_checks) == (1.0, 0.5, 3)
    assert (lan.suspicion_mult, lan.suspicion_max_timeout_mult) == (4, 6)
    assert (lan.gossip_interval, lan.gossip_nodes, lan.retransmit_mult) == (0.2, 3, 4)
    assert (lan.push_pull_interval, lan.gossip_to_the_dead, lan.awareness_max) == (30, 30, 8)
    assert lan.packet_size == 1400
