"""``tools.bench``: a lean load generator that measures meshcache against redis-server.

Run ``python -m tools.bench --help`` from the repository root. The pieces, for programmatic use:

* :class:`Workload` — key space, value size, GET/SET mix, key distribution.
* :func:`redis_server` / :func:`meshcache_node` — start a server on a free loopback port,
  wait until it answers, stop it on exit.
* :func:`preload` — fill the key space; returns the exact replies the server gives.
* :class:`LoadSpec` + :func:`run_load` — one closed-loop or open-loop (``rate``) measurement
  across worker processes, returning ops/s and a latency histogram.
"""

from __future__ import annotations

from tools.bench.histogram import LatencyHistogram
from tools.bench.preload import preload
from tools.bench.runner import LoadSpec, RunResult, WorkerError, run_load
from tools.bench.servers import ServerProcess, ServerStartError, meshcache_node, redis_server
from tools.bench.workload import ReplyTemplates, Workload

__all__ = [
    "LatencyHistogram",
    "LoadSpec",
    "ReplyTemplates",
    "RunResult",
    "ServerProcess",
    "ServerStartError",
    "WorkerError",
    "Workload",
    "meshcache_node",
    "preload",
    "redis_server",
    "run_load",
]
