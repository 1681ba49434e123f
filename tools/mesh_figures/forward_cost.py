"""Instructions a non-owner executes per forward, counted by valgrind (callgrind).

``python -m tools.mesh_figures forward`` measures ops/s and node 0's CPU per forward on real
node processes; on a shared 2-core machine both swing by tens of percent with the load. This
counts what does not: the user-space instructions of node 0's forward path per request. Node 0
runs in this process under callgrind: a real data port (or RESP port), dispatcher, coordinator
and peer pool on a two-member ring whose other member (the *owner*, every key the client sends
is its) is a small process that answers each ``FWD`` at once (a 100-byte value for a GET, true
for a SET), and each ``RELAY`` with a frame per GET it carries. A client process sends
pipelined batches (90% GET, 10% SET) and reads every answer.
After 30 batches the counters are zeroed (``callgrind_control -z``), ``--batches`` batches are
measured, and the counters dumped; the total over the requests is printed. The wake-up budget
(``ROUND_BUDGET``) is set to 30 s so that valgrind's slowness cannot end a turn early and
change the path.

Run it from this file so that a tree without it can be measured (``PYTHONPATH`` picks the
tree)::

    git archive <commit> | tar -x -C /tmp/before
    python tools/mesh_figures/forward_cost.py --tree /tmp/before [--resp] [--depth 16]
    python tools/mesh_figures/forward_cost.py --tree .

The owner and the client are not under valgrind; nor is the kernel's part of node 0's
``send``/``recv`` counted.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HEADER = struct.Struct(">I")
WARMUP_BATCHES = 30
VALUE = b"v" * 100


def _frames(buf: bytes, pos: int) -> tuple[list[bytes], int]:
    """Complete frame bodies in ``buf`` from ``pos``, and where the rest starts."""
    out: list[bytes] = []
    while len(buf) - pos >= 4:
        (n,) = _HEADER.unpack_from(buf, pos)
        if len(buf) - pos - 4 < n:
            break
        out.append(buf[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out, pos


def owner() -> None:
    """The owner: answers every FWD on its one connection at once, and every RELAY with a
    response frame for each body it carries."""
    import msgpack

    pack = msgpack.Packer(use_bin_type=True).pack
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        print(listener.getsockname()[1], flush=True)
        sock, _ = listener.accept()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    with sock:
        while data := sock.recv(1 << 16):
            bodies, pos = _frames(buf + data, 0)
            buf = (buf + data)[pos:]
            out = []
            for body in bodies:
                rid, op, _, args = msgpack.unpackb(body, raw=False)
                result: Any = VALUE if op == "FWD" and args[0] == "GET" else True
                if op == "RELAY":  # GETs, each answered with its client's request id
                    frames = [pack([msgpack.unpackb(b)[0], 0, VALUE, 3]) for b in args[0]]
                    result = [_HEADER.pack(len(f)) + f for f in frames]
                answer = pack([rid, 0, result, 3])
                out.append(_HEADER.pack(len(answer)) + answer)
            if out:
                sock.sendall(b"".join(out))


def _msgpack_batches(keys: list[bytes], depth: int) -> list[bytes]:
    import msgpack

    pack = msgpack.Packer(use_bin_type=True).pack
    rid = 0
    batches = []
    for j in range(512):
        frames = []
        for i in range(depth):
            rid += 1
            key = keys[(j * depth + i) % len(keys)]
            request = [rid, "SET", "default", [key, VALUE]] if rid % 10 == 0 else None
            body = pack(request or [rid, "GET", "default", [key]])
            frames.append(_HEADER.pack(len(body)) + body)
        batches.append(b"".join(frames))
    return batches


def _resp_batches(keys: list[bytes], depth: int) -> list[bytes]:
    def command(*argv: bytes) -> bytes:
        return b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in argv)

    n = 0
    batches = []
    for j in range(512):
        parts = []
        for i in range(depth):
            n += 1
            key = keys[(j * depth + i) % len(keys)]
            parts.append(command(b"SET", key, VALUE) if n % 10 == 0 else command(b"GET", key))
        batches.append(b"".join(parts))
    return batches


def _resp_replies(buf: bytes, pos: int) -> tuple[int, int]:
    """Complete replies (bulk, simple, integer) in ``buf`` from ``pos``; an error raises."""
    got = 0
    while (end := buf.find(b"\r\n", pos)) >= 0:
        kind = buf[pos : pos + 1]
        if kind == b"-":
            raise SystemExit(f"error reply: {buf[pos:end]!r}")
        if kind == b"$" and int(buf[pos + 1 : end]) >= 0:
            size = int(buf[pos + 1 : end])
            if len(buf) < end + 2 + size + 2:
                break
            end += size + 2
        pos = end + 2
        got += 1
    return got, pos


def client(port: int, depth: int, batches: int, resp: bool, keys: list[bytes]) -> None:
    """Closed loop: one batch of ``depth`` in flight; after the warm-up, waits for a line."""
    import msgpack

    pool = _resp_batches(keys, depth) if resp else _msgpack_batches(keys, depth)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with sock:
        for j in range(WARMUP_BATCHES + batches):
            if j == WARMUP_BATCHES:
                print("MARK", flush=True)
                sys.stdin.readline()
            sock.sendall(pool[j % len(pool)])
            got, buf, pos = 0, b"", 0
            while got < depth:
                data = sock.recv(1 << 16)
                if not data:
                    raise SystemExit("node 0 closed the connection")
                buf += data
                if resp:
                    n, pos = _resp_replies(buf, pos)
                    got += n
                else:
                    bodies, pos = _frames(buf, pos)
                    for body in bodies:
                        if msgpack.unpackb(body)[1] != 0:
                            raise SystemExit(f"error answer: {body!r}")
                    got += len(bodies)
    print("DONE", flush=True)


async def node(depth: int, batches: int, resp: bool) -> None:
    """Node 0, in this process (under callgrind): forwards every request to the owner."""
    import trio

    import meshcache.node.net.reactor as reactor
    from meshcache.control import ClusterConfig
    from meshcache.hlc import HLC
    from meshcache.node.admin.metrics import NodeCounters
    from meshcache.node.data.coordinator import Coordinator
    from meshcache.node.data.replication import HintQueue, VersionClamp
    from meshcache.node.data.replicator import Replicator
    from meshcache.node.net.dataport import DataPort, open_listener
    from meshcache.node.net.dispatch import Dispatcher
    from meshcache.node.net.peer_pool import PeerPool
    from meshcache.ring import RingMember
    from meshcache.settings import LimitSettings
    from meshcache.store.policy import NamespacePolicy
    from meshcache.store.store import Store
    from meshcache.wire.ops import Limits

    reactor.ROUND_BUDGET = 30.0  # type: ignore[misc]  # no turn cut short by valgrind's pace
    me = sys.argv[0]
    owner_proc = subprocess.Popen([sys.executable, me, "owner"], stdout=subprocess.PIPE, text=True)
    assert owner_proc.stdout is not None
    owner_id = f"127.0.0.1:{int(owner_proc.stdout.readline())}"
    node_id = "127.0.0.1:1"
    hlc = HLC(lambda: int(time.time() * 1000))
    store = Store(
        clock=time.time,
        hlc=hlc,
        policies={"default": NamespacePolicy(replicas=1, max_bytes=1 << 26)},
    )
    pool = PeerPool()
    hints = HintQueue(max_bytes=1 << 20, max_bytes_per_target=1 << 18, max_age_s=60)
    replicator = Replicator(
        pool, address_of=lambda _: None, alive=lambda _: True, hints=hints, clock=lambda: 0.0
    )
    plane = Coordinator(
        store,
        node_id,
        pool=pool,
        replicator=replicator,
        clamp=VersionClamp(hlc),
        alive=lambda _: True,
        limits=Limits(),
    )
    members = tuple(RingMember(node_id=m, address=m) for m in (node_id, owner_id))
    plane.install(ClusterConfig(version=3, members=members))
    candidates = (b"key:%d" % i for i in range(20_000))
    keys = [k for k in candidates if plane.ring.owners(k, 1)[0].node_id == owner_id][:4000]
    port: Any
    if resp:
        from meshcache.node.net.resp_port import RespPort

        port = RespPort(
            open_listener("127.0.0.1", 0),
            execute=plane.execute,
            routes={},
            limits=LimitSettings(),
            op_limits=Limits(),
            counters=NodeCounters(),
            peers=pool,
        )
        if hasattr(port.server, "relay"):  # a tree that relays GETs: wired as a node does
            relaying = getattr(plane, "execute_or_relay", None)  # (older trees: a keyword)
            port.server.relay = relaying or functools.partial(plane.execute, relay=True)
    else:
        dispatcher = Dispatcher(
            execute=plane.execute,
            routes={},
            limits=Limits(),
            counters=NodeCounters(),
            ring_version=3,
        )
        if "relay" in Dispatcher.__slots__:  # a tree that relays GETs: wired as a node does
            dispatcher.relay = plane.execute
        port = DataPort(open_listener("127.0.0.1", 0), dispatcher, LimitSettings(), peers=pool)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            await nursery.start(plane.run)
            await nursery.start(port.serve)
            argv = [sys.executable, me, "client", str(port.address[1]), str(depth)]
            argv += [str(batches), "resp" if resp else "msgpack", b",".join(keys).decode()]
            proc = await trio.lowlevel.open_process(
                argv, stdout=subprocess.PIPE, stdin=subprocess.PIPE
            )
            assert proc.stdout is not None and proc.stdin is not None
            seen = b""
            async for chunk in proc.stdout:
                seen += chunk
                if b"MARK\n" in seen:
                    seen = seen.replace(b"MARK\n", b"")
                    _control("-z")
                    await proc.stdin.send_all(b"go\n")
                if b"DONE\n" in seen:
                    _control("-d")
                    break
            await proc.wait()
            nursery.cancel_scope.cancel()
    finally:
        owner_proc.kill()
        owner_proc.wait()


def _control(flag: str) -> None:
    subprocess.run(["callgrind_control", flag, str(os.getpid())], check=True, capture_output=True)


def measure(tree: Path, depth: int, batches: int, resp: bool) -> float:
    """Instructions per forward of node 0 from ``tree``."""
    tmp = Path(tempfile.mkdtemp(prefix="meshcache-forward-cost-"))
    try:
        out = tmp / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
        argv += ["--dump-instr=no", sys.executable, str(Path(__file__).resolve()), "node"]
        argv += [str(depth), str(batches), "resp" if resp else "msgpack"]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        subprocess.run(argv, cwd=tree, env=env, check=True, capture_output=True, timeout=1800)
        [dump] = list(tmp.glob("callgrind.out.*.1"))
        lines = dump.read_text().splitlines()
        summary = next(line for line in lines if line.startswith("summary:"))
        return int(summary.split()[1]) / (depth * batches)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["owner"]:
        owner()
        return 0
    if args[:1] == ["client"]:
        port, depth, batches, protocol, keys = args[1:6]
        split = [k.encode() for k in keys.split(",")]
        client(int(port), int(depth), int(batches), protocol == "resp", split)
        return 0
    if args[:1] == ["node"]:
        import trio

        trio.run(node, int(args[1]), int(args[2]), args[3] == "resp")
        return 0
    parser = argparse.ArgumentParser(
        prog="python tools/mesh_figures/forward_cost.py", description=__doc__
    )
    parser.add_argument("--tree", type=Path, default=Path.cwd(), help="source tree of node 0")
    parser.add_argument("--depth", type=int, default=16, help="pipeline depth (16)")
    parser.add_argument("--batches", type=int, default=150, help="measured batches (150)")
    parser.add_argument("--resp", action="store_true", help="the RESP port (else msgpack)")
    ns = parser.parse_args(args)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    cost = measure(ns.tree.resolve(), ns.depth, ns.batches, ns.resp)
    port = "RESP" if ns.resp else "msgpack"
    print(
        f"{ns.tree}: {cost:,.0f} instructions per forward on node 0 ({port} port, depth "
        f"{ns.depth}, {ns.batches} batches, 90/10 GET/SET)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
