"""Hostile and broken input is dropped, counted, and never raises or corrupts the table."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshcache.gossip import Address, Keyring, MemberState, NodeMeta
from meshcache.gossip.codec import (
    VERSION,
    Ack,
    Alive,
    Dead,
    Left,
    MemberRecord,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    encode_envelope,
    encode_message,
)
from tests.gossip.packets import SRC, Peer, lone_node

KEY = b"k" * 32
OTHER = b"o" * 32
X = ("127.0.0.1", 7100)


def table(node: object) -> list[tuple[str, MemberState, int]]:
    return [(m.name, m.state, m.incarnation) for m in node.members()]  # type: ignore[attr-defined]


def test_unsigned_packet_dropped_by_keyed_node() -> None:
    node = lone_node([KEY])
    node.handle_datagram(SRC, Peer().packet(Alive("x", 1, X, NodeMeta())), 0.0)
    assert node.stats["unsigned"] == 1 and node.member("x") is None


def test_wrong_key_dropped() -> None:
    node = lone_node([KEY])
    node.handle_datagram(SRC, Peer(keyring=Keyring([OTHER])).packet(Ping(1, "me")), 0.0)
    assert node.stats["bad_mac"] == 1 and node.take_outgoing() == []


def test_signed_packet_to_node_without_keys_dropped() -> None:
    node = lone_node()
    node.handle_datagram(SRC, Peer(keyring=Keyring([KEY])).packet(Ping(1, "me")), 0.0)
    assert node.stats["unexpected_signature"] == 1


def test_any_installed_key_accepted_primary_used_for_sending() -> None:
    node = lone_node([KEY, OTHER])
    node.handle_datagram(SRC, Peer(keyring=Keyring([OTHER])).packet(Ping(1, "me")), 0.0)
    (ack,) = node.take_outgoing()
    receiver = lone_node([KEY], name="n9")
    receiver.handle_datagram(("127.0.0.1", 7000), ack.data, 0.0)
    assert receiver.stats["late_ack"] == 1 and receiver.stats["bad_mac"] == 0


def test_replayed_packet_dropped() -> None:
    node = lone_node([KEY])
    packet = Peer(keyring=Keyring([KEY])).packet(Ping(1, "me"))
    node.handle_datagram(SRC, packet, 0.0)
    node.handle_datagram(SRC, packet, 1.0)
    assert node.stats["replay"] == 1 and len(node.take_outgoing()) == 1


def test_reordered_packets_accepted_old_boot_rejected() -> None:
    node = lone_node()
    peer = Peer()
    p1, p2 = peer.packet(Ping(1, "me")), peer.packet(Ping(2, "me"))
    node.handle_datagram(SRC, p2, 0.0)
    node.handle_datagram(SRC, p1, 0.0)
    assert node.stats["replay"] == 0
    restarted = Peer(boot=2)
    node.handle_datagram(SRC, restarted.packet(Ping(3, "me")), 0.0)
    node.handle_datagram(SRC, peer.packet(Ping(4, "me")), 0.0)  # the previous life
    assert node.stats["replay"] == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x01", "truncated"),
        (bytes([VERSION + 1, 0, 0x90]), "bad_version"),
        (bytes([VERSION, 0x80, 0x90]), "bad_flags"),
        (bytes([VERSION, 0x02, 0x90]), "wrong_channel"),
        (bytes([VERSION, 0, 0xC1]), "malformed"),
        (bytes([VERSION, 0]) + msgpack.packb(["n9", 1, 1]), "malformed"),
        (bytes([VERSION, 0]) + msgpack.packb(["n9", 1, 1, [99, 1]]), "unknown_type"),
        (bytes([VERSION, 0]) + msgpack.packb(["n9", 1, 1, [0, "1", "me"]]), "bad_field"),
        (bytes([VERSION, 0]) + msgpack.packb(["n9", -1, 1, [2, 1]]), "bad_field"),
        (bytes([VERSION, 0]) + msgpack.packb(["n9", 1, 1, [2, 1, 2]]), "bad_field"),
        (bytes([VERSION, 0]) + msgpack.packb([b"n9", 1, 1, [2, 1]]), "bad_field"),
        (bytes([VERSION, 0]) + msgpack.packb(["n9", 1, 1, [2, 1]]) + b"x", "malformed"),
        (bytes([VERSION, 0]) + b"\x94\xa2n9", "malformed"),
        (bytes([VERSION, 0]) + b"\x00" * 2000, "oversized"),
    ],
)
def test_bad_packets_counted(data: bytes, reason: str) -> None:
    node = lone_node()
    before = table(node)
    node.handle_datagram(SRC, data, 0.0)
    assert node.stats[reason] == 1, dict(node.stats)
    assert table(node) == before and node.take_outgoing() == []


def test_bad_meta_rejected_whole_packet() -> None:
    node = lone_node()
    raw = encode_message(Alive("x", 1, X, NodeMeta()))
    obj = msgpack.unpackb(raw)
    obj[5][5] = float("nan")
    bad = encode_envelope(
        Keyring(), "n9", 1, 1, [encode_message(Ping(1, "me")), msgpack.packb(obj)]
    )
    node.handle_datagram(SRC, bad, 0.0)
    assert node.stats["bad_field"] == 1 and node.member("x") is None and not node.take_outgoing()


def test_incarnation_from_the_future_dropped() -> None:
    node = lone_node()
    peer = Peer()
    node.handle_datagram(SRC, peer.packet(Alive("x", 1, X, NodeMeta())), 0.0)
    node.handle_datagram(SRC, peer.packet(Dead("x", 10**9, "n9")), 0.0)
    node.handle_datagram(SRC, peer.packet(Alive("x", 10**9, X, NodeMeta())), 0.0)
    assert node.stats["future_incarnation"] == 2
    m = node.member("x")
    assert m is not None and (m.state, m.incarnation) == (MemberState.ALIVE, 1)


@pytest.mark.parametrize(
    "host",
    [
        "a\x00b",  # sendto: "host name must not contain null character"
        "\u00e9" * 70,  # sendto: "encoding of hostname failed" (label too long once encoded)
        "a..b",  # trio's getaddrinfo: no IDNA form (empty label)
        "x" * 64,  # no IDNA form (label too long)
        "a b",
        "\x01abc",
        "a\x7fb",
    ],
    ids=["nul", "no-idna-form", "empty-label", "long-label", "space", "control", "del"],
)
def test_a_host_no_socket_can_send_to_is_dropped(host: str) -> None:
    """A node would send to these hosts later (relay a ping, probe, gossip, push/pull), and
    the socket would refuse: the packet or payload that names one is dropped at the door."""
    node = lone_node()
    peer = Peer()
    before = table(node)
    bad = Address(host, 7100)
    node.handle_datagram(SRC, peer.packet(PingReq(1, "x", bad)), 0.0)
    node.handle_datagram(SRC, peer.packet(Alive("x", 1, bad, NodeMeta())), 0.0)
    record = MemberRecord("x", bad, 1, MemberState.ALIVE, NodeMeta())
    pushed = peer.packet(PushPull(False, (record,)), stream=True)
    assert node.handle_stream_request(SRC, pushed, 0.0) is None
    assert node.stats["bad_field"] == 3, dict(node.stats)
    assert table(node) == before and node.take_outgoing() == []


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "::1", "fe80::1%eth0", "node-1.cache.internal.", "db_2", "b\u00fccher.de"]
)
def test_ip_literals_and_host_names_accepted(host: str) -> None:
    node = lone_node()
    node.handle_datagram(SRC, Peer().packet(Alive("x", 1, Address(host, 7100), NodeMeta())), 0.0)
    m = node.member("x")
    assert m is not None and m.address == (host, 7100), dict(node.stats)


def test_a_claim_about_ourselves_from_the_future_is_ignored() -> None:
    """Peers drop an update more than max_incarnation_jump ahead of what they know of us, so
    refuting such a claim would make all our later refutations implausible to them."""
    node = lone_node()
    jump = node.config.max_incarnation_jump
    peer = Peer()
    for claim in [
        Suspect("me", 2**62, "n9"),
        Dead("me", jump + 1, "n9"),
        Left("me", jump + 1),
        Alive("me", jump + 1, X, NodeMeta()),
    ]:
        node.handle_datagram(SRC, peer.packet(claim), 0.0)
    record = MemberRecord("me", X, 2**62, MemberState.DEAD, NodeMeta())
    node.handle_stream_request(SRC, peer.packet(PushPull(False, (record,)), stream=True), 0.0)
    assert node.stats["future_incarnation"] == 5, dict(node.stats)
    assert node.incarnation == 0 and node.stats["refutations"] == 0
    assert node.pending_broadcasts() == 0
    node.handle_datagram(SRC, peer.packet(Suspect("me", jump, "n9")), 0.0)
    assert node.incarnation == jump + 1 and node.stats["refutations"] == 1


def test_packet_from_own_name_dropped() -> None:
    node = lone_node()
    node.handle_datagram(SRC, Peer(name="me").packet(Ping(1, "me")), 0.0)
    assert node.stats["name_conflict"] == 1


def test_push_pull_over_udp_and_ping_over_stream_rejected() -> None:
    node = lone_node()
    peer = Peer()
    node.handle_datagram(SRC, peer.packet(PushPull(False, ())), 0.0)
    assert node.stats["unexpected_message"] == 1
    assert node.handle_stream_request(SRC, peer.packet(Ack(1), stream=True), 0.0) is None
    assert node.stats["unexpected_message"] == 2
    assert node.handle_stream_request(SRC, peer.packet(Ack(1)), 0.0) is None
    assert node.stats["wrong_channel"] == 1


def test_unknown_stream_tag_and_failed_reply() -> None:
    node = lone_node()
    node.handle_stream_reply(12345, b"junk", 0.0)
    assert node.stats["unknown_stream_tag"] == 1
    node.join([("127.0.0.1", 7001)], 0.0)
    (req,) = node.take_outgoing()
    node.handle_stream_reply(req.tag, b"\x01\x02garbage", 0.0)  # type: ignore[union-attr]
    assert not node.joined and node.stats["push_pull_failed"] == 1
    assert node.next_deadline() <= node.config.join_retry_interval


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.binary(max_size=1500), st.booleans())
def test_fuzz_raw_bytes(data: bytes, keyed: bool) -> None:
    node = lone_node([KEY] if keyed else None)
    before = table(node)
    node.handle_datagram(SRC, data, 0.0)
    node.handle_datagram(SRC, bytes([VERSION, 0]) + data, 0.0)
    assert node.handle_stream_request(SRC, data, 0.0) is None
    node.tick(1.0)
    assert table(node) == before


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=6),
    max_leaves=20,
)


@SETTINGS
@given(
    st.lists(
        st.one_of(
            msgpack_values,
            st.tuples(st.integers(0, 9), msgpack_values).map(list),
            st.tuples(st.integers(0, 9), st.text(max_size=4), st.integers(0, 10**20)).map(list),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_fuzz_structured_messages(messages: list[object]) -> None:
    """Well-formed envelopes full of nonsense messages never raise."""
    node = lone_node()
    try:
        parts = [msgpack.packb(m) for m in messages]
    except (OverflowError, ValueError):
        return
    data = encode_envelope(Keyring(), "n9", 1, 1, parts)
    node.handle_datagram(SRC, data, 0.0)
    node.handle_stream_request(SRC, encode_envelope(Keyring(), "n9", 1, 2, parts, stream=True), 0.0)
    for _ in range(3):
        node.tick(node.next_deadline())
    for m in node.members():
        assert isinstance(m.incarnation, int) and isinstance(m.meta, NodeMeta)
