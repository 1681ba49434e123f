"""One-shot requests from this node to another node's data port.

Used for the rare node-to-node calls of the membership and config planes (push/pull, config
pull, forwarding a config change). Each call opens a connection, sends one request, reads one
response and closes: simple and good enough for traffic measured in calls per second. The data
plane's steady traffic uses pooled, pipelined connections instead (``peer_pool.py``); a
long-running ``HANDOFF`` uses a one-shot call here so it does not hold up a pooled connection.
"""

from __future__ import annotations

import ssl
from typing import Any

import trio

from meshcache.errors import MeshcacheConnectionError, MeshcacheTimeout
from meshcache.gossip.keyring import Keyring
from meshcache.security.peer import auth_args
from meshcache.security.tls import NodeTls
from meshcache.wire.address import Address
from meshcache.wire.frame import DEFAULT_MAX_FRAME, FrameReader, decode_response, encode_request


async def call_once(
    address: Address,
    op: str,
    args: list[Any],
    *,
    namespace: str = "default",
    timeout: float = 5.0,
    max_frame: int = DEFAULT_MAX_FRAME,
    keyring: Keyring | None = None,
    tls: NodeTls | ssl.SSLContext | None = None,
) -> Any:
    """Send one request to ``address`` and return its result.

    With a cluster ``keyring`` (one key at least) the request follows an ``AUTH`` as the cluster
    in the same write (:mod:`meshcache.security.peer`). With ``tls`` (a node's TLS, whose peer
    context presents the node's certificate and accepts only a peer of the cluster's CA, or a
    context of its own) the connection is TLS.

    Raises:
        CommandError: the peer refused the request or the ``AUTH`` (its error code is kept).
        MeshcacheConnectionError: the peer could not be reached or closed the connection.
        MeshcacheTimeout: no answer within ``timeout``.
        RemoteProtocolError: the peer answered something that is not a response.
    """
    host, port = address
    try:
        with trio.fail_after(timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
            context = tls.peer if isinstance(tls, NodeTls) else tls
            if context is not None:
                stream = await tls_handshake(stream, context, host)
            async with stream:
                auth = auth_args(keyring)
                frame = encode_request(2, op, namespace, args)
                if auth is not None:
                    frame = encode_request(1, "AUTH", namespace, auth) + frame
                await stream.send_all(frame)
                reader = FrameReader(max_frame)
                bodies: list[bytes] = []
                while len(bodies) < (1 if auth is None else 2):
                    body = reader.next_body()
                    if body is not None:
                        bodies.append(body)
                        continue
                    data = await stream.receive_some(65536)
                    if not data:
                        raise MeshcacheConnectionError(f"{host}:{port} closed the connection")
                    reader.feed(data)
    except trio.TooSlowError:
        raise MeshcacheTimeout(f"{op} to {host}:{port}: no answer in {timeout}s") from None
    except (OSError, trio.BrokenResourceError) as exc:
        raise MeshcacheConnectionError(f"{op} to {host}:{port}: {exc}") from None
    if auth is not None:
        decode_response(bodies[0]).result()  # a refused AUTH says why, not the NOAUTH after it
    return decode_response(bodies[-1]).result()


async def tls_handshake(
    tcp: trio.SocketStream | trio.abc.Stream, context: ssl.SSLContext, host: str
) -> trio.SSLStream[trio.abc.Stream]:
    """Wrap ``tcp`` in TLS and finish the handshake; a refusal raises ``OSError`` naming why
    (the peer's certificate is not of the cluster's CA, or the peer refused ours)."""
    stream = trio.SSLStream(tcp, context, server_hostname=host)
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(tcp)
        cause = exc.__cause__
        detail = getattr(cause, "verify_message", None) or getattr(cause, "reason", None)
        raise OSError(f"TLS handshake failed: {detail or cause or exc}") from None
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return stream
