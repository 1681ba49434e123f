"""Craft gossip packets the way a (possibly hostile) peer would."""

from __future__ import annotations

import random

from meshcache.gossip import GossipConfig, Keyring, NodeMeta, SwimNode
from meshcache.gossip.codec import Message, encode_envelope, encode_message

SRC = ("127.0.0.1", 7999)


class Peer:
    """A fake sender with its own envelope counter."""

    def __init__(self, name: str = "n9", keyring: Keyring | None = None, boot: int = 1) -> None:
        self.name = name
        self.keyring = keyring or Keyring()
        self.boot = boot
        self.counter = 0

    def packet(self, *msgs: Message, stream: bool = False) -> bytes:
        self.counter += 1
        return encode_envelope(
            self.keyring,
            self.name,
            self.boot,
            self.counter,
            [encode_message(m) for m in msgs],
            stream=stream,
        )


def lone_node(keys: list[bytes] | None = None, name: str = "me") -> SwimNode:
    return SwimNode(
        GossipConfig.local(),
        name,
        ("127.0.0.1", 7000),
        NodeMeta(),
        keyring=Keyring(keys or []),
        rng=random.Random(7),
        now=0.0,
    )
