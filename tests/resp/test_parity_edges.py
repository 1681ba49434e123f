"""Edge cases answered byte for byte as redis-server answers them, in RESP2 and RESP3:
exclusive infinite score bounds, scores out of a double's range, HINCRBY on a field that is not
an integer, ZPOPMIN/ZPOPMAX with count 0 on another type, repeated SET expiries, expire times
that overflow from now, COMMAND INFO of an unknown command, and DECRBY's most negative
decrement (refused and counted as bad input)."""

from __future__ import annotations

import pytest
import trio

from tests.resp.conftest import RespNode
from tests.resp.test_parity import replies

pytestmark = pytest.mark.trio

EDGES = [
    "ZADD z 1 a inf b -inf c",
    "ZRANGEBYSCORE z (+inf +inf",
    "ZRANGEBYSCORE z (inf +inf WITHSCORES",
    "ZRANGEBYSCORE z -inf (-inf",
    "ZREVRANGEBYSCORE z +inf (+inf",
    "ZREVRANGEBYSCORE z (-inf -inf",
    "ZRANGE z (+inf +inf BYSCORE",
    "ZCOUNT z (+inf +inf",
    "ZCOUNT z -inf (-inf",
    "ZCOUNT z (-inf (+inf",
    "ZCOUNT z (+inf (+inf",
    "ZADD z 1e400 d",
    "ZADD z -1e400 d",
    "ZADD z 1e-400 d",
    "ZADD z 0e-400 d",
    "ZADD z +Infinity e",
    "ZINCRBY z 1e400 a",
    "ZRANGE z 0 -1 WITHSCORES",
    "HSET h f x",
    "HINCRBY h f 1",
    "HSET h n 9223372036854775807",
    "HINCRBY h n 1",
    "SET s x",
    "ZPOPMIN s 0",
    "ZPOPMAX s 0",
    "ZPOPMIN nokey 0",
    "ZPOPMIN z 0",
    "SET k v EX 100 EX 200",
    "SET k v PX 100 EX 200",
    "SET k v EX 100 KEEPTTL",
    "SET k v EX abc BOGUS",
    "SET k v EX 9223372036854775",
    "SET k v PX 9223372036854770000",
    "SET k v PX 9223372036854775807",
    "SETEX k 9223372036854775 v",
    "PSETEX k 9223372036854770000 v",
    "EXPIRE k 9223372036854000",
    "EXPIRE nokey 9223372036854000",
    "PEXPIRE k 9223372036854770000",
    "PEXPIRE k 9223370000000000000",
    "PERSIST k",
    "EXPIREAT k 9223372036854775",
    "COMMAND INFO nosuch",
    "DECRBY n -9223372036854775808",
]


@pytest.mark.parametrize("protocol", [2, 3])
async def test_edge_cases_answer_as_redis(
    resp_node: RespNode, redis_port: int, protocol: int
) -> None:
    expected = await trio.to_thread.run_sync(replies, redis_port, protocol, EDGES)
    got = await trio.to_thread.run_sync(replies, resp_node.resp_port, protocol, EDGES)
    diff = [
        f"{line!r}: redis {want!r} meshcache {have!r}"
        for line, want, have in zip(EDGES, expected, got, strict=True)
        if want != have
    ]
    assert not diff, "\n".join(diff)


async def test_every_refused_decrement_is_counted(resp_node: RespNode) -> None:
    await trio.to_thread.run_sync(
        replies, resp_node.resp_port, 2, ["DECRBY n -9223372036854775808"]
    )
    assert resp_node.metric("meshcache_resp_errors_total", kind="overflow") == 1
