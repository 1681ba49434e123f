"""tools.tls_bench's report: per protocol and depth, medians and the worst round's ratio."""

from __future__ import annotations

from tools.tls_bench import Measure, report


def test_report_ratios_per_round() -> None:
    measures = [
        Measure("resp", "plain", 1, 100.0, 10.0, 3.0, 0),
        Measure("resp", "tls", 1, 50.0, 20.0, 4.0, 0),
        Measure("resp", "plain", 1, 200.0, 10.0, 5.0, 0),
        Measure("resp", "tls", 1, 160.0, 15.0, 5.0, 0),
    ]
    text = report(measures, 2)
    row = next(line for line in text.splitlines() if line.startswith("| resp | 1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == "0.65 (0.50)"  # ratios 0.5 and 0.8
    assert cells[7] == "1.75 (2.00)"  # ratios 2.0 and 1.5
    assert "load average 3.0 to 5.0, errors 0" in text
