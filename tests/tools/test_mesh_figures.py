"""Smoke test of tools/mesh_figures: real node processes, tiny sizes, every figure printed.

No timing assertions: this proves each figure runs end to end against a real mesh and prints
its table, not how fast the mesh is.
"""

from __future__ import annotations

import pytest

from tools.mesh_figures import cli


@pytest.mark.parametrize(
    ("figure", "heading"),
    [
        ("consistency", "| run | writes | keys | p50 ms |"),
        ("join", "| run | keys | load procs | baseline hit rate % |"),
        ("forward", "| 1 | resp | non-smart: 1 conn to a non-owner | 1 | 16 |"),
    ],
)
def test_figure_runs_and_prints_its_table(
    figure: str, heading: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([figure, "--quick"]) == 0
    out = capsys.readouterr().out
    assert f"Command: `python -m tools.mesh_figures {figure} --quick`" in out
    assert heading in out
