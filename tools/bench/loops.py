"""The two measurement loops, run by each worker process on its own connections.

Written for speed: raw non-blocking sockets on one ``epoll``, ``os.read``/``os.write`` on file
descriptors, parallel lists indexed by connection instead of per-connection objects, replies
checked by comparing bytes with the reply expected (built before the run), and latencies counted
into a fixed log-linear bucket list (``histogram``), all with no allocation per op beyond the
bytes the kernel hands back.

* :func:`closed_loop` — every connection keeps one batch of ``depth`` requests in flight and sends
  the next as soon as the whole batch is answered (redis-benchmark's model). Every op of a batch
  gets the batch's round-trip time.
* :func:`open_loop` — requests leave on a fixed schedule (``rate`` per second, round-robin over the
  connections) whether or not earlier ones were answered, and each latency is measured from the
  *intended* send time, so a server stall is charged to every request it delays (no coordinated
  omission).
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections import deque
from dataclasses import dataclass, field

from tools.bench.histogram import LINEAR, SUB_BITS, new_counts
from tools.bench.protocols import Protocol, ReplyKind
from tools.bench.workload import OpPool

_READ_SIZE = 1 << 16  # below malloc's mmap threshold: a bigger read costs an mmap+munmap per call
_SHIFT_BASE = SUB_BITS + 1


class BenchProtocolError(Exception):
    """The server's byte stream cannot be followed (unparseable or extra bytes, closed socket)."""


@dataclass(slots=True)
class LoopResult:
    """What one loop measured: ``ops`` and the latencies inside the measurement window;
    ``misses`` and ``errors`` over the whole run, warm-up included (any error is worth seeing)."""

    ops: int = 0
    misses: int = 0
    errors: int = 0
    counts: list[int] = field(default_factory=new_counts)
    max_send_lag_us: int = 0  # open loop: the latest a scheduled request left, in µs
    lag_counts: list[int] = field(default_factory=new_counts)  # open loop: send lag per request
    cpu_share: float = 0.0  # CPU seconds per wall second this worker used (set by the runner)


def connect(host: str, port: int, n: int) -> list[socket.socket]:
    """``n`` connected non-blocking sockets with TCP_NODELAY."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            sock = socket.create_connection((host, port), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            socks.append(sock)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def _write_all(fd: int, data: bytes, deadline_ns: int) -> None:
    """Write everything; the kernel's send buffer rarely refuses, so waiting is the slow path."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            if time.perf_counter_ns() > deadline_ns:
                raise BenchProtocolError("the server stopped reading requests") from None
            select.select([], [fd], [], 0.05)


def _scan(
    protocol: Protocol, buf: bytes | bytearray, expected: list[bytes], result: LoopResult
) -> int:
    """Slow path: how many of ``expected`` replies are complete in ``buf``, classifying misses
    and errors into ``result`` once all of them are there. Raises if bytes are left over."""
    pos = 0
    done = 0
    ends = []
    while done < len(expected):
        end = protocol.reply_end(buf, pos)
        if end < 0:
            return done
        ends.append((pos, end))
        pos = end
        done += 1
    if pos != len(buf):
        raise BenchProtocolError(f"{len(buf) - pos} bytes the generator did not ask for")
    for (start, end), want in zip(ends, expected, strict=True):
        reply = bytes(buf[start:end])
        if reply != want:
            kind = protocol.classify(reply)
            if kind == ReplyKind.ERROR:
                result.errors += 1
            elif kind == ReplyKind.MISS:
                result.misses += 1
    return done


