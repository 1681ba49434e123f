"""The hot-key policy of a namespace: when a key counts as hot and how it is copied.

A :class:`HotKeyPolicy` is the ``hot`` field of a
:class:`~meshcache.store.policy.NamespacePolicy` (``None``: hot keys off). It travels with the
namespace policy through Raft and on the wire as a nested mapping; the hot set itself never
does (it changes every second, see ``docs/hotkeys.md``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshcache.errors import ConfigError

#: A key read at its namespace's ``rate`` gives its owner about this many sampled reads a
#: second (a key needs 4 at its owner to turn hot, counts halving every half second).
SAMPLES_AT_RATE = 10.0
#: The sampling gap's bounds: every other GET at most (each sample costs a few hundred ns),
#: one in 16 at least.
MIN_SAMPLE_GAP = 2
MAX_SAMPLE_GAP = 16


@dataclass(frozen=True, slots=True)
class HotKeyPolicy:
    """How the owners of a namespace's keys find hot keys and copy them.

    Attributes:
        enabled: whether owners detect hot keys and push copies.
        share: a key is hot when it takes at least this fraction of the reads its primary
            owner serves (0 < share <= 1)...
        rate: ...and at least this many reads per second (>= 0); it sets how densely the
            owner samples reads (:attr:`sample_every`).
        copies: the most nodes beyond the owner that hold a copy, following the key's ring
            preference list; ``None`` for every other node.
        lease: seconds a copy may be served without a renewal from the owner; it bounds how
            stale a copy can be when an invalidation is lost.
        area: the hot area of a node for this namespace, as a fraction of the namespace's
            ``max_bytes`` (a namespace without ``max_bytes`` gets
            :data:`~meshcache.node.data.hot.area.UNBOUNDED_AREA_BYTES`).
    """

    enabled: bool = True
    share: float = 0.01
    rate: float = 100.0
    copies: int | None = None
    lease: float = 2.0
    area: float = 0.125

    @property
    def sample_every(self) -> int:
        """One ``GET`` in this many (on average) is sampled at its owner: ``rate`` / 10 within
        [2, 16], so a key read at ``rate`` gives about 10 samples a second (a key needs 4 to turn
        hot) and one read at twice ``rate`` is found within about half a second; a namespace
        that asks only for keys read fast samples less.

        Below a ``rate`` of 20 the gap stays 2 and a key needs about 11 reads a second at its
        owner (4 samples in the sketch's decaying window) to turn hot.
        """
        gap = int(self.rate / SAMPLES_AT_RATE)
        return min(MAX_SAMPLE_GAP, max(MIN_SAMPLE_GAP, gap))

    def validate(self) -> HotKeyPolicy:
        """Return ``self`` if every field is in range; raise :class:`ConfigError` otherwise."""
        if type(self.enabled) is not bool:
            raise ConfigError(f"hot.enabled must be true or false, got {self.enabled!r}")
        for name, low, high in (("share", 0.0, 1.0), ("area", 0.0, 1.0)):
            value = getattr(self, name)
            if type(value) not in (int, float) or not (low < value <= high):
                raise ConfigError(
                    f"hot.{name} must be a number in ({low:g}, {high:g}], got {value!r}"
                )
        if type(self.rate) not in (int, float) or not (self.rate >= 0 and math.isfinite(self.rate)):
            raise ConfigError(f"hot.rate must be a finite number >= 0, got {self.rate!r}")
        if type(self.lease) not in (int, float) or not (0.05 <= self.lease <= 3600):
            raise ConfigError(
                f"hot.lease must be seconds between 0.05 and 3600, got {self.lease!r}"
            )
        if self.copies is not None and (type(self.copies) is not int or self.copies < 1):
            raise ConfigError(
                f"hot.copies must be an integer >= 1 (or absent: every node), got {self.copies!r}"
            )
        return self

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> HotKeyPolicy:
        """Build and validate from a mapping; unknown fields are refused."""
        if not isinstance(mapping, Mapping):
            raise ConfigError(
                f"hot must be a table of hot-key settings, not {type(mapping).__name__}"
            )
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - names)
        if unknown:
            raise ConfigError(
                f"unknown hot-key policy field(s): {', '.join(map(str, unknown))}"
                f" (known: {', '.join(sorted(names))})"
            )
        values = dict(mapping)
        for name in ("share", "rate", "lease", "area"):
            if type(values.get(name)) is int:
                values[name] = float(values[name])
        return cls(**values).validate()

    def to_mapping(self) -> dict[str, Any]:
        """A plain dict; ``copies`` is left out when it is ``None`` (TOML has no nil)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                out[field.name] = value
        return out

    def replace(self, **changes: Any) -> HotKeyPolicy:
        """A copy with ``changes`` applied and validated."""
        return dataclasses.replace(self, **changes).validate()


__all__ = ["HotKeyPolicy"]
