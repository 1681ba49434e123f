"""What the console's actions send, and when it refuses to send them. No widgets, no I/O.

Every config change the console makes is compare-and-set on the config version the operator
was looking at: ``expected_version`` is the version shown when the confirmation (or the policy
form) was opened, so a change someone else committed meanwhile makes the node answer
``VERSION_CONFLICT`` instead of being overwritten silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshcache.errors import ConfigError
from meshcache.settings import parse_duration, parse_size
from meshcache.store.policy import NamespacePolicy
from meshcache.tui.model import MemberRow
from meshcache.tui.text import UNKNOWN, duration

#: The policy fields of the form, in the order shown.
POLICY_FIELDS = ("eviction", "max_bytes", "max_items", "default_ttl", "replicas", "consistency")
EVICTIONS = ("lru", "lfu", "ttl", "none")
CONSISTENCIES = ("one", "quorum", "all")
#: Seconds a node may take to hand its keys over when drained from the console.
DRAIN_TIMEOUT = 120.0
_UNBOUNDED = ("", "0", "none", "-", UNKNOWN, "unbounded")
_SIZE_SUFFIXES = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


class Refused(Exception):
    """An action the console will not send; the message says why, for the operator."""


@dataclass(frozen=True, slots=True)
class Opened:
    """A namespace policy as the form was opened on it: the base of a compare-and-set."""

    name: str
    version: int
    policy: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an action ended: ``ok``, a message for the operator, and for a lost
    compare-and-set the fresh state to show (``fresh``)."""

    ok: bool
    message: str
    fresh: Opened | None = None


def check_drain(member: MemberRow | None, read_only: bool) -> MemberRow:
    """The member to drain, or :class:`Refused` saying why it cannot be drained now."""
    if read_only:
        raise Refused("read-only mode: drain is disabled (start without --read-only)")
    if member is None:
        raise Refused("select a node first")
    if member.ring_state is None:
        raise Refused(f"{member.node_id} is not on the ring: nothing to drain")
    if member.ring_state == "leaving":
        raise Refused(f"{member.node_id} is already leaving")
    if not member.reachable:
        raise Refused(
            f"{member.node_id} does not answer: a drain runs on the node itself; "
            "remove a dead node from the ring instead (x)"
        )
    return member


def check_remove(member: MemberRow | None, read_only: bool) -> MemberRow:
    """The member to take off the ring, or :class:`Refused`: only dead (or left) members."""
    if read_only:
        raise Refused("read-only mode: removing a member is disabled (start without --read-only)")
    if member is None:
        raise Refused("select a node first")
    if member.ring_state is None:
        raise Refused(f"{member.node_id} is not on the ring")
    if member.gossip not in ("dead", "left"):
        raise Refused(
            f"{member.node_id} is {member.gossip}, not dead: drain it instead (d), "
            "so its keys are handed over first"
        )
    return member


def check_edit(read_only: bool) -> None:
    if read_only:
        raise Refused("read-only mode: editing a policy is disabled (start without --read-only)")


def remove_member_command(node_id: str, expected_version: int) -> dict[str, Any]:
    """CONFIG_PROPOSE's ``remove_member``, compare-and-set on ``expected_version``."""
    return {"op": "remove_member", "expected_version": expected_version, "node_id": node_id}


def update_namespace_command(
    name: str, changes: Mapping[str, Any], expected_version: int
) -> dict[str, Any]:
    """CONFIG_PROPOSE's ``update_namespace``, compare-and-set on ``expected_version``."""
    return {
        "op": "update_namespace",
        "expected_version": expected_version,
        "name": name,
        "changes": dict(changes),
    }


def size_text(value: int | None) -> str:
    """A byte bound as the form shows it: ``64MiB`` when exact, bytes otherwise, empty: none."""
    if value is None:
        return ""
    for suffix, unit in _SIZE_SUFFIXES:
        if value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)


def form_values(policy: Mapping[str, Any]) -> dict[str, str]:
    """A policy (CONFIG_GET's map) as the form's text fields; empty means unbounded / none."""
    ttl = policy.get("default_ttl")
    items = policy.get("max_items")
    return {
        "eviction": str(policy.get("eviction", "lru")),
        "max_bytes": size_text(policy.get("max_bytes")),
        "max_items": "" if items is None else str(items),
        "default_ttl": "" if ttl is None else _seconds_text(float(ttl)),
        "replicas": str(policy.get("replicas", 2)),
        "consistency": str(policy.get("consistency", "one")),
    }


def parse_form(values: Mapping[str, str]) -> dict[str, Any]:
    """The form's text fields as policy values (None: unbounded / no TTL).

    Raises:
        ConfigError: a field does not parse; the message starts with the field's name.
    """
    out: dict[str, Any] = {}
    eviction = values.get("eviction", "").strip()
    if eviction not in EVICTIONS:
        raise ConfigError(f"eviction: one of {', '.join(EVICTIONS)}")
    out["eviction"] = eviction
    text = values.get("max_bytes", "").strip()
    out["max_bytes"] = None if text.lower() in _UNBOUNDED else parse_size(text, "max bytes")
    text = values.get("max_items", "").strip().replace("_", "")
    if text.lower() in _UNBOUNDED:
        out["max_items"] = None
    elif text.isdigit():
        out["max_items"] = int(text)
    else:
        raise ConfigError(f"max items: {text!r} is not a whole number (empty: unbounded)")
    text = values.get("default_ttl", "").strip()
    out["default_ttl"] = None if text.lower() in _UNBOUNDED else parse_duration(text, "default TTL")
    text = values.get("replicas", "").strip()
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"replicas: {text!r} is not a whole number of at least 1")
    out["replicas"] = int(text)
    consistency = values.get("consistency", "").strip()
    if consistency not in CONSISTENCIES:
        raise ConfigError(f"consistency: one of {', '.join(CONSISTENCIES)}")
    out["consistency"] = consistency
    return out


def changes_of(opened: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``wanted`` that differ from the policy the form was opened on."""
    full = {**dataclasses.asdict(NamespacePolicy()), **opened}
    return {k: v for k, v in wanted.items() if full.get(k) != v}


def describe_changes(opened: Mapping[str, Any], changes: Mapping[str, Any]) -> list[str]:
    """One ``field: old -> new`` line per change, in the form's order."""
    lines = []
    for name in POLICY_FIELDS:
        if name in changes:
            old = _shown(name, opened.get(name))
            lines.append(f"{name}: {old} -> {_shown(name, changes[name])}")
    return lines


def _seconds_text(seconds: float) -> str:
    """Seconds as the form shows them (exact, no exponent): ``300``, ``0.5``."""
    return str(int(seconds)) if seconds.is_integer() else repr(seconds)


def _shown(name: str, value: Any) -> str:
    if value is None:
        return "none" if name == "default_ttl" else "unbounded"
    if name == "max_bytes":
        return size_text(int(value))
    if name == "default_ttl":
        return duration(float(value))
    return str(value)


__all__ = [
    "CONSISTENCIES",
    "DRAIN_TIMEOUT",
    "EVICTIONS",
    "POLICY_FIELDS",
    "Opened",
    "Outcome",
    "Refused",
    "changes_of",
    "check_drain",
    "check_edit",
    "check_remove",
    "describe_changes",
    "form_values",
    "parse_form",
    "remove_member_command",
    "size_text",
    "update_namespace_command",
]
