"""Every (member state x claim x incarnation relation), through the public packet path.

The expectations are written out by hand here, independently of ``state.TRANSITIONS``.
"""

from __future__ import annotations

import pytest

from meshcache.gossip import MemberState, NodeMeta
from meshcache.gossip.codec import Alive, Dead, Left, Message, Suspect
from meshcache.gossip.state import SELF_RULES, TRANSITIONS, Claim
from tests.gossip.packets import SRC, Peer, lone_node

A, S, D, L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT
X_ADDR = ("127.0.0.1", 7100)
BASE = 5


def claim_msg(kind: str, inc: int, name: str = "x") -> Message:
    if kind == "alive":
        return Alive(name, inc, X_ADDR, NodeMeta(zone="new" if inc > BASE else ""))
    if kind == "suspect":
        return Suspect(name, inc, "n8")
    if kind == "dead":
        return Dead(name, inc, "n8")
    return Left(name, inc)


SETUP: dict[MemberState | None, list[Message]] = {
    None: [],
    A: [Alive("x", BASE, X_ADDR, NodeMeta())],
    S: [Alive("x", BASE, X_ADDR, NodeMeta()), Suspect("x", BASE, "n8")],
    D: [Alive("x", BASE, X_ADDR, NodeMeta()), Dead("x", BASE, "n8")],
    L: [Alive("x", BASE, X_ADDR, NodeMeta()), Left("x", BASE)],
}

# (state, claim) -> resulting state for (older, same, newer) incarnation.
EXPECTED: dict[tuple[MemberState | None, str], tuple[MemberState | None, ...]] = {
    (None, "alive"): (A, A, A),
    (None, "suspect"): (None, None, None),
    (None, "dead"): (None, None, None),
    (None, "left"): (None, None, None),
    (A, "alive"): (A, A, A),
    (A, "suspect"): (A, S, S),
    (A, "dead"): (A, D, D),
    (A, "left"): (A, L, L),
    (S, "alive"): (S, S, A),
    (S, "suspect"): (S, S, S),
    (S, "dead"): (S, D, D),
    (S, "left"): (S, L, L),
    (D, "alive"): (D, D, A),
    (D, "suspect"): (D, D, D),
    (D, "dead"): (D, D, D),
    (D, "left"): (D, L, L),
    (L, "alive"): (L, L, A),
    (L, "suspect"): (L, L, L),
    (L, "dead"): (L, L, L),
    (L, "left"): (L, L, L),
}


@pytest.mark.parametrize(("state", "kind"), list(EXPECTED))
@pytest.mark.parametrize("rel", [0, 1, 2], ids=["older", "same", "newer"])
def test_transition(state: MemberState | None, kind: str, rel: int) -> None:
    node = lone_node()
    peer = Peer()
    for msg in SETUP[state]:
        node.handle_datagram(SRC, peer.packet(msg), 0.0)
    before = node.member("x")
    assert (before.state if before else None) is state
    inc = BASE - 1 + rel
    node.handle_datagram(SRC, peer.packet(claim_msg(kind, inc)), 0.0)
    after = node.member("x")
    want = EXPECTED[(state, kind)][rel]
    assert (after.state if after else None) is want
    if after is not None and after.state is not state:
        assert after.incarnation == inc
    if state is A and kind == "alive" and rel == 2:
        assert after is not None and after.meta.zone == "new"
    assert sum(node.stats[k] for k in ("malformed", "bad_field", "unknown_type")) == 0


def test_table_is_total() -> None:
    states: list[MemberState | None] = [None, *MemberState]
    assert set(TRANSITIONS) == {(s, c) for s in states for c in Claim}
    assert {s for s, _ in SELF_RULES} == {A, L}


@pytest.mark.parametrize("kind", ["alive", "suspect", "dead", "left"])
@pytest.mark.parametrize("rel", [-1, 0, 1])
def test_claims_about_self(kind: str, rel: int) -> None:
    node = lone_node()
    node.update_meta(NodeMeta(zone="a"), 0.0)
    node.update_meta(NodeMeta(zone="b"), 0.0)
    own = node.incarnation
    assert own == 2
    node.handle_datagram(SRC, Peer().packet(claim_msg(kind, own + rel, name="me")), 0.0)
    refutes = rel > 0 if kind == "alive" else rel >= 0
    assert node.incarnation == (max(own, own + rel) + 1 if refutes else own)
    me = node.member("me")
    assert me is not None and me.state is A
    if refutes and kind != "alive":
        assert node.health_score == 1


def test_left_node_does_not_refute() -> None:
    node = lone_node()
    node.leave(0.0)
    node.handle_datagram(SRC, Peer().packet(Dead("me", 9, "n8")), 0.0)
    me = node.member("me")
    assert me is not None and me.state is L and me.incarnation == 0


def test_suspicion_expires_to_dead_and_dead_is_reaped() -> None:
    node = lone_node()
    peer = Peer()
    node.handle_datagram(SRC, peer.packet(Alive("x", 1, X_ADDR, NodeMeta())), 0.0)
    node.handle_datagram(SRC, peer.packet(Suspect("x", 1, "n8")), 0.0)
    t = 0.0
    while (m := node.member("x")) is not None and m.state is S:
        t = node.next_deadline()
        node.tick(t)
    assert node.member("x") is not None and node.member("x").state is D  # type: ignore[union-attr]
    assert t <= 10.0
    kinds = [e.kind.value for e in node.take_events()]
    assert kinds == ["joined", "suspect", "dead"]
    node.tick(t + node.config.dead_reap_after + 2)
    assert node.member("x") is None
    assert [e.kind.value for e in node.take_events()] == ["reaped"]
