"""TLS for meshcache: development certificates, and the node's server and peer contexts.

``make_ca``, ``make_node_cert`` and ``make_client_cert`` write a small development PKI with
``cryptography`` (what ``meshcache certs`` runs): one CA for the cluster, a certificate per node
(usable as server and as client, since a node is both to its peers) and per client. Private keys
are written with mode 0600 and never overwritten unless asked.

:class:`NodeTls` holds the contexts a node uses — the server context of its data, RESP and
(optionally) admin ports, and the client context its peer connections present their certificate
with — built from files and rebuilt on SIGHUP; a rebuild that fails keeps the contexts in use.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU
from cryptography.x509.oid import NameOID

from meshcache.client.tlsconf import client_context
from meshcache.errors import ConfigError

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
DEFAULT_DAYS = 825  # what browsers accept for a leaf; a development CA lives 10 years
CA_DAYS = 3650
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
#: The first byte of every TLS connection: a handshake record (ContentType 22).
TLS_HANDSHAKE = 0x16


# --- development certificates ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issued:
    """Where a certificate and its key were written."""

    cert: Path
    key: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_private(path: Path, data: bytes, *, force: bool) -> None:
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _write_public(path: Path, data: bytes, *, force: bool) -> None:
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _write_issued(issued: Issued, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    """Write a key (owner-only) and its certificate over whatever is there."""
    _write_private(
        issued.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        force=True,
    )
    _write_public(issued.cert, cert.public_bytes(serialization.Encoding.PEM), force=True)


def make_ca(
    directory: Path,
    *,
    name: str = "meshcache development CA",
    days: int = CA_DAYS,
    force: bool = False,
) -> Issued:
    """Write a new CA (``ca.pem``, ``ca.key``) into ``directory``."""
    if days < 1:
        raise ConfigError("--days: a certificate must be valid for at least one day")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    issued = Issued(directory / CA_CERT, directory / CA_KEY)
    for path in (issued.cert, issued.key):
        if path.exists() and not force:
            raise ConfigError(f"{path} exists; pass --force to replace the CA")
    _write_issued(issued, key, cert)
    return issued


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if not cert_path.exists() or not key_path.exists():
        raise ConfigError(
            f"no CA in {directory} ({CA_CERT} and {CA_KEY}): run "
            f"'meshcache certs init --dir {directory}' first"
        )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read the CA in {directory}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_path}: not a key 'meshcache certs init' made (EC P-256)")
    return cert, key


def _san_entries(names: Iterable[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for raw in names:
        name = raw.strip().strip("[]")
        if not name:
            raise ConfigError("--host: an empty name")
        if name in seen:
            continue
        seen.add(name)
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if any(c.isspace() or c in "/:@" for c in name):
                raise ConfigError(
                    f"--host: {raw!r} is neither an IP address nor a DNS name"
                ) from None
            entries.append(x509.DNSName(name))
    return entries


def _issue(
    directory: Path,
    name: str,
    *,
    sans: Sequence[str],
    server: bool,
    days: int,
    force: bool,
    out_dir: Path | None,
) -> Issued:
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ConfigError(f"{name!r} is not a usable certificate name (it names the files)")
    if days < 1:
        raise ConfigError("--days: a certificate must be valid for at least one day")
    ca_cert, ca_key = _load_ca(directory)
    target = out_dir or directory
    issued = Issued(target / f"{name}.pem", target / f"{name}.key")
    for path in (issued.cert, issued.key):
        if path.exists() and not force:
            raise ConfigError(f"{path} exists; pass --force to replace it")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    usages = [EKU.SERVER_AUTH, EKU.CLIENT_AUTH] if server else [EKU.CLIENT_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_san_entries(sans)), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_issued(issued, key, cert)
    return issued


def make_node_cert(
    directory: Path,
    name: str,
    *,
    hosts: Sequence[str] = (),
    days: int = DEFAULT_DAYS,
    force: bool = False,
    out_dir: Path | None = None,
) -> Issued:
    """Write ``NAME.pem``/``NAME.key``: a node certificate signed by the CA in ``directory``,
    for server and client use, whose names are ``hosts`` plus 127.0.0.1, ::1 and localhost."""
    return _issue(
        directory,
        name,
        sans=[*hosts, *LOOPBACK_NAMES],
        server=True,
        days=days,
        force=force,
        out_dir=out_dir,
    )


def make_client_cert(
    directory: Path,
    name: str,
    *,
    days: int = DEFAULT_DAYS,
    force: bool = False,
    out_dir: Path | None = None,
) -> Issued:
    """Write ``NAME.pem``/``NAME.key``: a client certificate (CN ``name``) signed by the CA."""
    return _issue(directory, name, sans=(), server=False, days=days, force=force, out_dir=out_dir)


# --- contexts ------------------------------------------------------------------------------------


def _load(what: str, action: object) -> None:
    try:
        action()  # type: ignore[operator]
    except FileNotFoundError as exc:
        raise ConfigError(f"{what}: {exc.filename} does not exist") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{what}: {exc}") from None


def server_context(
    cert_file: Path, key_file: Path, ca_file: Path | None, *, require_client_cert: bool
) -> ssl.SSLContext:
    """The context a node's ports accept TLS with.

    With a CA file a client certificate is asked for and, when presented, must be signed by the
    CA (so a node with a certificate of another CA is refused); ``require_client_cert`` makes it
    required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.3 session tickets: they arrive after the handshake, unasked, and a client's
    # pooled idle connection that has something to read is taken for one the node closed.
    ctx.num_tickets = 0
    _load("tls_cert_file/tls_key_file", lambda: ctx.load_cert_chain(cert_file, key_file))
    if ca_file is not None:
        _load("tls_ca_file", lambda: ctx.load_verify_locations(cafile=str(ca_file)))
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ConfigError(
            "tls_client_auth needs tls_ca_file: the CA client certificates are checked against"
        )
    return ctx


