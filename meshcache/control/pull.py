"""How a node that is not a voter learns the config: sans-I/O decisions, no sockets.

Nodes outside the Raft group never talk Raft. Every node advertises the version of the config
it holds in its gossip metadata; a node that sees a peer advertise a newer version pulls the
whole config from that peer over TCP (the node's admin op) and installs it only if it is newer
than what it holds. :class:`ConfigPull` makes those decisions; the node does the I/O::

    pull = ConfigPull(version=held.version)
    # gossip told us peer p holds version v:
    request = pull.observe(p, v, now)        # → PullRequest or None
    # ... fetch from request.peer; then one of:
    config = pull.pulled(request.peer, fetched, now)   # → config to install, or None
    request = pull.failed(request.peer, now)            # → maybe the next peer to try
    # ... and when nothing happened for a while:
    request = pull.poll(now)                  # retries a pull that timed out elsewhere
"""

from __future__ import annotations

from dataclasses import dataclass

from meshcache.control.config import ClusterConfig
from meshcache.errors import StaleConfigError

#: Seconds a pull may take before another peer is tried.
DEFAULT_PULL_TIMEOUT = 2.0


def check_newer(current: ClusterConfig | None, fetched: ClusterConfig) -> ClusterConfig:
    """``fetched`` if it is newer than ``current`` (versions only go up).

    Raises:
        StaleConfigError: ``fetched.version`` is not greater than ``current.version``.
    """
    if current is not None and fetched.version <= current.version:
        raise StaleConfigError(
            message=f"pulled config version {fetched.version} is not newer than the held version"
            f" {current.version}"
        )
    return fetched


@dataclass(frozen=True, slots=True)
class PullRequest:
    """Ask ``peer`` for its config; it advertised ``version``."""

    peer: str
    version: int


class ConfigPull:
    """Decides when to pull the config and from whom; at most one pull is in flight.

    Among peers that advertise a newer version than the one held, the one with the highest
    version is asked (ties broken by peer name, so runs are repeatable). A peer whose pull
    fails or times out is not asked again until it advertises a version again.
    """

    def __init__(self, version: int = 0, *, timeout: float = DEFAULT_PULL_TIMEOUT) -> None:
        self.version = version
        self.timeout = timeout
        self._advertised: dict[str, int] = {}
        self._inflight: tuple[str, float] | None = None

    @property
    def in_flight(self) -> str | None:
        """The peer being pulled from, if any."""
        return None if self._inflight is None else self._inflight[0]

    def observe(self, peer: str, version: int, now: float) -> PullRequest | None:
        """Gossip says ``peer`` holds ``version``; return a pull to start, if one is due."""
        if version > self.version:
            self._advertised[peer] = version
        else:
            self._advertised.pop(peer, None)
        return self.poll(now)

    def installed(self, version: int) -> None:
        """The node now holds ``version`` (pulled, or committed locally by a voter)."""
        self.version = max(self.version, version)
        for peer, advertised in list(self._advertised.items()):
            if advertised <= self.version:
                del self._advertised[peer]

    def pulled(self, peer: str, config: ClusterConfig, now: float) -> ClusterConfig | None:
        """A pull from ``peer`` answered ``config``: return it if it must be installed.

        Returns None when it is not newer than the held version (a concurrent install got
        there first); the node then keeps what it has. Call :meth:`poll` afterwards: the peer
        may have answered an older version than it advertised.
        """
        if self._inflight is not None and self._inflight[0] == peer:
            self._inflight = None
        try:
            check_newer(ClusterConfig(version=self.version) if self.version else None, config)
        except StaleConfigError:
            self._advertised.pop(peer, None)
            return None
        self.installed(config.version)
        return config

    def failed(self, peer: str, now: float) -> PullRequest | None:
        """A pull from ``peer`` failed; return the next pull to try, if any."""
        if self._inflight is not None and self._inflight[0] == peer:
            self._inflight = None
        self._advertised.pop(peer, None)
        return self.poll(now)

    def forget(self, peer: str) -> None:
        """``peer`` left the mesh."""
        self._advertised.pop(peer, None)

    def poll(self, now: float) -> PullRequest | None:
        """Start a pull if one is due: none in flight (or it timed out) and a peer is ahead."""
        if self._inflight is not None:
            peer, deadline = self._inflight
            if now < deadline:
                return None
            self._inflight = None
            self._advertised.pop(peer, None)
        if not self._advertised:
            return None
        peer, version = min(self._advertised.items(), key=lambda item: (-item[1], item[0]))
        self._inflight = (peer, now + self.timeout)
        return PullRequest(peer, version)


__all__ = ["DEFAULT_PULL_TIMEOUT", "ConfigPull", "PullRequest", "check_newer"]
