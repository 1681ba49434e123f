"""Markdown tables and order statistics for the figures, and the membership events of a run."""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from meshcache.testing.mesh import Mesh


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile ``p`` (0-100) of an ascending sequence; nan when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; numbers right-aligned (the alignment row says so)."""
    align = [
        "---:" if rows and isinstance(rows[0][i], int | float) else "---"
        for i in range(len(header))
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


@dataclass(frozen=True, slots=True)
class Flaps:
    """Membership events about live members during a run, summed over every node's log: a
    loaded mesh must not mistake a busy member for a dead one."""

    suspicions: int = 0
    deaths: int = 0


#: A run with no membership event.
NO_FLAPS = Flaps()


def flaps(mesh: Mesh, killed: Collection[str] = ()) -> Flaps:
    """The ``member_suspect`` and ``member_dead`` events in the logs of ``mesh``'s nodes,
    but those about a node the run ``killed``."""
    suspicions = deaths = 0
    for node in mesh.nodes:
        suspicions += sum(
            1 for e in mesh.log_events(node, "member_suspect") if e.get("member") not in killed
        )
        deaths += sum(
            1 for e in mesh.log_events(node, "member_dead") if e.get("member") not in killed
        )
    return Flaps(suspicions, deaths)


def repeated(header: Sequence[str], labels: int, runs: Sequence[Sequence[Sequence[object]]]) -> str:
    """A markdown table of every run's rows (``runs[i]``: run ``i + 1``'s, ``header`` their
    columns) and, for each label (a row's first ``labels`` cells), the median, min and max of
    every numeric column over the runs that have a value in it (nan: none)."""
    rows: list[list[object]] = [[i + 1, *row] for i, one in enumerate(runs) for row in one]
    groups: dict[tuple[object, ...], list[Sequence[object]]] = {}
    for one in runs:
        for row in one:
            groups.setdefault(tuple(row[:labels]), []).append(row)
    if len(runs) > 1:
        for label, members in groups.items():
            for name, pick in (("median", statistics.median), ("min", min), ("max", max)):
                summary: list[object] = [name, *label]
                for column in range(labels, len(header)):
                    values = [r[column] for r in members]
                    numbers = [
                        float(v)
                        for v in values
                        if isinstance(v, int | float) and not isinstance(v, bool)
                    ]
                    if len(numbers) != len(values):
                        summary.append("")  # a column of words
                        continue
                    numbers = [v for v in numbers if not math.isnan(v)]  # runs without one
                    if not numbers:
                        summary.append("")
                    elif all(isinstance(v, int) for v in values) and name != "median":
                        summary.append(int(pick(numbers)))
                    else:
                        summary.append(pick(numbers))
                rows.append(summary)
    return table(["run", *header], rows)
