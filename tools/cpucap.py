"""Give each of some processes at most a share of one core (Linux cgroups; root).

On a machine whose few cores the node processes share with the load generators, the mesh's
ops/s is the machine's: a node that does more work per op takes cores from the others and
from the clients, and no node is ever the bottleneck by itself. With every node held to the
same share of a core (as nodes on machines of their own are held to theirs), the mesh runs at
the speed of its busiest node, and the generators have the rest of the machine.

``with cpu_capped(pids, 0.25): ...`` puts each process (all its threads, and those it starts
later) in a control group of its own whose CPU quota is that share of a 10 ms period, and
takes them out and removes the groups on the way out. Groups left by a run that was killed
(their owner's pid gone) are removed the next time. cgroup v2 (``cpu.max``) or v1
(``cpu.cfs_quota_us``) mounted at ``/sys/fs/cgroup``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
#: The quota's period: short, so a process that used its share waits at most a few ms.
PERIOD_US = 10_000
PREFIX = "meshcache-cap-"


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


@contextlib.contextmanager
def cpu_capped(pids: Sequence[int], share: float) -> Iterator[None]:
    """Each of ``pids`` held to ``share`` (0 < share ≤ 1) of a core while the block runs."""
    if not 0 < share <= 1:
        raise ValueError(f"a share of a core is in (0, 1], not {share}")
    base, v2 = _hierarchy()
    if not os.access(base, os.W_OK):
        raise CapError(f"{base}: not writable (run as root)")
    _remove_stale(base)
    if v2:
        subtree = base / "cgroup.subtree_control"
        if "cpu" not in subtree.read_text().split():
            subtree.write_text("+cpu")
    quota = max(1_000, round(share * PERIOD_US))
    groups: list[Path] = []
    try:
        for i, pid in enumerate(pids):
            group = base / f"{PREFIX}{os.getpid()}-{i}"
            group.mkdir()
            groups.append(group)
            if v2:
                (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            else:
                (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (group / "cpu.cfs_quota_us").write_text(str(quota))
            (group / "cgroup.procs").write_text(str(pid))
        yield
    finally:
        for group in groups:
            # Back to the root group (a group with processes in it cannot be removed).
            with contextlib.suppress(OSError):
                for line in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (base / "cgroup.procs").write_text(line)
            with contextlib.suppress(OSError):
                group.rmdir()


__all__ = ["CapError", "cpu_capped"]
