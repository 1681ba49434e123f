"""What one command costs on the RESP port's request path, measured in one process.

    python -m tools.resp_path_cost [--keys 100000] [--depths 1 16] [--repeat 7]

Pipelines of ``GET``\\ s and of ``SET``\\ s of 100-byte values, each key drawn from ``--keys``
stored keys, are fed to a :class:`~meshcache.resp.reader.CommandReader` a pipeline at a time
(``--depths`` commands per read), and every command read is answered by
:meth:`Session.handle <meshcache.resp.session.Session.handle>` of a port on a node without
users, as the port's reactor does: reading, the command table, the argument checks, the store,
the counters and the reply. No socket and no event loop: what the reactor and the system calls
add is measured by ``tools.resp_bench``.

Printed per op and depth: CPU microseconds per command (best of ``--repeat`` passes over 2,000
pipelines, ``time.process_time``), and of that the reader alone.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import timeit

from meshcache.hlc import HLC
from meshcache.node.admin.metrics import NodeCounters
from meshcache.resp.reader import CommandReader
from meshcache.resp.session import Server, Session
from meshcache.security.guard import Guard
from meshcache.store.store import Store
from meshcache.wire import Limits

PIPELINES = 2000
VALUE = b"x" * 100


def multibulk(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def server(keys: int, guard: Guard | None) -> Server:
    """A RESP port's server over a store holding ``keys`` keys ``key:%012d`` of 100 bytes;
    ``guard`` None: a port with no guard at all."""
    store = Store(clock=time.time, hlc=HLC(lambda: time.time_ns() // 1_000_000))
    for i in range(keys):
        store.execute("default", "SET", [b"key:%012d" % i, VALUE, {}])
    return Server(
        execute=store.execute,
        routes={},
        limits=Limits(),
        counters=NodeCounters(),
        wall_clock=time.time,
        rng=random.Random(7),
        guard=guard,
    )


def session(keys: int) -> Session:
    """A session of a port on a node without users, over a store holding ``keys`` keys."""
    return server(keys, Guard()).session(host="127.0.0.1")


def pipelines(op: bytes, depth: int, keys: int, rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(PIPELINES):
        commands = []
        for _ in range(depth):
            key = b"key:%012d" % rng.randrange(keys)
            commands.append(multibulk(op, key) if op == b"GET" else multibulk(op, key, VALUE))
        out.append(b"".join(commands))
    return out


def answer_all(handler: Session, reads: list[bytes]) -> None:
    reader = CommandReader()
    handle = handler.handle
    for data in reads:
        reader.feed(data)
        out = []
        while (argv := reader.next_command()) is not None:
            out.append(handle(argv))
        b"".join(out)


def check(handler: Session, data: bytes, op: bytes) -> None:
    """Every command of ``data`` is answered as Redis would (a value, or ``+OK``)."""
    reader = CommandReader()
    reader.feed(data)
    expected = b"$100\r\n" if op == b"GET" else b"+OK\r\n"
    while (argv := reader.next_command()) is not None:
        reply = handler.handle(argv)
        if not (type(reply) is bytes and reply.startswith(expected)):
            raise SystemExit(f"{op.decode()} answered {reply!r}")


def read_all(reads: list[bytes]) -> None:
    reader = CommandReader()
    for data in reads:
        reader.feed(data)
        while reader.next_command() is not None:
            pass


def measure(keys: int, depths: list[int], repeat: int) -> list[tuple[str, int, float, float]]:
    """(op, depth, µs per command, µs of it reading) for GET and SET at each depth."""
    handler = session(keys)
    rng = random.Random(1)
    rows = []
    for depth in depths:
        for op in (b"GET", b"SET"):
            reads = pipelines(op, depth, keys, rng)
            check(handler, reads[0], op)
            commands = len(reads) * depth
            whole = timeit.repeat(
                lambda r=reads: answer_all(handler, r),
                number=1,
                repeat=repeat,
                timer=time.process_time,
            )
            parse = timeit.repeat(
                lambda r=reads: read_all(r), number=1, repeat=repeat, timer=time.process_time
            )
            rows.append(
                (op.decode(), depth, min(whole) / commands * 1e6, min(parse) / commands * 1e6)
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    rows = measure(args.keys, args.depths, args.repeat)
    print(f"RESP request path in one process, {args.keys} keys, best of {args.repeat} "
          f"(1-minute load {load:.1f} before)\n")  # fmt: skip
    print("| op | depth | CPU µs per command | of which reading |")
    print("|---|---|---|---|")
    for op, depth, whole, parse in rows:
        print(f"| {op} | {depth} | {whole:.2f} | {parse:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
