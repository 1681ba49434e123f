"""TLS inside the raw-socket reactors of the data and RESP ports.

A :class:`TlsSocket` wraps an accepted non-blocking socket with ``ssl.SSLContext.wrap_bio``
(an ``SSLObject`` between two ``MemoryBIO``\\ s) and offers the few socket methods the reactors
call — ``recv_into``, ``send``, ``shutdown``, ``close``, ``fileno`` — with the same
non-blocking contract: ``BlockingIOError`` when nothing can be read yet (during the handshake,
or when only part of a record came), ``0`` at the end of the stream (the peer's close_notify or
its FIN), an ``OSError`` that ends the connection otherwise. So a reactor serves a TLS
connection with its plaintext code; plaintext connections are the sockets themselves and pay
nothing.

Refusals raise :class:`TlsRefused`, whose ``reason`` is what the connection is closed and
counted as (``meshcache_bad_input_total{kind}`` and ``meshcache_connections_closed_total``):
``plaintext_on_tls_port`` (the first byte is not a TLS handshake record: the client is told so
in its own protocol before the close), ``tls_no_client_cert``, ``tls_bad_certificate`` (not
signed by the CA, expired, not yet valid), ``tls_handshake_aborted`` (the client went away
during the handshake, e.g. it did not trust the node's certificate), ``tls_handshake_failed``
(anything else: garbage, an unsupported version, no shared cipher).

Level-triggered epoll wakes a reactor only for bytes still in the kernel, so a read never
leaves decrypted bytes behind: it takes from the kernel at most what, decrypted together with
one partial record already held, fits the caller's buffer.

A client refused at ``max_connections`` is told why in its own protocol: a TLS client's
library could not read a plaintext error, so :class:`TlsRefuser` finishes the handshake in a
task of its own, sends the port's refusal encrypted, then close_notify, and closes. The refused
connection holds no slot of the port; each refusal ends within ``timeout`` seconds, and past
``max_at_once`` refusals under way the next refused connection is closed without a word, so a
flood of connections costs a bounded number of tasks and handshakes at a time.

Writes: ``send`` encrypts all it is given. When the kernel does not take all of the records,
the rest waits here and ``send`` reports one plaintext byte fewer than it was given; the
reactor keeps that byte as unsent and asks epoll for writability, and the next ``send``
(which starts with that byte) writes the waiting records first and does not encrypt the byte
again.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections import Counter
from typing import cast

import trio

from meshcache.security.tls import TLS_HANDSHAKE

# Largest TLS record on the wire (16 KiB of data plus header, MAC, padding): what OpenSSL may
# hold undecrypted between reads.
RECORD_MAX = 16 * 1024 + 2048
RAW_MIN = 4096
# A TLS client refused at the connection limit: how long it may take to finish its handshake
# and read why (a few round trips), and how many such refusals may be under way at once.
REFUSAL_TIMEOUT = 1.0
MAX_REFUSALS = 32


class TlsRefused(OSError):
    """The connection cannot go on; ``reason`` names why (a metric label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def handshake_refusal(exc: ssl.SSLError) -> str:
    """The metric label for a failed server-side handshake."""
    reason = (exc.reason or "").upper()
    if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in reason:
        return "tls_no_client_cert"
    if "CERTIFICATE_VERIFY_FAILED" in reason or isinstance(exc, ssl.SSLCertVerificationError):
        return "tls_bad_certificate"
    return "tls_handshake_failed"


# A fatal TLS alert (protocol_version) for a TLS client that reached a plaintext port: its
# library reports an alert instead of waiting for a handshake that never comes.
PLAINTEXT_PORT_ALERT = bytes([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 70])


def is_tls_hello(first: int) -> bool:
    return first == TLS_HANDSHAKE


class TlsSocket:
    """An accepted socket with a server-side TLS session over memory BIOs."""

    __slots__ = (
        "_bad",
        "_eof",
        "_handshaken",
        "_in",
        "_obj",
        "_out",
        "_owed",
        "_raw_out",
        "_refusal",
        "_spill",
        "_started",
        "family",
        "sock",
    )

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        *,
        refusal: bytes,
        bad_input: Counter[str],
    ) -> None:
        self.sock = sock
        self.family = sock.family
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=True)
        self._handshaken = False
        self._refusal = refusal  # said in the port's own protocol to a plaintext client
        self._bad = bad_input
        self._raw_out = b""  # records the kernel did not take yet
        self._owed = 0  # leading plaintext bytes of the next send already encrypted
        self._spill = b""  # decrypted bytes a short read left (only reads under RECORD_MAX)
        self._eof = False
        self._started = False  # the first bytes came (a plaintext client is told at once)

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def handshaken(self) -> bool:
        return self._handshaken

    def peer_certificate(self) -> dict[str, object] | None:
        cert = self._obj.getpeercert() if self._handshaken else None
        return dict(cert) if cert else None

    # --- reading -------------------------------------------------------------------------------

    def recv_into(self, buffer: bytearray | memoryview, nbytes: int = 0) -> int:
        want = nbytes or len(buffer)
        view = memoryview(buffer)
        if self._spill:
            n = min(want, len(self._spill))
            view[:n] = self._spill[:n]
            self._spill = self._spill[n:]
            return n
        if self._eof:
            return 0
        if not self._handshaken:
            if not self._handshake():
                return 0
            return self._plain(view, want)  # application data sent with its last flight
        if self._raw_out:
            self._flush_raw()
        data = self.sock.recv(max(RAW_MIN, want - RECORD_MAX))  # BlockingIOError passes up
        if not data:
            self._eof = True
            return self._plain(view, want, at_eof=True)
        self._in.write(data)
        return self._plain(view, want)

    def _plain(self, view: memoryview, want: int, *, at_eof: bool = False) -> int:
        """Decrypt into ``view[:want]`` all that the records received so far hold."""
        obj = self._obj
        incoming = self._in
        got = 0
        try:
            while got < want:
                # With a buffer, read() answers how many bytes it put there; none: the peer's
                # close_notify came.
                n = cast(int, obj.read(want - got, view[got:want]))
                if not n:
                    self._eof = True
                    break
                got += n
                if not incoming.pending and not obj.pending():
                    # OpenSSL reads a record at a time (no read-ahead): with nothing left in
                    # the BIO nor decrypted, another read could only raise SSLWantReadError,
                    # which costs more than these two checks.
                    break
            else:
                # ``want`` was under one record (a short read): keep the rest for the next call.
                self._spill = self._rest()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self._eof = True  # close_notify: answer it when closing
        except ssl.SSLError as exc:
            self._bad["tls_bad_record"] += 1
            raise TlsRefused("tls_bad_record", f"bad TLS record: {exc.reason}") from None
        if self._out.pending:
            self._flush_out()  # e.g. a KeyUpdate answer
        if got:
            return got
        if self._eof or at_eof:
            return 0
        raise BlockingIOError

    def _rest(self) -> bytes:
        more = bytearray()
        with contextlib.suppress(ssl.SSLWantReadError):
            while chunk := self._obj.read(RECORD_MAX):
                more += chunk
        return bytes(more)

    def _handshake(self) -> bool:
        """Feed what the kernel has to the handshake. True once it is done; False at the end
        of the stream; BlockingIOError while it goes on; TlsRefused when it failed."""
        data = self.sock.recv(RECORD_MAX)
        if not data:
            if self._started:  # it began a handshake and went away: it refused ours
                self._bad["tls_handshake_aborted"] += 1
                raise TlsRefused("tls_handshake_aborted", "the client ended the handshake")
            return False
        first, self._started = not self._started, True
        if first and data[0] != TLS_HANDSHAKE:
            self._bad["plaintext_on_tls_port"] += 1
            with contextlib.suppress(OSError):
                self.sock.send(self._refusal)
                self.sock.shutdown(socket.SHUT_WR)
            raise TlsRefused("plaintext_on_tls_port", "a plaintext client on a TLS port")
        self._in.write(data)
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_out()
            raise BlockingIOError from None
        except ssl.SSLError as exc:
            self._flush_out()  # the alert tells the client why
            reason = handshake_refusal(exc)
            self._bad[reason] += 1
            detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            raise TlsRefused(reason, f"TLS handshake failed: {detail}") from None
        self._handshaken = True
        self._flush_out()
        return True

    # --- writing -------------------------------------------------------------------------------

    def _flush_out(self) -> None:
        """Write what the TLS session produced (handshake flights, alerts) without blocking."""
        data = self._raw_out + self._out.read()
        self._raw_out = b""
        if data:
            self._raw_out = data
            self._flush_raw()

    def _flush_raw(self) -> bool:
        data = self._raw_out
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        self._raw_out = data[sent:]
        return not self._raw_out

    def send(self, data: bytes | bytearray | memoryview) -> int:
        if self._raw_out and not self._flush_raw():
            return 0  # nothing taken: the reactor keeps all and waits for writability
        owed = self._owed
        if len(data) > owed:
            self._obj.write(memoryview(data)[owed:] if owed else data)
        self._owed = 0
        out = self._out.read()
        try:
            sent = self.sock.send(out)
        except BlockingIOError:
            sent = 0
        if sent == len(out):
            return len(data)
        self._raw_out = out[sent:]
        self._owed = 1
        return len(data) - 1

    # --- ending --------------------------------------------------------------------------------

    def shutdown(self, how: int) -> None:
        if how in (socket.SHUT_WR, socket.SHUT_RDWR) and self._handshaken:
            self._close_notify()
        self.sock.shutdown(how)

    def _close_notify(self) -> None:
        with contextlib.suppress(ssl.SSLError, ValueError):
            self._obj.unwrap()
        with contextlib.suppress(OSError):
            self._flush_out()

    def close(self) -> None:
        if self._handshaken:
            self._close_notify()
        self.sock.close()


