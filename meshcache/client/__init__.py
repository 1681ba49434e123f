"""The meshcache client: a sans-I/O core and blocking, trio and asyncio front ends.

``Client`` (blocking, thread-safe), ``TrioClient`` and ``AsyncClient`` (asyncio) have the same
methods (those of :class:`~meshcache.client.commands.Commands`); the async ones are awaited.
"""

from __future__ import annotations

from meshcache.client.async_base import AsyncPipeline
from meshcache.client.asyncio_client import AsyncClient
from meshcache.client.ring_router import RingRouter
from meshcache.client.routing import Address, Router, SeedRouter, parse_addresses
from meshcache.client.sync import Client, Pipeline
from meshcache.client.trio_client import TrioClient

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
    "parse_addresses",
]
