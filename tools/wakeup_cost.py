"""What one wake-up costs a server on this machine: CPU per request at depth 1.

A client sends one small request at a time and waits for its answer, so the server sleeps and
wakes once per request. Each server runs in a process of its own, and its user and system CPU
over the measured requests are read from ``/proc``:

* ``blocking``: a plain Python echo in blocking ``recv``/``send``: the kernel's and the
  machine's part of a wake-up, and little else;
* ``trio``: the same echo on trio (``wait_readable`` on the socket): what trio's run loop adds;
* ``node``: a one-node meshcache mesh's data port answering a ``GET`` of a 100-byte value.

    python -m tools.wakeup_cost [--requests 30000] [--servers blocking,trio,node]

It prints one line per server: requests a second, then user and system microseconds per
request. A figure for docs/benchmarks.md, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ECHO = b"x" * 40
WARMUP = 2000
SERVERS = ("blocking", "trio", "node")


def _echo(kind: str) -> None:
    """The echo server of ``kind``: prints its port, serves one connection until it closes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        print(listener.getsockname()[1], flush=True)
        conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        if kind == "blocking":
            while data := conn.recv(4096):
                conn.send(data)
            return
        import trio

        conn.setblocking(False)

        async def serve() -> None:
            while True:
                await trio.lowlevel.wait_readable(conn)
                try:
                    data = conn.recv(4096)
                except BlockingIOError:
                    continue
                if not data:
                    return
                conn.send(data)

        trio.run(serve)


def _cpu(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def _drive(pid: int, address: tuple[str, int], request: bytes, requests: int) -> str:
    """One request at a time; the server's rate and CPU per request."""
    from meshcache.wire.frame import HEADER

    tick = 1e6 / os.sysconf("SC_CLK_TCK")
    with socket.create_connection(address) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def one() -> None:
            sock.sendall(request)
            if request is ECHO:
                got = 0
                while got < len(ECHO):
                    got += len(sock.recv(4096))
                return
            head = sock.recv(4096)
            want = HEADER.unpack_from(head)[0] + HEADER.size
            while len(head) < want:
                head += sock.recv(4096)

        for _ in range(WARMUP):
            one()
        user, system = _cpu(pid)
        started = time.perf_counter()
        for _ in range(requests):
            one()
        took = time.perf_counter() - started
        user_after, system_after = _cpu(pid)
    return (
        f"{requests / took:9,.0f} req/s  user {(user_after - user) * tick / requests:5.1f} us"
        f"  system {(system_after - system) * tick / requests:5.1f} us per request"
    )


def measure(kind: str, requests: int) -> str:
    if kind != "node":
        argv = [sys.executable, "-m", "tools.wakeup_cost", "--serve", kind]
        with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            try:
                return _drive(proc.pid, ("127.0.0.1", port), ECHO, requests)
            finally:
                proc.wait(timeout=10)
    from meshcache.testing.mesh import Mesh
    from meshcache.wire.frame import encode_request

    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        mesh = Mesh(stack, Path(tmp), 1)
        node = mesh.nodes[0]
        assert node.proc is not None
        mesh.call(node, "SET", [b"k", b"v" * 100, {}])
        request = encode_request(1, "GET", "default", [b"k"])
        return _drive(node.proc.pid, node.data_address, request, requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.wakeup_cost", description=__doc__)
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--serve", choices=("blocking", "trio"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _echo(args.serve)
        return 0
    kinds = args.servers.split(",")
    unknown = sorted(set(kinds) - set(SERVERS))
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    for kind in kinds:
        print(f"{kind:9s}{measure(kind, args.requests)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
