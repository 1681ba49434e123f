"""The command reader: multibulk and inline commands, pipelining, limits, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.resp.reader import (
    MAX_HEADER_BYTES,
    CommandReader,
    ReaderLimits,
    RespProtocolError,
    split_inline,
)


def multibulk(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def read_all(reader: CommandReader) -> list[list[bytes]]:
    out = []
    while (command := reader.next_command()) is not None:
        out.append(command)
    return out


def commands_of(data: bytes, limits: ReaderLimits | None = None) -> list[list[bytes]]:
    reader = CommandReader(limits)
    reader.feed(data)
    return read_all(reader)


def test_multibulk_and_inline_commands_are_read_in_order() -> None:
    data = multibulk(b"SET", b"k", b"v") + b"PING\r\n" + multibulk(b"GET", b"k") + b"ECHO hi\n"
    assert commands_of(data) == [[b"SET", b"k", b"v"], [b"PING"], [b"GET", b"k"], [b"ECHO", b"hi"]]


def test_empty_arrays_and_empty_lines_are_no_command() -> None:
    data = b"*0\r\n*-1\r\n\r\n  \r\n" + multibulk(b"PING") + b"\r\n"
    assert commands_of(data) == [[b"PING"]]


def test_binary_safe_bulks() -> None:
    value = bytes(range(256)) + b"\r\n*1\r\n"
    assert commands_of(multibulk(b"SET", b"k", value)) == [[b"SET", b"k", value]]


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b'SET k "a b"', [b"SET", b"k", b"a b"]),
        (b'ECHO "\\x41\\n\\t\\\\"', [b"ECHO", b"A\n\t\\"]),
        (b"ECHO 'it\\'s'", [b"ECHO", b"it's"]),
        (b"  a   b  ", [b"a", b"b"]),
        (b'a"b c" d', [b"ab c", b"d"]),
        (b'ECHO ""', [b"ECHO", b""]),
    ],
)
def test_inline_words_follow_redis_quoting(line: bytes, words: list[bytes]) -> None:
    assert split_inline(line) == words


@pytest.mark.parametrize("line", [b'ECHO "abc', b"ECHO 'abc", b'ECHO "a"b', b"ECHO 'a'b"])
def test_unbalanced_quotes_lose_framing(line: bytes) -> None:
    with pytest.raises(RespProtocolError) as info:
        commands_of(line + b"\r\n")
    assert info.value.reply == b"-ERR Protocol error: unbalanced quotes in request\r\n"


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*3000000000\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*2\r\n$x\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$-1\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$3000000000\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n*1\r\n", b"-ERR Protocol error: expected '$', got '*'\r\n"),
        (b"*1\r\n:1\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
        (b"*1\r\n$3\r\nabcXY", b"-ERR Protocol error: expected CRLF after a bulk string\r\n"),
    ],
)
def test_grammar_errors_have_redis_messages(data: bytes, reply: bytes) -> None:
    with pytest.raises(RespProtocolError) as info:
        commands_of(data)
    assert info.value.reply == reply


def test_limits_refuse_before_allocating() -> None:
    limits = ReaderLimits(
        max_bulk_bytes=100, max_array_len=10, max_inline_bytes=50, max_command_bytes=150
    )
    cases = {
        b"*11\r\n": "invalid_multibulk_length",
        b"*1\r\n$101\r\n": "invalid_bulk_length",
        b"*3\r\n" + b"$90\r\n" + b"x" * 90 + b"\r\n$90\r\n": "command_too_large",
        b"P" * 51: "inline_too_long",
        b"*" + b"1" * (MAX_HEADER_BYTES + 1): "header_too_long",
    }
    for data, kind in cases.items():
        with pytest.raises(RespProtocolError) as info:
            commands_of(data, limits)
        assert info.value.kind == kind, data[:20]


def test_a_huge_declared_bulk_waits_without_reparsing() -> None:
    reader = CommandReader()
    reader.feed(b"*2\r\n$3\r\nSET\r\n$1000000\r\n")
    assert reader.next_command() is None
    for _ in range(99):
        reader.feed(b"x" * 10_000)
        assert reader.next_command() is None
    reader.feed(b"x" * 10_000 + b"\r\n")
    command = reader.next_command()
    assert command is not None and command[0] == b"SET" and len(command[1]) == 1_000_000
    assert reader.idle


# --- properties ---------------------------------------------------------------------------------

args_st = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(args_st, min_size=1, max_size=8), st.data())
def test_any_split_and_any_reads_between_give_the_same_commands(
    commands: list[list[bytes]], data: st.DataObject
) -> None:
    """Bytes arrive cut anywhere; after each piece the connection reads all it can or only a
    few (its turn ended) and more bytes arrive before the rest are read: the commands come
    out in order, each once."""
    stream = b"".join(multibulk(*c) for c in commands)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    reader = CommandReader()
    got: list[list[bytes]] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        reader.feed(stream[last:cut])
        last = cut
        turn = data.draw(st.none() | st.integers(0, 3))  # None: every command there is
        if turn is None:
            got.extend(read_all(reader))
            continue
        for _ in range(turn):
            command = reader.next_command()
            if command is None:
                break
            got.append(command)
    got.extend(read_all(reader))
    assert got == commands
    assert reader.idle


def test_every_split_point_of_a_pipeline() -> None:
    stream = multibulk(b"SET", b"key", b"v" * 20) + b"PING\r\n" + multibulk(b"GET", b"key")
    expected = commands_of(stream)
    for cut in range(len(stream) + 1):
        reader = CommandReader()
        reader.feed(stream[:cut])
        got = read_all(reader)
        reader.feed(stream[cut:])
        got += read_all(reader)
        assert got == expected, cut


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_crashes_nor_hangs(data: bytes) -> None:
    reader = CommandReader(ReaderLimits(max_bulk_bytes=1 << 20, max_array_len=1000))
    reader.feed(data)
    try:
        for _ in range(len(data) + 2):  # each command consumes at least one byte
            command = reader.next_command()
            if command is None:
                break
            assert command and all(type(arg) is bytes for arg in command)
        else:
            pytest.fail("the reader returned more commands than there are bytes")
    except RespProtocolError as exc:
        assert exc.reply.startswith(b"-ERR Protocol error: ") and exc.reply.endswith(b"\r\n")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=2**31, max_value=10**30), st.sampled_from([b"*", b"*1\r\n$"]))
def test_huge_lengths_are_refused_at_once(n: int, prefix: bytes) -> None:
    with pytest.raises(RespProtocolError):
        commands_of(prefix + b"%d\r\n" % n)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=2, max_value=100_000))
def test_deep_nesting_is_refused_at_the_second_level(depth: int) -> None:
    with pytest.raises(RespProtocolError) as info:
        commands_of(b"*1\r\n" * depth)
    assert info.value.kind == "expected_bulk"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=20).filter(lambda w: b"\x00" not in w), max_size=5))
def test_inline_words_round_trip_through_quoting(words: list[bytes]) -> None:
    def quote(word: bytes) -> bytes:
        return b'"' + b"".join(b"\\x%02x" % c for c in word) + b'"'

    line = b" ".join(quote(w) for w in words)
    assert split_inline(line) == words
