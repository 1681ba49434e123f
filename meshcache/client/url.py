"""Client URLs: ``meshcache://[user:password@]host:port[,host:port...][/namespace][?option=...]``,
and ``meshcaches://...`` for TLS.

The shape redis-py users know from ``redis.from_url``. The hosts are the seeds (IPv6 in
brackets, port 7400 when left out, none at all meaning ``127.0.0.1:7400``); the path, when
given, is the client's namespace (percent-encoded); the query sets the client's options by their
keyword names:

* ``timeout``, ``connect_timeout``: seconds (more than 0, at most :data:`MAX_TIMEOUT`), or
  ``none`` for no limit;
* ``max_connections``, ``max_frame``: integers;
* ``decode_responses``, ``smart``: ``true``/``false`` (also ``1``/``0``, ``yes``/``no``,
  ``on``/``off``);
* ``namespace``: the namespace, when the path names none;
* ``tls``: ``true``/``false`` (``meshcaches://`` means ``tls=true``); ``ca_file``,
  ``cert_file``, ``key_file``: PEM files (percent-encoded paths) for TLS, which they imply.

``user:password@`` (both percent-encoded, both required) gives ``username`` and ``password``:
every connection authenticates as that user (docs/security.md).

Nothing else is accepted: an unknown option is an error, not ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from meshcache.errors import ConfigError
from meshcache.wire import parse_addresses

SCHEME = "meshcache"
TLS_SCHEME = "meshcaches"

#: The longest ``timeout`` or ``connect_timeout`` a client takes, in seconds (one year). The OS's
#: socket and thread waits overflow somewhere above 9e9 s; ``None`` is how to say "no limit".
MAX_TIMEOUT = 365 * 24 * 3600.0

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def check_timeout(name: str, value: object) -> float | None:
    """``value`` as the client option ``name``: None (no limit), or a number of seconds.

    Raises:
        ConfigError: not a number, not above 0, not finite, or over :data:`MAX_TIMEOUT`.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds or None, not {value!r}")
    if not 0 < value <= MAX_TIMEOUT:  # NaN fails both comparisons
        raise ConfigError(
            f"{name} must be more than 0 and at most {MAX_TIMEOUT:.0f} seconds (one year), "
            f"or None for no limit; not {value!r}"
        )
    return float(value)


def _seconds(text: str) -> float | None:
    if text.lower() == "none":
        return None
    value = float(text)
    if not 0 < value <= MAX_TIMEOUT:  # NaN fails both comparisons
        raise ValueError(f"not a number of seconds above 0 and at most {MAX_TIMEOUT:.0f}")
    return value


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("not true or false")


def _count(text: str) -> int:
    return int(text)


def _text(text: str) -> str:
    return text


_OPTIONS: dict[str, Callable[[str], Any]] = {
    "timeout": _seconds,
    "connect_timeout": _seconds,
    "max_connections": _count,
    "decode_responses": _flag,
    "smart": _flag,
    "namespace": _text,
    "max_frame": _count,
    "tls": _flag,
    "ca_file": _text,
    "cert_file": _text,
    "key_file": _text,
}


def parse_url(url: str) -> dict[str, Any]:
    """The client's keyword arguments (``addresses`` among them) that ``url`` gives.

    Raises:
        ConfigError: not a ``meshcache://`` URL, a user without a password, an unknown option,
            or a value that does not parse.
    """
    if not isinstance(url, str):
        raise ConfigError(f"a meshcache URL is text, not {type(url).__name__}")
    url = url.strip()
    parts = urlsplit(url)
    netloc = parts.netloc
    credentials = ""
    if "@" in netloc:
        credentials, _, netloc = netloc.rpartition("@")
    url = _shown(url)  # error messages never show what may be a password
    if "@" in parts.path + parts.query + parts.fragment:
        # A '/', '?' or '#' in a password ends the host part early: what follows the '@' may
        # be the password's end, and the hosts what precedes it.
        raise ConfigError(
            f"{url!r}: an '@' after the hosts: percent-encode '/', '?', '#' and '@' in a user "
            "name or password (%2F, %3F, %23, %40), and '@' in a namespace or option (%40)"
        )
    scheme = parts.scheme.lower()
    if scheme not in (SCHEME, TLS_SCHEME):
        raise ConfigError(
            f"{url!r}: a client URL starts with {SCHEME}:// (or {TLS_SCHEME}:// for TLS)"
        )
    options: dict[str, Any] = {}
    if scheme == TLS_SCHEME:
        options["tls"] = True
    if credentials or "@" in parts.netloc:
        user, colon, password = credentials.partition(":")
        if not user or not colon or not password:
            raise ConfigError(f"{url!r}: credentials are user:password@ (both given)")
        options["username"], options["password"] = unquote(user), unquote(password)
    if netloc:
        options["addresses"] = parse_addresses(unquote(netloc))
    path = parts.path.strip("/")
    if "/" in path:
        raise ConfigError(f"{url!r}: the path is one namespace, not {unquote(path)!r}")
    if path:
        options["namespace"] = unquote(path)
    for name, text in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        convert = _OPTIONS.get(name)
        if convert is None:
            known = ", ".join(sorted(_OPTIONS))
            raise ConfigError(f"{url!r}: unknown option {name!r} (known: {known})")
        if name in options:
            if name == "tls" and scheme == TLS_SCHEME:
                raise ConfigError(f"{url!r}: {TLS_SCHEME}:// already means tls=true")
            raise ConfigError(f"{url!r}: {name} is given twice")
        try:
            options[name] = convert(text)
        except ValueError as exc:
            raise ConfigError(f"{url!r}: option {name}={text!r}: {exc}") from None
    return options


def _shown(url: str) -> str:
    """``url`` as error messages show it: what precedes its last ``@`` (credentials, or an
    unencoded part of them) reduced to the user name and ``***``; the whole of it when the
    user name cannot be told apart."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, after = rest.rpartition("@")
    user, colon, _ = credentials.partition(":")
    if not colon or any(c in user for c in "/?#"):
        return f"{scheme}{sep}***@{after}"
    return f"{scheme}{sep}{user}:***@{after}"


__all__ = ["MAX_TIMEOUT", "SCHEME", "TLS_SCHEME", "check_timeout", "parse_url"]
