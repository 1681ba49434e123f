"""Smoke test of tools/resp_path_cost: every op and depth gets its row; no speed asserted."""

from __future__ import annotations

import pytest

from tools import resp_path_cost


def test_every_op_and_depth_is_measured(capsys: pytest.CaptureFixture[str]) -> None:
    assert resp_path_cost.main(["--keys", "500", "--depths", "1", "4", "--repeat", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| GET")
            or line.startswith("| SET")]  # fmt: skip
    assert [row.split("|")[1:3] for row in rows] == [
        [" GET ", " 1 "],
        [" SET ", " 1 "],
        [" GET ", " 4 "],
        [" SET ", " 4 "],
    ]


def test_a_wrong_answer_stops_the_measure() -> None:
    handler = resp_path_cost.session(10)
    with pytest.raises(SystemExit, match="GET answered"):
        resp_path_cost.check(handler, resp_path_cost.multibulk(b"GET", b"missing"), b"GET")
