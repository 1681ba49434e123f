"""``meshcache top`` against nodes that speak only TLS: the console's clients take the CLI's
``--tls --cacert --cert --key`` (or a ``meshcaches://`` URL), poll the data ports over TLS with
a client certificate, read ``/metrics`` over HTTPS where the admin port has it (plain HTTP
where not), and a plaintext console is told the port speaks TLS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from meshcache.cli import main as cli_main
from meshcache.testing.nodes import NodeProcess
from meshcache.tui.app import TopApp
from meshcache.tui.main import preflight, tls_context, url_target
from meshcache.tui.source import LiveSource
from tests.security.tlspki import Pki, make_pki, node_args
from tests.tui.helpers import row, run, wait_screen

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_node(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[NodeProcess]:
    """Client certificates required; /metrics over HTTPS only."""
    args = [*node_args(pki, client_auth=True), "--tls-admin", "true"]
    with NodeProcess(tmp_path_factory.mktemp("https"), *args) as node:
        yield node


def client_tls(pki: Pki) -> dict[str, object]:
    """What ``--tls --cacert --cert --key`` give the console's clients."""
    return {
        "tls": True,
        "ca_file": str(pki.ca),
        "cert_file": str(pki.client.cert),
        "key_file": str(pki.client.key),
    }


def test_the_console_watches_a_tls_only_node(https_node: NodeProcess, pki: Pki) -> None:
    context = tls_context(client_tls(pki))
    assert context is not None
    assert preflight(https_node.data, 5.0, ssl_context=context) is None
    told = preflight(https_node.data, 5.0)
    assert told is not None and "speaks TLS" in told and "--cacert" in told

    async def body() -> None:
        app = TopApp(LiveSource(https_node.data, timeout=3.0, budget=0.3, ssl_context=context))
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_screen(
                app,
                lambda s: (
                    "1 members (1 answer)" in s
                    and (line := row(s, https_node.node_id)) is not None
                    and "alive" in line
                ),
                30,
                "the TLS node alive in the Cluster view",
            )
            await pilot.press("q")

    run(body())


def _admin_port(node: NodeProcess) -> int:
    return int(json.loads((node.data_dir / "node.json").read_text())["admin"].rsplit(":", 1)[1])


def test_metrics_over_https_or_plain_http_as_each_admin_port_serves(
    https_node: NodeProcess, pki: Pki, tmp_path: Path
) -> None:
    context = tls_context(client_tls(pki))
    with NodeProcess(tmp_path, *node_args(pki)) as plain_admin:

        async def body() -> None:
            source = LiveSource(https_node.data, timeout=3.0, budget=5.0, ssl_context=context)
            try:
                for _ in range(2):  # the second poll goes straight to what worked
                    poll = await source.poll([https_node.data, plain_admin.data])
                    for node in (https_node, plain_admin):
                        reply = poll.replies[node.data]
                        assert reply.problem is None, reply.problem
                        assert reply.requests is not None and reply.requests.get("INFO", 0) >= 1
                assert source._admin_https == {
                    ("127.0.0.1", _admin_port(https_node)): True,
                    ("127.0.0.1", _admin_port(plain_admin)): False,
                }
            finally:
                await source.aclose()

        run(body())


def test_top_takes_the_clis_tls_flags_and_urls(
    pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not a terminal here: each command line that parses, with files that load, ends there.
    ca = str(pki.ca)
    assert cli_main(["top", "--tls", "--cacert", ca]) == 2
    assert "needs a terminal" in capsys.readouterr().err
    url = f"meshcaches://127.0.0.1:7400?ca_file={quote(ca)}"
    assert cli_main(["top", url, "--cert", str(pki.client.cert), "--key", str(pki.client.key)]) == 2
    assert "needs a terminal" in capsys.readouterr().err
    for argv, says in (
        (["top", "--cacert", "/nonexistent/ca.pem"], "does not exist"),
        (["top", "--cert", str(pki.client.cert)], "--cert and --key need --tls"),
        (["top", "meshcaches://app:pw@127.0.0.1:7400"], "no user:password@"),
        (["top", "meshcache://127.0.0.1:7400,127.0.0.1:7402"], "name one node"),
        (["top", "meshcache://127.0.0.1:7400/ns"], "does not take namespace"),
        (["top", "meshcache://127.0.0.1:7400", "--port", "7400"], "not both"),
    ):
        assert cli_main(argv) == 2, argv
        assert says in capsys.readouterr().err, argv
    host, port, tls = url_target(f"meshcaches://[::1]:7500?ca_file={quote(ca)}")
    assert (host, port, tls) == ("::1", 7500, {"tls": True, "ca_file": ca})