class TlsRefuser:
    """Tells clients refused at a TLS port's connection limit why, in TLS.

    One per port. :meth:`refuse` takes the accepted socket over: a task finishes the TLS
    handshake, sends the refusal encrypted and closes (a plaintext client gets the refusal as
    it is), all within ``timeout`` seconds; with ``max_at_once`` refusals under way the socket
    is closed at once instead.
    """

    __slots__ = ("max_at_once", "timeout", "under_way")

    def __init__(self, *, timeout: float = REFUSAL_TIMEOUT, max_at_once: int = MAX_REFUSALS):
        self.timeout = timeout
        self.max_at_once = max_at_once
        self.under_way = 0

    def refuse(
        self, nursery: trio.Nursery, sock: socket.socket, context: ssl.SSLContext, refusal: bytes
    ) -> bool:
        """Close ``sock`` after telling its client ``refusal``. False when too many refusals
        are under way: ``sock`` is then closed at once."""
        if self.under_way >= self.max_at_once:
            sock.close()
            return False
        self.under_way += 1
        nursery.start_soon(self._refuse, sock, context, refusal)
        return True

    async def _refuse(self, sock: socket.socket, context: ssl.SSLContext, refusal: bytes) -> None:
        try:
            with trio.move_on_after(self.timeout):
                await tell_and_close(sock, context, refusal)
        finally:
            self.under_way -= 1
            sock.close()


