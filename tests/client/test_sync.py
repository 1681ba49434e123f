"""meshcache.Client against the fake server: results, errors, pooling, retries, timeouts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import meshcache
from meshcache.client import Client
from meshcache.client.engine import run_blocking
from meshcache.client.sync import BlockingConnection
from meshcache.wire import encode_ok
from tests.client.fakeserver import FakeServer


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        yield s


@pytest.fixture
def client(server: FakeServer) -> Iterator[Client]:
    with Client(server.address, timeout=2.0, connect_timeout=2.0) as c:
        yield c


def test_basic_ops(client: Client) -> None:
    assert client.ping() is True
    assert client.set("k", "v") is True
    assert client.get("k") == b"v"
    assert client.get(b"missing") is None
    assert client.set("k", b"w", nx=True) is False
    assert client.set("k", b"w", get=True) == b"v"
    assert client.incr("n") == 1
    assert client.incr("n", 5) == 6
    assert client.decr("n", 2) == 4
    assert client.get("n") == b"4"
    assert client.mset({"a": "1", b"b": b"2"}) is True
    assert client.mget(["a", "b", "zz"]) == [b"1", b"2", None]
    assert client.mget("a", "b") == [b"1", b"2"]
    assert client.exists("a", "b", "zz") == 2
    assert client.delete("a", "b") == 2
    assert client.ttl("k") == -1.0
    assert client.dbsize() == 2


def test_typed_ops_and_shapes(client: Client) -> None:
    assert client.hset("h", {"f1": "a", "f2": "b"}) == 2
    assert client.hset("h", "f3", "c") == 1
    assert client.hgetall("h") == {b"f1": b"a", b"f2": b"b", b"f3": b"c"}
    assert client.zadd("z", {"x": 2, "y": 1.5}) == 2
    assert client.zrange("z", 0, -1) == [b"y", b"x"]
    assert client.zrange("z", 0, -1, withscores=True) == [(b"y", 1.5), (b"x", 2.0)]
    assert client.zrange("z", 0, 0, desc=True) == [b"x"]
    assert client.rpush("l", "a", "b") == 2
    assert client.lrange("l", 0, -1) == [b"a", b"b"]


def test_gets_and_cas(client: Client) -> None:
    client.set("c", "1")
    got = client.gets("c")
    assert got is not None
    value, version = got
    assert value == b"1"
    assert client.cas("c", "2", version) is True
    assert client.cas("c", "3", version) is False
    assert client.get("c") == b"2"
    assert client.gets("nope") is None


def test_server_error_becomes_command_error_subclass(client: Client) -> None:
    client.hset("h", "f", "v")
    with pytest.raises(meshcache.WrongTypeError) as info:
        client.get("h")
    assert info.value.code == meshcache.ErrorCode.WRONGTYPE
    assert isinstance(info.value, meshcache.MeshcacheError)
    # The connection is still fine after an error frame.
    assert client.ping()


def test_bad_argument_is_refused_before_sending(server: FakeServer, client: Client) -> None:
    with pytest.raises(meshcache.BadRequestError):
        client.set("k", 42)  # type: ignore[arg-type]
    with pytest.raises(meshcache.BadRequestError):
        client.incr("k", True)
    assert server.stats.requests == []


def test_namespace_is_sent(server: FakeServer, client: Client) -> None:
    client.set("k", "v", namespace="sessions")
    assert client.get("k", namespace="sessions") == b"v"
    assert client.get("k") is None
    assert server.stats.ops()[:2] == ["RING", "NS_LIST"]  # the smart client's ring fetch
    assert server.stats.requests[2][:2] == ("SET", "sessions")


def test_pipeline_one_write_results_in_order(server: FakeServer, client: Client) -> None:
    with client.pipeline() as pipe:
        pipe.set("a", "1").incr("n").get("a")
        pipe.hgetall("h")
        assert len(pipe) == 4
        assert pipe.execute() == [True, 1, b"1", {}]
        assert pipe.execute() == []
    assert server.stats.connections == 1


def test_pipeline_raises_first_error_after_all_results(server: FakeServer, client: Client) -> None:
    client.hset("h", "f", "v")
    pipe = client.pipeline()
    pipe.get("h").set("after", "x").get("h")
    with pytest.raises(meshcache.WrongTypeError):
        pipe.execute()
    # Every command was sent and applied although the first one failed.
    assert client.get("after") == b"x"


def test_pipeline_errors_in_place(client: Client) -> None:
    client.hset("h", "f", "v")
    pipe = client.pipeline(raise_on_error=False)
    results = pipe.get("h").set("k", "v").execute()
    assert isinstance(results[0], meshcache.WrongTypeError)
    assert results[1] is True


def test_idempotent_op_is_retried_once_on_broken_connection(
    server: FakeServer, client: Client
) -> None:
    client.set("k", "v")
    server.inject("drop_before", "GET")
    assert client.get("k") == b"v"
    assert server.stats.ops().count("GET") == 2
    assert server.stats.connections == 2


def test_retry_happens_only_once(server: FakeServer, client: Client) -> None:
    server.inject("drop_before", "GET")
    server.inject("drop_before", "GET")
    with pytest.raises(meshcache.MeshcacheConnectionError):
        client.get("k")
    assert server.stats.ops().count("GET") == 2
    assert client.ping()


def test_non_idempotent_op_is_not_retried(server: FakeServer, client: Client) -> None:
    server.inject("drop_after", "INCR")
    with pytest.raises(meshcache.MeshcacheConnectionError):
        client.incr("n")
    # It was applied once and not sent again.
    assert server.stats.ops().count("INCR") == 1
    assert client.get("n") == b"1"


def test_pipeline_retry_only_when_every_op_is_idempotent(
    server: FakeServer, client: Client
) -> None:
    server.inject("drop_before", "GET")
    assert client.pipeline().set("a", "1").get("a").execute() == [True, b"1"]
    server.inject("drop_before", "GET")
    with pytest.raises(meshcache.MeshcacheConnectionError):
        client.pipeline().incr("n").get("a").execute()


def test_stale_idle_connection_is_replaced_before_use(server: FakeServer, client: Client) -> None:
    assert client.ping()
    server.drop_all_connections()
    wait_until(lambda: server.stats.open_connections == 0)
    # INCR is not retried, so this only passes if the dead pooled connection is never lent.
    assert client.incr("n") == 1
    assert server.stats.connections == 2


def test_timeout_raises_and_connection_is_discarded(server: FakeServer) -> None:
    with Client(server.address, timeout=0.2) as client:
        server.inject("hold", "GET")
        with pytest.raises(meshcache.MeshcacheTimeout):
            client.get("k")
        server.release.set()
        assert client.ping()
        assert server.stats.connections == 2


def test_failover_to_next_seed(server: FakeServer) -> None:
    dead = FakeServer()  # bound, never accepting... close it so the port refuses
    dead_address = dead.address
    dead.close()
    with Client(f"{dead_address},{server.address}", connect_timeout=1.0) as client:
        assert client.set("k", "v") is True
        assert client.get("k") == b"v"
        assert str(client.router.candidates(None)[0]) == server.address


def test_no_node_answers() -> None:
    dead = FakeServer()
    address = dead.address
    dead.close()
    with (
        Client(address, connect_timeout=1.0) as client,
        pytest.raises(meshcache.MeshcacheConnectionError),
    ):
        client.ping()


def test_unexpected_response_id_is_a_protocol_error(server: FakeServer, client: Client) -> None:
    server.inject("raw", "GET", raw=encode_ok(999, b"x"))
    with pytest.raises(meshcache.RemoteProtocolError):
        client.get("k")
    assert client.ping()


def test_wrong_result_shape_is_a_protocol_error(server: FakeServer, client: Client) -> None:
    server.inject("raw", "GET", raw=lambda rid: encode_ok(rid, 12))
    with pytest.raises(meshcache.RemoteProtocolError):
        client.get("k")


def test_pool_shared_by_threads(server: FakeServer) -> None:
    n_threads, per_thread = 8, 50
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []
    with Client(server.address, max_connections=4) as client:

        def work(i: int) -> None:
            try:
                barrier.wait(5)
                for j in range(per_thread):
                    key = f"t{i}:{j}"
                    assert client.set(key, key) is True
                    assert client.get(key) == key.encode()
                    client.incr("total")
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert client.get("total") == str(n_threads * per_thread).encode()
    assert 1 <= server.stats.max_open_connections <= 4


def test_closed_client_refuses(server: FakeServer) -> None:
    client = Client(server.address)
    client.ping()
    client.close()
    with pytest.raises(meshcache.MeshcacheConnectionError):
        client.ping()
    wait_until(lambda: server.stats.open_connections == 0)


def wait_until(condition: object, timeout: float = 5.0) -> None:
    """Poll ``condition`` (a callable) until it is true or the deadline passes."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.001)


