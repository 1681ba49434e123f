"""A client's TLS settings: the context its connections are wrapped with, and clear words for
a failed handshake."""

from __future__ import annotations

import os
import ssl

from meshcache.errors import ConfigError

PathLike = str | os.PathLike[str]


def client_context(
    ca_file: PathLike | None = None,
    cert_file: PathLike | None = None,
    key_file: PathLike | None = None,
    *,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """The context a client verifies nodes with: the system's CAs, or only ``ca_file``; a
    client certificate when ``cert_file`` is given (``key_file`` defaults to a key inside it).

    Raises:
        ConfigError: a file is missing or is not what it should be.
    """
    try:
        ctx = ssl.create_default_context(cafile=None if ca_file is None else os.fspath(ca_file))
    except FileNotFoundError:
        raise ConfigError(f"ca_file: {os.fspath(ca_file or '')} does not exist") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"ca_file {os.fspath(ca_file or '')}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    if cert_file is not None:
        try:
            ctx.load_cert_chain(
                os.fspath(cert_file), None if key_file is None else os.fspath(key_file)
            )
        except FileNotFoundError as exc:
            raise ConfigError(f"cert_file/key_file: {exc.filename} does not exist") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cert_file/key_file: {exc}") from None
    elif key_file is not None:
        raise ConfigError("key_file without cert_file")
    return ctx


class TlsHandshakeError(ConnectionError):
    """The TLS handshake with a node failed; the message says why and what to check."""


def handshake_error(address: object, exc: ssl.SSLError) -> TlsHandshakeError:
    reason = (exc.reason or "").upper()
    detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
    if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER_FAILURE" in reason:
        hint = "the port does not speak TLS, or something else answers there"
    elif "PROTOCOL_VERSION" in reason:
        hint = "the node's port does not have TLS enabled: connect without tls"
    elif isinstance(exc, ssl.SSLCertVerificationError):
        hint = "is ca_file the CA that signed the node's certificate, and is it valid?"
    elif "CERTIFICATE_REQUIRED" in reason:
        hint = "the node requires a client certificate: give cert_file and key_file"
    elif "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason or "EXPIRED" in reason:
        hint = "the node refused the client certificate (its CA, or its validity)"
    else:
        hint = "check the node's TLS settings and the client's ca_file"
    return TlsHandshakeError(f"TLS handshake with {address} failed: {detail} ({hint})")


__all__ = ["TlsHandshakeError", "client_context", "handshake_error"]
