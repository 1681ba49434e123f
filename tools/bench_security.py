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
from meshcache.security.guard import Guard
from meshcache.security.hashing import hash_password
from meshcache.security.users import parse_users
from meshcache.store.store import Store
from meshcache.wire import Limits, encode_request

PACKET = 1400


def _cpu(fn: Callable[[], object], number: int, runs: int) -> list[float]:
    """Microseconds of CPU per call, one figure per run."""
    return [
        t / number * 1e6
        for t in timeit.repeat(fn, number=number, repeat=runs, timer=time.process_time)
    ]


def _line(name: str, figures: list[float], anchor: list[float] | None = None) -> str:
    median, worst = statistics.median(figures), max(figures)
    text = f"| {name} | {median:.2f} | {worst:.2f} |"
    if anchor is not None:
        text += f" {median / statistics.median(anchor):.3f} |"
    else:
        text += " 1 |"
    return text


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
    user.become(guard._grants["app"])
    scoped = guard.session("127.0.0.1")
    scoped.become(guard._grants["scoped"])
    bodies = {
        "GET": encode_request(1, "GET", "default", [b"key:5"])[4:],
        "SET": encode_request(1, "SET", "default", [b"key:5", b"y" * 100])[4:],
    }
    lines = []
    n = 100_000
    for op, body in bodies.items():
        base = _cpu(lambda b=body, s=anonymous: dispatcher.handle(b, s), n, runs)
        lines.append(_line(f"{op}, node without users (anchor)", base))
        for name, session in (
            ("authenticated user", user),
            ("user with namespace patterns", scoped),
        ):
            figures = _cpu(lambda b=body, s=session: dispatcher.handle(b, s), n, runs)
            lines.append(_line(f"{op}, {name}", figures, base))
    return lines


def password_check(runs: int) -> list[str]:
    from meshcache.security.hashing import PasswordHash

    hashed = PasswordHash.parse(hash_password("correct horse battery staple"))
    figures = _cpu(lambda: hashed.verify("correct horse battery staple"), 1, runs)
    return [_line(f"scrypt verify, n={hashed.n} r={hashed.r} p={hashed.p}", figures)]


def gossip(runs: int) -> list[str]:
    keyed, open_ring = Keyring([os.urandom(32)]), Keyring()
    message = encode_message(Alive("node-1", 7, ("10.0.0.1", 7400), NodeMeta(zone="a")))
    count = PACKET // len(message) - 1

    def packet(ring: Keyring) -> bytes:
        return encode_envelope(ring, "node-0", 1, 5, [message] * count)

    clear, sealed = packet(open_ring), packet(keyed)
    n = 20_000
    base = _cpu(
        lambda: decode_envelope(open_ring, packet(open_ring), stream=False, max_size=PACKET + 64),
        n,
        runs,
    )
    lines = [
        _line(f"envelope of {len(clear)} bytes, encode + decode, no key (anchor)", base),
        _line(
            f"the same, sealed ({len(sealed)} bytes): encode + seal + open + decode",
            _cpu(
                lambda: decode_envelope(keyed, packet(keyed), stream=False, max_size=PACKET + 64),
                n,
                runs,
            ),
            base,
        ),
    ]
    key = os.urandom(32)
    body = clear[2:]
    hmac_figures = _cpu(
        lambda: hmac.compare_digest(
            hmac.digest(key, body, hashlib.sha256), hmac.digest(key, body, hashlib.sha256)
        ),
        n,
        runs,
    )
    header = clear[:2]
    seal_figures = _cpu(lambda: keyed.open(header, keyed.seal(header, body)), n, runs)
    lines.append(_line("HMAC-SHA256 sign + verify of the body (anchor)", hmac_figures))
    lines.append(_line("AES-256-GCM seal + open of the body", seal_figures, hmac_figures))
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
