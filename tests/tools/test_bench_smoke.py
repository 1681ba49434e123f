"""Smoke test of tools/bench: the generator drives a real redis-server for about a second.

No timing assertions: this proves the tool runs end to end (server start and stop, preload,
closed and open loop, histogram merge, markdown output), not how fast anything is.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace

import pytest

from tools.bench import LoadSpec, Workload, preload, redis_server, run_load
from tools.bench.cli import main
from tools.bench.cpu import drive
from tools.bench.histogram import LatencyHistogram, bucket_bounds, bucket_of
from tools.bench.scenarios import Options

if shutil.which("redis-server") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("redis-server is required on CI (apt-get install redis-server)")
    pytest.skip(
        "redis-server is not installed (apt-get install redis-server)", allow_module_level=True
    )


def test_histogram_buckets_cover_every_value_once() -> None:
    previous = -1
    for us in range(0, 1 << 16):
        index = bucket_of(us)
        low, high = bucket_bounds(index)
        assert low <= us <= high
        assert index in (previous, previous + 1)
        previous = index
    hist = LatencyHistogram()
    for us in range(1, 1001):
        hist.record(us)
    assert 500 <= hist.percentile(50) <= 500 * 129 // 128  # a bucket is < 1/128 wide
    assert 990 <= hist.percentile(99) <= 999


def test_closed_and_open_loop_against_redis() -> None:
    workload = Workload(keys=2000, value_size=100, get_ratio=0.9)
    with redis_server() as srv:
        templates = preload(srv.host, srv.port, srv.protocol, workload)
        assert templates.set == b"+OK\r\n"
        common = LoadSpec(
            host=srv.host,
            port=srv.port,
            protocol="redis",
            workload=workload,
            templates=templates,
            conns=4,
            procs=2,
            duration=0.6,
            warmup=0.2,
            pool_size=4096,
        )
        closed = run_load(replace(common, depth=4))
        assert closed.ops > 0
        assert closed.ops % 4 == 0  # whole batches
        assert (closed.errors, closed.misses) == (0, 0)
        assert closed.hist.total == closed.ops
        assert 0 < closed.percentile_ms(50) <= closed.percentile_ms(99.9)

        opened = run_load(replace(common, rate=2000))
        assert opened.ops > 0
        assert (opened.errors, opened.misses) == (0, 0)
        assert opened.hist.total == opened.ops
    assert srv.proc.poll() is not None  # stopped on the way out


def test_cli_prints_a_markdown_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["throughput", "--targets", "redis", "--conns", "2", "--depth", "1,8"]
    argv += ["--keys", "500", "--duration", "0.4", "--warmup", "0.1", "--pool", "1024"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| target | conns | depth |" in out
    assert out.count("| redis | 2 |") == 2


def test_misses_are_counted_not_fatal() -> None:
    # Only half of the key space is loaded, so about half of the GETs miss: every batch with a
    # miss takes the slow path that parses replies one by one.
    workload = Workload(keys=2000, value_size=100, get_ratio=1.0)
    with redis_server() as srv:
        templates = preload(srv.host, srv.port, srv.protocol, workload, count=1000)
        spec = LoadSpec(
            host=srv.host,
            port=srv.port,
            protocol="redis",
            workload=workload,
            templates=templates,
            conns=2,
            depth=3,
            duration=0.4,
            warmup=0.1,
            pool_size=1024,
        )
        for result in (run_load(spec), run_load(replace(spec, rate=1000))):
            assert result.ops > 0
            assert result.errors == 0
            assert result.misses > 0  # counted over warm-up and window alike


def test_cpu_drives_exactly_the_requests_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    workload = Workload(keys=500, value_size=100, get_ratio=0.9)
    opts = Options(
        targets=("redis",), conns=3, depths=(4,), workload=workload, pool_size=1024, requests=3000
    )
    with redis_server() as srv:
        templates = preload(srv.host, srv.port, srv.protocol, workload)
        sample = drive(srv, opts, templates, depth=4, requests=3000)
    assert sample.requests == 3000  # 750 whole batches of 4, not one more
    assert (sample.errors, sample.misses) == (0, 0)
    assert sample.server_cpu_s >= 0 and sample.switches >= 0 and sample.preempted >= 0

    argv = ["cpu", "--targets", "redis", "--conns", "2", "--depth", "1,4", "--keys", "300"]
    argv += ["--requests", "2000", "--repeat", "2", "--pool", "1024"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| target | conns | depth | requests | server µs/req best |" in out
    assert out.count("| redis | 2 |") == 2
    assert out.count("| 2,000 |") == 2
