"""How figures read in a table cell: short, aligned, and a dash for what is not known.

Every function takes a value that may be None (unknown: the node did not answer, or does not
export the figure) and returns a short string; nothing here depends on textual.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

#: What a cell shows for a figure that is not known.
UNKNOWN = "\u2013"  # an en dash: lighter than "-", which could read as a minus
_SPARKS = "▁▂▃▄▅▆▇█"
_UNITS = ("", "k", "M", "G", "T", "P")
_BYTE_UNITS = ("B", "K", "M", "G", "T", "P")


def count(value: float | None) -> str:
    """``1234`` → ``1.2k``; whole numbers below 10,000 as they are."""
    if value is None:
        return UNKNOWN
    if abs(value) < 10_000:
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    exponent = min(int(math.log10(abs(value)) // 3), len(_UNITS) - 1)
    scaled = value / 1000**exponent
    return f"{scaled:.1f}{_UNITS[exponent]}" if scaled < 100 else f"{scaled:.0f}{_UNITS[exponent]}"


def rate(value: float | None) -> str:
    """Per-second figures: ``0.3``, ``12``, ``1.2k``."""
    if value is None:
        return UNKNOWN
    if 0 < value < 10:
        return f"{value:.1f}"
    return count(round(value))


def size(value: int | None) -> str:
    """Bytes: ``512B``, ``1.5K``, ``12M`` (powers of 1024)."""
    if value is None:
        return UNKNOWN
    n = float(value)
    for unit in _BYTE_UNITS:
        if abs(n) < 1024 or unit == _BYTE_UNITS[-1]:
            if unit == "B":
                return f"{n:.0f}B"
            return f"{n:.1f}{unit}" if n < 10 else f"{n:.0f}{unit}"
        n /= 1024
    raise AssertionError("unreachable")


def memory(used: int | None, limit: int | None) -> str:
    """``used/limit``, or ``used`` alone when unbounded."""
    if used is None:
        return UNKNOWN
    return size(used) if not limit else f"{size(used)}/{size(limit)}"


def percent(ratio: float | None) -> str:
    if ratio is None:
        return UNKNOWN
    return f"{ratio * 100:.0f}%" if ratio * 100 >= 9.95 or ratio == 0 else f"{ratio * 100:.1f}%"


def share(ratio: float | None) -> str:
    """A share of the key space: ``33.4%``."""
    return UNKNOWN if ratio is None else f"{ratio * 100:.1f}%"


def ago(seconds: float | None) -> str:
    """How long ago: ``now``, ``12s``, ``3m``, ``2h``, ``never``."""
    if seconds is None:
        return "never"
    if seconds < 1.5:
        return "now"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def duration(seconds: float | None) -> str:
    """A policy duration (default TTL): ``300s``, ``5m``, ``1.5h``; "none" when unset."""
    if seconds is None:
        return "none"
    if seconds < 120:
        return f"{seconds:g}s"
    if seconds < 7200:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"


def loader(policy: Any) -> str:
    """A namespace's read-through loader in a few words: ``off``; or its source, the TTL of a
    loaded value, and what is on (``notify``, ``refresh 90%``, ``stale 30s``), e.g.
    ``pg ttl 60s notify``; a dash when the ``loader`` table cannot be read."""
    if not isinstance(policy, Mapping):
        return UNKNOWN
    table = policy.get("loader")
    if table is None:
        return "off"
    if not isinstance(table, Mapping) or not isinstance(table.get("source"), str):
        return UNKNOWN
    words = [table["source"]]
    ttl = table.get("ttl")
    if isinstance(ttl, int | float) and not isinstance(ttl, bool):
        words.append(f"ttl {duration(ttl)}")
    if table.get("channel"):
        words.append("notify")
    ahead = table.get("refresh_ahead")
    if isinstance(ahead, int | float) and not isinstance(ahead, bool):
        words.append(f"refresh {percent(ahead)}")
    stale = table.get("stale_if_error")
    if isinstance(stale, int | float) and not isinstance(stale, bool):
        words.append(f"stale {duration(stale)}")
    return " ".join(words)


def latency(seconds: float | None) -> str:
    """A latency: ``0.21ms``, ``3.4ms``, ``120ms``, ``1.2s``."""
    if seconds is None:
        return UNKNOWN
    ms = seconds * 1000
    if ms < 1:
        return f"{ms:.2f}ms"
    if ms < 1000:
        return f"{ms:.1f}ms" if ms < 10 else f"{ms:.0f}ms"
    return f"{seconds:.1f}s"


def sparkline(values: Sequence[float], width: int) -> str:
    """The last values as ``width`` block characters, newest on the right.

    Values are averaged into ``width`` equal bins over the history kept; the tallest bin is a
    full block. Empty history gives blanks.
    """
    if width <= 0:
        return ""
    if not values:
        return " " * width
    bins: list[float] = []
    step = max(1, math.ceil(len(values) / width))
    for start in range(0, len(values), step):
        chunk = values[start : start + step]
        bins.append(sum(chunk) / len(chunk))
    bins = bins[-width:]
    top = max(bins)
    if top <= 0:
        line = _SPARKS[0] * len(bins)
    else:
        line = "".join(_SPARKS[min(7, int(b / top * 7.999))] for b in bins)
    return line.rjust(width)


def clock(wall: float, utc: bool = False) -> str:
    """``HH:MM:SS`` in local time, or in UTC (the event log's timestamps)."""
    return time.strftime("%H:%M:%S", time.gmtime(wall) if utc else time.localtime(wall))


def optional(value: object) -> str:
    return UNKNOWN if value is None else str(value)


__all__ = [
    "UNKNOWN",
    "ago",
    "clock",
    "count",
    "duration",
    "latency",
    "memory",
    "optional",
    "percent",
    "rate",
    "share",
    "size",
    "sparkline",
]
