"""SCAN and KEYS against a real redis-server: the same keys for any glob pattern, the same
refusals of bad arguments, and a walk that gives every key once on one node (the mesh's walk is
in tests/resp/test_mesh.py and the simulation)."""

from __future__ import annotations

import pytest
import redis
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.store.keyglob import compile_glob
from tests.resp.conftest import RespNode
from tests.resp.helpers import RawConn

pytestmark = pytest.mark.trio

#: Keys made of the bytes a pattern gives meaning to, and a few plain ones.
KEYS = [
    b"a", b"b", b"ab", b"abc", b"a*c", b"a?c", b"[a]", b"a]", b"a\\", b"\\a", b"-", b"^x",
    b"user:1", b"user:10", b"user:2:name", b"", b"a-b", b"zzz", b"a\r\nb", b"\xff\x00",
]  # fmt: skip
STORED = [*KEYS, b"list:1", b"set:1", b"hash:1", b"zset:1"]
PATTERN_BYTES = st.sampled_from([b"a", b"b", b"c", b"*", b"?", b"[", b"]", b"\\", b"-", b"^",
                                 b":", b"1", b"z", b"\xff"])  # fmt: skip


def fill(port: int) -> None:
    conn = RawConn(port)
    try:
        conn.call("FLUSHALL")
        for key in KEYS:
            conn.call("SET", key, b"v")
        conn.call("RPUSH", "list:1", "x")
        conn.call("SADD", "set:1", "m")
        conn.call("HSET", "hash:1", "f", "v")
        conn.call("ZADD", "zset:1", "1", "m")
    finally:
        conn.close()


async def test_keys_matches_what_redis_matches(resp_node: RespNode, redis_port: int) -> None:
    ports = (redis_port, resp_node.resp_port)
    for port in ports:
        await trio.to_thread.run_sync(fill, port)
    clients = [redis.Redis(port=port) for port in ports]
    ran: list[bytes] = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.lists(PATTERN_BYTES, max_size=8).map(b"".join))
    def check(pattern: bytes) -> None:
        ran.append(pattern)
        want, have = (sorted(c.keys(pattern)) for c in clients)
        assert have == want, pattern
        if pattern != b"*":  # KEYS * skips the matcher: the empty key too
            assert sorted(filter(compile_glob(pattern), STORED)) == want, pattern

    try:
        await trio.to_thread.run_sync(check)
    finally:
        for c in clients:
            c.close()
    assert len(ran) >= 100


async def test_a_pattern_past_redis_recursion_cap_matches_nothing_as_in_redis(
    resp_node: RespNode, redis_port: int
) -> None:
    """Redis gives up past 1,000 levels of ``*``: ``a*`` repeated 1,001 times (the last star
    trailing) still matches a long run of ``a``, repeated 1,002 times it matches nothing."""
    key = b"a" * 1100

    def check() -> None:
        clients = [redis.Redis(port=port) for port in (redis_port, resp_node.resp_port)]
        try:
            for c in clients:
                c.flushall()
                c.set(key, b"v")
            for repeat, matched in ((1001, [key]), (1002, [])):
                pattern = b"a*" * repeat
                assert [c.keys(pattern) for c in clients] == [matched, matched]
                assert compile_glob(pattern)(key) is bool(matched)
        finally:
            for c in clients:
                c.close()

    await trio.to_thread.run_sync(check)


ARGUMENT_LINES = [
    ["SCAN", "abc"],
    ["SCAN", "1e3"],
    ["SCAN", " 5"],
    ["SCAN", "18446744073709551616"],
    ["SCAN", "0", "COUNT", "0"],
    ["SCAN", "0", "COUNT", "-1"],
    ["SCAN", "0", "COUNT", "x"],
    ["SCAN", "0", "MATCH"],
    ["SCAN", "0", "FOO", "bar"],
    ["SCAN", "0", "COUNT", "5", "BOGUS"],
    ["SCAN"],
    ["KEYS"],
    ["KEYS", "a", "b"],
    ["SCAN", "0", "TYPE", "list", "COUNT", "1000"],
    ["SCAN", "0", "type", "HASH", "COUNT", "100"],
    ["SCAN", "0", "COUNT", "1000", "TYPE", "nosuchtype"],
    ["SCAN", "0", "MATCH", "user:1?", "COUNT", "1000"],
    ["SCAN", "00", "MATCH", "zz*", "COUNT", "1000"],
    ["SCAN", "+0", "MATCH", "[a]", "COUNT", "1000"],
    ["KEYS", "user:2*"],
    ["KEYS", "["],
    ["KEYS", "a\\"],
    ["KEYS", "nothing*"],
]


@pytest.mark.parametrize("protocol", [2, 3])
async def test_scan_arguments_answer_as_redis(
    resp_node: RespNode, redis_port: int, protocol: int
) -> None:
    """Refusals, and whole walks in one step whose answer has one key or none (the order of
    several is each server's own), byte for byte."""

    def replies(port: int) -> list[bytes]:
        fill(port)
        conn = RawConn(port)
        try:
            if protocol == 3:
                conn.call("HELLO", "3")
            return [conn.call(*line) for line in ARGUMENT_LINES]
        finally:
            conn.close()

    expected = await trio.to_thread.run_sync(replies, redis_port)
    got = await trio.to_thread.run_sync(replies, resp_node.resp_port)
    diff = [
        f"{line!r}: redis {want!r} meshcache {have!r}"
        for line, want, have in zip(ARGUMENT_LINES, expected, got, strict=True)
        if want != have
    ]
    assert not diff, "\n".join(diff)


async def test_a_walk_gives_every_key_once_whatever_the_count(resp_node: RespNode) -> None:
    """More keys than one store table holds, so the walk crosses tables; TYPE and MATCH
    filter on the way; a cursor no walk gave ends it."""

    def walk() -> None:
        client = redis.Redis(port=resp_node.resp_port)
        try:
            pipe = client.pipeline(transaction=False)
            keys = {b"k:%d" % i for i in range(12_000)}
            for key in keys:
                pipe.set(key, b"v")
            pipe.execute()
            client.rpush("l", "x")
            for count in (1, 10, 100, 20_000):
                walked = list(client.scan_iter(count=count))
                assert sorted(walked) == sorted(keys | {b"l"})
            assert list(client.scan_iter(_type="list")) == [b"l"]
            assert set(client.scan_iter(match="k:1000?")) == {b"k:1000%d" % i for i in range(10)}
            assert client.scan(2**64 - 1) == (0, [])
            assert client.dbsize() == len(keys) + 1
        finally:
            client.close()

    await trio.to_thread.run_sync(walk)
