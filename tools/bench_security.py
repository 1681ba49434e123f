"""What security costs, measured in one process: the permission check on the request path, a
password check, and gossip's seal and open per packet.

    python -m tools.bench_security [--runs 5]

Every figure is CPU time (``time.process_time``), the median and the worst of ``--runs`` runs,
with its anchor measured in the same run:

* **request path** — ``Dispatcher.handle`` for one GET and one SET of a 100-byte value, for a
  connection of a node without users (the anchor), an authenticated user, and a user limited to
  namespace patterns (the namespace's answer is cached per connection);
* **password check** — one scrypt verification at the default cost (``meshcache passwd``), the
  time an ``AUTH`` holds a worker thread;
* **gossip** — sealing and opening one full UDP envelope (1,400 bytes) under the cluster key,
  against the same envelope without a key (the anchor) and against HMAC-SHA256 signing and
  verifying of the same bytes.

The load of the machine (``os.getloadavg``) is printed with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import statistics
import time
import timeit
from collections.abc import Callable

from meshcache.gossip import Keyring, NodeMeta
from meshcache.gossip.codec import Alive, decode_envelope, encode_envelope, encode_message
from meshcache.hlc import HLC
from meshcache.node.admin.metrics import NodeCounters
from meshcache.node.net.dispatch import Dispatcher
from meshcache.security.acl import grant
from meshcache.security.guard import Guard
from meshcache.security.hashing import PasswordHash, hash_password
from meshcache.security.users import parse_users
from meshcache.store.store import Store
from meshcache.wire import Limits, encode_request

PACKET = 1400


def _cpu(fn: Callable[[], object], number: int) -> float:
    """Microseconds of CPU per call of ``fn``, over ``number`` calls."""
    return timeit.timeit(fn, number=number, timer=time.process_time) / number * 1e6


def _interleaved(
    fns: dict[str, Callable[[], object]], number: int, runs: int
) -> dict[str, list[float]]:
    """:func:`_cpu` of every function, taking turns run by run (the first one is the anchor),
    so a change in the machine's load hits them alike."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            out[name].append(_cpu(fn, number))
    return out


def _lines(figures: dict[str, list[float]]) -> list[str]:
    """One row per function: median and worst CPU, and the median of its per-run ratios to the
    first (the anchor)."""
    anchor = next(iter(figures.values()))
    rows = []
    for name, values in figures.items():
        ratio = statistics.median(v / a for v, a in zip(values, anchor, strict=True))
        rows.append(
            f"| {name} | {statistics.median(values):.2f} | {max(values):.2f} | {ratio:.3f} |"
        )
    return rows


def request_path(runs: int) -> list[str]:
    store = Store(clock=time.time, hlc=HLC(lambda: time.time_ns() // 1_000_000))
    users = parse_users(
        {
            "app": {"password": hash_password("pw", n=1024), "permissions": ["read", "write"]},
            "scoped": {
                "password": hash_password("pw", n=1024),
                "permissions": ["read", "write"],
                "namespaces": ["def*", "app-*"],
            },
        },
        "bench",
    )
    guard = Guard(users, keyring=Keyring([b"k" * 32]))
    dispatcher = Dispatcher(
        execute=store.execute, routes={}, limits=Limits(), counters=NodeCounters(), guard=guard
    )
    for i in range(1000):
        store.execute("default", "SET", [b"key:%d" % i, b"x" * 100, {}])
    anonymous = Guard().session("127.0.0.1")  # a node without users: the same one lookup
    user = guard.session("127.0.0.1")
    user.become(grant("app", users["app"].permissions))
    scoped = guard.session("127.0.0.1")
    scoped.become(grant("scoped", users["scoped"].permissions, users["scoped"].namespaces))
    bodies = {
        "GET": encode_request(1, "GET", "default", [b"key:5"])[4:],
        "SET": encode_request(1, "SET", "default", [b"key:5", b"y" * 100])[4:],
    }
    lines = []
    for op, body in bodies.items():
        fns: dict[str, Callable[[], object]] = {
            f"{op}, node without users (anchor)": lambda b=body: dispatcher.handle(b, anonymous),
            f"{op}, authenticated user": lambda b=body: dispatcher.handle(b, user),
            f"{op}, user with namespace patterns": lambda b=body: dispatcher.handle(b, scoped),
        }
        lines += _lines(_interleaved(fns, 100_000, runs))
    return lines


def password_check(runs: int) -> list[str]:
    hashed = PasswordHash.parse(hash_password("correct horse battery staple"))
    fns: dict[str, Callable[[], object]] = {
        f"scrypt verify, n={hashed.n} r={hashed.r} p={hashed.p}": lambda: hashed.verify(
            "correct horse battery staple"
        )
    }
    return _lines(_interleaved(fns, 1, runs))


def gossip(runs: int) -> list[str]:
    keyed, open_ring = Keyring([os.urandom(32)]), Keyring()
    message = encode_message(Alive("node-1", 7, ("10.0.0.1", 7400), NodeMeta(zone="a")))
    count = PACKET // len(message) - 1

    def round_trip(ring: Keyring) -> object:
        data = encode_envelope(ring, "node-0", 1, 5, [message] * count)
        return decode_envelope(ring, data, stream=False, max_size=PACKET + 64)

    clear = encode_envelope(open_ring, "node-0", 1, 5, [message] * count)
    sealed = encode_envelope(keyed, "node-0", 1, 5, [message] * count)
    lines = _lines(
        _interleaved(
            {
                f"envelope of {len(clear)} bytes, encode + decode, no key (anchor)": lambda: (
                    round_trip(open_ring)
                ),
                f"the same sealed ({len(sealed)} bytes): encode + seal + open + decode": lambda: (
                    round_trip(keyed)
                ),
            },
            5_000,
            runs,
        )
    )
    key, header, body = os.urandom(32), clear[:2], clear[2:]
    lines += _lines(
        _interleaved(
            {
                "HMAC-SHA256 sign + verify of the body (anchor)": lambda: hmac.compare_digest(
                    hmac.digest(key, body, hashlib.sha256), hmac.digest(key, body, hashlib.sha256)
                ),
                "AES-256-GCM seal + open of the body": lambda: keyed.open(
                    header, keyed.seal(header, body)
                ),
            },
            20_000,
            runs,
        )
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (5)")
    args = parser.parse_args(argv)
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| what | CPU us median | worst | ratio to anchor |")
    print("|---|---|---|---|")
    for section in (request_path, password_check, gossip):
        for line in section(args.runs):
            print(line, flush=True)
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
