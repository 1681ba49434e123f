"""meshcache: a distributed in-memory cache on trio.

Public API only; everything else lives in subpackages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshcache._version import __version__
from meshcache.errors import (
    BadRequestError,
    CommandError,
    ConfigError,
    ErrorCode,
    MeshcacheConnectionError,
    MeshcacheError,
    MeshcacheTimeout,
    NoAuthError,
    NoPermError,
    NoSuchNamespaceError,
    NotIntegerError,
    OutOfMemoryError,
    RemoteProtocolError,
    TooLargeError,
    UnavailableError,
    WriteFailedError,
    WrongPassError,
    WrongTypeError,
)

if TYPE_CHECKING:
    from meshcache.client.asyncio_client import AsyncClient
    from meshcache.client.sync import Client
    from meshcache.client.trio_client import TrioClient

# Each client is loaded on first use, so `meshcache --version` and the CLI's one-shot commands
# start fast, and neither Client nor AsyncClient imports trio (only TrioClient does).
_LAZY = {
    "Client": "meshcache.client.sync",
    "TrioClient": "meshcache.client.trio_client",
    "AsyncClient": "meshcache.client.asyncio_client",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'meshcache' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def from_url(url: str, **options: Any) -> Client:
    """A blocking :class:`Client` for ``meshcache://host:port[,host:port...][/namespace][?...]``.

    The query holds the client's keyword arguments (``timeout``, ``decode_responses``, ...);
    ``options`` override them. ``TrioClient.from_url`` and ``AsyncClient.from_url`` do the same
    for the async clients. See :mod:`meshcache.client.url`.

    Raises:
        ConfigError: the URL is not a meshcache URL, or an option is unknown or malformed.
    """
    from meshcache.client.sync import Client

    return Client.from_url(url, **options)


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
    "NoAuthError",
    "NoPermError",
    "NoSuchNamespaceError",
    "NotIntegerError",
    "OutOfMemoryError",
    "RemoteProtocolError",
    "TooLargeError",
    "TrioClient",
    "UnavailableError",
    "WriteFailedError",
    "WrongPassError",
    "WrongTypeError",
    "__version__",
    "from_url",
]
