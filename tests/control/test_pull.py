"""The sans-I/O pull decisions of nodes outside the Raft group."""

from __future__ import annotations

import pytest

from meshcache.control.config import ClusterConfig
from meshcache.control.pull import ConfigPull, PullRequest, check_newer
from meshcache.errors import StaleConfigError


def test_check_newer_accepts_only_higher_versions() -> None:
    assert check_newer(None, ClusterConfig(version=0)).version == 0
    assert check_newer(ClusterConfig(version=3), ClusterConfig(version=4)).version == 4
    for stale in (2, 3):
        with pytest.raises(StaleConfigError, match="not newer"):
            check_newer(ClusterConfig(version=3), ClusterConfig(version=stale))


def test_pulls_from_the_peer_with_the_highest_version_once() -> None:
    pull = ConfigPull(version=3, timeout=2.0)
    assert pull.observe("p1", 3, now=0.0) is None
    assert pull.observe("p1", 5, now=0.0) == PullRequest("p1", 5)
    # One pull in flight: newer adverts wait for it.
    assert pull.observe("p2", 6, now=0.5) is None
    assert pull.pulled("p1", ClusterConfig(version=5), now=1.0) == ClusterConfig(version=5)
    assert pull.version == 5
    assert pull.poll(now=1.0) == PullRequest("p2", 6)


def test_older_or_equal_pull_result_is_not_installed() -> None:
    pull = ConfigPull(version=4)
    pull.observe("p1", 6, now=0.0)
    pull.installed(6)  # a concurrent install got there first
    assert pull.pulled("p1", ClusterConfig(version=6), now=0.1) is None
    assert pull.version == 6
    assert pull.poll(now=0.2) is None


def test_failed_or_timed_out_pull_moves_on_to_another_peer() -> None:
    pull = ConfigPull(version=0, timeout=2.0)
    assert pull.observe("a", 2, now=0.0) == PullRequest("a", 2)
    pull.observe("b", 2, now=0.0)
    assert pull.failed("a", now=0.1) == PullRequest("b", 2)
    assert pull.poll(now=1.0) is None
    assert pull.poll(now=2.2) is None  # b timed out and nobody else is ahead
    assert pull.in_flight is None
    assert pull.observe("b", 2, now=3.0) == PullRequest("b", 2)  # b advertises again


def test_forgotten_peer_is_not_pulled() -> None:
    pull = ConfigPull(version=0)
    pull.observe("a", 1, now=0.0)
    pull.failed("a", now=0.0)
    pull.observe("b", 1, now=0.0)
    pull.forget("b")
    pull.failed("b", now=0.0)
    assert pull.poll(now=5.0) is None
