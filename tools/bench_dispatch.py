"""Micro-benchmark of the node's request path without sockets: ``Dispatcher.handle``.

Decode, check, store, encode for one GET and one SET of a 100-byte value, over a 1,000-key
store; prints CPU microseconds per request (best of 5 x 200,000).

    python -m tools.bench_dispatch
"""

from __future__ import annotations

import time
import timeit

from meshcache.hlc import HLC
from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.net.dispatch import Dispatcher
from meshcache.store.store import Store
from meshcache.wire import Limits, encode_request


def main() -> int:
    store = Store(clock=time.time, hlc=HLC(lambda: time.time_ns() // 1_000_000))
    dispatcher = Dispatcher(
        execute=store.execute, routes={}, limits=Limits(), counters=NodeCounters()
    )
    for i in range(1000):
        store.execute("default", "SET", [b"key:%d" % i, b"x" * 100, {}])
    bodies = {
        "GET": encode_request(1, "GET", "default", [b"key:5"])[4:],
        "SET": encode_request(1, "SET", "default", [b"key:5", b"y" * 100])[4:],
    }
    n = 200_000
    for op, body in bodies.items():
        # CPU time, not wall time: on a shared machine the wall clock counts other processes.
        runs = timeit.repeat(
            lambda b=body: dispatcher.handle(b), number=n, repeat=5, timer=time.process_time
        )
        best = min(runs)
        print(f"{op}: {best / n * 1e6:.2f} us per request through Dispatcher.handle")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
