"""Fixtures of the chaos tests: privileges (skip with the reason locally, never under CI=true)
and a cluster per module whose history and logs are kept when a test fails."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from meshcache.testing.chaos.cluster import ChaosCluster
from tests.chaos.helpers import require_chaos


@pytest.fixture(scope="module")
def chaos_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosCluster]:
    """Three nodes (``n0``-``n2``, all Raft voters, 3 replicas) and two client endpoints
    (``c0``, ``c1``), shared by a module's tests; each test leaves it healed."""
    require_chaos(faketime=True)
    out = tmp_path_factory.mktemp("chaos")
    with ChaosCluster(3, 2, out_dir=out) as cluster:
        yield cluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    cluster = getattr(item, "funcargs", {}).get("chaos_cluster")
    if report.failed and isinstance(cluster, ChaosCluster):
        cluster.keep_logs = True
        report.sections.append(
            ("chaos run", f"history {cluster.history_path}; node logs in {cluster.out_dir}/logs")
        )
