"""Shared by the RESP tests: a real redis-server to compare with, raw RESP connections, and a
meshcache node with its RESP port, all on real sockets. Nothing sleeps for a fixed time: every
wait polls for its condition until a deadline."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meshcache.resp.decoder import ValueReader

HOST = "127.0.0.1"


def command(*args: bytes | str | int) -> bytes:
    """One command as a multibulk."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class RawConn:
    """A blocking RESP connection that returns each reply's exact bytes."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.reader = ValueReader()
        self.timeout = timeout

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """The next reply's bytes; raises ConnectionError if the server closed first."""
        deadline = time.monotonic() + self.timeout
        while (raw := self.reader.next_raw()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("no reply in time")
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self.reader.feed(data)
        return raw

    def call(self, *args: bytes | str | int) -> bytes:
        self.send(command(*args))
        return self.reply()

    def closed_by_server(self) -> bool:
        """True once the server closed the connection (waits up to the timeout)."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return True
            if not data:
                return True
            self.reader.feed(data)
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_ping(port: int, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            conn = RawConn(port, timeout=1.0)
            try:
                if conn.call("PING") == b"+PONG\r\n":
                    return
            finally:
                conn.close()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing answers PING on port {port}")
        time.sleep(0.02)  # poll interval between connection attempts, not a wait for a state


@contextmanager
def redis_server(directory: Path) -> Iterator[int]:
    """A redis-server on a free port (the reference the RESP port is compared with)."""
    binary = shutil.which("redis-server")
    assert binary is not None
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_ping(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
