"""The thin trio driver: moves bytes between real sockets and a sans-I/O :class:`Endpoint`.

This is the only gossip module that imports trio. It owns no protocol logic:

* UDP datagrams received on ``udp_sock`` go to ``endpoint.handle_datagram``;
* push/pull streams accepted on ``tcp_listener`` are one length-prefixed request and one
  length-prefixed reply (4-byte big-endian length; an empty reply frame = no reply);
* ``StreamRequest``s the endpoint emits become one outbound TCP exchange each (or a call of
  the caller's ``exchange`` hook, e.g. to carry push/pull over another protocol), bounded by
  ``stream_timeout``; any failure is reported as ``handle_stream_reply(tag, None, now)``;
* ``endpoint.tick(now)`` runs at ``endpoint.next_deadline()``.

``now`` is always ``trio.current_time()``, so the endpoint sees one monotonic clock (and tests
may use trio's ``MockClock``).

Gossip must not wait behind other work of the process. Datagrams are read without a wait for
as long as the socket has some (up to :data:`RECV_BATCH` per wake-up), and before every tick:
when the loop was held long enough for a probe deadline to pass, the ack waiting in the socket
is seen before the deadline is judged. What the endpoint queues is sent at once from the task
that produced it (a full socket buffer falls back to a queue), so an ack does not wait for a
sender task's turn either.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable

import trio

from meshcache.errors import MeshcacheError
from meshcache.gossip.endpoint import Address, Datagram, Endpoint, StreamRequest

_LEN = struct.Struct(">I")


MAX_DATAGRAM = 65535
_SEND_QUEUE = 4096
# What socket calls raise for a destination they cannot use at all (a host with a NUL or one
# that cannot be IDNA-encoded: TypeError/UnicodeError; a port out of range: OverflowError).
_UNSENDABLE = (TypeError, ValueError, OverflowError)
# Datagrams handled per wake-up before the receiver yields (and the endpoint's output is sent).
RECV_BATCH = 256


async def _receive_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.receive_some(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


async def receive_frame(stream: trio.abc.ReceiveStream, max_size: int) -> bytes | None:
    """One length-prefixed frame, or None on EOF or an over-limit length."""
    header = await _receive_exactly(stream, _LEN.size)
    if header is None:
        return None
    (size,) = _LEN.unpack(header)
    if size > max_size:
        return None
    return await _receive_exactly(stream, size) if size else b""


async def send_frame(stream: trio.abc.SendStream, data: bytes) -> None:
    await stream.send_all(_LEN.pack(len(data)) + data)


def _addr(raw: object) -> Address:
    # IPv6 recvfrom gives (host, port, flowinfo, scope); the endpoint only knows (host, port).
    assert isinstance(raw, tuple)
    return Address(str(raw[0]), int(raw[1]))


async def bind_gossip(host: str, port: int) -> tuple[trio.socket.SocketType, trio.SocketListener]:
    """A UDP socket and a TCP listener on the same ``host:port`` (port 0 = pick a free one).

    Raises:
        OSError: the port is taken (after a few attempts when ``port`` is 0).
    """
    attempts = 20 if port == 0 else 1
    for attempt in range(attempts):
        udp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        try:
            await udp.bind((host, port))
            bound = udp.getsockname()[1]
            tcp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
            try:
                tcp.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
                await tcp.bind((host, bound))
                tcp.listen(128)
            except OSError as exc:
                tcp.close()
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
                udp.close()
                continue
            return udp, trio.SocketListener(tcp)
        except BaseException:
            udp.close()
            raise
    raise OSError(errno.EADDRINUSE, "no free gossip port")  # pragma: no cover


async def run_endpoint(
    endpoint: Endpoint,
    udp_sock: trio.socket.SocketType,
    tcp_listener: trio.SocketListener | None,
    *,
    exchange: Callable[[Address, bytes], Awaitable[bytes | None]] | None = None,
    stream_timeout: float = 5.0,
    max_stream_payload: int = 4 * 1024 * 1024,
    on_progress: Callable[[], None] | None = None,
    stats: Counter[str] | None = None,
    task_status: trio.TaskStatus[Callable[[], None]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Drive ``endpoint`` until cancelled. Closes neither socket (the caller owns them).

    ``await nursery.start(run_endpoint, ...)`` returns ``poke()``: call it (from trio's
    thread) after calling the endpoint directly — ``join``, ``leave``, ``update_meta`` — so
    what that queued is sent and the timers are re-armed.

    Args:
        tcp_listener: where peers' push/pull streams arrive; None when the caller serves them
            some other way (the node answers them on its data port).
        exchange: performs one outbound push/pull (``exchange(dst, payload) -> reply or None``)
            instead of the built-in length-prefixed TCP exchange.
        on_progress: called after every batch of endpoint input or timers, e.g. to drain
            ``take_events()``; it must not block.
        stats: where the driver counts what it could not send: ``unsendable_address`` (a
            destination the socket refuses, e.g. a host name that cannot be encoded; the
            datagram or exchange is dropped) and ``send_queue_full``. Defaults to the
            endpoint's own ``stats`` counter when it has one (``SwimNode`` does).

    No per-destination failure ends the driver: an unreachable peer, a refused address or a
    failed exchange is loss, which SWIM tolerates.
    """
    send_q, recv_q = trio.open_memory_channel[Datagram](_SEND_QUEUE)
    wakeup = trio.Event()
    if stats is None:
        own = getattr(endpoint, "stats", None)
        stats = own if isinstance(own, Counter) else Counter()
    counts: Counter[str] = stats
    # A second handle on the same socket, for reads and writes that must not wait: trio's own
    # methods always yield to the scheduler, which is what a held loop cannot afford.
    raw = socket.socket(fileno=os.dup(udp_sock.fileno()))
    raw.setblocking(False)

    with raw:
        async with trio.open_nursery() as nursery:

            def send_now(dgram: Datagram) -> bool:
                """Send at once; False when the socket buffer is full (queue it then)."""
                try:
                    raw.sendto(dgram.data, dgram.dst)
                except BlockingIOError:
                    return False
                except OSError:
                    pass  # an unreachable peer is just loss, which SWIM tolerates
                except _UNSENDABLE:
                    counts["unsendable_address"] += 1
                return True

            def flush() -> None:
                nonlocal wakeup
                for out in endpoint.take_outgoing():
                    if isinstance(out, Datagram):
                        if send_now(out):
                            continue
                        try:
                            send_q.send_nowait(out)
                        except trio.WouldBlock:
                            counts["send_queue_full"] += 1  # UDP is lossy anyway
                    else:
                        nursery.start_soon(do_exchange, out)
                # The endpoint's next deadline may have moved earlier: wake the timer task.
                wakeup.set()
                wakeup = trio.Event()
                if on_progress is not None:
                    on_progress()

            async def tcp_exchange(dst: Address, data: bytes) -> bytes | None:
                stream = await trio.open_tcp_stream(dst[0], dst[1])
                async with stream:
                    await send_frame(stream, data)
                    reply = await receive_frame(stream, max_stream_payload)
                return reply or None  # an empty frame means "no reply"

            async def do_exchange(req: StreamRequest) -> None:
                reply: bytes | None = None
                with trio.move_on_after(stream_timeout):
                    try:
                        reply = await (exchange or tcp_exchange)(req.dst, req.data)
                    except (
                        OSError,
                        trio.BrokenResourceError,
                        trio.ClosedResourceError,
                        MeshcacheError,
                    ):
                        # A failed exchange is an ordinary event for the protocol (retry,
                        # reconnect).
                        reply = None
                    except _UNSENDABLE:
                        counts["unsendable_address"] += 1
                        reply = None
                endpoint.handle_stream_reply(req.tag, reply, trio.current_time())
                flush()

            async def serve_one(stream: trio.SocketStream) -> None:
                async with stream:
                    with trio.move_on_after(stream_timeout):
                        try:
                            request = await receive_frame(stream, max_stream_payload)
                            if request is None:
                                return
                            src = _addr(stream.socket.getpeername())
                            reply = endpoint.handle_stream_request(
                                src, request, trio.current_time()
                            )
                            flush()
                            await send_frame(stream, reply or b"")
                        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                            return

            async def accept_loop(listener: trio.SocketListener) -> None:
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError:
                        # EMFILE and friends: back off briefly instead of spinning.
                        await trio.sleep(0.1)
                        continue
                    nursery.start_soon(serve_one, stream)

            def drain() -> None:
                """Hand the endpoint what the socket holds (up to RECV_BATCH datagrams)."""
                for _ in range(RECV_BATCH):
                    try:
                        data, raw_src = raw.recvfrom(MAX_DATAGRAM)
                    except BlockingIOError:
                        break
                    except OSError:
                        # e.g. ECONNREFUSED from an earlier send's ICMP error: not fatal.
                        continue
                    endpoint.handle_datagram(_addr(raw_src), data, trio.current_time())
                flush()

            async def receive_loop() -> None:
                while True:
                    await trio.lowlevel.wait_readable(raw)
                    drain()

            async def send_loop() -> None:
                async for dgram in recv_q:
                    try:
                        await udp_sock.sendto(dgram.data, dgram.dst)
                    except OSError:
                        pass  # an unreachable peer or a full buffer is just loss
                    except _UNSENDABLE:
                        counts["unsendable_address"] += 1

            async def timer_loop() -> None:
                while True:
                    deadline = endpoint.next_deadline()
                    now = trio.current_time()
                    if deadline <= now:
                        # What arrived while the loop was held first: an ack in the socket
                        # must not lose to a probe deadline that passed meanwhile.
                        drain()
                        endpoint.tick(trio.current_time())
                        flush()
                        await trio.lowlevel.checkpoint()
                        continue
                    current = wakeup
                    with trio.move_on_at(deadline if math.isfinite(deadline) else math.inf):
                        await current.wait()

            nursery.start_soon(receive_loop)
            nursery.start_soon(send_loop)
            if tcp_listener is not None:
                nursery.start_soon(accept_loop, tcp_listener)
            nursery.start_soon(timer_loop)
            flush()
            task_status.started(flush)
