"""The namespace name rule: the one place that says which names a namespace may be given.

A name is what can be typed in a shell, a TOML table header and a metric label as it is:
:data:`NAMESPACE_NAME_RE`, described for people by :data:`NAMESPACE_NAME_RULE`. The CLI and
the settings refuse other names, and the config plane refuses to *create* a namespace with
one (a namespace that already exists keeps working whatever its name, so it can be changed or
dropped). Pure and dependency-free: the client, the CLI, the settings and the config plane
import it without the store or the node.
"""

from __future__ import annotations

import re
from typing import TypeGuard

NAMESPACE_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""A whole namespace name (match it with ``fullmatch``): 1 to 64 ASCII letters, digits, ``_``,
``.``, ``:`` or ``-``."""

NAMESPACE_NAME_RULE = "1 to 64 characters among letters, digits and _ . : -"
""":data:`NAMESPACE_NAME_RE` in words, for error messages and help texts."""


def is_namespace_name(name: object) -> TypeGuard[str]:
    """True when ``name`` is a str that follows :data:`NAMESPACE_NAME_RE` in full."""
    return isinstance(name, str) and NAMESPACE_NAME_RE.fullmatch(name) is not None


__all__ = ["NAMESPACE_NAME_RE", "NAMESPACE_NAME_RULE", "is_namespace_name"]
