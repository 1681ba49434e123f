"""Protected mode: a node with no users serves only its own machine unless told otherwise.

Without users every connection may read, write and administer the cluster, which is fine on
a loopback address and dangerous anywhere else (Redis refuses the same way). A node whose data
host is not a loopback address must either have users or be started with ``--insecure``.
"""

from __future__ import annotations

import ipaddress

from meshcache.errors import ConfigError

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for a loopback IP literal or ``localhost``; False for anything else (a wildcard,
    another address, a host name: what it resolves to is not known here)."""
    text = host.strip().strip("[]")
    if text.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def check_protected_mode(host: str, *, has_users: bool, insecure: bool, where: str) -> None:
    """Refuse a node that would serve ``host`` to anyone.

    Raises:
        ConfigError: ``host`` is not loopback, no user is configured and ``insecure`` is off.
    """
    if has_users or insecure or is_loopback(host):
        return
    raise ConfigError(
        f"{where} is not a loopback address and no users are configured, so anyone "
        "who can reach it could read, write and reconfigure the cluster: configure users "
        "([users.NAME] with a hash from `meshcache passwd`, and a cluster_key_file) or pass "
        "--insecure to serve it without authentication"
    )


__all__ = ["check_protected_mode", "is_loopback"]