def closed_loop(
    socks: list[socket.socket],
    protocol: Protocol,
    pool: OpPool,
    *,
    start_offsets: list[int],
    measure_from_ns: int,
    end_ns: int,
    max_batches: int = 0,
) -> LoopResult:
    """Run batches back to back on every connection until ``end_ns`` (perf_counter_ns).

    Only batches completed in ``[measure_from_ns, end_ns)`` are counted. With ``max_batches``,
    no batch is sent after that many were (the first one per connection included), and the
    loop returns as soon as every batch sent was answered (or at ``end_ns``).
    """
    result = LoopResult()
    counts = result.counts
    n = len(socks)
    fds = [s.fileno() for s in socks]
    slot = {fd: i for i, fd in enumerate(fds)}
    breq = pool.batch_requests
    brep = pool.batch_replies
    nbatch = len(breq)
    depth = pool.depth
    cursor = [off % nbatch for off in start_offsets]
    need = [brep[c] for c in cursor]
    partial: list[bytearray | None] = [None] * n
    sent_at = [0] * n
    linear = LINEAR
    shift_base = _SHIFT_BASE
    sub_bits = SUB_BITS
    clock = time.perf_counter_ns
    read = os.read
    write = os.write
    ops = 0
    # Batches that may still be sent; without a limit, more than the loop can ever send.
    budget = max_batches if max_batches > 0 else 1 << 62
    in_flight = 0
    ep = select.epoll(n)
    try:
        for fd in fds:
            ep.register(fd, select.EPOLLIN)
        for i, fd in enumerate(fds):
            if budget == 0:
                break
            budget -= 1
            in_flight += 1
            sent_at[i] = clock()
            _write_all(fd, breq[cursor[i]], end_ns + 5_000_000_000)
        poll = ep.poll
        while in_flight:
            now = clock()
            if now >= end_ns:
                break
            for fd, _ in poll((end_ns - now) / 1e9):
                i = slot[fd]
                data = read(fd, _READ_SIZE)
                expect = need[i]
                buf = partial[i]
                if buf is None:
                    if data != expect:
                        if not data:
                            raise BenchProtocolError("the server closed a connection")
                        if len(data) < len(expect) and expect.startswith(data):
                            partial[i] = bytearray(data)
                            continue
                        first = cursor[i] * depth
                        got = _scan(protocol, data, pool.replies[first : first + depth], result)
                        if got < depth:
                            partial[i] = bytearray(data)
                            continue
                else:
                    if not data:
                        raise BenchProtocolError("the server closed a connection")
                    buf += data
                    if len(buf) != len(expect) or buf != expect:
                        if len(buf) < len(expect) and expect.startswith(buf):
                            continue
                        first = cursor[i] * depth
                        got = _scan(protocol, buf, pool.replies[first : first + depth], result)
                        if got < depth:
                            continue
                    partial[i] = None
                # The whole batch is answered: count it, then send the next one at once.
                now = clock()
                if now >= measure_from_ns:
                    us = (now - sent_at[i]) // 1000
                    if us < linear:
                        counts[us] += depth
                    else:
                        shift = us.bit_length() - shift_base
                        counts[(shift << sub_bits) + (us >> shift)] += depth
                    ops += depth
                if budget == 0:
                    in_flight -= 1
                    continue
                budget -= 1
                c = cursor[i] + 1
                if c == nbatch:
                    c = 0
                cursor[i] = c
                need[i] = brep[c]
                sent_at[i] = now
                req = breq[c]
                try:
                    sent = write(fd, req)
                except BlockingIOError:
                    sent = 0
                if sent != len(req):
                    _write_all(fd, req[sent:], end_ns + 5_000_000_000)
    finally:
        ep.close()
    # Batches completed after end_ns were not counted; those in flight are abandoned.
    result.ops = ops
    return result


