"""Smoke test of tools/scan_walk: a few thousand keys in redis-server, one node and a 3-node
mesh, walked at each COUNT and listed by KEYS. No timing assertions: every walk gives every
key once, and the other client's GETs ran beside the mesh's walks."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from tools import scan_walk

if shutil.which("redis-benchmark") is None or shutil.which("redis-server") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("redis-benchmark is required on CI (apt-get install redis-tools)")
    pytest.skip("redis-benchmark is not installed (apt-get install redis-tools)",
                allow_module_level=True)  # fmt: skip

pytestmark = pytest.mark.slow


def test_every_walk_gives_every_key_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert scan_walk.main(["--keys", "3000", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    walks = re.findall(
        r"^(.*): walk COUNT (\d+): ([\d,]+) of ([\d,]+) keys \((\d+) twice\)", out, re.M
    )
    assert len(walks) == 3 * len(scan_walk.COUNTS), out
    for name, _, got, held, twice in walks:
        assert got == held and twice == "0", (name, out)
        assert int(got.replace(",", "")) > 2000
    assert out.count("KEYS *:") == 3
    assert re.search(r"through node 0: walk COUNT 10: .* a GET on another node meanwhile p50", out)
