"""The sans-I/O client core against bytes: matching by id, partial frames, hostile input."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meshcache
from meshcache.client.commands import CommandQueue, Commands
from meshcache.client.core import FIRST_REQUEST_ID, ClientProtocol, Command, Exchange
from meshcache.client.routing import SeedRouter
from meshcache.errors import CommandError, LocalProtocolError, MeshcacheError, RemoteProtocolError
from meshcache.wire import Address, FrameReader, decode_request, encode_error, encode_ok, pack_frame


class Recorder(Commands, CommandQueue):
    """Collects the commands the builders make, to inspect them without any I/O."""

    def __init__(self) -> None:
        self.commands: list[Command[Any]] = []

    def _execute(self, command: Command[Any]) -> Recorder:
        self.commands.append(command)
        return self


def build(fn: Any) -> Command[Any]:
    rec = Recorder()
    fn(rec)
    (command,) = rec.commands
    return command


def sent_requests(data: bytes) -> list[Any]:
    reader = FrameReader()
    reader.feed(data)
    out = []
    while (body := reader.next_body()) is not None:
        out.append(decode_request(body))
    return out


# -- command building -------------------------------------------------------------------------


def test_builders_normalize_and_encode() -> None:
    c = build(lambda r: r.set("k", "v", 1.5, nx=True))
    assert (c.op, c.namespace, c.args) == ("SET", "default", [b"k", b"v", {"ttl": 1.5, "nx": True}])
    assert c.key == b"k" and c.idempotent
    assert build(lambda r: r.incr("n")).op == "INCR"
    assert build(lambda r: r.incr("n", 2)).args == [b"n", 2]
    assert build(lambda r: r.decr("n", 2)).op == "DECRBY"
    assert build(lambda r: r.zadd("z", {"a": 1, b"b": 2.5})).args == [
        b"z",
        1.0,
        b"a",
        2.5,
        b"b",
        {},
    ]
    assert build(lambda r: r.zadd("z", {"a": 1}, xx=True, ch=True)).args == [
        b"z", 1.0, b"a", {"xx": True, "ch": True}
    ]  # fmt: skip
    incr = build(lambda r: r.zadd_incr("z", 2, "a", gt=True))
    assert incr.args == [b"z", 2.0, b"a", {"gt": True, "incr": True}]
    assert not incr.idempotent  # a repeat would add twice
    assert build(lambda r: r.hset("h", "f", "v")).args == [b"h", b"f", b"v"]
    assert build(lambda r: r.hset("h", {"f": "v", "g": "w"})).args == [b"h", b"f", b"v", b"g", b"w"]
    assert build(lambda r: r.mget(["a", b"b"])).args == [b"a", b"b"]
    assert build(lambda r: r.mget("a", "b")).args == [b"a", b"b"]
    assert build(lambda r: r.cas("k", "v", 7)).args == [b"k", 7, b"v", {}]
    assert build(lambda r: r.zrangebyscore("z", float("-inf"), 3, offset=0, count=2)).args == [
        b"z",
        float("-inf"),
        3.0,
        {"offset": 0, "count": 2},
    ]
    ping = build(lambda r: r.ping())
    assert ping.key is None and ping.namespace == "default"
    assert not build(lambda r: r.lpush("l", "x")).idempotent
    assert build(lambda r: r.dbsize(namespace="sessions")).namespace == "sessions"


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.get(1),
        lambda r: r.set("k", None),
        lambda r: r.incr("k", 1.5),
        lambda r: r.expire("k", True),
        lambda r: r.hset("h", "f"),
        lambda r: r.mset({}),
        lambda r: r.delete(),
        lambda r: r.zadd("z", {"m": "high"}),
    ],
)
def test_bad_arguments_raise_before_anything_is_sent(call: Any) -> None:
    with pytest.raises(meshcache.CommandError):
        build(call)


def test_bad_namespace_type() -> None:
    with pytest.raises(LocalProtocolError):
        build(lambda r: r.get("k", namespace=b"x"))


def test_methods_keep_their_docstrings() -> None:
    assert "None when the key is missing" in (meshcache.Client.get.__doc__ or "")
    assert meshcache.Client("127.0.0.1:1").get.__name__ == "get"


# -- the protocol -----------------------------------------------------------------------------


def commands(*ops: tuple[str, list[Any]]) -> list[Command[Any]]:
    return [Command.build(op, args, "default", lambda v: v) for op, args in ops]


def test_pipelined_replies_matched_by_id_in_any_order() -> None:
    proto = ClientProtocol()
    cmds = commands(("GET", ["a"]), ("GET", ["b"]), ("GET", ["c"]))
    ex = Exchange(proto, cmds)
    ids = [r.id for r in sent_requests(ex.outgoing)]
    assert len(set(ids)) == 3 and 0 not in ids
    assert proto.pending == 3
    assert not ex.receive_data(encode_ok(ids[2], b"C") + encode_ok(ids[0], b"A"))
    assert ex.receive_data(encode_ok(ids[1], b"B", ring_version=4))
    assert ex.results() == [b"A", b"B", b"C"]
    assert proto.pending == 0 and proto.ring_version == 4


def test_partial_frames_byte_by_byte() -> None:
    proto = ClientProtocol()
    ex = Exchange(proto, commands(("GET", ["a"]), ("PING", [])))
    ids = [r.id for r in sent_requests(ex.outgoing)]
    data = encode_ok(ids[0], b"x" * 300) + encode_ok(ids[1], "PONG")
    for i in range(len(data) - 1):
        assert not ex.receive_data(data[i : i + 1])
    assert ex.receive_data(data[-1:])
    assert ex.results() == [b"x" * 300, "PONG"]


def test_error_reply_raises_the_subclass_or_stands_in_place() -> None:
    proto = ClientProtocol()
    ex = Exchange(proto, commands(("GET", ["a"]), ("GET", ["b"])))
    ids = [r.id for r in sent_requests(ex.outgoing)]
    ex.receive_data(encode_error(ids[0], "WRONGTYPE", "nope") + encode_ok(ids[1], b"ok"))
    with pytest.raises(meshcache.WrongTypeError, match="nope"):
        ex.results()
    res = ex.results(raise_on_error=False)
    assert isinstance(res[0], meshcache.WrongTypeError) and res[1] == b"ok"
    # An error frame does not kill the connection.
    assert proto.error is None
    proto.send(commands(("PING", []))[0])


def test_unknown_code_is_kept_as_text() -> None:
    proto = ClientProtocol()
    ex = Exchange(proto, commands(("PING", [])))
    ex.receive_data(encode_error(FIRST_REQUEST_ID, "FROM_THE_FUTURE", "new"))
    (err,) = ex.results(raise_on_error=False)
    assert type(err) is CommandError and err.code == "FROM_THE_FUTURE"


def test_connection_level_error_fails_every_pending_request() -> None:
    proto = ClientProtocol()
    ex = Exchange(proto, commands(("GET", ["a"]), ("GET", ["b"])))
    assert ex.receive_data(encode_error(0, "TOO_MANY_CONNECTIONS", "full"))
    res = ex.results(raise_on_error=False)
    assert all(isinstance(r, meshcache.errors.TooManyConnectionsError) for r in res)
    assert isinstance(proto.error, CommandError)
    with pytest.raises(LocalProtocolError):
        proto.send(commands(("PING", []))[0])


def test_unasked_id_is_a_protocol_error_and_kills_the_protocol() -> None:
    proto = ClientProtocol()
    ex = Exchange(proto, commands(("PING", [])))
    with pytest.raises(RemoteProtocolError):
        ex.receive_data(encode_ok(99, "PONG"))
    with pytest.raises(RemoteProtocolError):
        proto.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        proto.send(commands(("PING", []))[0])


def test_oversized_frame_is_a_protocol_error() -> None:
    proto = ClientProtocol(max_frame=40)
    Exchange(proto, commands(("PING", [])))
    with pytest.raises(RemoteProtocolError):
        proto.receive_data(encode_ok(FIRST_REQUEST_ID, b"x" * 100))


def test_a_request_over_max_frame_is_refused_before_it_is_queued() -> None:
    proto = ClientProtocol(max_frame=100)
    with pytest.raises(meshcache.TooLargeError, match="over the 100-byte frame limit") as info:
        proto.send(commands(("SET", ["k", b"x" * 100]))[0])
    assert info.value.code == "TOO_LARGE"
    with pytest.raises(meshcache.TooLargeError):
        Exchange(proto, commands(("SET", ["a", "1"]), ("SET", ["k", b"x" * 100])))
    # Nothing of either is queued or awaited: the protocol goes on as if they never were.
    assert proto.pending == 0 and proto.data_to_send() == b""
    exchange = Exchange(proto, commands(("PING", [])))
    rid = decode_request(exchange.outgoing[4:]).id
    assert exchange.receive_data(encode_ok(rid, "PONG"))
    assert exchange.results() == ["PONG"]
    # A frame of exactly max_frame bytes is sent; one byte more is not.
    overhead = len(Exchange(ClientProtocol(), commands(("SET", ["k", b""]))).outgoing) - 4
    exact = Exchange(proto, commands(("SET", ["k", b"x" * (100 - overhead)])))
    assert len(exact.outgoing) == 4 + 100
    with pytest.raises(meshcache.TooLargeError):
        Exchange(proto, commands(("SET", ["k", b"x" * (101 - overhead)])))


def test_results_before_done_is_a_local_error() -> None:
    ex = Exchange(ClientProtocol(), commands(("PING", [])))
    with pytest.raises(LocalProtocolError):
        ex.results()


def test_request_ids_wrap_without_using_zero() -> None:
    proto = ClientProtocol()
    proto._next_id = 2**64 - 1
    cmd = commands(("PING", []))[0]
    assert proto.send(cmd) == 2**64 - 1
    assert proto.send(cmd) == 1
    assert [r.id for r in sent_requests(proto.data_to_send())] == [2**64 - 1, 1]


# -- hostile input ----------------------------------------------------------------------------

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.binary(max_size=20)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.binary(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


def every_method_command() -> list[Command[Any]]:
    rec = Recorder()
    rec.ping().info().dbsize().flush().get("k").set("k", "v").set("k", "v", get=True)
    rec.delete("k").exists("k").expire("k", 1).persist("k").ttl("k").incr("k").decr("k", 3)
    rec.mget("a", "b").mset({"a": "b"}).gets("k").cas("k", "v", 1)
    rec.hset("h", "f", "v").hget("h", "f").hdel("h", "f").hgetall("h").hincrby("h", "f").hlen("h")
    rec.lpush("l", "v").rpush("l", "v").lpop("l").rpop("l").lrange("l", 0, -1).llen("l")
    rec.sadd("s", "m").srem("s", "m").sismember("s", "m").smembers("s").scard("s")
    rec.zadd("z", {"m": 1}).zrem("z", "m").zscore("z", "m").zincrby("z", 1, "m")
    rec.zrange("z", 0, -1).zrange("z", 0, -1, withscores=True)
    rec.zrangebyscore("z", 0, 1).zrangebyscore("z", 0, 1, withscores=True)
    rec.zrank("z", "m").zcard("z")
    return rec.commands


ALL_COMMANDS = every_method_command()


@settings(max_examples=200)
@given(st.sampled_from(range(len(ALL_COMMANDS))), msgpack_values)
def test_any_result_value_decodes_or_is_a_protocol_error(index: int, value: Any) -> None:
    command = ALL_COMMANDS[index]
    proto = ClientProtocol()
    ex = Exchange(proto, [command])
    assert ex.receive_data(encode_ok(FIRST_REQUEST_ID, value))
    (result,) = ex.results(raise_on_error=False)
    assert not isinstance(result, MeshcacheError) or isinstance(result, RemoteProtocolError)


# Mostly response-shaped arrays (ids near the ones in flight, status 0/1/other, any payload), so
# the fuzzing reaches matching and decoding, not only the shape check.
response_like = st.builds(
    lambda rid, status, payload, ring: [rid, status, payload, ring],
    st.integers(min_value=FIRST_REQUEST_ID, max_value=FIRST_REQUEST_ID + 6)
    | st.just(0)
    | st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, 1, 2]),
    msgpack_values | st.tuples(st.text(max_size=12), st.text(max_size=5)).map(list),
    st.integers(min_value=0, max_value=5) | msgpack_values,
)


@settings(max_examples=200)
@given(
    st.lists(response_like | msgpack_values, max_size=6),
    st.sampled_from([1, 3, 16, 4096]),
)
def test_arbitrary_frames_only_raise_remote_protocol_error(objs: list[Any], chunk: int) -> None:
    proto = ClientProtocol()
    ex = Exchange(proto, ALL_COMMANDS[:4])
    data = b"".join(pack_frame(obj) for obj in objs)
    try:
        for i in range(0, len(data), chunk):
            ex.receive_data(data[i : i + chunk])
    except RemoteProtocolError:
        return
    if ex.done:
        ex.results(raise_on_error=False)
        # Raising is fine (the first error), as long as it is one of ours.
        with contextlib.suppress(MeshcacheError):
            ex.results()


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_remote_protocol_error(data: bytes) -> None:
    proto = ClientProtocol()
    ex = Exchange(proto, ALL_COMMANDS[:3])
    with contextlib.suppress(RemoteProtocolError):
        ex.receive_data(data)


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.booleans(), msgpack_values), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
)
def test_well_formed_replies_in_any_order(replies: list[tuple[bool, Any]], rnd: Any) -> None:
    proto = ClientProtocol()
    cmds = commands(*(("GET", ["k"]) for _ in replies))
    ex = Exchange(proto, cmds)
    ids = [r.id for r in sent_requests(ex.outgoing)]
    frames = [
        encode_ok(rid, value) if ok else encode_error(rid, "WRONGTYPE", repr(value)[:10])
        for rid, (ok, value) in zip(ids, replies, strict=True)
    ]
    rnd.shuffle(frames)
    done = False
    for frame in frames:
        done = ex.receive_data(frame)
    assert done
    results = ex.results(raise_on_error=False)
    for (ok, value), result in zip(replies, results, strict=True):
        if ok:
            assert msgpack.packb(result) == msgpack.packb(value)
        else:
            assert isinstance(result, meshcache.WrongTypeError)


# -- routing ----------------------------------------------------------------------------------


def test_seed_router_fails_over_and_sticks() -> None:
    a, b, c = Address("a", 1), Address("b", 1), Address("c", 1)
    router = SeedRouter([a, b, c])
    assert router.candidates(b"k") == [a, b, c]
    router.failed(a)
    assert router.candidates(None) == [b, c, a]
    router.failed(a)  # a stale report about a node no longer preferred changes nothing
    assert router.candidates(None)[0] == b
    router.connected(c)
    assert router.candidates(None) == [c, a, b]
    router.observe_ring_version(3)
    router.observe_ring_version(2)
    assert router.ring_version == 3


# -- what answered, when it is not a node's data port --------------------------------------------


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "answered HTTP: that is a node's admin port"),
        (b"-ERR unknown command\r\n", "answered in the Redis protocol (RESP)"),
        (b"+OK\r\n", "answered in the Redis protocol (RESP)"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "bytes that are not a meshcache reply (b'SSH-2."),
    ],
)
def test_a_peer_that_is_not_a_data_port_is_named(answer: bytes, says: str) -> None:
    proto = ClientProtocol(peer="h:9")
    ex = Exchange(proto, commands(("PING", [])))
    with pytest.raises(RemoteProtocolError, match=r"^h:9 ") as info:
        for i in range(0, len(answer), 3):  # however the bytes are cut
            ex.receive_data(answer[i : i + 3])
    assert says in str(info.value) and str(info.value).endswith("use its data port")
    assert proto.error is info.value


def test_a_msgpack_frame_that_is_not_a_reply_is_named_too() -> None:
    proto = ClientProtocol(peer="h:9")
    Exchange(proto, commands(("PING", [])))
    with pytest.raises(RemoteProtocolError, match="not a meshcache reply"):
        proto.receive_data(pack_frame({"hello": "world"}))


def test_after_one_reply_broken_bytes_are_a_plain_protocol_error() -> None:
    proto = ClientProtocol(peer="h:9")
    ex = Exchange(proto, commands(("PING", [])))
    assert ex.receive_data(encode_ok(FIRST_REQUEST_ID, "PONG"))
    Exchange(proto, commands(("PING", [])))
    with pytest.raises(RemoteProtocolError) as info:
        proto.receive_data(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert "admin port" not in str(info.value)


def test_what_a_timeout_says_depends_on_what_came_back() -> None:
    silent = ClientProtocol(peer="h:9")
    Exchange(silent, commands(("PING", [])))
    assert silent.no_answer(2.0) == (
        "no answer from h:9 within 2 s: it accepted the connection but sent nothing back (if it"
        " is not a node's data port, e.g. its Raft port, use the data port)"
    )
    partial = ClientProtocol(peer="h:9")
    Exchange(partial, commands(("PING", [])))
    partial.receive_data(b"\x00\x00\x00\x10ab")
    assert "sent bytes that are not a meshcache reply (b'\\x00\\x00\\x00\\x10ab')" in (
        partial.no_answer(2.0)
    )
    answered = ClientProtocol(peer="h:9")
    ex = Exchange(answered, commands(("PING", [])))
    ex.receive_data(encode_ok(FIRST_REQUEST_ID, "PONG"))
    assert answered.no_answer(0.5) == "no answer from h:9 within 0.5 s"
    assert answered.no_answer(None) == "no answer from h:9"


def test_the_first_request_ends_an_http_request_head() -> None:
    # So that an HTTP server (a node's admin port) answers at once instead of waiting for more.
    assert b"\r\n\r\n" in Exchange(ClientProtocol(), commands(("PING", []))).outgoing
