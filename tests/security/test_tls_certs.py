"""`meshcache certs`: a development CA, node and client certificates that Python's ssl accepts
for real handshakes, private keys with mode 0600, and clear refusals."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from meshcache.cli import main
from meshcache.security import tls


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_node_client_write_usable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "pki"
    assert main(["certs", "init", "--dir", str(d)]) == 0
    assert (
        main(["certs", "node", "n1", "--dir", str(d), "--host", "10.1.2.3", "--host", "db.example"])
        == 0
    )
    assert main(["certs", "client", "app", "--dir", str(d)]) == 0
    out = capsys.readouterr().out
    assert "ca.pem" in out and "n1.key" in out and "app.pem" in out
    for key in ("ca.key", "n1.key", "app.key"):
        assert _mode(d / key) == 0o600
    cert = x509.load_pem_x509_certificate((d / "n1.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert ips == {"10.1.2.3", "127.0.0.1", "::1"}
    assert set(sans.get_values_for_type(x509.DNSName)) == {"db.example", "localhost"}
    assert ipaddress.ip_address("::1") in sans.get_values_for_type(x509.IPAddress)


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> str | None:
    """One real handshake over a socket pair; the server's view of the client's CN."""
    a, b = socket.socketpair()
    seen: list[object] = []

    def serve() -> None:
        try:
            with server.wrap_socket(a, server_side=True) as s:
                peer = s.getpeercert()
                seen.append(peer)
                s.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            seen.append(exc)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client.wrap_socket(b, server_hostname=host) as c:
            assert c.recv(2) == b"ok"
    finally:
        t.join(10)
    peer = seen[0]
    if isinstance(peer, dict) and peer:
        return dict(x[0] for x in peer["subject"])["commonName"]
    return None


def test_certificates_handshake_with_hostname_checks_and_client_certs(tmp_path: Path) -> None:
    tls.make_ca(tmp_path)
    node = tls.make_node_cert(tmp_path, "n1")
    app = tls.make_client_cert(tmp_path, "app")
    server = tls.server_context(node.cert, node.key, tmp_path / "ca.pem", require_client_cert=True)
    for host in ("localhost", "127.0.0.1"):
        client = tls.client_context(tmp_path / "ca.pem", app.cert, app.key)
        assert _handshake(server, client, host) == "app"
    peer = tls.peer_context(node.cert, node.key, tmp_path / "ca.pem")
    assert _handshake(server, peer, "anything") == "n1"


def test_refusals_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    assert main(["certs", "node", "n1", "--dir", d]) == 2
    assert "no CA in" in capsys.readouterr().err
    assert main(["certs", "init", "--dir", d]) == 0
    assert main(["certs", "init", "--dir", d]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["certs", "init", "--dir", d, "--force"]) == 0
    assert main(["certs", "node", "--dir", d]) == 2
    assert "NAME" in capsys.readouterr().err
    assert main(["certs", "client", "x", "--dir", d, "--host", "h"]) == 2
    assert main(["certs", "node", "n", "--dir", d, "--host", "a b"]) == 2
    assert "neither an IP" in capsys.readouterr().err
    assert main(["certs", "node", "../evil", "--dir", d]) == 2
    assert main(["certs", "node", "n", "--dir", d, "--days", "0"]) == 2
    (tmp_path / "ca.key").write_text("garbage")
    assert main(["certs", "client", "c", "--dir", d]) == 2
    assert "cannot read the CA" in capsys.readouterr().err


def test_contexts_refuse_missing_or_mismatched_files(tmp_path: Path) -> None:
    tls.make_ca(tmp_path)
    a = tls.make_node_cert(tmp_path, "a")
    b = tls.make_node_cert(tmp_path, "b")
    with pytest.raises(tls.ConfigError, match="does not exist"):
        tls.server_context(tmp_path / "nope.pem", a.key, None, require_client_cert=False)
    with pytest.raises(tls.ConfigError, match="tls_cert_file"):
        tls.server_context(a.cert, b.key, None, require_client_cert=False)
    with pytest.raises(tls.ConfigError, match="needs tls_ca_file"):
        tls.server_context(a.cert, a.key, None, require_client_cert=True)
