"""Clock skew (libfaketime on one node's process; its monotonic clock untouched), on a cluster
of its own: skewed versions spread to every node through the HLC and outlive the skew.

* A node whose wall clock runs 5 s ahead serves for a while: nothing acknowledged is lost.
  (The skew is kept through the heal here; setting it right is the next test.)
* Setting a skewed clock right must not lose acknowledged writes. Node n2 runs 30 s ahead
  (within the 60 s clamp) and coordinates ``SET K v1`` at ``quorum``: v1's version is 30 s in
  the future, and the replicas' HLCs witness it. n2 is restarted with a correct clock: a fresh
  HLC, 30 s behind the versions the cluster holds. At once ``SET K v2`` through n2 (K's first
  owner): n2 applies v2 with a version below v1's and the replicas answer "I hold a newer
  version". That answer used to count as an acknowledgement, and the owners converged on v1.
  It no longer does: n2 takes the newer record (its clock witnesses the version) and writes v2
  again above it before it answers (``Coordinator._await_acks``), so v2 wins everywhere.
"""

from __future__ import annotations

import time

import pytest

from meshcache.testing.chaos.cluster import ChaosCluster, wait_until
from meshcache.testing.chaos.scenarios import Schedule, Step
from tests.chaos.helpers import assert_checks, run

pytestmark = pytest.mark.chaos

NS = "chaos-quorum"


class AcknowledgedButLost(AssertionError):
    """A write acknowledged at quorum is not what the owners converged on."""


def test_a_node_with_its_clock_five_seconds_ahead(chaos_cluster: ChaosCluster) -> None:
    schedule = Schedule(
        kind="skew",
        seed="test:skew",
        duration=6.0,
        steps=(Step(0.0, "skew", {"node": "n2", "seconds": 5.0}),),
        sides={"c0": "all", "c1": "all"},
        plain={"c0": "n2", "c1": "n0"},
    )
    report = run(chaos_cluster, schedule, 1, unskew=False)
    assert_checks(report)


def test_a_write_after_a_clock_is_set_right_is_not_lost(chaos_cluster: ChaosCluster) -> None:
    cluster = chaos_cluster

    def has_namespace() -> bool:  # a restarted node serves before it has pulled the config
        return NS in (cluster.try_call("n2", "NS_LIST", []) or {})

    cluster.restart("n2", skew=30.0)
    cluster.heal_all()
    wait_until(has_namespace, 30, "n2 holding the namespace")
    ring = cluster.current_ring()
    key = next(f"clock:k{i}" for i in range(999) if cluster.owners(ring, f"clock:k{i}")[0] == "n2")
    assert cluster.call("n2", "SET", [key.encode(), b"v1"], NS) is True
    v1 = cluster.records("n2", NS, [key])[0][3]
    cluster.restart("n2", skew=0.0)
    wait_until(has_namespace, 30, "n2 holding the namespace")
    assert cluster.call("n2", "SET", [key.encode(), b"v2"], NS) is True
    acked = time.time()
    print(f"{key}: v1 at version {v1} ({(v1 >> 16) / 1000 - acked:+.1f} s from now)")

    def held() -> set[bytes | None]:
        values: set[bytes | None] = set()
        for node in cluster.node_names:
            raw = cluster.records(node, NS, [key])[0]
            values.add(None if raw is None else raw[1])
        return values

    deadline = time.monotonic() + 30.0
    while (values := held()) not in ({b"v1"}, {b"v2"}) and time.monotonic() < deadline:
        time.sleep(0.25)  # the poll interval; the deadline bounds the wait
    print(f"owners hold {values}")
    if values != {b"v2"}:
        raise AcknowledgedButLost(
            f"{key}: SET v2 acknowledged at quorum after SET v1 (whose version is "
            f"{(v1 >> 16) / 1000 - acked:.1f} s ahead of the wall clock); the owners hold {values}"
        )
