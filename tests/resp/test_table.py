"""The command table against independent expectations: the op table it names, the real
redis-server's own COMMAND INFO, and a property — whatever arguments a client sends with any
command of the table, the session answers with exactly one well-formed reply and never raises."""

from __future__ import annotations

import random
import time
from collections import Counter
from types import SimpleNamespace

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.hlc import HLC
from meshcache.node.admin.latency import RequestLatency
from meshcache.resp.commands import COMMANDS
from meshcache.resp.decoder import Push, decode_all
from meshcache.resp.session import Server
from meshcache.store.policy import NamespacePolicy
from meshcache.store.store import Store
from meshcache.wire.ops import OPS, Limits
from meshcache.wire.pending import Pending
from tests.resp.helpers import RawConn


def test_every_command_names_ops_of_the_op_table() -> None:
    for name, command in COMMANDS.items():
        assert command.name.encode() == name
        for op in command.ops:
            assert op in OPS, f"{command.name} names {op}, which the op table does not have"
        for sub in command.subcommands.values():
            assert sub.name.startswith(command.name + "|")


@pytest.mark.trio
async def test_arity_and_keys_are_those_of_redis(redis_port: int) -> None:
    """Every command the installed redis-server also has: same arity and key positions."""

    def info() -> dict[bytes, list[object]]:
        conn = RawConn(redis_port)
        try:
            names = [c.name for c in COMMANDS.values()]
            reply = decode_all(conn.call("COMMAND", "INFO", *names))[0]
        finally:
            conn.close()
        return {row[0]: row for row in reply if row is not None}

    redis_rows = await trio.to_thread.run_sync(info)
    # Where meshcache follows Redis 7.2 (newer than the installed 7.0) on purpose.
    newer = {b"zrank"}
    compared = 0
    for name, command in COMMANDS.items():
        row = redis_rows.get(name)
        if row is None or name in newer:
            continue
        compared += 1
        assert row[1] == command.arity, name
        assert tuple(row[3:6]) == (command.first_key, command.last_key, command.step), name
    assert compared > 60


def make_server() -> Server:
    store = Store(
        clock=time.time,
        hlc=HLC(lambda: int(time.time() * 1000)),
        policies={"default": NamespacePolicy(max_bytes=1 << 20)},
        tombstone_grace_s=60,
    )
    counters = SimpleNamespace(requests=Counter(), errors=Counter(), latency=RequestLatency())
    return Server(
        execute=store.execute,
        routes={},
        limits=Limits(max_key_bytes=64, max_value_bytes=256),
        counters=counters,  # type: ignore[arg-type]
        wall_clock=time.time,
        rng=random.Random(7),
    )


SERVER = make_server()
names = [*sorted(name.decode() for name in COMMANDS), "nosuch", "GET", "Set"]
words = st.one_of(
    st.sampled_from([b"0", b"-1", b"1", b"2", b"k", b"h", b"inf", b"(1", b"-inf", b"1.5",
                     b"WITHSCORES", b"NX", b"XX", b"EX", b"GET", b"LIMIT", b"REV", b"BYSCORE",
                     b"COUNT", b"3", b"99999999999999999999", b"", b"nan"]),
    st.binary(max_size=70),
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(names), st.lists(words, max_size=6), st.sampled_from([2, 3]))
def test_any_arguments_get_one_well_formed_reply(name: str, args: list[bytes], proto: int) -> None:
    session = SERVER.session()
    session.set_protocol(proto)
    for argv in ([b"HSET", b"h", b"f", b"v"], [b"SET", b"k", b"1"], [name.encode(), *args]):
        reply = session.handle(argv)
        # Nothing here waits on another node: every reply is ready at once.
        assert not isinstance(reply, Pending)
        values = decode_all(reply)
        assert len(values) == 1 and not isinstance(values[0], Push)
    session.handle([b"FLUSHDB"])


def test_answered_commands_are_counted_and_timed_by_op() -> None:
    server = make_server()
    session = server.session()
    session.handle([b"SET", b"timed", b"1"])
    session.handle([b"GET", b"timed"])
    session.handle([b"GET", b"timed"])
    assert server.counters.requests["GET"] == 2
    assert sum(server.counters.latency.counts("GET")) == 2
    assert sum(server.counters.latency.counts("SET")) == 1
