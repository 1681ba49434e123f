"""Whether a process runs, for tests and tools that check nothing they started is left behind."""

from __future__ import annotations

import os
from pathlib import Path


def running(pid: int) -> bool:
    """True while ``pid`` runs; an exited process nobody has reaped yet (a zombie, e.g. an
    orphan waiting for init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        stat = ""
    if stat:
        return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


__all__ = ["running"]
