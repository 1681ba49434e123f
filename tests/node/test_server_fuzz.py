"""Hypothesis throws hostile byte streams at a real node process; nothing else may notice."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshcache import Client
from meshcache.testing.nodes import NodeProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    path: Path = tmp_path_factory.mktemp("fuzz")
    with NodeProcess(path, "--max-frame-bytes", "65536", "--max-value-bytes", "4096") as n:
        with Client(n.data) as c:
            c.set("canary", b"tweet")
            c.hset("canary-hash", {"f": "v"})
        yield n


def frame(obj: object) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


ints = st.integers(-(2**63), 2**64 - 1)
values = st.recursive(
    st.none() | st.booleans() | ints | st.floats() | st.binary(max_size=40) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
ops = st.sampled_from(
    ["GET", "SET", "HSET", "LPUSH", "ZADD", "INCR", "MSET", "CAS", "NOPE", "INFO"]
)
requests = st.builds(
    lambda i, op, ns, args: [i, op, ns, args],
    ints,
    ops,
    st.sampled_from(["default", "nope", ""]),
    st.lists(values, max_size=5),
)
streams = st.lists(
    st.one_of(
        requests.map(frame),  # well-framed, mostly wrong-typed requests
        values.map(frame),  # well-framed non-requests
        st.binary(max_size=200),  # raw garbage, which may also break framing
    ),
    min_size=1,
    max_size=8,
).map(b"".join)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=streams)
def test_hostile_streams_harm_no_other_client(node: NodeProcess, data: bytes) -> None:
    with socket.create_connection(node.data_address, timeout=5) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):  # read every answer until the node closes
                pass
        except OSError:
            pass  # the node may close first (framing lost): that is allowed
    with Client(node.data, timeout=5) as c:
        assert c.get("canary") == b"tweet"
        assert c.hgetall("canary-hash") == {b"f": b"v"}
        assert c.ping()
