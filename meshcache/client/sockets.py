"""Socket details every front end shares: how much to read at once, and the idle check."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshcache.client.core import ClientProtocol

# Bytes asked of each recv. 256 KiB cost an mmap/mremap/munmap per request (malloc serves blocks
# that large with mmap); 64 KiB comes from the heap. recv_into a preallocated buffer measured no
# faster than this (FrameReader copies what it is fed either way) and would pin 64 KiB per
# pooled connection.
RECV_SIZE = 64 * 1024


def readable_check(sock: socket.socket | int) -> Callable[[], bool]:
    """A function telling, without blocking, whether ``sock`` has something to read (or EOF).

    An idle pooled connection has nothing to read: if it is readable, the node closed it (or
    sent something unasked) and it must not be lent again. A poll object registered once costs
    one syscall per check; select.select (used where poll is missing) also builds its fd sets
    every time. The function raises OSError or ValueError when the socket is closed.
    """
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return lambda: bool(poller.poll(0))
    return lambda: bool(select.select([sock], [], [], 0)[0])


class IdleChecked:
    """The ``reusable`` check of a pooled connection on a socket of its own (the sync and trio
    front ends). A subclass sets ``protocol`` and ``_idle_check`` (:func:`readable_check` of
    its socket) and names both in its ``__slots__``."""

    __slots__ = ()

    protocol: ClientProtocol
    _idle_check: Callable[[], bool]

    @property
    def reusable(self) -> bool:
        """False when the node closed the idle connection (or sent something unasked), or the
        last exchange left a reply unread or the protocol broken."""
        if self.protocol.error is not None or self.protocol.pending:
            return False
        try:
            return not self._idle_check()
        except (OSError, ValueError):
            return False


__all__ = ["RECV_SIZE", "IdleChecked", "readable_check"]
