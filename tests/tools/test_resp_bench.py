"""Smoke test of tools/resp_bench: redis-benchmark, unmodified, against redis-server, one node
and a 3-node mesh through one node, GET/SET and the default suite, with tiny request counts.

No timing assertions: this proves the tool runs end to end and that no server answered an
error, not how fast anything is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from meshcache.testing.procs import running
from tests.tools.test_bench_killed import REPO_ROOT, children, reapers_of, wait_for
from tools import resp_bench

if shutil.which("redis-benchmark") is None or shutil.which("redis-server") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("redis-benchmark is required on CI (apt-get install redis-tools)")
    pytest.skip("redis-benchmark is not installed (apt-get install redis-tools)",
                allow_module_level=True)  # fmt: skip


def test_every_server_runs_the_benchmarks_without_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--runs", "1", "--requests", "300", "--pipelines", "1", "16", "--mesh", "--suite"]
    assert resp_bench.main([*argv, "--suite-requests", "100"]) == 0  # 1 if any error
    out = capsys.readouterr().out
    assert "| mesh via node 0 rps (median) |" in out
    suite = out.split("(default suite)", 1)[1]
    for test in ("PING_INLINE", "GET", "LRANGE_100 (first 100 elements)", "MSET (10 keys)"):
        assert f"| {test} |" in suite


def test_a_killed_benchmark_leaves_no_server_node_or_directory_behind() -> None:
    argv = [sys.executable, "-m", "tools.resp_bench", "--runs", "1", "--mesh"]
    argv += ["--requests", "100000000", "--pipelines", "1"]
    bench = subprocess.Popen(
        argv, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    started: dict[int, list[str]] = {}
    try:

        def measuring() -> bool:
            started.update(children(bench.pid))
            assert bench.poll() is None, "the benchmark exited early"
            return any("redis-benchmark" in a[0] for a in started.values())

        wait_for(measuring, 120, "redis-benchmark to run against the servers")
        nodes = [p for p, a in started.items() if "meshcache" in a and "start" in a]
        assert len(nodes) == 4  # one node, and a mesh of three
        dirs = [Path(started[r][-1]) for r in reapers_of(started)]
        assert {d.name.rsplit("-", 1)[0] for d in dirs} >= {"resp", "resp-mesh", "bench-redis"}
        bench.kill()
        bench.wait()
        wait_for(
            lambda: not any(running(p) for p in started), 30, "every child of the benchmark to end"
        )
        assert not [d for d in dirs if d.exists()]
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()


def test_a_keyspace_of_zero_runs_without_r() -> None:
    spread = resp_bench.benchmark_argv(6379, depth=1, requests=10, clients=1, size=3)
    one_key = resp_bench.benchmark_argv(6379, depth=1, requests=10, clients=1, size=3, keyspace=0)
    assert spread[spread.index("-r") + 1] == str(resp_bench.KEYSPACE)
    assert "-r" not in one_key
    assert [a for a in spread if a not in ("-r", str(resp_bench.KEYSPACE))] == one_key
