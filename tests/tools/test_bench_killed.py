"""A bench killed with SIGKILL leaves nothing behind: its redis-server and its load workers stop
(``PR_SET_PDEATHSIG``) and a reaper removes the server's temporary directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from meshcache.testing.procs import running

REPO_ROOT = Path(__file__).resolve().parents[2]

if shutil.which("redis-server") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("redis-server is required on CI (apt-get install redis-server)")
    pytest.skip(
        "redis-server is not installed (apt-get install redis-server)", allow_module_level=True
    )


def children(pid: int) -> dict[int, list[str]]:
    """The live children of ``pid``: pid → command line."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            out[int(entry.name)] = [a.decode(errors="replace") for a in argv if a]
    return out


def workers_of(started: dict[int, list[str]]) -> list[int]:
    """The bench's forked load workers (its own command line, as forks keep it)."""
    return [p for p, a in started.items() if a[:2] == [sys.executable, "-m"] and "tools.bench" in a]


def reapers_of(started: dict[int, list[str]]) -> list[int]:
    return [p for p, a in started.items() if "meshcache.reaper" in a]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_killed_bench_stops_its_server_and_workers_and_removes_its_files() -> None:
    argv = [sys.executable, "-m", "tools.bench", "throughput", "--targets", "redis"]
    argv += ["--conns", "2", "--procs", "2", "--depth", "1", "--keys", "200", "--pool", "1024"]
    argv += ["--warmup", "0", "--duration", "600"]
    bench = subprocess.Popen(
        argv, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    started: dict[int, list[str]] = {}
    try:

        def loaded() -> bool:
            started.update(children(bench.pid))
            assert bench.poll() is None, "the bench exited early"
            return bool(servers()) and len(workers_of(started)) >= 2 and bool(reapers_of(started))

        def servers() -> list[int]:
            # Live ones only: a short-lived redis-server run (a version check) may come first.
            return [p for p, a in started.items() if "redis-server" in a[0] and running(p)]

        wait_for(loaded, 120, "the bench to start redis-server and two load workers")
        server = servers()[0]
        server_dir = Path(os.readlink(f"/proc/{server}/cwd"))  # the bench runs it there
        assert server_dir.name.startswith("bench-redis-") and server_dir.is_dir()
        assert [started[r][-1] for r in reapers_of(started)] == [str(server_dir)]
        workers = workers_of(started)
        bench.kill()
        bench.wait()
        wait_for(lambda: not running(server), 20, "redis-server to stop with the killed bench")
        wait_for(
            lambda: not any(running(w) for w in workers), 20, "the load workers to stop with it"
        )
        wait_for(lambda: not server_dir.exists(), 20, "the server's directory to be removed")
        # The reaper went too, once the directory was gone.
        wait_for(
            lambda: not any(running(p) for p in started), 20, "every child of the bench to end"
        )
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        for pid in started:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
