"""A namespace's read-through loader: where a missing key is loaded from, and how.

:class:`LoaderPolicy` is one nested value of a
:class:`~meshcache.store.policy.NamespacePolicy` (its ``loader`` field). It names a source —
configured on each node, never in the policy, so credentials stay on the node — and the SQL
that loads one key (``$1`` is the key; one row of one column of type text, bytea or json(b))
and optionally many (``$1`` is an array of keys; rows of key and value). Like the rest of the
policy it travels through Raft as a plain mapping.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshcache.errors import ConfigError

#: A LISTEN channel: a plain PostgreSQL identifier (no quoting needed).
CHANNEL_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: What a node may do with a key announced as changed (``on_notify``).
ON_NOTIFY = ("drop", "reload")
_DURATIONS = ("ttl", "negative_ttl", "load_timeout", "stale_if_error")


@dataclass(frozen=True, slots=True)
class LoaderPolicy:
    """How a namespace loads the keys it misses.

    Attributes:
        source: the name of a source in each node's ``[sources.NAME]`` settings.
        query: SQL taking the key as ``$1`` and returning at most one row of one column.
        batch_query: SQL taking an array of keys as ``$1`` and returning rows of (key, value),
            used for the misses of an MGET; None: one ``query`` per missed key.
        ttl: seconds a loaded value lives; None: the namespace's ``default_ttl``.
        negative_ttl: seconds a key the query found no row for is answered nil without asking
            the source again; None: not remembered.
        load_timeout: seconds a load may take before its waiters get ``LOADER_UNAVAILABLE``;
            a node forwarding a miss to the key's owner fails over after about as long.
        refresh_ahead: the fraction of ``ttl`` after which a read of a loaded key has the owner
            load it again in the background while the current value is served; None: off.
        channel: a PostgreSQL ``LISTEN`` channel on which changed keys are announced
            (``meshcache loader sql`` prints the trigger); None: no invalidation.
        stale_if_error: seconds a loaded value is kept past its ``ttl``; a read of it in that
            time loads it again, and is answered with the kept value if the load fails; None:
            a value expires at its ``ttl``.
        on_notify: what a node does with a key announced on ``channel``: ``"drop"`` (None)
            drops it; ``"reload"`` drops it too, and the key's owner then loads it again at
            once if it held it (one query, which concurrent misses join).
    """

    source: str
    query: str
    batch_query: str | None = None
    ttl: float | None = None
    negative_ttl: float | None = None
    load_timeout: float = 2.0
    refresh_ahead: float | None = None
    channel: str | None = None
    stale_if_error: float | None = None
    on_notify: str | None = None

    def validate(self) -> LoaderPolicy:
        """Return ``self`` if every field is well formed; raise :class:`ConfigError` otherwise.

        Whether the query prepares on the source is checked by the node that receives the
        change, against its own source."""
        for name in ("source", "query"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"loader {name} must be non-empty text, got {value!r}")
        if self.batch_query is not None and (
            not isinstance(self.batch_query, str) or not self.batch_query.strip()
        ):
            raise ConfigError(
                f"loader batch_query must be non-empty text, got {self.batch_query!r}"
            )
        for name in _DURATIONS:
            value = getattr(self, name)
            if value is None and name != "load_timeout":
                continue
            if type(value) not in (int, float) or not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"loader {name} must be a finite number > 0, got {value!r}")
        ahead = self.refresh_ahead
        if ahead is not None and (type(ahead) not in (int, float) or not 0 < ahead < 1):
            raise ConfigError(
                f"loader refresh_ahead must be a fraction of the ttl between 0 and 1, got {ahead!r}"
            )
        if self.channel is not None and (
            not isinstance(self.channel, str) or not CHANNEL_RE.fullmatch(self.channel)
        ):
            raise ConfigError(
                f"loader channel {self.channel!r} must be a lower-case identifier "
                "(letters, digits, _; at most 63)"
            )
        if self.on_notify not in (None, *ON_NOTIFY):
            raise ConfigError(
                f"loader on_notify must be one of {', '.join(ON_NOTIFY)}, got {self.on_notify!r}"
            )
        return self

    @property
    def reloads(self) -> bool:
        """Whether an announced key is loaded again at once (not only dropped)."""
        return self.on_notify == "reload"

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> LoaderPolicy:
        """Build and validate a loader from a mapping; unknown fields are refused."""
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"loader must be a table of loader settings, not {mapping!r}")
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(map(str, mapping)) - names)
        if unknown:
            raise ConfigError(
                f"unknown loader field(s): {', '.join(unknown)} (known: {', '.join(sorted(names))})"
            )
        missing = sorted({"source", "query"} - set(mapping))
        if missing:
            raise ConfigError(f"loader needs {' and '.join(missing)}")
        values = dict(mapping)
        for name in (*_DURATIONS, "refresh_ahead"):
            if type(values.get(name)) is int:
                values[name] = float(values[name])
        return cls(**values).validate()

    def to_mapping(self) -> dict[str, Any]:
        """The loader as a plain dict; fields that are None are left out."""
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) is not None
        }


__all__ = ["CHANNEL_RE", "ON_NOTIFY", "LoaderPolicy"]
