"""Gossip sealed with AES-GCM under the cluster keyring: unreadable on the wire, rotation without
a refused packet, and packets under a removed key refused and counted."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.gossip import Keyring, NodeMeta
from meshcache.gossip.codec import (
    FLAG_SIGNED,
    FLAG_STREAM,
    VERSION,
    Alive,
    DecodeError,
    Ping,
    decode_envelope,
    encode_envelope,
    encode_message,
)
from tests.gossip.packets import SRC, Peer, lone_node

OLD, NEW = b"o" * 32, b"n" * 32
HOST = ("10.20.30.40", 7100)


def test_a_sealed_packet_hides_names_addresses_and_metadata() -> None:
    message = Alive("node-secret-name", 3, HOST, NodeMeta(zone="zone-secret"))
    sealed = Peer("sender-secret", keyring=Keyring([OLD])).packet(message)
    clear = Peer("sender-secret").packet(message)
    for text in (b"node-secret-name", b"sender-secret", b"zone-secret", b"10.20.30.40"):
        assert text in clear and text not in sealed
    assert sealed[:2] == bytes([VERSION, FLAG_SIGNED])
    envelope = decode_envelope(Keyring([OLD]), sealed, stream=False, max_size=1400)
    assert envelope.sender == "sender-secret" and envelope.messages == (message,)


def test_every_packet_has_its_own_nonce() -> None:
    peer = Peer(keyring=Keyring([OLD]))
    peer.counter = 5
    first = peer.packet(Ping(1, "me"))
    peer.counter = 5  # the same bytes sealed twice still differ on the wire
    assert peer.packet(Ping(1, "me")) != first


def test_rotation_keeps_every_step_talking_and_a_removed_key_is_refused() -> None:
    node = lone_node([OLD])
    sender = Keyring([OLD])
    peer = Peer(keyring=sender)

    def delivered() -> bool:
        before = node.stats["bad_mac"]
        node.handle_datagram(SRC, peer.packet(Ping(1, "me")), 0.0)
        return node.stats["bad_mac"] == before

    assert delivered()
    node.keyring.install(NEW)  # step 1 here; the sender has not installed it yet
    assert delivered()
    sender.install(NEW)
    sender.use(NEW)  # step 2 on the sender: seals with NEW, which the node accepts
    assert delivered()
    node.keyring.use(NEW)
    node.keyring.remove(OLD)  # step 3 on the node
    assert delivered()
    # A peer still sealing with the removed key is refused and counted.
    stale = Peer("n8", keyring=Keyring([OLD]))
    node.handle_datagram(SRC, stale.packet(Ping(2, "me")), 0.0)
    assert node.stats["bad_mac"] == 1 and node.member("n8") is None


def test_push_pull_payloads_are_sealed_too_and_bound_to_their_channel() -> None:
    ring = Keyring([OLD])
    payload = encode_envelope(ring, "n1", 1, 1, [encode_message(Ping(1, "x"))], stream=True)
    assert payload[1] == FLAG_SIGNED | FLAG_STREAM
    assert decode_envelope(ring, payload, stream=True, max_size=65536).sender == "n1"
    # The flags are authenticated: moving a payload to the UDP channel breaks the seal.
    moved = bytes([payload[0], FLAG_SIGNED]) + payload[2:]
    try:
        decode_envelope(ring, moved, stream=False, max_size=65536)
    except DecodeError as exc:
        assert exc.reason == "bad_mac"
    else:
        raise AssertionError("a payload moved to another channel was accepted")


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused(position: int, bit: int) -> None:
    ring = Keyring([OLD])
    packet = bytearray(Peer(keyring=ring).packet(Ping(9, "me")))
    packet[position % len(packet)] ^= 1 << bit
    try:
        decode_envelope(ring, bytes(packet), stream=False, max_size=1400)
    except DecodeError as exc:
        assert exc.reason in {"bad_mac", "bad_version", "bad_flags", "wrong_channel", "unsigned"}
    else:
        raise AssertionError("an altered packet was accepted")
