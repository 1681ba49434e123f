"""The contract between a sans-I/O protocol endpoint and whatever moves its bytes.

An :class:`Endpoint` never touches a socket, a clock or a random source. The driver
(``meshcache.gossip.transport`` for real sockets, ``meshcache.testing.simnet`` for the
simulator) feeds it received bytes and the current time, calls :meth:`Endpoint.tick` no later
than :meth:`Endpoint.next_deadline`, and sends whatever :meth:`Endpoint.take_outgoing` returns.

Every ``now`` passed to one endpoint must come from one monotonic clock (seconds, float).
Addresses are the project's one :class:`~meshcache.wire.address.Address` ``(host, port)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeAlias

from meshcache.wire.address import Address


@dataclass(frozen=True, slots=True)
class Datagram:
    """One unreliable, unordered packet (UDP) to ``dst``."""

    dst: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """A reliable request/response exchange (TCP push/pull) with ``dst``.

    The driver delivers ``data`` to the peer's :meth:`Endpoint.handle_stream_request` and hands
    its answer (or ``None`` on failure) back through :meth:`Endpoint.handle_stream_reply` with
    the same ``tag``.
    """

    dst: Address
    data: bytes
    tag: int


Outgoing: TypeAlias = Datagram | StreamRequest


class Endpoint(Protocol):
    """A sans-I/O network endpoint driven by a transport or a simulator."""

    def handle_datagram(self, src: Address, data: bytes, now: float) -> None:
        """Process one received packet. Never raises on bad input."""
        ...

    def handle_stream_request(self, src: Address, data: bytes, now: float) -> bytes | None:
        """Process one stream request; return the reply payload (``None`` = no reply)."""
        ...

    def handle_stream_reply(self, tag: int, data: bytes | None, now: float) -> None:
        """Deliver the reply to the request sent with ``tag``; ``None`` = the exchange failed."""
        ...

    def tick(self, now: float) -> None:
        """Run every timer due at ``now``."""
        ...

    def next_deadline(self) -> float:
        """The earliest time at which :meth:`tick` has work to do."""
        ...

    def take_outgoing(self) -> list[Outgoing]:
        """Drain and return everything the endpoint wants sent, in order."""
        ...


__all__ = ["Address", "Datagram", "Endpoint", "Outgoing", "StreamRequest"]
