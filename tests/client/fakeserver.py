"""A tiny threaded meshcache node for client tests: real sockets, a dict store, scripted faults.

It speaks the wire protocol through :mod:`meshcache.wire` and implements enough ops to exercise
the clients. Faults are queued with :meth:`FakeServer.inject`: the next request for an op (or any
op) can be dropped before or after it is applied (the connection is closed without an answer),
held until :attr:`FakeServer.release` is set (to test timeouts), answered with its first half
and then held ("partial"), answered a byte every 50 ms until released ("dribble"), or answered
with raw bytes. :meth:`FakeServer.push_all` sends bytes
nobody asked for to every open connection.
Being thread-based, one server serves the sync, trio and asyncio clients alike.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meshcache.errors import CommandError, RemoteProtocolError, WrongTypeError
from meshcache.wire import (
    OPS,
    FrameReader,
    Limits,
    decode_request,
    encode_error,
    encode_ok,
    normalize_args,
)


@dataclass
class Fault:
    """What to do to the next request matching ``op`` (None: any op)."""

    action: str  # "drop_before" | "drop_after" | "hold" | "raw" | "partial" | "dribble"
    op: str | None = None
    #: What "raw" answers: bytes, or a function of the request id giving them.
    raw: bytes | Callable[[int], bytes] = b""


@dataclass
class Stats:
    connections: int = 0
    open_connections: int = 0
    max_open_connections: int = 0
    requests: list[tuple[str, str, list[Any]]] = field(default_factory=list)

    def ops(self) -> list[str]:
        return [op for op, _, _ in self.requests]


class FakeServer:
    """Listens on 127.0.0.1 (an OS-chosen port); ``with FakeServer() as s: s.address``."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.data: dict[str, dict[bytes, Any]] = defaultdict(dict)
        self.versions: dict[tuple[str, bytes], int] = {}
        self.stats = Stats()
        self.faults: list[Fault] = []
        #: Requests held by a "hold" fault are answered once this is set.
        self.release = threading.Event()
        #: Set when a "hold" fault starts holding a request.
        self.holding = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._clock = 0
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> FakeServer:
        self._accept_thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def inject(
        self, action: str, op: str | None = None, raw: bytes | Callable[[int], bytes] = b""
    ) -> None:
        with self._lock:
            self.faults.append(Fault(action, op, raw))

    def drop_all_connections(self) -> None:
        """Close every open client connection (as a node restart would)."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _shutdown(conn)

    def push_all(self, data: bytes) -> None:
        """Send ``data`` unasked on every open client connection."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sendall(data)

    def close(self) -> None:
        self._closed = True
        self.release.set()
        _shutdown(self._listener)
        self._listener.close()
        self.drop_all_connections()
        if self._accept_thread.is_alive():
            self._accept_thread.join(5)
        for thread in list(self._threads):
            thread.join(5)

    # -- serving --------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
                self.stats.connections += 1
                self.stats.open_connections += 1
                self.stats.max_open_connections = max(
                    self.stats.max_open_connections, self.stats.open_connections
                )
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        reader = FrameReader()
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                reader.feed(data)
                out = bytearray()
                while (body := reader.next_body()) is not None:
                    answer = self._answer(body, conn, out)
                    if answer is None:
                        conn.sendall(out)
                        return  # drop: close without answering
                    out += answer
                conn.sendall(out)
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
                self.stats.open_connections -= 1
            conn.close()

    def _take_fault(self, op: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self.faults):
                if fault.op is None or fault.op == op:
                    return self.faults.pop(i)
        return None

    def _answer(self, body: bytes, conn: socket.socket, out: bytearray) -> bytes | None:
        try:
            request = decode_request(body)
        except CommandError as exc:
            return encode_error(getattr(exc, "request_id", 0), exc.code, exc.message)
        except RemoteProtocolError as exc:
            return encode_error(0, "BAD_REQUEST", str(exc))
        with self._lock:
            self.stats.requests.append((request.op, request.namespace, request.args))
        fault = self._take_fault(request.op)
        if fault is not None:
            if fault.action == "drop_before":
                return None
            if fault.action == "raw":
                return fault.raw(request.id) if callable(fault.raw) else fault.raw
            if fault.action == "hold":
                self.holding.set()
                self.release.wait(10)
        try:
            spec = OPS.get(request.op)
            if spec is None:
                raise CommandError("UNKNOWN_OP", f"unknown op {request.op!r}")
            args = normalize_args(spec, request.args, Limits())
            with self._lock:
                value = self._apply(request.op, request.namespace, args)
        except CommandError as exc:
            return encode_error(request.id, exc.code, exc.message)
        if fault is not None and fault.action == "drop_after":
            return None
        answer = encode_ok(request.id, value)
        if fault is not None and fault.action == "partial":
            half = len(answer) // 2
            conn.sendall(bytes(out) + answer[:half])
            out.clear()
            self.holding.set()
            self.release.wait(10)
            return answer[half:]
        if fault is not None and fault.action == "dribble":
            conn.sendall(bytes(out))
            out.clear()
            self.holding.set()
            for i in range(len(answer)):
                conn.sendall(answer[i : i + 1])
                self.release.wait(0.05)  # the pace of the dribble, not a wait for a condition
            return b""
        return answer

    # -- the store ------------------------------------------------------------------------------

    def _apply(self, op: str, ns: str, args: list[Any]) -> Any:
        d = self.data[ns]
        if op == "PING":
            return "PONG"
        if op == "INFO":
            return {"version": "fake", "node_id": "fake", "connections": 1}
        if op == "DBSIZE":
            return len(d)
        if op == "FLUSH":
            d.clear()
            return True
        if op == "GET":
            return self._plain(d, args[0])
        if op == "GETS":
            value = self._plain(d, args[0])
            return None if value is None else [value, self.versions[(ns, args[0])]]
        if op == "SET":
            key, value, options = args
            old = self._plain(d, key)
            if (options.get("nx") and key in d) or (options.get("xx") and key not in d):
                return old if options.get("get") else False
            self._write(ns, key, value)
            return old if options.get("get") else True
        if op == "CAS":
            key, version, value, _ = args
            if key not in d or self.versions[(ns, key)] != version:
                return False
            self._write(ns, key, value)
            return True
        if op == "DELETE":
            return sum(d.pop(k, None) is not None for k in args)
        if op == "EXISTS":
            return sum(k in d for k in args)
        if op == "TTL":
            return -1 if args[0] in d else -2
        if op in ("INCR", "DECR", "INCRBY", "DECRBY"):
            amount = args[1] if len(args) > 1 else 1
            if op.startswith("DECR"):
                amount = -amount
            new = int(self._plain(d, args[0]) or b"0") + amount
            self._write(ns, args[0], str(new).encode())
            return new
        if op == "MGET":
            return [d.get(k) if isinstance(d.get(k), bytes) else None for k in args]
        if op == "MSET":
            for i in range(0, len(args), 2):
                self._write(ns, args[i], args[i + 1])
            return True
        if op == "HSET":
            h = d.setdefault(args[0], {})
            new = 0
            for i in range(1, len(args), 2):
                new += args[i] not in h
                h[args[i]] = args[i + 1]
            return new
        if op == "HGETALL":
            return dict(d.get(args[0], {}))
        if op == "RPUSH":
            lst = d.setdefault(args[0], [])
            lst.extend(args[1:])
            return len(lst)
        if op == "LRANGE":
            lst = d.get(args[0], [])
            stop = args[2] + 1 if args[2] != -1 else None
            return lst[args[1] : stop]
        if op == "ZADD":
            z = d.setdefault(args[0], {})
            new = 0
            for i in range(1, len(args) - 1, 2):  # the last is the options map
                new += args[i + 1] not in z
                z[args[i + 1]] = args[i]
            return new
        if op == "ZRANGE":
            z = d.get(args[0], {})
            rev = bool(args[3].get("rev"))
            items = sorted(z.items(), key=lambda kv: (kv[1], kv[0]), reverse=rev)
            stop = args[2] + 1 if args[2] != -1 else None
            items = items[args[1] : stop]
            if args[3].get("withscores"):
                return [[m, s] for m, s in items]
            return [m for m, _ in items]
        raise CommandError("UNKNOWN_OP", f"the fake server does not implement {op}")

    def _plain(self, d: dict[bytes, Any], key: bytes) -> bytes | None:
        value = d.get(key)
        if value is not None and not isinstance(value, bytes):
            raise WrongTypeError(message="the key holds a typed value")
        return value

    def _write(self, ns: str, key: bytes, value: bytes) -> None:
        self._clock += 1
        self.data[ns][key] = value
        self.versions[(ns, key)] = self._clock


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


__all__ = ["FakeServer", "Fault"]
