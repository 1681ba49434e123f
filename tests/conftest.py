"""Shared pytest fixtures and the run's leak check.

Leaks: an unclosed socket or a child process still running fails the run. A socket garbage
collected while the run goes on raises its ``ResourceWarning`` as an error (``filterwarnings =
error`` in pyproject.toml, with pytest's unraisable-exception hook); one still referenced when
the session ends (a module-level client, a fixture that never closed one) would only warn at
interpreter exit, so :func:`pytest_sessionfinish` looks for them and fails the run, naming where
each was allocated when ``PYTHONTRACEMALLOC`` is set (``PYTHONTRACEMALLOC=10 pytest ...``).

``sim_seed``: the seed for a simulation test. It is ``MESHCACHE_SIM_SEED`` when set (to replay a
failure), otherwise a value derived from the test's id so every run of the suite is repeatable.
When a test that used it fails, the report carries a "simulation seed" section with the seed
and the command that replays it.
"""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import tracemalloc
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


def _open_resources() -> list[str]:
    """Sockets still open and child processes still running, each with where it was made."""
    gc.collect()
    found = []
    for obj in gc.get_objects():
        if isinstance(obj, socket.socket):
            if obj.fileno() == -1:
                continue
            what = repr(obj)
        elif isinstance(obj, subprocess.Popen):
            if obj.poll() is not None:
                continue
            what = f"subprocess {obj.pid} still running: {obj.args!r}"
        else:
            continue
        trace = tracemalloc.get_object_traceback(obj)
        where = "\n".join(trace.format()) if trace is not None else "  (set PYTHONTRACEMALLOC=10)"
        found.append(f"{what}\n{where}")
    return found


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = _open_resources()
    if not leaks:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{len(leaks)} resource(s) left open by the tests (a ResourceWarning at exit):"]
    lines.extend(leaks)
    if reporter is not None:
        reporter.write_sep("=", "resources left open", red=True)
        reporter.write_line("\n".join(lines))
    else:  # pragma: no cover - without the terminal plugin
        print("\n".join(lines))
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
