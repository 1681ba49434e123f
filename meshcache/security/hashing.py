"""Password hashes: scrypt (``hashlib.scrypt``, OpenSSL), stored as one self-describing string.

Format::

    scrypt$n=16384,r=8,p=1$<salt, base64>$<digest, base64>

The parameters and the salt travel with the hash, so raising the cost later only needs new
hashes, not a new format. ``meshcache passwd`` writes such strings; the node's ``[users.NAME]``
tables hold them. A node never stores or logs a plaintext password.

Verifying one hash at the default cost takes tens of milliseconds of CPU (docs/security.md has
the figure); the node runs it on a worker thread so the event loop never waits for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from meshcache.errors import ConfigError

SCHEME = "scrypt"
#: scrypt's cost parameters: 16 MiB of memory and ~50-90 ms of one core per hash here.
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
DIGEST_BYTES = 32
#: Bounds on what a hash string may ask for, so a config cannot make one check cost gigabytes.
MIN_N, MAX_N = 2**10, 2**20
MAX_R, MAX_P = 32, 16
MAX_PASSWORD_BYTES = 4096

_FORMAT = re.compile(
    r"scrypt\$n=(?P<n>[0-9]{1,8}),r=(?P<r>[0-9]{1,3}),p=(?P<p>[0-9]{1,3})"
    r"\$(?P<salt>[A-Za-z0-9+/=]+)\$(?P<digest>[A-Za-z0-9+/=]+)"
)


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """One parsed hash string: its cost parameters, salt and digest."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: object) -> PasswordHash:
        """The hash that ``text`` encodes.

        Raises:
            ConfigError: ``text`` is not a ``scrypt$n=..,r=..,p=..$salt$digest`` string, or its
                parameters are out of bounds (n a power of two in 2**10..2**20, r <= 32, p <= 16).
        """
        if not isinstance(text, str):
            raise ConfigError(f"a password hash is a string, not {type(text).__name__}")
        match = _FORMAT.fullmatch(text.strip())
        if match is None:
            raise ConfigError(
                "not a password hash: expected scrypt$n=N,r=R,p=P$SALT$DIGEST "
                "(make one with `meshcache passwd`)"
            )
        n, r, p = int(match["n"]), int(match["r"]), int(match["p"])
        _check_cost(n, r, p)
        try:
            salt = base64.b64decode(match["salt"], validate=True)
            digest = base64.b64decode(match["digest"], validate=True)
        except binascii.Error:
            raise ConfigError("password hash: the salt or digest is not base64") from None
        if len(salt) < 8 or len(digest) < 16:
            raise ConfigError("password hash: the salt or digest is too short")
        return cls(n, r, p, salt, digest)

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode()
        digest = base64.b64encode(self.digest).decode()
        return f"{SCHEME}$n={self.n},r={self.r},p={self.p}${salt}${digest}"

    def verify(self, password: str | bytes) -> bool:
        """True when ``password`` hashes to this digest (constant-time comparison).

        CPU-bound (see the module docstring): call it off the event loop.
        """
        secret = (
            password.encode("utf-8", "surrogatepass") if isinstance(password, str) else password
        )
        if len(secret) > MAX_PASSWORD_BYTES:
            return False
        computed = _scrypt(secret, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(computed, self.digest)


def _check_cost(n: int, r: int, p: int) -> None:
    if not MIN_N <= n <= MAX_N or n & (n - 1):
        raise ConfigError(f"password hash: n={n} is not a power of two in 2**10..2**20")
    if not 1 <= r <= MAX_R or not 1 <= p <= MAX_P:
        raise ConfigError(f"password hash: r={r}, p={p} out of range (r 1..32, p 1..16)")


def _scrypt(secret: bytes, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    # OpenSSL refuses by default past 32 MiB; allow what the parameters need, bounded by them.
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=size)


def hash_password(
    password: str,
    *,
    n: int = DEFAULT_N,
    r: int = DEFAULT_R,
    p: int = DEFAULT_P,
    salt: bytes | None = None,
) -> str:
    """A new hash string for ``password`` with a random salt (or ``salt``, for tests).

    Raises:
        ConfigError: the password is empty or longer than 4096 bytes, or a parameter is out of
            bounds.
    """
    secret = password.encode("utf-8", "surrogatepass")
    if not secret:
        raise ConfigError("the password is empty")
    if len(secret) > MAX_PASSWORD_BYTES:
        raise ConfigError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    _check_cost(n, r, p)
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    return PasswordHash(n, r, p, salt, _scrypt(secret, salt, n, r, p, DIGEST_BYTES)).encode()


def decoy(n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> PasswordHash:
    """A hash of cost ``n``, ``r``, ``p`` that no password matches: verified in place of a hash
    when the user does not exist, so that an unknown user costs as much work as a wrong
    password and the timing does not tell which names exist."""
    return PasswordHash(n, r, p, b"\0" * SALT_BYTES, b"\0" * DIGEST_BYTES)


#: The decoy at the default cost (for a node without users).
DECOY = decoy()


def decoy_for(hashes: Iterable[PasswordHash]) -> PasswordHash:
    """The decoy for a node whose users have ``hashes``: of the cost most of them have (the
    highest among costs equally common), so that an unknown name costs what a user's does;
    :data:`DECOY` when there are none.

    Users of another cost than the most common one can still be told apart by the time a
    wrong password takes: give every user the same cost.
    """
    counts = Counter((h.n, h.r, h.p) for h in hashes)
    if not counts:
        return DECOY
    n, r, p = max(counts, key=lambda cost: (counts[cost], cost[0] * cost[1] * cost[2], cost))
    return DECOY if (n, r, p) == (DECOY.n, DECOY.r, DECOY.p) else decoy(n, r, p)


__all__ = ["DECOY", "DEFAULT_N", "PasswordHash", "decoy", "decoy_for", "hash_password"]
