"""Shared by the multi-process mesh tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; return the seconds it took, or fail after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def free_port_pairs(n: int) -> list[int]:
    """``n`` ports p with p and p + 1 free now (data port, Raft port)."""
    found: list[int] = []
    while len(found) < n:
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        if port not in found and port + 1 not in found and port - 1 not in found:
            found.append(port)
    return found