async def tell_and_close(sock: socket.socket, context: ssl.SSLContext, refusal: bytes) -> None:
    """Serve ``sock`` (non-blocking) a server-side TLS handshake, send ``refusal`` encrypted
    and close_notify, then read and drop what the client still sends until it closes (so no
    reset destroys the refusal before it is read). A plaintext client gets ``refusal`` in the
    clear. Any failure ends it quietly; the caller bounds the time and closes the socket."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    session = context.wrap_bio(incoming, outgoing, server_side=True)
    try:
        data = await _receive(sock)
        if not data:
            return
        if data[0] != TLS_HANDSHAKE:
            await _send_all(sock, refusal)
        else:
            incoming.write(data)
            while True:
                try:
                    session.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await _send_all(sock, outgoing.read())
                data = await _receive(sock)
                if not data:
                    return
                incoming.write(data)
            session.write(refusal)
            with contextlib.suppress(ssl.SSLError):
                session.unwrap()  # close_notify (the client's is not awaited)
            await _send_all(sock, outgoing.read())
        sock.shutdown(socket.SHUT_WR)
        while await _receive(sock):
            pass
    except ssl.SSLError:
        with contextlib.suppress(OSError):
            sock.send(outgoing.read())  # the alert tells the client why the handshake failed
    except OSError:
        pass


async def _receive(sock: socket.socket) -> bytes:
    while True:
        try:
            return sock.recv(RECORD_MAX)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)


async def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)


__all__ = [
    "MAX_REFUSALS",
    "PLAINTEXT_PORT_ALERT",
    "REFUSAL_TIMEOUT",
    "TlsRefused",
    "TlsRefuser",
    "TlsSocket",
    "handshake_refusal",
    "is_tls_hello",
    "tell_and_close",
]
