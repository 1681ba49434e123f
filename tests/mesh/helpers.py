"""Shared by the multi-process mesh tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from meshcache.wire.frame import FrameReader, decode_response, encode_request


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


class Direct:
    """A blocking connection to exactly one node (no routing, no retries), for checks.

    ``local_get`` reads the node's own store: a ``FWD`` of ``GET`` is executed where it lands.
    """

    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.reader = FrameReader()
        self.rid = 0

    def call(self, op: str, args: list[Any], namespace: str = "default") -> Any:
        self.rid += 1
        self.sock.sendall(encode_request(self.rid, op, namespace, args))
        while (body := self.reader.next_body()) is None:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("node closed the connection")
            self.reader.feed(data)
        return decode_response(body).result()

    def local_get(self, key: bytes, namespace: str = "default") -> bytes | None:
        value: bytes | None = self.call("FWD", ["GET", [key]], namespace)
        return value

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Direct:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
