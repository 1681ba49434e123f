"""tools/cpucap.py: a process held to a share of a core, and the groups gone afterwards.

Needs root and a writable cgroup CPU controller: skipped with the reason locally, a failure
under ``CI=true``, like the chaos tests' privileges.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.cpucap import PREFIX, CapError, _hierarchy, _quota, cpu_capped, throttled

BUSY = "while True: pass"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _groups() -> list[Path]:
    base, _ = _hierarchy()
    return list(base.glob(PREFIX + "*"))


@pytest.fixture
def cgroups() -> None:
    try:
        base, _ = _hierarchy()
    except CapError as exc:
        reason = str(exc)
    else:
        if os.access(base, os.W_OK):
            return
        reason = f"{base} is not writable"
    if os.environ.get("CI") == "true":
        pytest.fail(f"the CPU cap needs a writable cgroup controller: {reason}")
    pytest.skip(reason)


def test_a_share_outside_one_core_is_refused() -> None:
    for share in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match="share of a core"), cpu_capped([os.getpid()], share):
            pass


@pytest.mark.usefixtures("cgroups")
def test_a_busy_process_gets_its_share_and_the_groups_go() -> None:
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        with cpu_capped([busy.pid], 0.2):
            assert len(_groups()) == 1
            start, used = time.monotonic(), _cpu_seconds(busy.pid)
            time.sleep(1.0)  # the span measured, not a wait for a condition
            share = (_cpu_seconds(busy.pid) - used) / (time.monotonic() - start)
        assert share < 0.35, f"held to 0.2 of a core, it used {share:.2f}"
        assert _groups() == []
        # Out of the group, it may use a whole core again.
        start, used = time.monotonic(), _cpu_seconds(busy.pid)
        time.sleep(0.5)
        assert (_cpu_seconds(busy.pid) - used) / (time.monotonic() - start) > 0.35
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.usefixtures("cgroups")
def test_groups_left_by_a_killed_run_are_removed() -> None:
    base, _ = _hierarchy()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = base / f"{PREFIX}{dead.pid}-0"
    left.mkdir()
    try:
        with cpu_capped([os.getpid()], 1.0):
            assert not left.exists()
    finally:
        if left.exists():
            left.rmdir()
    assert _groups() == []


def test_a_share_under_a_tenth_takes_a_longer_period() -> None:
    assert _quota(0.25) == (2_500, 10_000)
    assert _quota(0.02) == (1_000, 50_000)  # the kernel's smallest quota is 1 ms
    assert _quota(1.0) == (10_000, 10_000)


@pytest.mark.usefixtures("cgroups")
def test_a_small_share_holds_and_the_wait_for_it_is_told() -> None:
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        with cpu_capped([busy.pid], 0.05):
            start, used = time.monotonic(), _cpu_seconds(busy.pid)
            held = throttled(busy.pid)
            time.sleep(1.0)  # the span measured
            elapsed = time.monotonic() - start
            share = (_cpu_seconds(busy.pid) - used) / elapsed
            held = (throttled(busy.pid) - held) / elapsed
        assert share < 0.1, f"held to 0.05 of a core, it used {share:.2f}"
        assert held > 0.5, f"it waited {held:.2f} s/s for its quota"
        assert throttled(busy.pid) == 0.0  # back in the root group
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.usefixtures("cgroups")
def test_a_process_that_forks_all_the_time_leaves_no_group_and_calls_nest() -> None:
    forking = subprocess.Popen(["sh", "-c", "while true; do /bin/true; done"])
    try:
        with cpu_capped([forking.pid], 1.0), cpu_capped([os.getpid()], 1.0):
            assert len(_groups()) == 2
            time.sleep(0.2)  # children come and go in the group
        assert _groups() == []
    finally:
        forking.kill()
        forking.wait()
