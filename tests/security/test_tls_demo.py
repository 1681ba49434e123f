"""``meshcache demo --tls``: a CA and certificates in the demo's directory, every node serving
TLS, the printed commands working as printed, and plaintext clients turned away."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from meshcache import Client, MeshcacheError
from meshcache.testing.procs import running
from tests.mesh.test_demo import DemoRun, clean_env

pytestmark = pytest.mark.slow


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoRun]:
    run = DemoRun("--nodes", "2", "--tls", "--data-dir", str(tmp_path))
    try:
        run.wait_ready()
        yield run
    finally:
        run.cleanup()


def test_demo_tls_serves_what_it_prints(demo: DemoRun, tmp_path: Path) -> None:
    ca = tmp_path / "tls" / "ca.pem"
    assert ca.exists() and (tmp_path / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert any(line.startswith("TLS: ") and str(ca) in line for line in demo.out)
    nodes = demo.nodes
    with Client(nodes[0][0], ca_file=ca, timeout=5) as c:
        assert c.set("hello", "world")
    with Client(nodes[1][0], timeout=5, smart=False) as plain, pytest.raises(MeshcacheError):
        plain.get("hello")
    # The printed example commands run as printed.
    printed = {
        words[1]: line.strip()
        for line in demo.out
        if (words := line.split()) and words[0] in ("meshcache", "redis-cli")
    }
    get = shlex.split(printed["get"])
    done = subprocess.run(
        [sys.executable, "-m", *get], capture_output=True, text=True, timeout=60, env=clean_env()
    )
    assert (done.returncode, done.stdout) == (0, "world\n"), done.stderr
    redis_line = next(line.strip() for line in demo.out if line.strip().startswith("redis-cli"))
    cli = shlex.split(redis_line.split("#")[0])
    done = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "world", done.stderr
    resp_port = int(re.search(r"-p (\d+)", redis_line).group(1))  # type: ignore[union-attr]
    with redis.Redis.from_url(f"rediss://127.0.0.1:{resp_port}", ssl_ca_certs=str(ca)) as r:
        assert r.get("hello") == b"world"
    assert demo.finish(signal.SIGTERM) == 0
    assert [pid for _, pid in nodes.values() if running(pid)] == []
