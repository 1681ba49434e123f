"""A development PKI for the TLS tests: the cluster CA, a stranger CA, node and client
certificates, and an expired client certificate."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshcache.security import tls


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    node: tls.Issued
    node2: tls.Issued
    client: tls.Issued
    stranger_ca: Path
    stranger_node: tls.Issued
    stranger_client: tls.Issued
    expired_client: tls.Issued


def expired_client(directory: Path, name: str) -> tls.Issued:
    """A client certificate of the CA in ``directory`` that expired yesterday."""
    ca_cert = x509.load_pem_x509_certificate((directory / tls.CA_CERT).read_bytes())
    ca_key = serialization.load_pem_private_key((directory / tls.CA_KEY).read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    issued = tls.Issued(directory / f"{name}.pem", directory / f"{name}.key")
    issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    issued.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    issued.key.chmod(0o600)
    return issued


def make_pki(root: Path) -> Pki:
    mine, other = root / "cluster", root / "stranger"
    tls.make_ca(mine)
    tls.make_ca(other, name="someone else's CA")
    return Pki(
        dir=mine,
        ca=mine / tls.CA_CERT,
        node=tls.make_node_cert(mine, "node1"),
        node2=tls.make_node_cert(mine, "node2"),
        client=tls.make_client_cert(mine, "app"),
        stranger_ca=other / tls.CA_CERT,
        stranger_node=tls.make_node_cert(other, "intruder"),
        stranger_client=tls.make_client_cert(other, "mallory"),
        expired_client=expired_client(mine, "old"),
    )


def node_args(pki: Pki, *, client_auth: bool = False, ca: bool = True) -> list[str]:
    args = ["--tls-cert-file", str(pki.node.cert), "--tls-key-file", str(pki.node.key)]
    if ca:
        args += ["--tls-ca-file", str(pki.ca)]
    if client_auth:
        args += ["--tls-client-auth", "true"]
    return args
