"""Hypothesis walks random sequences of valid messages and timer ticks through one node."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.gossip import MemberState, NodeMeta
from meshcache.gossip.codec import Alive, Dead, Left, Message, Ping, PushPull, Suspect
from tests.gossip.packets import SRC, Peer, lone_node

names = st.sampled_from(["me", "a", "b", "c"])
incs = st.integers(0, 6)
senders = st.sampled_from(["a", "b", "c", "d"])
metas = st.builds(NodeMeta, zone=st.sampled_from(["", "z1"]), load=st.sampled_from([0.0, 1.0]))
addrs = st.sampled_from([("127.0.0.1", 7101), ("127.0.0.1", 7102)])

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Alive, names, incs, addrs, metas),
    st.builds(Suspect, names, incs, senders),
    st.builds(Dead, names, incs, senders),
    st.builds(Left, names, incs),
    st.builds(Ping, st.integers(0, 5), names),
)
steps = st.lists(
    st.one_of(messages.map(lambda m: ("msg", m)), st.floats(0.0, 30.0).map(lambda d: ("wait", d))),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps, st.booleans())
def test_random_walk_keeps_invariants(walk: list[tuple[str, object]], via_push_pull: bool) -> None:
    node = lone_node()
    peer = Peer("d")
    now = 0.0
    seen: dict[str, int] = {}
    for kind, item in walk:
        if kind == "wait":
            assert isinstance(item, float)
            now += item
            while node.next_deadline() <= now:
                node.tick(node.next_deadline())
            node.tick(now)
        else:
            assert not isinstance(item, float)
            msg = item
            node.handle_datagram(SRC, peer.packet(msg), now)  # type: ignore[arg-type]
        node.take_outgoing()
        for m in node.members():
            # Incarnations never go backwards while a member is remembered.
            assert m.incarnation >= seen.get(m.name, 0)
            seen[m.name] = m.incarnation
        if via_push_pull:
            reply = node.handle_stream_request(
                SRC, peer.packet(PushPull(False, ()), stream=True), now
            )
            assert reply is not None
        present = {m.name for m in node.members()}
        seen = {k: v for k, v in seen.items() if k in present}
        me = node.member("me")
        assert me is not None and me.state is MemberState.ALIVE
    assert not any(k in node.stats for k in ("malformed", "bad_field", "unknown_type"))