def peer_context(cert_file: Path, key_file: Path, ca_file: Path | None) -> ssl.SSLContext:
    """The context a node connects to its peers with: it presents its own certificate and,
    with the cluster's CA, accepts only a peer whose certificate that CA signed (peers are
    dialled by address and the CA is the cluster's own, so names are not checked). Without a
    CA the system's CAs verify the peer, whose certificate must then name the address dialled."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load("tls_cert_file/tls_key_file", lambda: ctx.load_cert_chain(cert_file, key_file))
    if ca_file is None:
        ctx.check_hostname = True
        ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        _load("tls_ca_file", lambda: ctx.load_verify_locations(cafile=str(ca_file)))
    return ctx


class NodeTls:
    """A node's TLS contexts, read from its settings' files and rebuilt by :meth:`reload`.

    ``server`` serves the data and RESP ports (and the admin port with ``tls_admin``); ``peer``
    is what connections to other nodes present and verify peers with. Ports read the
    attributes at every accept, so a reload applies to the connections after it; open
    connections keep the session they have."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        ca_file: Path | None,
        *,
        require_client_cert: bool,
        admin: bool,
    ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.ca_file = ca_file
        self.require_client_cert = require_client_cert
        self.admin = admin
        self.server, self.peer = self._build(cert_file, key_file, ca_file)

    def _build(
        self, cert_file: Path, key_file: Path, ca_file: Path | None
    ) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        server = server_context(
            cert_file, key_file, ca_file, require_client_cert=self.require_client_cert
        )
        return server, peer_context(cert_file, key_file, ca_file)

    def reload(self, files: tuple[Path, Path, Path | None] | None = None) -> None:
        """Read the certificate, key and CA files again: ``files`` (certificate, key, CA or
        None), the paths of the settings read again, or the same paths when None. On any error
        raise :class:`ConfigError` and keep the old contexts and paths."""
        cert_file, key_file, ca_file = (
            (self.cert_file, self.key_file, self.ca_file) if files is None else files
        )
        self.server, self.peer = self._build(cert_file, key_file, ca_file)
        self.cert_file, self.key_file, self.ca_file = cert_file, key_file, ca_file


__all__ = [
    "CA_CERT",
    "CA_KEY",
    "TLS_HANDSHAKE",
    "Issued",
    "NodeTls",
    "client_context",
    "make_ca",
    "make_client_cert",
    "make_node_cert",
    "peer_context",
    "server_context",
]
