"""Gossip sealed with AES-GCM under the cluster keyring: unreadable on the wire, rotation without
a refused packet, and packets under a removed key refused and counted — in the state machine,
and on a real node whose key file is rotated with SIGHUP."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import urllib.request
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.errors import CommandError
from meshcache.gossip import Keyring, NodeMeta
from meshcache.gossip.codec import (
    FLAG_SIGNED,
    FLAG_STREAM,
    VERSION,
    Ack,
    Alive,
    DecodeError,
    Ping,
    decode_envelope,
    encode_envelope,
    encode_message,
)
from meshcache.security import peer
from meshcache.testing.mesh import Direct, wait_for
from meshcache.testing.nodes import NodeProcess
from meshcache.wire.address import parse_address
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


# --- on a real node ----------------------------------------------------------------------------


def _write_keys(path: Path, *keys: bytes) -> None:
    path.write_text("".join(base64.b64encode(k).decode() + "\n" for k in keys))


def _gossip_stat(node: NodeProcess, what: str) -> float:
    host, port = node.admin_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf'^meshcache_gossip_total\{{what="{what}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def _reloads(node: NodeProcess) -> int:
    return node.log_file.read_text(errors="replace").count("cluster_keys_reloaded")


def _token_answer(node: NodeProcess, keyring: Keyring) -> str:
    args = peer.auth_args(keyring)
    assert args is not None
    with Direct(node.data_address) as conn:
        try:
            return str(conn.call("AUTH", args))
        except CommandError as exc:
            return str(exc.code)


def test_a_node_rotates_its_key_on_sighup_and_refuses_a_removed_one(tmp_path: Path) -> None:
    """The three steps of a rotation on a live node: gossip under the old key, then the new one,
    is answered at each step; once the old key is removed, a packet sealed with it is refused
    and counted in /metrics, and so is a peer token made under it."""
    key_file = tmp_path / "cluster.key"
    _write_keys(key_file, OLD)
    with NodeProcess(tmp_path / "n", "--cluster-key-file", str(key_file)) as node:
        ready = next(
            event
            for line in node.log_file.read_text().splitlines()
            if line.startswith("{") and (event := json.loads(line)).get("event") == "node_ready"
        )
        gossip = tuple(parse_address(ready["gossip"], default_port=None))
        both = Keyring([OLD, NEW])
        fake = Peer("fake-peer", keyring=Keyring([OLD]))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            udp.settimeout(10)

            def answered(seq: int) -> bool:
                """Send a Ping sealed with the fake peer's key; True once its Ack (sealed with
                the node's primary key) comes back. An Ack of another Ping fails the test."""
                udp.sendto(fake.packet(Ping(seq, node.node_id)), gossip)
                while True:
                    data = udp.recv(65536)
                    envelope = decode_envelope(both, data, stream=False, max_size=65536)
                    acks = [m.seq for m in envelope.messages if isinstance(m, Ack)]
                    assert acks in ([], [seq]), f"acks {acks} while waiting for {seq}"
                    if acks:
                        return True

            def step(*keys: bytes) -> None:
                done = _reloads(node)
                _write_keys(key_file, *keys)
                node.signal(signal.SIGHUP)
                wait_for(lambda: _reloads(node) > done, 20, "cluster_keys_reloaded in the log")

            assert answered(1)
            step(OLD, NEW)  # 1: the new key installed
            fake.keyring = Keyring([NEW])
            assert answered(2)
            step(NEW, OLD)  # 2: the new key used
            assert answered(3)
            step(NEW)  # 3: the old key removed
            assert answered(4)
            before = _gossip_stat(node, "bad_mac")
            fake.keyring = Keyring([OLD])
            udp.sendto(fake.packet(Ping(5, node.node_id)), gossip)
            wait_for(
                lambda: _gossip_stat(node, "bad_mac") == before + 1,
                20,
                "the packet under the removed key to be counted",
            )
            fake.keyring = Keyring([NEW])
            assert answered(6)  # the first Ack to come is this one's: 5 got none
        assert _token_answer(node, Keyring([NEW])) == "OK"
        assert _token_answer(node, Keyring([OLD])) == "WRONGPASS"
