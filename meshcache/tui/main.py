"""``meshcache top``: check the arguments and the node, then run the console.

Before the screen is taken over, the node named by ``--host``/``--port`` (or a
``meshcache://`` / ``meshcaches://`` URL) is asked for INFO once, so a wrong address, a port
that is not a meshcache node, a TLS port asked without TLS, or a node that does not answer ends
with one line on stderr and exit code 3 (the CLI's "cannot reach the node"), not with a screen
that never fills. Once the console runs, a node or the whole cluster going away is
shown on screen and polled until it is back.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from meshcache.errors import CommandError, ConfigError, ErrorCode, MeshcacheError
from meshcache.settings import parse_duration, parse_port
from meshcache.tui.source import describe_failure
from meshcache.wire.address import format_address, parse_address

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

#: The shortest refresh interval accepted (faster polling would load the nodes for nothing).
MIN_REFRESH = 0.1


def preflight(
    entry: str,
    timeout: float,
    credentials: Mapping[str, Any] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> str | None:
    """None when ``entry`` answers INFO like a meshcache node; otherwise why not, one line.
    ``credentials``: the client's ``username`` and ``password``, if any; ``ssl_context``:
    speak TLS (a TLS port asked in plaintext, or the reverse, is said so)."""
    options: dict[str, Any] = dict(credentials or {})
    if ssl_context is not None:
        options["ssl_context"] = ssl_context
    from meshcache.client.sync import Client

    address = parse_address(entry)
    try:
        # A plain connect first: its error names the OS's reason (refused, no route, ...).
        socket.create_connection(address, timeout=timeout).close()
    except OSError as exc:
        return describe_failure(entry, exc, timeout)
    try:
        with Client(
            entry, smart=False, timeout=timeout, connect_timeout=timeout, **options
        ) as client:
            info = client.info()
    except CommandError as exc:
        if exc.code == ErrorCode.TLS_REQUIRED:
            return f"{entry} speaks TLS: give --tls and --cacert FILE (or a meshcaches:// URL)"
        return describe_failure(entry, exc, timeout)
    except (MeshcacheError, OSError) as exc:
        return describe_failure(entry, exc, timeout)
    if not isinstance(info, dict) or "node_id" not in info:
        return f"{entry} answered INFO without a node id: not a meshcache node"
    return None


#: What a URL may set for ``meshcache top`` (a password never: it would show in ``ps``).
_URL_OPTIONS = frozenset({"addresses", "tls", "ca_file", "cert_file", "key_file"})


def url_target(url: str) -> tuple[str, int, dict[str, Any]]:
    """The host, port and TLS keyword arguments a ``meshcache://`` or ``meshcaches://`` URL
    names for ``meshcache top`` (one node; TLS files as query options).

    Raises:
        ConfigError: not such a URL, several nodes, a password, or an option top does not take.
    """
    from meshcache.client.url import parse_url

    options = parse_url(url)
    if "username" in options:
        raise ConfigError(
            "URL: no user:password@ on the command line: give --user NAME and the password "
            "in $MESHCACHE_PASSWORD (or at the prompt)"
        )
    extra = sorted(set(options) - _URL_OPTIONS)
    if extra:
        raise ConfigError(f"URL: meshcache top does not take {', '.join(extra)} from a URL")
    addresses = options.pop("addresses", None) or [parse_address("127.0.0.1:7400")]
    if len(addresses) != 1:
        raise ConfigError("URL: name one node; top finds the other members itself")
    return addresses[0].host, addresses[0].port, options


def tls_context(tls: Mapping[str, Any] | None) -> ssl.SSLContext | None:
    """The clients' context for ``tls`` (the keyword arguments ``tls``, ``ca_file``,
    ``cert_file``, ``key_file``), or None when they ask for no TLS.

    Raises:
        ConfigError: a file is missing or unusable.
    """
    tls = tls or {}
    files = [tls.get(name) for name in ("ca_file", "cert_file", "key_file")]
    if not tls.get("tls") and not any(files):
        return None
    from meshcache.client.tlsconf import client_context

    ca_file, cert_file, key_file = (None if f is None else os.fspath(f) for f in files)
    return client_context(ca_file, cert_file, key_file)


def run(
    *,
    host: str | None = None,
    port: str | None = None,
    url: str | None = None,
    refresh: str = "1",
    read_only: bool = False,
    timeout: str = "3",
    stderr: TextIO | None = None,
    username: str | None = None,
    password: str | None = None,
    tls: Mapping[str, Any] | None = None,
) -> int:
    """Run ``meshcache top``; the process exit code. With ``username`` and ``password`` every
    connection to every node authenticates as that user (docs/security.md). ``url`` names the
    node instead of ``host`` and ``port`` (``meshcaches://`` for TLS); ``tls`` holds the
    clients' TLS keyword arguments (``tls``, ``ca_file``, ``cert_file``, ``key_file``), which
    add to the URL's.

    Raises:
        ConfigError: a flag does not parse, or a TLS file does not load (the CLI prints it
            and exits 2).
    """
    err = stderr or sys.stderr
    tls_options = dict(tls or {})
    if url is not None:
        if host is not None or port is not None:
            raise ConfigError("give the node as a URL or as --host/--port, not both")
        url_host, url_port, url_tls = url_target(url)
        host, port = url_host, str(url_port)
        tls_options = {**url_tls, **{k: v for k, v in tls_options.items() if v}}
    number = parse_port("7400" if port is None else port, "--port")
    if number == 0:
        raise ConfigError("--port: 0 is not a port a node listens on")
    host = ("127.0.0.1" if host is None else host).strip()
    if not host:
        raise ConfigError("--host: must not be empty")
    interval = parse_duration(refresh, "--refresh")
    if interval < MIN_REFRESH:
        raise ConfigError(f"--refresh: at least {MIN_REFRESH:g} s")
    wait = parse_duration(timeout, "--timeout")
    context = tls_context(tls_options)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        err.write("meshcache top: needs a terminal (stdin and stdout must be a TTY)\n")
        return EXIT_USAGE
    entry = format_address(host, number)
    credentials = {} if username is None else {"username": username, "password": password}
    problem = preflight(entry, wait, credentials, context)
    if problem is not None:
        err.write(f"meshcache top: {problem}\n")
        return EXIT_UNREACHABLE

    from meshcache.tui.app import TopApp
    from meshcache.tui.source import LiveSource

    app = TopApp(
        LiveSource(
            entry,
            timeout=wait,
            budget=min(0.5, interval / 2),
            credentials=credentials,
            ssl_context=context,
        ),
        refresh=interval,
        read_only=read_only,
    )
    app.run()
    return app.return_code or EXIT_OK


__all__ = ["preflight", "run", "tls_context", "url_target"]