# -- paths the fast pool and socket handling must keep ---------------------------------------


def test_values_larger_than_one_read(client: Client) -> None:
    big = bytes(range(256)) * 1200  # 300 KiB: several recv calls for one reply
    assert client.set("big", big) is True
    assert client.get("big") == big
    assert client.pipeline().get("big").get("big").execute() == [big, big]
    assert client.ping()


def test_timeout_after_part_of_the_reply(server: FakeServer) -> None:
    with Client(server.address, timeout=0.3) as client:
        client.set("k", "v" * 1000)
        server.inject("partial", "GET")  # half the reply now, the rest once released
        with pytest.raises(meshcache.MeshcacheTimeout):
            client.get("k")
        server.release.set()
        assert client.get("k") == b"v" * 1000
        assert server.stats.connections == 2


def test_timeout_is_for_the_whole_reply_not_each_read(server: FakeServer) -> None:
    with Client(server.address, timeout=0.3) as client:
        client.set("k", "v" * 1000)
        # A byte every 50 ms: every read succeeds well within 0.3 s, the reply takes 50 s.
        server.inject("dribble", "GET")
        with pytest.raises(meshcache.MeshcacheTimeout):
            client.get("k")
        server.release.set()
        assert client.get("k") == b"v" * 1000


def hold_a_connection(client: Client) -> BlockingConnection:
    """Borrow a connection from the client's pool, as a call in progress would."""
    return run_blocking(client._acquire(None))


