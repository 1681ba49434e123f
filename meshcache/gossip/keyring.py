"""The cluster keyring: the keys that encrypt and authenticate gossip packets.

Each installed key seals packets with AES-256-GCM under a key derived from it (HMAC-SHA256 of a
fixed label), with a random 96-bit nonce per packet: the packet is unreadable and unforgeable
without the key. Rotation without downtime, done by the operator on every node in turn:
``install(new)`` everywhere → ``use(new)`` everywhere → ``remove(old)`` everywhere. Packets are
sealed with the primary key and opened under any installed key, so nodes at different steps
keep talking; a packet sealed under a removed key does not open. An empty keyring disables
both (packets travel in the clear, unauthenticated).

Random nonces stay safe for about 2**32 packets per key (NIST SP 800-38D); at gossip's rates
(tens of packets a second per node) that is years, and rotating keys resets it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshcache.errors import ConfigError

MAC_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
#: Bytes :meth:`Keyring.seal` adds to what it seals.
SEAL_OVERHEAD = NONCE_SIZE + TAG_SIZE
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64
_CIPHER_LABEL = b"meshcache gossip encryption v1"


def _cipher(key: bytes) -> AESGCM:
    return AESGCM(hmac.digest(key, _CIPHER_LABEL, hashlib.sha256))


class Keyring:
    """Installed keys, the first of which is the primary (signing) key.

    Mutable and shared: the node's admin operations change it while the gossip state machine
    reads it. Changes take effect for the next packet sent/received.
    """

    __slots__ = ("_ciphers", "_keys", "_nonce")

    def __init__(
        self, keys: Iterable[bytes] = (), *, nonce: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._keys: list[bytes] = []
        self._ciphers: dict[bytes, AESGCM] = {}
        self._nonce = nonce
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
            self._ciphers[key] = _cipher(key)

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
        del self._ciphers[key]

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

    def seal(self, header: bytes, data: bytes) -> bytes:
        """``nonce | ciphertext | tag`` of ``data`` under the primary key; ``header`` is
        authenticated with it but not encrypted. Requires at least one key."""
        nonce = self._nonce(NONCE_SIZE)
        return nonce + self._ciphers[self._keys[0]].encrypt(nonce, data, header)

    def open(self, header: bytes, sealed: bytes) -> bytes | None:
        """The data :meth:`seal` sealed under any installed key (primary first), or None when
        no installed key opens it (another key, a removed one, or altered bytes)."""
        if len(sealed) < SEAL_OVERHEAD:
            return None
        nonce, box = sealed[:NONCE_SIZE], sealed[NONCE_SIZE:]
        for key in self._keys:
            try:
                return self._ciphers[key].decrypt(nonce, box, header)
            except InvalidTag:
                continue
        return None
