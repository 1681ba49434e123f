"""Network addresses of nodes: one type and one parser for the whole project.

An :class:`Address` is a ``(host, port)`` named tuple, so it can be handed to socket and trio
calls as it is, compared, hashed and used as a dict key. Its text form is ``host:port``, with
IPv6 hosts in brackets (``[::1]:7400``); :func:`parse_address` reads that form back, with or
without the brackets' port, and is the only parser of addresses in meshcache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from meshcache.errors import ConfigError

#: The data port a node listens on unless told otherwise.
DEFAULT_PORT = 7400


class Address(NamedTuple):
    """A node's ``(host, port)``; ``str()`` gives ``host:port`` (``[v6]:port`` for IPv6)."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_address(self.host, self.port)


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str, *, default_port: int | None = DEFAULT_PORT) -> Address:
    """Read ``"host:port"``, ``"[v6addr]:port"``, ``"host"`` or ``"[v6addr]"``.

    A text without a port gets ``default_port``; with ``default_port=None`` a port is required.
    A colon must be followed by a port of ASCII digits (``"host:"`` is an error). An IPv6
    address must be in brackets when a port follows it; a bare IPv6 address (more than one
    colon, no brackets) is taken as a host without a port. Surrounding whitespace is ignored.
    For every host without whitespace or brackets, ``parse_address(str(Address(host, port)))``
    gives the same address back.

    Raises:
        ConfigError: the text is not an address, or its port is not in 1..65535.
    """
    if not isinstance(text, str):
        raise ConfigError(f"bad node address {text!r}: expected text")
    text = text.strip()
    if not text:
        raise ConfigError("empty node address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"bad node address {text!r}")
        has_port, port_text = bool(rest), rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        has_port = True
    else:
        host, port_text, has_port = text, "", False
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"bad node address {text!r}: no host")
    if not has_port:
        if default_port is None:
            raise ConfigError(f"bad node address {text!r}: no port (expected host:port)")
        return Address(host, default_port)
    if not (port_text.isascii() and port_text.isdigit()):
        raise ConfigError(f"bad node address {text!r}: port is not a number")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ConfigError(f"bad node address {text!r}: port out of range")
    return Address(host, port)


def parse_addresses(
    spec: str | Address | Sequence[str | Address], *, default_port: int | None = DEFAULT_PORT
) -> list[Address]:
    """A comma-separated ``"h:p,h:p"`` string, one :class:`Address`, or a sequence of either.

    Raises:
        ConfigError: no address, or one that does not parse.
    """
    if isinstance(spec, Address):
        return [spec]
    if isinstance(spec, str):
        items: list[str | Address] = [part for part in spec.split(",") if part.strip()]
    else:
        items = list(spec)
    addresses = [
        item if isinstance(item, Address) else parse_address(item, default_port=default_port)
        for item in items
    ]
    if not addresses:
        raise ConfigError("no node address given")
    return addresses


__all__ = ["DEFAULT_PORT", "Address", "format_address", "parse_address", "parse_addresses"]
