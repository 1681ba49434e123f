"""The meshcache client: one engine, a sans-I/O core, and blocking, trio and asyncio front ends.

``Client`` (blocking, thread-safe), ``TrioClient`` and ``AsyncClient`` (asyncio) have the same
methods (those of :class:`~meshcache.client.commands.Commands`); the async ones are awaited.
They share one engine (:mod:`meshcache.client.engine`): pool, routing, retries, deadlines,
ring refresh, batches split by node and pipelines; each front end only moves bytes.

Names are loaded on first use, so ``Client`` and ``AsyncClient`` never import trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from meshcache.wire.address import Address, parse_address, parse_addresses

if TYPE_CHECKING:
    from meshcache.client.async_base import AsyncPipeline
    from meshcache.client.asyncio_client import AsyncClient
    from meshcache.client.ring_router import RingRouter
    from meshcache.client.routing import Router, SeedRouter
    from meshcache.client.sync import Client, Pipeline
    from meshcache.client.trio_client import TrioClient

_LAZY = {
    "AsyncClient": "meshcache.client.asyncio_client",
    "AsyncPipeline": "meshcache.client.async_base",
    "Client": "meshcache.client.sync",
    "Pipeline": "meshcache.client.sync",
    "RingRouter": "meshcache.client.ring_router",
    "Router": "meshcache.client.routing",
    "SeedRouter": "meshcache.client.routing",
    "TrioClient": "meshcache.client.trio_client",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'meshcache.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "Address",
    "AsyncClient",
    "AsyncPipeline",
    "Client",
    "Pipeline",
    "RingRouter",
    "Router",
    "SeedRouter",
    "TrioClient",
    "parse_address",
    "parse_addresses",
]
