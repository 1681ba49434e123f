"""Smoke test of tools/cli_startup: one run of every case against a real node.

No timing assertions: this proves the tool runs end to end (node start and stop, both bytecode
modes, the anchor, the table), not how fast anything starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.cli_startup import main

REPO = Path(__file__).resolve().parents[2]


def test_the_tool_times_every_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--runs", "1", "--tree", f"here={REPO}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| here |")]
    assert len(rows) == 6  # 2 bytecode modes x (anchor, --version, get)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        median, worst, ratio, cpu, modules = map(float, cells[3:])
        assert 0 < median <= worst and ratio > 0 and cpu > 0 and modules > 0
    assert [c.strip() for c in rows[0].strip("|").split("|")][5] == "1.00"  # the anchor itself
    assert lines[-1].startswith("1 runs per case, interleaved; load average before")
