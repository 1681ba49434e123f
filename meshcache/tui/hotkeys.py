"""The Hot keys view's figures: every node's ``HOTKEYS`` answer merged cluster-wide.

A node answers ``HOTKEYS`` (docs/hotkeys.md) with the hot keys it owns — namespace, key, rate,
share, holders, how long it has been hot — and the copies it holds for other owners. The console
merges the answers of the nodes that answer into one list, each key under its owner, like
``meshcache hotkeys``. Nothing a node sends is trusted: a field of the wrong type is unknown
(None, shown as a dash), an answer that is not a map with a list of hot keys counts the node as
unreadable, and neither stops the other nodes' keys from being shown.

The namespace hot-key policy (the ``hot`` table of a namespace policy) is read here as well, for
the empty state ("hot keys are off in every namespace") and the Namespaces view.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshcache.tui import text

#: The most characters of a key shown in the table (longer keys are cut with an ellipsis).
MAX_SHOWN = 48


@dataclass(frozen=True, slots=True)
class HotKeyRow:
    """One hot key, as its primary owner reports it. None: unknown (missing or unreadable)."""

    namespace: str | None
    key: str | None
    owner: str
    rate: float | None  # sampled reads per second at the owner, copies' reads included
    share: float | None  # fraction of the owner's reads
    holders: tuple[str, ...] | None  # nodes holding a copy
    hot_for: float | None  # seconds since it turned hot


@dataclass(frozen=True, slots=True)
class HotKeys:
    """The cluster's hot keys after one poll.

    Attributes:
        rows: every hot key of the nodes that answered readably, highest rate first.
        answered: node ids whose HOTKEYS answer was read.
        unreadable: node ids that answered HOTKEYS with something that is not a HOTKEYS answer.
        copies: copies held, summed over the nodes that answered.
        area_bytes: hot-area bytes, summed likewise (None when no node said).
    """

    rows: tuple[HotKeyRow, ...] = ()
    answered: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()
    copies: int = 0
    area_bytes: int | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _name(value: Any) -> str | None:
    """A key or namespace as text: str as is, bytes decoded (undecodable bytes escaped)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    return None


def _row(owner: str, item: Mapping[str, Any]) -> HotKeyRow:
    holders: tuple[str, ...] | None = None
    listed = item.get("holders")
    if isinstance(listed, list | tuple) and all(isinstance(h, str | bytes) for h in listed):
        holders = tuple(_name(h) or "" for h in listed)
    rate, share, hot_for = (_number(item.get(k)) for k in ("rate", "share", "hot_for"))
    return HotKeyRow(
        namespace=_name(item.get("namespace")),
        key=_name(item.get("key")),
        owner=owner,
        rate=rate if rate is not None and rate >= 0 else None,
        share=share if share is not None and 0 <= share <= 1 else None,
        holders=holders,
        hot_for=hot_for if hot_for is not None and hot_for >= 0 else None,
    )


def merge(answers: Mapping[str, Any]) -> HotKeys:
    """Merge the ``HOTKEYS`` answers of the nodes that gave one, by node id.

    A node whose answer is None (it refused the op or was not asked) is left out; one whose
    answer is not a map with a ``hot`` list is unreadable; a row that is not a map is dropped.
    """
    rows: list[HotKeyRow] = []
    answered: list[str] = []
    unreadable: list[str] = []
    copies = 0
    area: int | None = None
    for node_id in sorted(answers):
        answer = answers[node_id]
        if answer is None:
            continue
        hot = answer.get("hot") if isinstance(answer, Mapping) else None
        if not isinstance(hot, list | tuple):
            unreadable.append(node_id)
            continue
        answered.append(node_id)
        rows.extend(_row(node_id, item) for item in hot if isinstance(item, Mapping))
        held = answer.get("copies")
        if isinstance(held, list | tuple):
            copies += len(held)
        size = answer.get("area_bytes")
        if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            area = (area or 0) + size
    rows.sort(key=lambda r: (-(r.rate or 0.0), r.owner, r.namespace or "", r.key or ""))
    return HotKeys(tuple(rows), tuple(answered), tuple(unreadable), copies, area)


def policy_state(policy: Any) -> bool | None:
    """Are hot keys on in a namespace policy? None when its ``hot`` table is unreadable.

    No ``hot`` table (or null) means off; a table means on unless its ``enabled`` is false.
    """
    if not isinstance(policy, Mapping):
        return None
    hot = policy.get("hot")
    if hot is None:
        return False
    if not isinstance(hot, Mapping):
        return None
    enabled = hot.get("enabled", True)
    return enabled if isinstance(enabled, bool) else None


def describe_policy(policy: Any) -> str:
    """The hot-key policy of a namespace in a few characters.

    ``off``; or ``on`` with the share and rate thresholds, the copies (``all``: every other
    node) and the lease, e.g. ``on 1.0% 100/s 3 copies 2s``; a dash when it cannot be read.
    Fields the table leaves out take the policy's defaults.
    """
    from meshcache.store.hotpolicy import HotKeyPolicy

    state = policy_state(policy)
    if state is None:
        return text.UNKNOWN
    if not state:
        return "off"
    assert isinstance(policy, Mapping)
    try:
        hot = HotKeyPolicy.from_mapping(policy["hot"]).validate()
    except Exception:
        return text.UNKNOWN
    copies = "all" if hot.copies is None else str(hot.copies)
    return (
        f"on {text.percent(hot.share)} {text.rate(hot.rate)}/s {copies} copies "
        f"{text.duration(hot.lease)}"
    )


def enabled_in(policies: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The namespaces whose committed policy has hot keys on."""
    if not isinstance(policies, Mapping):
        return ()
    return tuple(sorted(str(n) for n, p in policies.items() if policy_state(p)))


def printable(name: str | None, limit: int = MAX_SHOWN) -> str:
    """A key or namespace for the screen: control characters escaped, long ones cut with an
    ellipsis, a dash when unknown."""
    if name is None:
        return text.UNKNOWN
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    return shown if len(shown) <= limit else shown[: limit - 1] + "\u2026"


def holders_text(holders: Sequence[str] | None) -> str:
    if holders is None:
        return text.UNKNOWN
    return ", ".join(holders) or "none"


__all__ = [
    "HotKeyRow",
    "HotKeys",
    "describe_policy",
    "enabled_in",
    "holders_text",
    "merge",
    "policy_state",
    "printable",
]
