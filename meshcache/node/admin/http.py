"""The admin port: ``GET /metrics`` (Prometheus text format) and ``GET /health`` (JSON).

A deliberately small HTTP/1.1 responder: one request per connection, GET and HEAD only, a bounded
request head, a deadline for slow clients, and at most :data:`MAX_CONNECTIONS` connections at
once (so idle connections cannot take the file descriptors the data ports need): one beyond
that is answered ``503`` and closed at once. Anything else gets a 4xx and the connection closes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

MAX_HEAD = 8 * 1024
REQUEST_DEADLINE = 10.0
#: Admin connections served at once; more are refused (a scraper and a few probes need few).
MAX_CONNECTIONS = 64
#: How long a refused connection may take to be told so before it is closed.
REFUSAL_DEADLINE = 0.5

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class AdminHandler:
    """Answers admin HTTP requests from a node's registry and health callback."""

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Callable[[], dict[str, Any]],
        *,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._registry = registry
        self._health = health
        self.max_connections = max_connections
        #: Connections being served now, and those refused (over ``max_connections``) so far.
        self.connections = 0
        self.refused = 0

    def respond(self, head: bytes) -> tuple[int, str, bytes]:
        """Status, content type and body for one request head (sans-I/O)."""
        try:
            request_line = head.split(b"\r\n", 1)[0].decode("ascii")
            method, target, version = request_line.split(" ")
        except ValueError:
            return 400, "text/plain", b"bad request\n"
        if not version.startswith("HTTP/1."):
            return 400, "text/plain", b"bad request\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET and HEAD\n"
        path = target.split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/health":
            body = json.dumps(self._health(), sort_keys=True).encode() + b"\n"
            return 200, "application/json", body
        return 404, "text/plain", b"not found: try /metrics or /health\n"

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one connection: one request within :data:`REQUEST_DEADLINE`, or ``503`` at
        once when ``max_connections`` are being served already. Closes ``stream``."""
        if self.connections >= self.max_connections:
            self.refused += 1
            with trio.move_on_after(REFUSAL_DEADLINE):
                await _write(stream, 503, "text/plain", b"too many admin connections\n", True)
            await trio.aclose_forcefully(stream)
            return
        self.connections += 1
        try:
            await self._serve(stream)
        finally:
            self.connections -= 1

    async def _serve(self, stream: trio.abc.Stream) -> None:
        try:
            async with stream:
                with trio.move_on_after(REQUEST_DEADLINE):
                    head = b""
                    while b"\r\n\r\n" not in head:
                        if len(head) > MAX_HEAD:
                            await _write(
                                stream, 400, "text/plain", b"request head too large\n", False
                            )
                            return
                        chunk = await stream.receive_some(4096)
                        if not chunk:
                            return
                        head += chunk
                    status, ctype, body = self.respond(head)
                    await _write(stream, status, ctype, body, not head.startswith(b"HEAD "))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client reset the connection (a port scan, a TCP health check)


async def _write(
    stream: trio.abc.Stream, status: int, ctype: str, body: bytes, with_body: bool
) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(head + body if with_body else head)
