"""Smoke test of tools/wakeup_cost: each server answers and gets its line; no speed asserted."""

from __future__ import annotations

import pytest

from tools import wakeup_cost


def test_every_server_is_measured(capsys: pytest.CaptureFixture[str]) -> None:
    assert wakeup_cost.main(["--requests", "200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(wakeup_cost.SERVERS)
    assert all("us per request" in line for line in lines)


def test_an_unknown_server_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        wakeup_cost.main(["--servers", "trio,redis"])
    assert "unknown server(s) redis" in capsys.readouterr().err
