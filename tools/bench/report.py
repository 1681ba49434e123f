"""Markdown output: tables and the header that says where and how figures were measured."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; numbers are right-aligned."""
    cells = [[_fmt(c) for c in row] for row in rows]
    right = [
        bool(rows) and all(isinstance(row[i], int | float) or row[i] in ("-", "") for row in rows)
        for i in range(len(headers))
    ]
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    lines.extend("| " + " | ".join(row) + " |" for row in cells)
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}" if value < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine() -> str:
    """One line: date, cores, CPU model, kernel, Python and redis-server versions."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        redis = (
            subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=5)
            .stdout.split()[2]
            .removeprefix("v=")
        )
    except (OSError, IndexError, subprocess.SubprocessError):
        redis = "not installed"
    today = datetime.date.today().isoformat()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{today}; {os.cpu_count()} cores ({cpu}); Linux {platform.release()}; "
        f"Python {platform.python_version()}; redis-server {redis}; load average {load}"
    )


def command_line() -> str:
    return "python -m tools.bench " + shlex.join(sys.argv[1:])
