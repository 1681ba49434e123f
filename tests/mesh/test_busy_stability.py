"""A busy node is not a dead node: a saturated mesh of real processes declares no one dead.

Three node processes (the ``local`` gossip profile, the fastest detector we ship) are filled
by pipelining writers at full speed; the writers go on overwriting while a fourth node joins
and pulls its ranges, the three old nodes then drop what they no longer own, and the load runs
on for a tail. Every node's INFO then says how many members it ever declared dead: that must be
none, since no process stopped; and a probe client sending one request at a time meanwhile must
get every answer. Suspicions may happen (a node can be late); a death is a wrong
answer. (How many suspicions and how long the loop was held: ``python -m
tools.stability_figures``, docs/benchmarks.md.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.stability_figures.scenario import run
from tools.stability_figures.writers import JOIN, PRELOAD

pytestmark = pytest.mark.slow

KEYS = 150_000


def test_preload_and_hand_off_at_full_speed_declare_no_member_dead(tmp_path: Path) -> None:
    result = run(
        tmp_path, keys=KEYS, procs=3, profile="local", load_s=2.0, tail=3.0, probe_rate=200
    )
    # The load was real: every key written, writes answered during the join, ranges pulled.
    assert result.phases[PRELOAD].answered >= KEYS
    assert result.phases[JOIN].answered > 0
    assert result.pulled > 0
    assert len(result.nodes) == 4
    assert result.deaths == 0, result.describe()
    # A client sending one request at a time was answered throughout, the join included.
    assert result.probe[JOIN].answered > 0, result.describe()
    assert sum(c.errors for c in result.probe) == 0, result.describe()
