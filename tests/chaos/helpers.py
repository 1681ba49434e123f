"""Helpers of the chaos tests."""

from __future__ import annotations

import os

import pytest

from meshcache.testing.chaos.netns import missing_privileges


def require_chaos(*, faketime: bool = False) -> None:
    """Skip (fail under ``CI=true``) unless this machine can run the chaos harness."""
    problem = missing_privileges(faketime=faketime)
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"chaos tests never skip under CI=true: {problem}", pytrace=False)
    pytest.skip(f"chaos: {problem}")
