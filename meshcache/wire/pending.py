"""A reply that waits: how a node's ports pipeline requests whose answers are not ready.

Shared by the msgpack data port (:mod:`meshcache.node.net.dispatch`) and the RESP door
(:mod:`meshcache.resp.session`), so both follow one ordering rule.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any


class Pending:
    """A request whose answer waits on a node op (a forward, a quorum's acks, a Raft commit),
    on either door of a node: the data port (msgpack frames) or the RESP port.

    ``answer`` produces the complete reply bytes and never raises for a failed op (a
    :class:`CommandError` or a node bug becomes an error reply); it must be awaited exactly once.

    ``fans_out`` is True for ops that start work on other nodes after they first wait (a
    many-key split, ``FLUSH`` on every node, a config change): the caller must run nothing
    after them on the same connection until ``answer`` is done, or later requests could
    overtake them. Otherwise, by the time ``answer`` first suspends, the op has done its local
    part and handed its one peer request (if any) to the peer connection, which sends in order.

    ``key`` is ``(namespace, key)`` for a single-key op: a later op of the same key must not
    start before this one's first suspension (so a forwarded SET reaches the owner before the
    GET behind it). None when nothing has to wait for it: a fan-out op (which holds everything
    anyway) or ``FWD``, which this node coordinates itself and never forwards again, so its
    effect is applied before ``answer`` is even returned.
    """

    __slots__ = ("answer", "fans_out", "key")

    def __init__(
        self,
        answer: Coroutine[Any, Any, bytes],
        *,
        fans_out: bool = False,
        key: tuple[str, bytes] | None = None,
    ) -> None:
        self.answer = answer
        self.fans_out = fans_out
        self.key = key


__all__ = ["Pending"]