def test_exhausted_pool_times_out_then_recovers(server: FakeServer) -> None:
    with Client(server.address, timeout=0.2, max_connections=1) as client:
        held = hold_a_connection(client)
        with pytest.raises(meshcache.MeshcacheTimeout, match="no free connection"):
            client.ping()
        client._release(held)
        assert client.ping()


def test_waiting_thread_gets_the_connection_given_back(server: FakeServer) -> None:
    with Client(server.address, timeout=5.0, max_connections=1) as client:
        held = hold_a_connection(client)
        outcome: list[object] = []
        waiter = threading.Thread(target=lambda: outcome.append(client.ping()))
        waiter.start()
        wait_until(lambda: len(client._waiters) == 1)
        client._release(held)
        waiter.join(5)
        assert outcome == [True]
        assert server.stats.connections == 1


def test_unasked_bytes_on_an_idle_connection_retire_it(server: FakeServer, client: Client) -> None:
    assert client.ping()
    server.push_all(encode_ok(999, "PONG"))
    idle = [conn for conns in client._idle.values() for conn in conns]
    wait_until(lambda: not any(conn.reusable for conn in idle))
    # INCR is not retried: this passes only if the polluted connection is never lent.
    assert client.incr("n") == 1
    assert server.stats.connections == 2


def pool_of(client: Client, size: int) -> None:
    """Leave ``size`` idle connections in the client's pool."""
    held = [hold_a_connection(client) for _ in range(size)]
    for conn in held:
        client._release(conn)


def test_a_retry_never_takes_a_pooled_connection_to_the_node_that_failed(
    server: FakeServer, client: Client
) -> None:
    client.set("k", "v")
    pool_of(client, 3)
    wait_until(lambda: server.stats.connections == 3)  # the server has accepted them all
    server.inject("drop_before", "GET")
    assert client.get("k") == b"v"
    # The retry opened a connection of its own; the pooled ones to that node were closed.
    assert server.stats.connections == 4
    wait_until(lambda: server.stats.open_connections == 1)


def test_the_timeout_bounds_the_whole_call_retry_included(server: FakeServer) -> None:
    with Client(server.address, timeout=0.5) as client:
        client.set("k", "v")
        server.inject("drop_before", "GET")  # the first attempt breaks at once...
        server.inject("hold", "GET")  # ...and the retry gets no answer
        start = time.monotonic()
        with pytest.raises(meshcache.MeshcacheTimeout, match=r"within 0\.5 s"):
            client.get("k")
        assert time.monotonic() - start < 0.5 + 0.2
        server.release.set()
