"""Give each of some processes at most a share of one core (Linux cgroups; root).

On a machine whose few cores the node processes share with the load generators, the mesh's
ops/s is the machine's: a node that does more work per op takes cores from the others and
from the clients, and no node is ever the bottleneck by itself. With every node held to the
same share of a core (as nodes on machines of their own are held to theirs), the mesh runs at
the speed of its busiest node, and the generators have the rest of the machine.

``with cpu_capped(pids, 0.25): ...`` puts each process (all its threads, and the processes it
starts later) in a control group of its own whose CPU quota is that share of a 10 ms period
(longer for a share under 0.1: the kernel's smallest quota is 1 ms), and takes them out and
removes the groups on the way out. Groups left by a run that was killed (their owner's pid
gone) are removed the next time. :func:`throttled` tells how long a process waited for its
quota (the kernel counts that time as waiting for a core too). cgroup v2 (``cpu.max``) or v1
(``cpu.cfs_quota_us``) mounted at ``/sys/fs/cgroup``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
#: The quota's period: short, so a process that used its share waits at most a few ms.
PERIOD_US = 10_000
#: The kernel's smallest quota.
MIN_QUOTA_US = 1_000
PREFIX = "meshcache-cap-"
# Tells the groups of one process's calls apart.
_calls = itertools.count()


class CapError(RuntimeError):
    """No cgroup CPU controller this process may use."""


def _hierarchy() -> tuple[Path, bool]:
    """The directory to make groups in and whether it is cgroup v2."""
    if (ROOT / "cgroup.controllers").exists():
        if "cpu" not in (ROOT / "cgroup.controllers").read_text().split():
            raise CapError(f"{ROOT}: no cpu controller")
        return ROOT, True
    v1 = ROOT / "cpu"
    if (v1 / "cpu.cfs_quota_us").exists():
        return v1, False
    raise CapError(f"no cgroup CPU controller under {ROOT}")


def _remove_stale(base: Path) -> None:
    for group in base.glob(PREFIX + "*"):
        owner = group.name[len(PREFIX) :].split("-")[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            with contextlib.suppress(OSError):
                group.rmdir()


def check(share: float) -> None:
    """Raise what :func:`cpu_capped` would for ``share`` on this machine, before anything is
    started: :class:`ValueError` for a share outside (0, 1], :class:`CapError` when no
    controller may be used."""
    if not 0 < share <= 1:
        raise ValueError(f"a share of a core is in (0, 1], not {share}")
    base, v2 = _hierarchy()
    if not os.access(base, os.W_OK):
        raise CapError(f"{base}: not writable (run as root)")
    if v2 and "cpu" not in (base / "cgroup.subtree_control").read_text().split():
        try:
            (base / "cgroup.subtree_control").write_text("+cpu")
        except OSError as exc:  # a cgroup with processes of its own (a container's)
            raise CapError(f"{base}: cannot enable the cpu controller: {exc}") from exc


def _quota(share: float) -> tuple[int, int]:
    """``(quota, period)`` in µs for ``share`` of a core."""
    period = max(PERIOD_US, math.ceil(MIN_QUOTA_US / share))
    return max(MIN_QUOTA_US, round(share * period)), period


@contextlib.contextmanager
def cpu_capped(pids: Sequence[int], share: float) -> Iterator[None]:
    """Each of ``pids`` held to ``share`` (0 < share ≤ 1) of a core while the block runs."""
    check(share)
    base, v2 = _hierarchy()
    _remove_stale(base)
    quota, period = _quota(share)
    call = next(_calls)
    groups: list[Path] = []
    try:
        for i, pid in enumerate(pids):
            group = base / f"{PREFIX}{os.getpid()}-{call}-{i}"
            group.mkdir()
            groups.append(group)
            if v2:
                (group / "cpu.max").write_text(f"{quota} {period}")
            else:
                (group / "cpu.cfs_period_us").write_text(str(period))
                (group / "cpu.cfs_quota_us").write_text(str(quota))
            (group / "cgroup.procs").write_text(str(pid))
        yield
    finally:
        for group in groups:
            _remove(base, group)


def _remove(base: Path, group: Path) -> None:
    """Move every process of ``group`` back to the root group, then remove it (a group with
    processes in it cannot be removed; a process may fork meanwhile: a few tries)."""
    for _ in range(50):
        with contextlib.suppress(OSError):
            for line in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):  # gone meanwhile
                    (base / "cgroup.procs").write_text(line)
        try:
            group.rmdir()
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
        else:
            return
    raise CapError(f"{group}: could not be emptied and removed")


def throttled(pid: int) -> float:
    """Seconds ``pid``'s control group (for CPU) waited for its quota so far; 0.0 when it is
    in none that has a quota."""
    try:
        base, v2 = _hierarchy()
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if (v2 and controllers == "") or (not v2 and "cpu" in controllers.split(",")):
                stat = (base / path.lstrip("/") / "cpu.stat").read_text().split()
                fields = dict(zip(stat[::2], stat[1::2], strict=False))
                if v2:
                    return int(fields.get("throttled_usec", 0)) / 1e6
                return int(fields.get("throttled_time", 0)) / 1e9
    except (CapError, OSError, ValueError):
        pass
    return 0.0


__all__ = ["CapError", "check", "cpu_capped", "throttled"]
