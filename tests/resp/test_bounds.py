"""Replies whose size the request chooses stay within the node's limits: SRANDMEMBER with a
negative count (members repeated) is refused, and counted, past the bound docs/resp.md names,
and the node serves other clients throughout."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.resp.conftest import RespNode, node_settings, start_resp_node
from tests.resp.helpers import RawConn

pytestmark = pytest.mark.trio

OUT_OF_RANGE = (
    b"-ERR value is out of range, value must between -9223372036854775807 and "
    b"9223372036854775807\r\n"
)


async def test_srandmember_refuses_repeats_past_the_reply_bound(resp_node: RespNode) -> None:
    max_items = resp_node.port.server.limits.max_args

    def client() -> list[bytes]:
        conn = RawConn(resp_node.resp_port)
        other = RawConn(resp_node.resp_port)
        try:
            conn.call("SADD", "s", "m")
            return [
                conn.call("SRANDMEMBER", "s", "-9223372036854775808"),
                conn.call("SRANDMEMBER", "s", "-9223372036854775807"),
                conn.call("SRANDMEMBER", "s", -(max_items + 1)),
                other.call("PING"),
                conn.call("SRANDMEMBER", "s", "-3"),
                conn.call("SRANDMEMBER", "nokey", "-9223372036854775807"),
                conn.call("SRANDMEMBER", "s", "9223372036854775807"),
            ]
        finally:
            conn.close()
            other.close()

    replies = await trio.to_thread.run_sync(client)
    assert replies[0] == OUT_OF_RANGE
    assert replies[1].startswith(b"-ERR value is out of range: a reply of repeated members")
    assert replies[2] == replies[1]
    assert replies[3] == b"+PONG\r\n"
    assert replies[4] == b"*3\r\n" + b"$1\r\nm\r\n" * 3
    assert replies[5] == b"*0\r\n"  # no set: nothing to repeat, as Redis answers
    assert replies[6] == b"*1\r\n$1\r\nm\r\n"
    assert resp_node.metric("meshcache_resp_errors_total", kind="not_integer") == 1
    assert resp_node.metric("meshcache_resp_errors_total", kind="out_of_range") == 2


async def test_srandmember_repeats_are_bounded_in_bytes(tmp_path: Path) -> None:
    settings = node_settings(tmp_path, max_buffered_bytes=1024 * 1024)
    async with trio.open_nursery() as nursery:
        node = await start_resp_node(nursery, settings)

        def client() -> tuple[bytes, bytes]:
            conn = RawConn(node.resp_port)
            try:
                conn.call("SADD", "s", b"x" * 1000, "y")
                return (
                    conn.call("SRANDMEMBER", "s", "-2000"),  # up to 2 MB: over the 1 MiB
                    conn.call("SRANDMEMBER", "s", "-500"),
                )
            finally:
                conn.close()

        refused, answered = await trio.to_thread.run_sync(client)
        assert refused.startswith(b"-ERR value is out of range: a reply of repeated members")
        assert b"1048576 bytes" in refused
        assert answered.startswith(b"*500\r\n")
        assert node.metric("meshcache_resp_errors_total", kind="out_of_range") == 1
        nursery.cancel_scope.cancel()
