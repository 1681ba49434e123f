"""Micro-benchmark of the store's hot path: ops/s of GET and SET on 100-byte values.

Run: ``.venv/bin/python -m tools.bench_store [--keys 1000000] [--ops 1000000]``

Loads ``--keys`` keys (``key:%08d``, 100-byte values) into the ``default`` namespace, then times
``--ops`` SETs (overwrites) and ``--ops`` GETs of random keys through ``Store.execute``, the call
the node makes per request (arguments already normalized). One thread, no I/O. Time is the
process's CPU time, best of ``--repeat`` runs, so that other processes on a busy machine disturb
the figure as little as possible.
"""

from __future__ import annotations

import argparse
import random
import time

from meshcache.hlc import HLC
from meshcache.store import NamespacePolicy, Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--ops", type=int, default=1_000_000)
    parser.add_argument("--eviction", default="lru", choices=["lru", "lfu", "ttl", "none"])
    parser.add_argument("--ttl", type=float, default=None, help="give every key this TTL")
    parser.add_argument("--max-bytes", type=int, default=None, help="bound the namespace")
    parser.add_argument(
        "--repeat", type=int, default=3, help="time each loop this many times, report the best"
    )
    args = parser.parse_args(argv)

    store = Store(
        clock=time.time,
        hlc=HLC(lambda: time.time_ns() // 1_000_000),
        policies={
            "default": NamespacePolicy(
                eviction=args.eviction, default_ttl=args.ttl, max_bytes=args.max_bytes
            )
        },
    )
    execute = store.execute
    keys = [b"key:%08d" % i for i in range(args.keys)]
    value = bytes(range(100))
    opts: dict[str, object] = {}
    for key in keys:
        execute("default", "SET", [key, value, opts])
    rng = random.Random(1)
    sample = [keys[rng.randrange(args.keys)] for _ in range(args.ops)]
    set_args: list[list[object]] = [[key, value, opts] for key in sample]
    get_args: list[list[object]] = [[key] for key in sample]

    def best(op: str, arg_lists: list[list[object]]) -> float:
        times = []
        for _ in range(args.repeat):
            start = time.process_time()
            for a in arg_lists:
                execute("default", op, a)
            times.append(time.process_time() - start)
        return min(times)

    set_s = best("SET", set_args)
    get_s = best("GET", get_args)

    print(
        f"keys={args.keys} ops={args.ops} eviction={args.eviction} ttl={args.ttl} "
        f"max_bytes={args.max_bytes} best of {args.repeat}"
    )
    print(f"SET {args.ops / set_s:>12,.0f} ops/s  ({set_s / args.ops * 1e9:.0f} ns/op)")
    print(f"GET {args.ops / get_s:>12,.0f} ops/s  ({get_s / args.ops * 1e9:.0f} ns/op)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
