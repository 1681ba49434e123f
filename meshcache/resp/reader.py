"""Splitting a client's byte stream into commands: the sans-I/O request side of RESP.

A Redis client sends each command either as a *multibulk* — an array of bulk strings,
``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n`` — or as an *inline* line, ``PING\\r\\n``, split into
words like a shell does (``redis-benchmark`` sends its ``PING_INLINE`` test that way, and
``telnet`` users type them). :class:`CommandReader` takes bytes as they arrive and returns one
command at a time as a list of ``bytes`` (the command name first); it never touches a socket.

Every complete command in the buffer can be read in turn (pipelining): the caller loops on
:meth:`CommandReader.next_command` until it returns None. A multibulk whose bulks arrive over
many reads is not parsed again from its start: the reader keeps the arguments it has and waits
until the bytes a pending bulk needs are there, so a large command costs O(its size).

Input that breaks the grammar raises :class:`RespProtocolError`. Framing is lost then — the
reader cannot know where the next command starts — so the caller answers
:attr:`RespProtocolError.reply` and closes the connection, as Redis does. The messages are
Redis's own (``Protocol error: invalid multibulk length`` ...). What a command may cost is bounded
by :class:`ReaderLimits`: a bulk longer than ``max_bulk_bytes``, an array longer than
``max_array_len``, a command larger than ``max_command_bytes`` in all, an inline line longer
than ``max_inline_bytes`` and a length header longer than ``MAX_HEADER_BYTES`` are refused
before anything of that size is allocated.

Commands are flat: an element of a request array must be a bulk string, so nesting is refused
at its first level (``expected '$', got '*'``). Replies, which do nest, are read by
:class:`meshcache.resp.decoder.ValueReader`, which has a depth limit of its own.

Where this reader is stricter than Redis: the two bytes after a bulk's data must be ``\\r\\n``
(Redis skips them unchecked); a mismatch means the client's lengths are wrong, and the
connection is closed before it can run a command made of misaligned bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshcache.errors import RemoteProtocolError

#: The longest ``*<n>`` or ``$<n>`` header line Redis accepts (its PROTO_INLINE_MAX_SIZE).
MAX_HEADER_BYTES = 64 * 1024

_STAR = 0x2A  # '*'
# Unread bytes below this are joined to the next read as a new bytes object; above it (a large
# value arriving over many reads) they grow a bytearray, which costs O(n) in all.
_JOIN_BELOW = 64 * 1024
# The header of every short bulk, so the fast path compares instead of formatting.
_BULK_HEADERS = tuple(b"$%d" % n for n in range(4096))
_DOLLAR = 0x24  # '$'
_CR = 0x0D
_LF = 0x0A


@dataclass(frozen=True, slots=True)
class ReaderLimits:
    """What one command may cost before it is refused (bytes, or elements for arrays).

    The defaults are Redis's where it has one (an inline line of 64 KiB, 1 Mi arguments) and the
    node's frame limit for sizes (Redis allows 512 MiB bulks; a cache node refuses sooner).
    """

    max_bulk_bytes: int = 16 * 1024 * 1024
    max_array_len: int = 1024 * 1024
    max_inline_bytes: int = 64 * 1024
    max_command_bytes: int = 16 * 1024 * 1024


class RespProtocolError(RemoteProtocolError):
    """The client broke the RESP grammar or a limit; framing is lost.

    Attributes:
        reply: the complete error reply to send before closing (``-ERR Protocol error: ...``).
        kind: a short snake_case name of what went wrong, for counters.
    """

    def __init__(self, detail: str, kind: str) -> None:
        super().__init__(f"Protocol error: {detail}")
        self.kind = kind
        self.reply = b"-ERR Protocol error: %s\r\n" % detail.encode("utf-8", "replace")


def _length(line: bytes | bytearray) -> int | None:
    """The integer of a ``*`` or ``$`` header's digits; None unless it is ``-?[0-9]{1,18}``."""
    if line.isdigit():
        return int(line) if len(line) <= 18 else None
    if line[:1] == b"-" and line[1:].isdigit() and len(line) <= 19:
        return int(line)
    return None


