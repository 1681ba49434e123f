"""A real node process reports the requests it just served: INFO's ``requests`` and ``latency``
sections, and the ``meshcache_request_duration_seconds`` histogram of ``/metrics``."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshcache.testing.mesh import Direct
from meshcache.testing.nodes import NodeProcess

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
INFO_DOC = DOC[DOC.index("#### INFO") : DOC.index("### Cluster config")]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with NodeProcess(tmp_path_factory.mktemp("latency"), "--profile", "local", "--bootstrap") as n:
        yield n


def traffic(node: NodeProcess, n: int) -> dict[str, Any]:
    """``n`` SETs and ``n`` GETs on one connection, then that connection's INFO."""
    with Direct(node.data_address) as direct:
        for i in range(n):
            direct.call("SET", [b"key:%d" % i, b"v" * 100])
            direct.call("GET", [b"key:%d" % i])
        direct.call("GET", [b"missing"])
        info: dict[str, Any] = direct.call("INFO", [])
        return info


def test_info_shows_the_ops_just_issued_with_sane_latency(node: NodeProcess) -> None:
    info = traffic(node, 50)
    assert info["requests"]["SET"] >= 50 and info["requests"]["GET"] >= 51
    latency = info["latency"]
    assert 10 <= latency["window_s"] <= 20
    ops = latency["ops"]
    assert ops["SET"]["count"] >= 50 and ops["GET"]["count"] >= 51
    for op in ("SET", "GET"):
        figures = ops[op]
        # Loopback requests of a single node: well under a second, never zero or negative.
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] < 1000, figures
    data = latency["data"]
    assert data["count"] >= 101 and "INFO" not in data
    assert 0 < data["p50_ms"] <= data["p99_ms"] < 1000
    # Hits and misses by namespace, from the same GETs.
    default = info["namespaces"]["default"]
    assert default["hits"] >= 50 and default["misses"] >= 1


def test_every_field_of_the_latency_and_requests_sections_is_documented(
    node: NodeProcess,
) -> None:
    info = traffic(node, 3)
    latency = info["latency"]
    names = {"requests", "latency", *latency, *latency["data"], *latency["ops"]["GET"]}
    assert not sorted(name for name in names if f"`{name}`" not in INFO_DOC)


def test_metrics_has_the_request_duration_histogram_by_op(node: NodeProcess) -> None:
    traffic(node, 20)
    url = f"http://{node.admin_address.host}:{node.admin_address.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    [family] = [
        f
        for f in text_string_to_metric_families(text)
        if f.name == "meshcache_request_duration_seconds"
    ]
    assert family.type == "histogram"
    by_op: dict[str, list[tuple[float, float]]] = {}
    counts: dict[str, float] = {}
    sums: dict[str, float] = {}
    for sample in family.samples:
        op = sample.labels["op"]
        if sample.name.endswith("_bucket"):
            by_op.setdefault(op, []).append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_count"):
            counts[op] = sample.value
        elif sample.name.endswith("_sum"):
            sums[op] = sample.value
    assert counts["GET"] >= 21 and counts["SET"] >= 20
    for op, buckets in by_op.items():
        values = [v for _, v in sorted(buckets)]
        assert values == sorted(values), op  # cumulative
        assert values[-1] == counts[op]  # +Inf holds every request
    assert 0 < sums["GET"] / counts["GET"] < 1.0
