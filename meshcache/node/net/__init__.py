"""The node's network edge: the data port reactor, frame dispatch, and calls to other nodes.

* :mod:`.reactor` — the one reactor of the client ports (epoll rounds, ordered answers, the
  peer pool's forwards written and answers read in its rounds).
* :mod:`.dataport` — the msgpack codec on it: accepts client and peer connections, reads
  pipelined frames. :mod:`.resp_port` is the RESP codec on the same reactor.
* :mod:`.dispatch` — one frame body in, one response frame out (sans-I/O), routed by the op table.
* :mod:`.peer_pool` — pooled, pipelined connections to other nodes' data ports.
* :mod:`.breakers` — a circuit breaker per peer, fed by the pool: routing passes over a peer in
  a cut before gossip calls it dead.
* :mod:`.oneshot` — one request on a connection of its own (membership and config calls).
"""

from __future__ import annotations

from meshcache.node.net.dataport import DataPort, open_listener
from meshcache.node.net.dispatch import Dispatcher
from meshcache.node.net.oneshot import call_once
from meshcache.node.net.peer_pool import PeerPool, PeerUnreachable
from meshcache.wire.pending import Pending

__all__ = [
    "DataPort",
    "Dispatcher",
    "PeerPool",
    "PeerUnreachable",
    "Pending",
    "call_once",
    "open_listener",
]
