"""Sans-I/O SWIM + Lifeguard membership (see docs/gossip.md).

The state machine (:class:`SwimNode`) never does I/O; ``transport.run_endpoint`` drives it over
real trio sockets and ``meshcache.testing.simnet`` over a simulated network.
"""

from __future__ import annotations

from meshcache.gossip.codec import DecodeError
from meshcache.gossip.config import GossipConfig
from meshcache.gossip.endpoint import Address, Datagram, Endpoint, Outgoing, StreamRequest
from meshcache.gossip.keyring import Keyring
from meshcache.gossip.member import EventKind, Member, MemberEvent, MemberState, NodeMeta
from meshcache.gossip.swim import SwimNode

__all__ = [
    "Address",
    "Datagram",
    "DecodeError",
    "Endpoint",
    "EventKind",
    "GossipConfig",
    "Keyring",
    "Member",
    "MemberEvent",
    "MemberState",
    "NodeMeta",
    "Outgoing",
    "StreamRequest",
    "SwimNode",
]
