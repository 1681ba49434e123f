"""meshcache: a distributed in-memory cache on trio.

Public API only; everything else lives in subpackages.
"""

from __future__ import annotations

from meshcache._version import __version__
from meshcache.client import AsyncClient, Client, TrioClient
from meshcache.errors import (
    BadRequestError,
    CommandError,
    ConfigError,
    ErrorCode,
    MeshcacheConnectionError,
    MeshcacheError,
    MeshcacheTimeout,
    NoSuchNamespaceError,
    NotIntegerError,
    OutOfMemoryError,
    RemoteProtocolError,
    TooLargeError,
    WrongTypeError,
)

__all__ = [
    "AsyncClient",
    "BadRequestError",
    "Client",
    "CommandError",
    "ConfigError",
    "ErrorCode",
    "MeshcacheConnectionError",
    "MeshcacheError",
    "MeshcacheTimeout",
    "NoSuchNamespaceError",
    "NotIntegerError",
    "OutOfMemoryError",
    "RemoteProtocolError",
    "TooLargeError",
    "TrioClient",
    "WrongTypeError",
    "__version__",
]
