"""Free ports for tests and tools, asked of the kernel.

A port found here was free when it was checked: the socket that found it is closed again, so
another process may take it before the caller binds it. Prefer port 0 wherever the program
under test reports the port it bound (nodes do, in their ready file); use these for what must
be known in advance, such as a Raft peer list.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def free_port_pairs(n: int, host: str = LOOPBACK) -> list[int]:
    """``n`` ports ``p`` with ``p`` and ``p + 1`` free a moment ago (a data port and the Raft
    port a node derives from it), no two pairs overlapping."""
    found: list[int] = []
    while len(found) < n:
        with socket.socket() as first:
            first.bind((host, 0))
            port: int = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind((host, port + 1))
                except (OSError, OverflowError):  # taken, or past port 65535
                    continue
        if not {port - 1, port, port + 1} & set(found):
            found.append(port)
    return found


__all__ = ["LOOPBACK", "free_port", "free_port_pairs"]
