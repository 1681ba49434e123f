"""Namespace policies: how a namespace evicts, how big it may grow, how long keys live.

A :class:`NamespacePolicy` is an immutable value. It travels in the TOML config, through Raft
and on the wire as a plain mapping (:meth:`NamespacePolicy.to_mapping` /
:meth:`NamespacePolicy.from_mapping`); adding a field means adding it to the dataclass with a
default and, if it needs checking, a line in :meth:`NamespacePolicy.validate`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from meshcache.errors import ConfigError
from meshcache.store.hotpolicy import HotKeyPolicy
from meshcache.store.loader_policy import LoaderPolicy

Eviction = Literal["lru", "lfu", "ttl", "none"]
EVICTIONS: frozenset[str] = frozenset(get_args(Eviction))
Consistency = Literal["one", "quorum", "all"]
CONSISTENCIES: frozenset[str] = frozenset(get_args(Consistency))


@dataclass(frozen=True, slots=True)
class NamespacePolicy:
    """The policy of one namespace.

    Attributes:
        eviction: what goes when the namespace is full. ``lru``: least recently used;
            ``lfu``: least frequently used, with counters that halve every decay period so old
            popularity fades; ``ttl``: soonest to expire first (then least recently used among
            keys without expiry); ``none``: nothing is evicted, writes that need room fail with
            ``OUT_OF_MEMORY``.
        max_bytes: bound on the namespace's accounted bytes (see ``meshcache/store/sizes.py``);
            ``None`` for no bound.
        max_items: bound on the number of keys; ``None`` for no bound.
        default_ttl: seconds a key lives when a write does not say; ``None`` for forever.
        replicas: how many nodes hold each key.
        consistency: when a write is acknowledged: ``one`` after the coordinating owner
            applied it (the other owners get it asynchronously), ``quorum`` after a majority
            of the owners applied it, ``all`` after every owner did. A SET may override it.
        hot: how hot keys are found and copied (:class:`HotKeyPolicy`); ``None``: hot keys off.
        loader: where missing keys are read through from (:class:`LoaderPolicy`); ``None``: a
            miss is a miss.
    """

    eviction: Eviction = "lru"
    max_bytes: int | None = None
    max_items: int | None = None
    default_ttl: float | None = None
    replicas: int = 2
    consistency: Consistency = "one"
    hot: HotKeyPolicy | None = None
    loader: LoaderPolicy | None = None

    def validate(self) -> NamespacePolicy:
        """Return ``self`` if every field is in range; raise :class:`ConfigError` otherwise."""
        if self.eviction not in EVICTIONS:
            raise ConfigError(
                f"unknown eviction policy {self.eviction!r}"
                f" (one of: {', '.join(sorted(EVICTIONS))})"
            )
        for name in ("max_bytes", "max_items"):
            value = getattr(self, name)
            if value is None:
                continue
            if type(value) is not int:
                raise ConfigError(f"{name} must be an integer, not {type(value).__name__}")
            if value < 1:  # a bound of 0 holds nothing: None is how to say "no bound"
                raise ConfigError(f"{name} must be >= 1 (or none for no bound), got {value}")
        ttl = self.default_ttl
        if ttl is not None:
            if type(ttl) not in (int, float):
                raise ConfigError(f"default_ttl must be a number, not {type(ttl).__name__}")
            if not (ttl > 0 and math.isfinite(ttl)):
                raise ConfigError(f"default_ttl must be a finite number > 0, got {ttl}")
        if type(self.replicas) is not int or self.replicas < 1:
            raise ConfigError(f"replicas must be an integer >= 1, got {self.replicas!r}")
        if self.consistency not in CONSISTENCIES:
            raise ConfigError(
                f"unknown write consistency {self.consistency!r}"
                f" (one of: {', '.join(sorted(CONSISTENCIES))})"
            )
        if self.hot is not None:
            if not isinstance(self.hot, HotKeyPolicy):
                raise ConfigError(f"hot must be a hot-key policy, not {type(self.hot).__name__}")
            self.hot.validate()
        loader: object = self.loader  # any value may come through a mapping
        if loader is not None:
            if not isinstance(loader, LoaderPolicy):
                raise ConfigError(f"loader must be a loader policy, not {type(loader).__name__}")
            loader.validate()
        return self

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> NamespacePolicy:
        """Build and validate a policy from a mapping (TOML table or wire map).

        Missing fields take their defaults; unknown fields are refused so a typo in a config
        file does not pass silently.
        """
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - names)
        if unknown:
            raise ConfigError(
                f"unknown namespace policy field(s): {', '.join(map(str, unknown))}"
                f" (known: {', '.join(sorted(names))})"
            )
        values = dict(mapping)
        ttl = values.get("default_ttl")
        if type(ttl) is int:
            values["default_ttl"] = float(ttl)
        if values.get("hot") is not None:
            values["hot"] = HotKeyPolicy.from_mapping(values["hot"])
        if values.get("loader") is not None:
            values["loader"] = LoaderPolicy.from_mapping(values["loader"])
        return cls(**values).validate()

    def to_mapping(self) -> dict[str, Any]:
        """The policy as a plain dict; fields that are ``None`` are left out (TOML has no nil)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, HotKeyPolicy | LoaderPolicy):
                out[field.name] = value.to_mapping()
            elif value is not None:
                out[field.name] = value
        return out

    def replace(self, **changes: Any) -> NamespacePolicy:
        """A copy with ``changes`` applied and validated."""
        return dataclasses.replace(self, **changes).validate()


DEFAULT_POLICY = NamespacePolicy()

__all__ = [
    "CONSISTENCIES",
    "DEFAULT_POLICY",
    "EVICTIONS",
    "Consistency",
    "Eviction",
    "NamespacePolicy",
]
