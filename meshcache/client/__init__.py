"""The meshcache client: a sans-I/O core and blocking, trio and asyncio front ends."""

from __future__ import annotations

from meshcache.client.routing import Address, Router, SeedRouter, parse_addresses
from meshcache.client.sync import Client, Pipeline

__all__ = ["Address", "Client", "Pipeline", "Router", "SeedRouter", "parse_addresses"]
