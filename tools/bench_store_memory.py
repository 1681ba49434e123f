"""Memory per key of the store: RSS and accounted bytes for N keys of 100-byte values.

Run: ``.venv/bin/python -m tools.bench_store_memory [--keys 1000000] [--eviction lru]``

Measures the process's resident set (``/proc/self/statm``) before and after loading ``--keys``
keys (``key:%08d``, 100-byte values, built the way the node builds them: from fresh ``bytes``
objects per request) through ``Store.execute``, and prints RSS bytes per key next to the store's
accounted bytes per key (``NamespaceStats.bytes / items``). Redis 7 needs ~205 B/key for this
load; the target is <= 1.6x that, ~328 B/key.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

from meshcache.hlc import HLC
from meshcache.store import NamespacePolicy, Store


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--eviction", default="lru", choices=["lru", "lfu", "ttl", "none"])
    parser.add_argument("--ttl", type=float, default=None, help="give every key this TTL")
    args = parser.parse_args(argv)

    store = Store(
        clock=time.time,
        hlc=HLC(lambda: time.time_ns() // 1_000_000),
        policies={"default": NamespacePolicy(eviction=args.eviction, default_ttl=args.ttl)},
    )
    execute = store.execute
    template = bytes(range(100))
    gc.collect()
    before = rss_bytes()
    for i in range(args.keys):
        # Fresh key and value objects, as msgpack would hand them over from a request.
        execute("default", "SET", [b"key:%08d" % i, bytes(template), {}])
    gc.collect()
    after = rss_bytes()
    stats = store.stats()["default"]
    per_key = (after - before) / args.keys
    print(f"keys={args.keys} eviction={args.eviction} ttl={args.ttl}")
    print(f"RSS per key:       {per_key:7.1f} B  (Redis 7 ~205 B; target <= 328 B)")
    print(f"accounted per key: {stats.bytes / stats.items:7.1f} B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
