"""A client in its own process (a thread would compete with the node's loop for the GIL and
blur what is measured): ``n`` frames in one write, then every answer read back and checked in
order. Each frame's body is a head, ``<prefix>-<i>``, then ``pad`` bytes; with ``pad`` the head
is cut or filled to 16 bytes. With ``first``, one more frame goes before them whose body is only
its head, ``first`` (cut or filled the same way). The answers expected are the heads: an echo
when ``pad`` is 0, a dispatcher that answers a body's first 16 bytes otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import socket, sys
from meshcache.wire.frame import HEADER, FrameReader
host, prefix = sys.argv[1], sys.argv[3].encode()
port, n, pad = int(sys.argv[2]), int(sys.argv[4]), int(sys.argv[5])
heads = [prefix + b"-%06d" % i for i in range(n)]
if pad:
    heads = [h.ljust(16, b".")[:16] for h in heads]
bodies = [h + b"x" * pad for h in heads]
if len(sys.argv) > 6:
    first = sys.argv[6].encode()
    first = first.ljust(16, b".")[:16] if pad else first
    heads, bodies = [first, *heads], [first, *bodies]
with socket.create_connection((host, port), timeout=30) as sock:
    sock.sendall(b"".join(HEADER.pack(len(b)) + b for b in bodies))
    reader, got = FrameReader(), []
    while len(got) < len(heads):
        body = reader.next_body()
        if body is not None:
            got.append(body)
            continue
        data = sock.recv(1 << 16)
        if not data:
            sys.exit("closed")
        reader.feed(data)
sys.exit(0 if got == heads else "answers out of order")
"""


async def burst_client(
    address: tuple[str, int], prefix: str, n: int, pad: int = 0, first: str | None = None
) -> None:
    """Run the client to its end; it fails (``CalledProcessError``) on a wrong answer."""
    extra = [] if first is None else [first]
    await trio.run_process(
        [
            sys.executable,
            "-c",
            SCRIPT,
            address[0],
            str(address[1]),
            prefix,
            str(n),
            str(pad),
            *extra,
        ],
        cwd=ROOT,
    )
