"""Logging set-up for the node: structlog, one line per event on stderr.

Two formats:

* ``console`` — for humans: ``2024-05-01T12:00:00.123456Z [info     ] ready  port=7400 ...``,
  coloured when stderr is a terminal.
* ``json`` — one JSON object per line with ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``,
  ``event`` and the event's own keys; exceptions appear as an ``exception`` string.

Records from the standard library's ``logging`` (pysyncobj, asyncpg, ...) go through the same
processors, so a node's stderr is in one format only.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("console", "json")

# Marks the handler this module installs, so a second call replaces it instead of adding one.
_HANDLER_NAME = "meshcache"


def configure_logging(format: str, level: str, *, stream: TextIO | None = None) -> None:
    """Send structlog and stdlib logging to ``stream`` (stderr by default) in ``format``.

    May be called again (tests do): the previous handler installed here is replaced. Loggers
    from ``structlog.get_logger()`` pick the new configuration up on their next call.

    Args:
        format: ``"console"`` or ``"json"``.
        level: ``"debug"``, ``"info"``, ``"warning"`` or ``"error"``; lower events are dropped.
        stream: where lines are written; ``sys.stderr`` as it is at call time when None.

    Raises:
        ValueError: ``format`` or ``level`` is not one of the names above (settings have
            already checked them, so this means a programming error).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r}")
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}")
    out = sys.stderr if stream is None else stream
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if format == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_is_tty(out))

    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _leading_keys,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(LEVELS[level])

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: configure_logging may run again (tests, reconfiguration) and module-level
        # loggers must follow it.
        cache_logger_on_first_use=False,
    )


_LEADING = ("timestamp", "level", "logger", "event")


def _leading_keys(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """Put timestamp, level, logger and event first, so JSON lines read left to right."""
    ordered = {key: event.pop(key) for key in _LEADING if key in event}
    ordered.update(event)
    return ordered


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


__all__ = ["FORMATS", "LEVELS", "configure_logging"]