def open_loop(
    socks: list[socket.socket],
    protocol: Protocol,
    pool: OpPool,
    *,
    rate: float,
    start_offset: int,
    start_ns: int,
    measure_from_ns: int,
    end_ns: int,
) -> LoopResult:
    """Send ``rate`` requests per second from ``start_ns``, round-robin over the connections,
    until ``end_ns``; latency of each is measured from its scheduled send time.

    Only requests *scheduled* in ``[measure_from_ns, end_ns)`` and answered by ``end_ns`` +
    a grace second are counted (a request still unanswered then is reported as an error).
    """
    if rate <= 0:
        raise ValueError("rate must be > 0")
    result = LoopResult()
    counts = result.counts
    n = len(socks)
    fds = [s.fileno() for s in socks]
    slot = {fd: i for i, fd in enumerate(fds)}
    reqs = pool.requests
    reps = pool.replies
    nops = len(reqs)
    interval = 1e9 / rate
    intended: list[deque[int]] = [deque() for _ in range(n)]
    expected: list[deque[bytes]] = [deque() for _ in range(n)]
    bufs = [bytearray() for _ in range(n)]
    outq: list[list[bytes]] = [[] for _ in range(n)]
    clock = time.perf_counter_ns
    linear = LINEAR
    shift_base = _SHIFT_BASE
    sub_bits = SUB_BITS
    cursor = start_offset % nops
    seq = 0  # requests scheduled so far; request k is due at start_ns + k * interval
    rr = 0
    ops = 0
    outstanding = 0
    max_lag = 0
    grace_end = end_ns + 1_000_000_000
    ep = select.epoll(n)
    epfd = ep.fileno()
    try:
        for fd in fds:
            ep.register(fd, select.EPOLLIN)
        while True:
            now = clock()
            due = start_ns + int(seq * interval)
            if due <= now and due < end_ns:
                lag = now - due
                if lag > max_lag:
                    max_lag = lag
                touched = []
                lag_counts = result.lag_counts
                while due <= now and due < end_ns:
                    us = (now - due) // 1000
                    if us < linear:
                        lag_counts[us] += 1
                    else:
                        shift = us.bit_length() - shift_base
                        lag_counts[(shift << sub_bits) + (us >> shift)] += 1
                    q = outq[rr]
                    if not q:
                        touched.append(rr)
                    q.append(reqs[cursor])
                    intended[rr].append(due)
                    expected[rr].append(reps[cursor])
                    cursor += 1
                    if cursor == nops:
                        cursor = 0
                    rr += 1
                    if rr == n:
                        rr = 0
                    seq += 1
                    outstanding += 1
                    due = start_ns + int(seq * interval)
                for i in touched:
                    q = outq[i]
                    _write_all(fds[i], q[0] if len(q) == 1 else b"".join(q), grace_end)
                    q.clear()
            if due >= end_ns and (outstanding == 0 or now >= grace_end):
                break
            # epoll waits in whole milliseconds; select() on the epoll fd waits to the µs,
            # which keeps send times on schedule at high rates.
            wait = ((due if due < end_ns else grace_end) - clock()) / 1e9
            if wait > 0 and not select.select([epfd], [], [], wait)[0]:
                continue
            for fd, _ in ep.poll(0):
                i = slot[fd]
                data = os.read(fd, _READ_SIZE)
                if not data:
                    raise BenchProtocolError("the server closed a connection")
                buf = bufs[i]
                buf += data
                now = clock()
                pos = 0
                exp = expected[i]
                times = intended[i]
                while exp:
                    want = exp[0]
                    if buf.startswith(want, pos):
                        pos += len(want)
                    else:
                        end = protocol.reply_end(buf, pos)
                        if end < 0:
                            break
                        kind = protocol.classify(bytes(buf[pos:end]))
                        if kind == ReplyKind.ERROR:
                            result.errors += 1
                        elif kind == ReplyKind.MISS:
                            result.misses += 1
                        pos = end
                    exp.popleft()
                    t = times.popleft()
                    outstanding -= 1
                    if t >= measure_from_ns:
                        us = (now - t) // 1000
                        if us < linear:
                            counts[us] += 1
                        else:
                            shift = us.bit_length() - shift_base
                            counts[(shift << sub_bits) + (us >> shift)] += 1
                        ops += 1
                if pos:
                    del buf[:pos]
                if buf and not exp:
                    raise BenchProtocolError(f"{len(buf)} bytes the generator did not ask for")
    finally:
        ep.close()
    result.errors += outstanding
    result.ops = ops
    result.max_send_lag_us = max_lag // 1000
    return result
