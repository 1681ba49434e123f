"""The cluster keyring: HMAC-SHA256 keys for authenticating gossip packets.

Rotation without downtime, done by the operator on every node in turn:
``install(new)`` everywhere → ``use(new)`` everywhere → ``remove(old)`` everywhere.
Packets are signed with the primary key and accepted under any installed key, so nodes at
different steps keep talking. An empty keyring disables authentication (packets carry no MAC).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from meshcache.errors import ConfigError

MAC_SIZE = 32
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64


class Keyring:
    """Installed keys, the first of which is the primary (signing) key.

    Mutable and shared: the node's admin operations change it while the gossip state machine
    reads it. Changes take effect for the next packet sent/received.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[bytes] = ()) -> None:
        self._keys: list[bytes] = []
        for key in keys:
            self.install(key)

    @property
    def enabled(self) -> bool:
        """True when at least one key is installed (packets must then be signed)."""
        return bool(self._keys)

    @property
    def primary(self) -> bytes | None:
        return self._keys[0] if self._keys else None

    def keys(self) -> list[bytes]:
        """All installed keys, primary first."""
        return list(self._keys)

    def install(self, key: bytes) -> None:
        """Accept packets signed with ``key``. The first key installed becomes primary."""
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise ConfigError(f"gossip key must be {MIN_KEY_BYTES}..{MAX_KEY_BYTES} bytes")
        if key not in self._keys:
            self._keys.append(key)

    def use(self, key: bytes) -> None:
        """Make an installed ``key`` the primary (signing) key."""
        if key not in self._keys:
            raise ConfigError("cannot use a gossip key that is not installed")
        self._keys.remove(key)
        self._keys.insert(0, key)

    def remove(self, key: bytes) -> None:
        """Stop accepting ``key``. The primary key cannot be removed while others remain."""
        if key not in self._keys:
            raise ConfigError("gossip key is not installed")
        if key == self._keys[0] and len(self._keys) > 1:
            raise ConfigError("cannot remove the primary gossip key; use another key first")
        self._keys.remove(key)

    def sign(self, data: bytes) -> bytes:
        """The MAC of ``data`` under the primary key (``b""`` when auth is disabled)."""
        if not self._keys:
            return b""
        return hmac.digest(self._keys[0], data, hashlib.sha256)

    def verify(self, data: bytes, mac: bytes) -> bool:
        """True if ``mac`` authenticates ``data`` under any installed key."""
        return any(
            hmac.compare_digest(hmac.digest(key, data, hashlib.sha256), mac) for key in self._keys
        )
