"""Shared pytest fixtures.

``sim_seed``: the seed for a simulation test. It is ``MESHCACHE_SIM_SEED`` when set (to replay a
failure), otherwise a value derived from the test's id so every run of the suite is repeatable.
When a test that used it fails, the report carries a "simulation seed" section with the seed
and the command that replays it.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Generator

import pytest

SIM_SEED_ENV = "MESHCACHE_SIM_SEED"


@pytest.fixture
def sim_seed(request: pytest.FixtureRequest) -> int:
    """The seed a simulation test must feed to its ``SimNetwork`` (and nothing else)."""
    env = os.environ.get(SIM_SEED_ENV)
    if env:
        return int(env, 0)
    # Stable across runs and machines, different per test: crc32 of the node id.
    return zlib.crc32(request.node.nodeid.encode())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    if report.failed and "sim_seed" in funcargs:
        seed = funcargs["sim_seed"]
        report.sections.append(
            (
                "simulation seed",
                f"seed={seed}  replay: {SIM_SEED_ENV}={seed} pytest '{item.nodeid}'",
            )
        )
