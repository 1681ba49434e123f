"""What the permission check costs on the RESP port's request path, measured in one process.

    python -m tools.resp_auth_cost [--runs 7]

``Session.handle`` (the RESP session: command table, argument checks, the op, the reply) for
one ``GET`` and one ``SET`` of a 100-byte value, CPU time (``time.process_time``) per command,
taking turns run by run:

* a port with no guard at all (the anchor: no check is made);
* a connection of a node without users (the guard's anonymous identity, allowed everything);
* a connection authenticated as a user with ``read`` and ``write``;
* a user limited to namespace patterns (its namespace's answer cached per connection).

Printed: median and worst microseconds, and the median of the per-run ratios to the anchor,
with the machine's load (``os.getloadavg``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import timeit
from collections.abc import Callable

from meshcache.gossip import Keyring
from meshcache.resp.session import Server
from meshcache.security.acl import grant
from meshcache.security.guard import Guard
from meshcache.security.hashing import hash_password
from meshcache.security.users import parse_users
from tools.resp_path_cost import server


def _server(guard: Guard | None) -> Server:
    return server(1000, guard)


def measure(runs: int, number: int) -> list[str]:
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
    sessions = {
        "no guard (anchor)": _server(None).session(),
        "node without users": _server(Guard()).session(host="127.0.0.1"),
    }
    user = _server(guard).session(host="127.0.0.1")
    assert user.ident is not None
    user.ident.become(grant("app", users["app"].permissions))
    sessions["authenticated user"] = user
    scoped = _server(guard).session(host="127.0.0.1")
    assert scoped.ident is not None
    scoped.ident.become(grant("scoped", users["scoped"].permissions, users["scoped"].namespaces))
    sessions["user with namespace patterns"] = scoped
    key = b"key:%012d" % 5
    commands = {"GET": [b"GET", key], "SET": [b"SET", key, b"y" * 100]}
    lines = []
    for name, argv in commands.items():
        fns: dict[str, Callable[[], object]] = {
            f"{name}, {who}": (lambda s=s, a=argv: s.handle(list(a))) for who, s in sessions.items()
        }
        for fn in fns.values():
            reply = fn()
            assert isinstance(reply, bytes) and not reply.startswith(b"-"), reply
        figures: dict[str, list[float]] = {label: [] for label in fns}
        for _ in range(runs):
            for label, fn in fns.items():
                took = timeit.timeit(fn, number=number, timer=time.process_time)
                figures[label].append(took / number * 1e6)
        anchor = next(iter(figures.values()))
        for label, values in figures.items():
            ratio = statistics.median(v / a for v, a in zip(values, anchor, strict=True))
            lines.append(
                f"| {label} | {statistics.median(values):.3f} | {max(values):.3f} | {ratio:.3f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--number", type=int, default=100_000, help="commands per measurement")
    args = parser.parse_args(argv)
    before = os.getloadavg()[0]
    lines = measure(args.runs, args.number)
    after = os.getloadavg()[0]
    print(f"RESP Session.handle, CPU µs per command, {args.runs} interleaved runs "
          f"(1-minute load {before:.1f} before, {after:.1f} after)\n")  # fmt: skip
    print("| command, connection | median µs | worst µs | ratio to the anchor (median) |")
    print("|---|---|---|---|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
