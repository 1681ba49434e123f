"""The chaos suite's harness: real node processes in Linux network namespaces, real faults,
a recorded history and checkers. Importable by users; see docs/chaos.md.

* :mod:`.netns` — namespaces, veths, the bridge, privileges, cleanup (sweeper and reaper);
* :mod:`.faults` — network faults as data, rendered as nftables rules;
* :mod:`.cluster` — :class:`ChaosCluster`: nodes, client endpoints, process and network faults;
* :mod:`.workload` — clients that record every op (:class:`ClientSpec`);
* :mod:`.history` — the JSON-lines history and its loader;
* :mod:`.checkers` — invariants over a history and the nodes' final state;
* :mod:`.scenarios` — fault schedules, one run of a schedule, the soak.

Names are loaded on first use, so the reaper (``python -m meshcache.testing.chaos.reaper``)
imports only :mod:`.netns`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshcache.testing.chaos.cluster import ChaosCluster, ChaosNode, wait_until
    from meshcache.testing.chaos.faults import (
        NetFaults,
        bridge,
        healthy,
        isolate,
        lossy,
        one_way,
        partition,
    )
    from meshcache.testing.chaos.history import History, HistoryWriter, load
    from meshcache.testing.chaos.netns import (
        ChaosError,
        ChaosUnavailable,
        missing_privileges,
        sweep_stale,
    )
    from meshcache.testing.chaos.scenarios import (
        FAULT_KINDS,
        CycleReport,
        Schedule,
        Step,
        Workload,
        make_schedule,
        run_cycle,
        soak,
    )
    from meshcache.testing.chaos.workload import NAMESPACES, ClientSpec

_LAZY = {
    "ChaosCluster": "cluster",
    "ChaosNode": "cluster",
    "wait_until": "cluster",
    "NetFaults": "faults",
    "bridge": "faults",
    "healthy": "faults",
    "isolate": "faults",
    "lossy": "faults",
    "one_way": "faults",
    "partition": "faults",
    "History": "history",
    "HistoryWriter": "history",
    "load": "history",
    "ChaosError": "netns",
    "ChaosUnavailable": "netns",
    "missing_privileges": "netns",
    "sweep_stale": "netns",
    "FAULT_KINDS": "scenarios",
    "CycleReport": "scenarios",
    "Schedule": "scenarios",
    "Step": "scenarios",
    "Workload": "scenarios",
    "make_schedule": "scenarios",
    "run_cycle": "scenarios",
    "soak": "scenarios",
    "NAMESPACES": "workload",
    "ClientSpec": "workload",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "FAULT_KINDS",
    "NAMESPACES",
    "ChaosCluster",
    "ChaosError",
    "ChaosNode",
    "ChaosUnavailable",
    "ClientSpec",
    "CycleReport",
    "History",
    "HistoryWriter",
    "NetFaults",
    "Schedule",
    "Step",
    "Workload",
    "bridge",
    "healthy",
    "isolate",
    "load",
    "lossy",
    "make_schedule",
    "missing_privileges",
    "one_way",
    "partition",
    "run_cycle",
    "soak",
    "sweep_stale",
    "wait_until",
]
