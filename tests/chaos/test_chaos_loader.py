"""The read-through loader under a partition: three real nodes loading from a real PostgreSQL
in a network namespace of its own on the bridge, the loader checker after the heal.

The database (endpoint ``db``) is on the majority side: the minority's nodes are cut off from
it and from its NOTIFYs. A writer in the hub UPDATEs the rows of 8 keys 4 times a second;
readers on both sides and in the hub GET them through smart and plain clients, 10 a second
each (and now and then SET one). ``check_loader`` (docs/chaos.md): no read older than the
database at its start minus the TTL + 1 s (minus 2 s while healthy: the NOTIFY path), one load
per key per miss wave while healthy (counted under the cut), a client's SET never replaced by a
load, and after the heal every key reads its last version through every node within 10 s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from meshcache.testing.chaos.cluster import ChaosCluster
from meshcache.testing.chaos.scenarios import Workload, make_schedule
from meshcache.testing.postgres import server_binaries
from tests.chaos.helpers import require_chaos, run

pytestmark = pytest.mark.chaos

#: Few mixed clients (the other checkers still run), the loader's readers and writer.
LOADER_WORKLOAD = Workload(
    rate=10.0,
    keys=20,
    timeout=4.0,
    levels=("quorum",),
    plain_clients=False,
    loader_keys=8,
    loader_rate=10.0,
)


@pytest.fixture(scope="module")
def chaos_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosCluster]:
    """Three nodes, two client endpoints and the run's PostgreSQL (``loader=True``)."""
    require_chaos()
    if server_binaries() is None:
        problem = "the PostgreSQL server binaries (initdb, postgres) are not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"chaos tests never skip under CI=true: {problem}", pytrace=False)
        pytest.skip(f"chaos: {problem}")
    with ChaosCluster(3, 2, out_dir=tmp_path_factory.mktemp("chaos"), loader=True) as cluster:
        yield cluster


def test_read_through_across_a_partition(chaos_cluster: ChaosCluster) -> None:
    nodes = chaos_cluster.node_names
    schedule = make_schedule("partition", "test:loader", nodes, ["c0", "c1"], duration=8.0, db=True)
    report = run(chaos_cluster, schedule, 1, LOADER_WORKLOAD, after_heal=8.0)
    loader = report.check("loader").counts
    print(f"  loader: {loader}")
    failed = {c.name: c.findings[:10] for c in report.checks if not c.ok}
    assert not failed, f"{report.summary()}\n{failed}"
    assert loader["reads_ok"] > 0 and loader["loads"] > 0, loader
    assert loader["node_reloaded"] > 0, loader  # the NOTIFY path reloaded keys
    assert loader["settled_max_ms"] <= 10_000, loader
