"""Rotating certificates by editing the paths in a node's TOML file and sending SIGHUP, on a
real node process."""

from __future__ import annotations

import signal
import socket
import ssl
from pathlib import Path

import pytest

from meshcache.security import tls
from meshcache.testing.mesh import wait_for
from meshcache.testing.nodes import NodeProcess
from meshcache.wire.frame import FrameReader, decode_response, encode_request
from tests.security.tlspki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write_config(path: Path, cert: tls.Issued, ca: Path) -> None:
    path.write_text(
        "[node]\n"
        f'tls_cert_file = "{cert.cert}"\n'
        f'tls_key_file = "{cert.key}"\n'
        f'tls_ca_file = "{ca}"\n'
        "tls_client_auth = true\n"
    )


def served(node: NodeProcess, client: tls.Issued, ca: Path) -> str | None:
    """The common name of the certificate the node serves to ``client`` (trusting ``ca``) once
    it answered a PING; None when the node refused the client's certificate."""
    ctx = tls.client_context(ca, client.cert, client.key)
    try:
        raw = socket.create_connection(tuple(node.data_address), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(encode_request(1, "PING", "default", []))
            reader = FrameReader()
            while (body := reader.next_body()) is None:
                data = sock.recv(65536)
                if not data:
                    return None
                reader.feed(data)
            assert decode_response(body).value == "PONG"
            peer = sock.getpeercert()
    except (ssl.SSLError, ConnectionError):
        return None
    assert peer is not None
    return str(dict(x[0] for x in peer["subject"])["commonName"])


def logged(node: NodeProcess, event: str) -> int:
    return node.log_file.read_text().count(f'"{event}"')


def test_sighup_takes_new_paths_from_the_config_file(tmp_path: Path, pki: Pki) -> None:
    config = tmp_path / "node.toml"
    write_config(config, pki.node, pki.ca)
    with NodeProcess(tmp_path / "n", "--config", str(config)) as node:
        assert served(node, pki.client, pki.ca) == "node1"
        assert served(node, pki.stranger_client, pki.ca) is None
        # The other CA's node certificate, and clients of that CA only.
        write_config(config, pki.stranger_node, pki.stranger_ca)
        node.signal(signal.SIGHUP)
        wait_for(lambda: logged(node, "tls_reloaded") == 1, 20, "tls_reloaded")
        assert served(node, pki.stranger_client, pki.stranger_ca) == "intruder"
        assert served(node, pki.client, pki.stranger_ca) is None
        # A path that does not load changes nothing.
        write_config(config, pki.node, tmp_path / "missing-ca.pem")
        node.signal(signal.SIGHUP)
        wait_for(lambda: logged(node, "tls_not_reloaded") == 1, 20, "tls_not_reloaded")
        assert served(node, pki.stranger_client, pki.stranger_ca) == "intruder"
