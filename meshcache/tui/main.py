"""``meshcache top``: check the arguments and the node, then run the console.

Before the screen is taken over, the node named by ``--host``/``--port`` is asked for INFO
once, so a wrong address, a port that is not a meshcache node, or a node that does not answer
ends with one line on stderr and exit code 3 (the CLI's "cannot reach the node"), not with a
screen that never fills. Once the console runs, a node or the whole cluster going away is
shown on screen and polled until it is back.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from meshcache.errors import ConfigError, MeshcacheError
from meshcache.settings import parse_duration, parse_port
from meshcache.tui.source import describe_failure
from meshcache.wire.address import format_address, parse_address

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

#: The shortest refresh interval accepted (faster polling would load the nodes for nothing).
MIN_REFRESH = 0.1


def preflight(
    entry: str, timeout: float, credentials: Mapping[str, Any] | None = None
) -> str | None:
    """None when ``entry`` answers INFO like a meshcache node; otherwise why not, one line.
    ``credentials``: the client's ``username`` and ``password``, if any."""
    credentials = credentials or {}
    from meshcache.client.sync import Client

    address = parse_address(entry)
    try:
        # A plain connect first: its error names the OS's reason (refused, no route, ...).
        socket.create_connection(address, timeout=timeout).close()
    except OSError as exc:
        return describe_failure(entry, exc, timeout)
    try:
        with Client(
            entry, smart=False, timeout=timeout, connect_timeout=timeout, **credentials
        ) as client:
            info = client.info()
    except (MeshcacheError, OSError) as exc:
        return describe_failure(entry, exc, timeout)
    if not isinstance(info, dict) or "node_id" not in info:
        return f"{entry} answered INFO without a node id: not a meshcache node"
    return None


def run(
    *,
    host: str,
    port: str,
    refresh: str = "1",
    read_only: bool = False,
    timeout: str = "3",
    stderr: TextIO | None = None,
    username: str | None = None,
    password: str | None = None,
) -> int:
    """Run ``meshcache top``; the process exit code. With ``username`` and ``password`` every
    connection to every node authenticates as that user (docs/security.md).

    Raises:
        ConfigError: a flag does not parse (the CLI prints it and exits 2).
    """
    err = stderr or sys.stderr
    number = parse_port(port, "--port")
    if number == 0:
        raise ConfigError("--port: 0 is not a port a node listens on")
    host = host.strip()
    if not host:
        raise ConfigError("--host: must not be empty")
    interval = parse_duration(refresh, "--refresh")
    if interval < MIN_REFRESH:
        raise ConfigError(f"--refresh: at least {MIN_REFRESH:g} s")
    wait = parse_duration(timeout, "--timeout")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        err.write("meshcache top: needs a terminal (stdin and stdout must be a TTY)\n")
        return EXIT_USAGE
    entry = format_address(host, number)
    credentials = {} if username is None else {"username": username, "password": password}
    problem = preflight(entry, wait, credentials)
    if problem is not None:
        err.write(f"meshcache top: {problem}\n")
        return EXIT_UNREACHABLE

    from meshcache.tui.app import TopApp
    from meshcache.tui.source import LiveSource

    app = TopApp(
        LiveSource(entry, timeout=wait, budget=min(0.5, interval / 2), credentials=credentials),
        refresh=interval,
        read_only=read_only,
    )
    app.run()
    return app.return_code or EXIT_OK


__all__ = ["preflight", "run"]