class CommandReader:
    """Turns a stream of bytes into commands (lists of ``bytes``, the name first).

    ``feed`` appends bytes; ``next_command`` returns the next complete command or None when
    more bytes are needed. After a :class:`RespProtocolError` the reader must not be used again.
    """

    __slots__ = (
        "_args",
        "_buf",
        "_bulk",
        "_ends",
        "_left",
        "_need",
        "_pos",
        "_ready",
        "_ready_index",
        "_size",
        "_slow",
        "limits",
    )

    def __init__(self, limits: ReaderLimits | None = None) -> None:
        self.limits = limits or ReaderLimits()
        # Whole reads are kept as the bytes object they arrived as (arguments are sliced out of
        # it, one copy each); only an unfinished command moves into a bytearray, which then
        # grows in amortised O(n) however many reads a large command takes.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._need = 0  # bytes that must be buffered past ``_pos`` before parsing is worth it
        # The multibulk being read: its arguments so far, how many are missing, the length of
        # the bulk whose header was read (-1: none), and the bytes it has used so far.
        self._args: list[bytes] | None = None
        self._left = 0
        self._bulk = -1
        self._size = 0
        # The commands the fast path read from the buffer at once, the buffer position after
        # each, the index of the next one to return, and a buffer it gave up on.
        self._ready: list[list[bytes]] | None = None
        self._ends: list[int] = []
        self._ready_index = 0
        self._slow: bytes | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a command."""
        return len(self._buf) - self._pos

    @property
    def idle(self) -> bool:
        """True when no command is partly read (nothing buffered, no arguments held)."""
        return self._args is None and self._pos >= len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        buf, pos = self._buf, self._pos
        self._ready = None  # ``_pos`` is at the first one not returned: read again with the rest
        if pos >= len(buf):
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
            return
        if len(buf) - pos < _JOIN_BELOW and type(buf) is bytes:
            # A command cut by the end of a read: join it to the next read as bytes, so the
            # fast path takes the commands that follow it too.
            self._buf = buf[pos:] + data
            self._pos = 0
            return
        if type(buf) is bytearray:
            if pos:
                del buf[:pos]
        else:
            buf = self._buf = bytearray(memoryview(buf)[pos:])
        self._pos = 0
        buf += data

    def next_command(self) -> list[bytes] | None:
        """The next complete command, or None until more bytes are fed.

        Raises:
            RespProtocolError: the bytes break the grammar or a limit (close the connection).
        """
        ready = self._ready
        if ready is not None:
            i = self._ready_index
            if i < len(ready):
                self._ready_index = i + 1
                self._pos = self._ends[i]
                return ready[i]
            self._ready = None
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if end - pos < self._need:
            return None
        self._need = 0
        args = self._args
        if (
            args is None
            and type(buf) is bytes
            and pos < end
            and buf[pos] == _STAR
            and self._slow is not buf
        ):
            # The common case, whole multibulks in one read: every one of them is parsed at
            # once, with locals only; anything else (a partial command, a bad one) is left to
            # the careful path below, from the same position.
            whole = self._whole(buf, pos)
            if whole is not None:
                return whole
        if args is None:
            while True:
                if pos >= end:
                    return None
                if buf[pos] != _STAR:
                    self._pos = pos
                    words = self._inline()
                    if words is None or words:
                        return words
                    buf, pos, end = self._buf, self._pos, len(self._buf)
                    continue  # an empty line is no command (Redis ignores it too)
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    if end - pos > MAX_HEADER_BYTES:
                        raise RespProtocolError("too big mbulk count string", "header_too_long")
                    return None
                count = _length(buf[pos + 1 : nl])
                if count is None or count > self.limits.max_array_len:
                    raise RespProtocolError("invalid multibulk length", "invalid_multibulk_length")
                pos = nl + 2
                if count > 0:
                    break
                self._pos = pos  # "*0" and "*-1" are no command at all (Redis skips them)
            args = self._args = []
            self._left = count
            self._bulk = -1
            self._size = 0
        limits = self.limits
        while self._left:
            n = self._bulk
            if n < 0:
                if pos >= end:
                    break
                if buf[pos] != _DOLLAR:
                    got = chr(buf[pos]) if 32 <= buf[pos] < 127 else f"\\x{buf[pos]:02x}"
                    raise RespProtocolError(f"expected '$', got '{got}'", "expected_bulk")
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    if end - pos > MAX_HEADER_BYTES:
                        raise RespProtocolError("too big bulk count string", "header_too_long")
                    break
                length = _length(buf[pos + 1 : nl])
                if length is None or length < 0 or length > limits.max_bulk_bytes:
                    raise RespProtocolError("invalid bulk length", "invalid_bulk_length")
                self._size += nl + 2 - pos + length + 2
                if self._size > limits.max_command_bytes:
                    raise RespProtocolError(
                        f"command over {limits.max_command_bytes} bytes", "command_too_large"
                    )
                pos = nl + 2
                n = self._bulk = length
            if end - pos < n + 2:
                self._need = n + 2
                break
            if buf[pos + n] != _CR or buf[pos + n + 1] != _LF:
                raise RespProtocolError("expected CRLF after a bulk string", "missing_crlf")
            args.append(bytes(buf[pos : pos + n]) if type(buf) is not bytes else buf[pos : pos + n])
            pos += n + 2
            self._bulk = -1
            self._left -= 1
        self._pos = pos
        if self._left:
            return None
        self._args = None
        return args

    def _whole(self, buf: bytes, pos: int) -> list[bytes] | None:
        """The first of the complete, well-formed multibulks from ``pos`` on, all read at once
        (the others are returned next); None if the first is not one.

        The buffer is split at every CRLF once (in C) and commands are taken from the pieces:
        a bulk is accepted when its header is exactly ``$<its length>``. A value holding a CRLF
        breaks that, as does a partial command, an inline one or one over a limit: what is
        left of this buffer from there goes to the careful path.
        """
        tokens = buf[pos:].split(b"\r\n")
        last = len(tokens)
        limits = self.limits
        max_array, max_bulk = limits.max_array_len, limits.max_bulk_bytes
        max_command = limits.max_command_bytes
        headers = _BULK_HEADERS
        first: list[bytes] | None = None  # the first command, where it ends, and the others
        first_end = 0
        ready: list[list[bytes]] | None = None
        ends: list[int] = []
        i = 0
        while True:
            head = tokens[i]
            digits = head[1:]
            count = int(digits) if head[:1] == b"*" and digits.isdigit() and len(head) < 12 else 0
            j = i + 1 + 2 * count
            if not 0 < count <= max_array or j >= last:
                break
            values = tokens[i + 2 : j : 2]
            size = len(head) + 2
            # Both slices hold ``count`` pieces; a keyword would cost zip the slower call.
            for header, value in zip(tokens[i + 1 : j : 2], values):  # noqa: B905
                n = len(value)
                if n > max_bulk or header != (headers[n] if n < 4096 else b"$%d" % n):
                    break
                size += len(header) + n + 4
            else:
                if size <= max_command:
                    pos += size
                    if first is None:
                        first, first_end = values, pos
                    elif ready is None:
                        ready, ends = [values], [pos]
                    else:
                        ready.append(values)
                        ends.append(pos)
                    i = j
                    continue
            break
        if pos < len(buf):
            self._slow = buf  # the rest of it goes the careful way
        if first is None:
            return None
        if ready is not None:
            self._ready = ready
            self._ends = ends
            self._ready_index = 0
        self._pos = first_end
        return first

    def _inline(self) -> list[bytes] | None:
        """One inline line at ``_pos``, split into words (quotes and escapes as redis-cli
        writes them); None until its newline is buffered, [] for an empty line."""
        buf, pos = self._buf, self._pos
        nl = buf.find(b"\n", pos)
        if nl < 0:
            if len(buf) - pos > self.limits.max_inline_bytes:
                raise RespProtocolError("too big inline request", "inline_too_long")
            return None
        if nl - pos > self.limits.max_inline_bytes:
            raise RespProtocolError("too big inline request", "inline_too_long")
        stop = nl - 1 if nl > pos and buf[nl - 1] == _CR else nl
        self._pos = nl + 1
        return split_inline(bytes(buf[pos:stop]))


_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("a"): b"\a"}
_SPACE = frozenset(b" \n\r\t\x0b\x0c\x00")
_HEX = frozenset(b"0123456789abcdefABCDEF")


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command into words the way Redis does (``sdssplitargs``).

    Words are separated by whitespace; ``"..."`` takes the escapes ``\\xHH``, ``\\n``, ``\\r``,
    ``\\t``, ``\\b``, ``\\a`` and ``\\<any>``; ``'...'`` takes only ``\\'``. A closing quote must be
    followed by whitespace or the end of the line.

    Raises:
        RespProtocolError: unbalanced quotes (Redis's "unbalanced quotes in request").
    """
    if b'"' not in line and b"'" not in line and b"\x00" not in line:
        return line.split()
    words: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return words
        word = bytearray()
        in_double = in_single = False
        while True:
            if in_double:
                if i >= n:
                    raise _unbalanced()
                c = line[i]
                if (
                    c == 0x5C
                    and i + 3 < n
                    and line[i + 1] == 0x78
                    and (line[i + 2] in _HEX and line[i + 3] in _HEX)
                ):
                    word.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    word += _ESCAPES.get(line[i], line[i : i + 1])
                elif c == 0x22:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        raise _unbalanced()
                    i += 1
                    break
                else:
                    word.append(c)
            elif in_single:
                if i >= n:
                    raise _unbalanced()
                c = line[i]
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    word.append(0x27)
                elif c == 0x27:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        raise _unbalanced()
                    i += 1
                    break
                else:
                    word.append(c)
            else:
                if i >= n or line[i] in _SPACE:
                    break
                c = line[i]
                if c == 0x22:
                    in_double = True
                elif c == 0x27:
                    in_single = True
                else:
                    word.append(c)
            i += 1
        words.append(bytes(word))


def _unbalanced() -> RespProtocolError:
    return RespProtocolError("unbalanced quotes in request", "unbalanced_quotes")


__all__ = [
    "MAX_HEADER_BYTES",
    "CommandReader",
    "ReaderLimits",
    "RespProtocolError",
    "split_inline",
]
