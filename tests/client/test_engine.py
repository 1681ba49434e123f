"""One engine for every front end, one set of defaults, and imports that load only what is used."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import subprocess
import sys

import pytest

import meshcache
import meshcache.client as meshcache_client
from meshcache.client import AsyncClient, Client, TrioClient
from meshcache.client.async_base import AsyncPipeline
from meshcache.client.engine import (
    DEFAULT_ADDRESS,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT,
    ClientEngine,
    PipelineBase,
)
from meshcache.client.sync import Pipeline

FRONT_ENDS = [Client, TrioClient, AsyncClient]

# The logic a front end must not have a copy of: it lives in the engine once.
ENGINE_LOGIC = [
    "__init__",
    "from_url",
    "_run",
    "_send",
    "_fetch_ring",
    "_run_plan",
    "_send_group",
    "_acquire",
    "_lend_idle",
    "_connect",
    "_release",
    "_discard",
    "_drop_idle",
]


@pytest.mark.parametrize("front_end", FRONT_ENDS, ids=lambda c: c.__name__)
def test_every_front_end_runs_the_engines_logic(front_end: type[ClientEngine[object]]) -> None:
    assert issubclass(front_end, ClientEngine)
    for name in ENGINE_LOGIC:
        assert name not in vars(front_end), f"{front_end.__name__} has its own {name}"


def test_one_set_of_defaults() -> None:
    parameters = inspect.signature(ClientEngine.__init__).parameters
    assert parameters["addresses"].default == DEFAULT_ADDRESS
    assert parameters["timeout"].default == DEFAULT_TIMEOUT
    assert parameters["connect_timeout"].default == DEFAULT_CONNECT_TIMEOUT
    assert parameters["max_connections"].default == DEFAULT_MAX_CONNECTIONS
    for front_end in FRONT_ENDS:
        client = front_end()
        assert (client.timeout, client.connect_timeout, client.max_connections) == (
            DEFAULT_TIMEOUT,
            DEFAULT_CONNECT_TIMEOUT,
            DEFAULT_MAX_CONNECTIONS,
        )
        assert [str(a) for a in client.router.candidates(None)] == [DEFAULT_ADDRESS]


def test_pipelines_share_one_base() -> None:
    assert issubclass(Pipeline, PipelineBase) and issubclass(AsyncPipeline, PipelineBase)
    for pipeline in (Pipeline, AsyncPipeline):
        assert set(vars(pipeline)) <= {
            "execute",
            "__enter__",
            "__exit__",
            "__aenter__",
            "__aexit__",
            "__doc__",
            "__module__",
            "__qualname__",
            "__firstlineno__",
            "__static_attributes__",
        }


@pytest.mark.parametrize(
    "setting",
    [
        {"max_connections": 0},
        {"timeout": 0},
        {"connect_timeout": -1},
        {"namespace": ""},
        {"addresses": "host:port"},
        {"addresses": []},
    ],
)
def test_bad_settings_are_config_errors(setting: dict[str, object]) -> None:
    for front_end in FRONT_ENDS:
        with pytest.raises(meshcache.ConfigError):
            front_end(**setting)  # type: ignore[arg-type]


def loaded_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after running ``code``."""
    probe = f"import sys\n{code}\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


def test_the_blocking_client_does_not_import_trio_or_asyncio() -> None:
    loaded = loaded_after("import meshcache\nmeshcache.Client\nmeshcache.from_url")
    assert "trio" not in loaded
    assert "asyncio" not in loaded


def test_the_asyncio_client_does_not_import_trio() -> None:
    loaded = loaded_after("import meshcache\nmeshcache.AsyncClient\nimport meshcache.client")
    assert "asyncio" in loaded
    assert "trio" not in loaded


def test_the_trio_client_imports_trio() -> None:
    assert "trio" in loaded_after("import meshcache\nmeshcache.TrioClient")


def test_the_lazy_names_are_listed() -> None:
    names = dir(meshcache)
    for name in ("Client", "TrioClient", "AsyncClient", "from_url", "MeshcacheError"):
        assert name in names
    assert set(meshcache.__all__) <= set(names)
    assert {"Client", "TrioClient", "AsyncClient", "Address"} <= set(dir(meshcache_client))
    with pytest.raises(AttributeError):
        meshcache.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_an_asyncio_connection_lost_after_flushing_its_last_bytes_is_discarded_quietly() -> None:
    """A transport closed with bytes unsent is lost once they are flushed (the node read
    them, then closed): discarding the connection after that must not fail inside asyncio."""
    from meshcache.client.asyncio_client import AsyncioConnection, _ReplyProtocol
    from meshcache.wire.address import Address

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        reader = _ReplyProtocol(Address("127.0.0.1", 1), 1 << 20)
        transport, _ = await loop.create_connection(lambda: reader, sock=ours)
        conn = AsyncioConnection(transport, reader)
        transport.write(b"x" * (8 << 20))  # more than the kernel takes at once: buffered
        transport.close()  # waits for the buffer, then is lost
        async with asyncio.timeout(30):
            while not reader.closed.done():  # the node reads it all
                with contextlib.suppress(BlockingIOError):
                    theirs.recv(1 << 20)
                await asyncio.sleep(0)
        conn.close_now()
        theirs.close()

    asyncio.run(main())


class _Idle:
    """An idle connection as the pool keeps it: all ``_lend_idle`` looks at."""

    reusable = True


def test_a_call_for_a_chosen_node_borrows_an_idle_connection_to_it() -> None:
    # A write to a hot key goes to its owner by choice: it takes an idle connection to the
    # owner without a coroutine, as a call routed by the ring does.
    client = Client("127.0.0.1:1,127.0.0.1:2")
    owner = ("127.0.0.1", 2)
    conn = _Idle()
    client._idle[owner] = [conn]  # type: ignore[list-item]
    assert client._lend_idle(b"k", ("127.0.0.1", 3)) is None
    assert client._idle[owner] == [conn]
    assert client._lend_idle(b"k", owner) is conn
    assert client._lent == 1
    assert client._lend_idle(b"k", owner) is None
    client._lent -= 1
    client.close()
