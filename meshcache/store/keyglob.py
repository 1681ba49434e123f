"""Redis's glob patterns for keys (``KEYS``, ``SCAN ... MATCH``), matched without backtracking.

The grammar is Redis's ``stringmatchlen``, byte for byte and case-sensitive: ``*`` any run of
bytes, ``?`` one byte, ``[abc]`` one of a class (``[^abc]`` none of it, ``[a-z]`` a range whose
ends may come in either order and compare as C's signed ``char``, ``\\`` taking the next byte
literally inside a class too), ``\\x`` the byte ``x``. A class left open at the end of the
pattern ends there; a ``\\`` that ends the pattern is itself. The empty key matches the empty
pattern only (Redis's matcher compares no byte of it; ``KEYS *`` and ``SCAN ... MATCH *`` skip
the matcher and give it too).

Every part of a pattern between two ``*`` matches a fixed number of bytes, so a key matches when
the first part matches its start, the last its end, and each one between, in order, at the
leftmost place it fits after the one before: the greedy choice never loses a match. That is
linear in the key for each part, where a regular expression of ``.*`` pieces can backtrack for
as long as a crafted pattern asks. Redis caps its recursion for that reason: a pattern with more
than :data:`MAX_NESTING` runs of ``*`` before its last part (a trailing ``*`` does not count)
matches no key there, and none here.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_STAR, _QUESTION, _OPEN, _CLOSE, _CARET, _BACKSLASH, _DASH = b"*?[]^\\-"
#: Redis's ``stringmatchlen`` gives up (no match) past this depth of ``*`` recursion.
MAX_NESTING = 1000


def _class(pattern: bytes, i: int) -> tuple[bytes, int]:
    """The regular expression of the class whose ``[`` is at ``i - 1``, and the index after it."""
    n = len(pattern)
    negate = i < n and pattern[i] == _CARET
    if negate:
        i += 1
    ranges: list[tuple[int, int]] = []
    while True:
        if i < n and pattern[i] == _BACKSLASH and n - i >= 2:
            i += 1
            ranges.append((pattern[i], pattern[i]))
        elif i < n and pattern[i] == _CLOSE:
            break
        elif i >= n:
            break  # left open: the class ends with the pattern
        elif n - i >= 3 and pattern[i + 1] == _DASH:
            ranges += _signed_range(pattern[i], pattern[i + 2])
            i += 2
        else:
            ranges.append((pattern[i], pattern[i]))
        i += 1
    if not ranges:
        return (b"[\x00-\xff]" if negate else b"(?!)"), i + 1
    body = b"".join(
        re.escape(bytes([low])) + (b"-" + re.escape(bytes([high])) if high != low else b"")
        for low, high in ranges
    )
    return b"[" + (b"^" if negate else b"") + body + b"]", i + 1


def _signed_range(a: int, b: int) -> list[tuple[int, int]]:
    """The bytes of a range ``a-b`` as Redis compares them: as C's signed ``char``, so a byte
    from 0x80 up sorts below 0x00 (``[\\xff-a]`` holds 0x00-0x61 and 0xff)."""
    low, high = sorted((a - 256 if a > 127 else a, b - 256 if b > 127 else b))
    if high < 0 or low >= 0:
        return [(low % 256, high % 256)]
    return [(0, high), (low + 256, 255)]


def _parts(pattern: bytes) -> list[tuple[bytes, int]]:
    """The pattern split at its stars: each part's regular expression and its length in bytes
    (a part always matches exactly that many)."""
    parts: list[tuple[bytes, int]] = []
    pieces: list[bytes] = []
    width = 0
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == _STAR:
            parts.append((b"".join(pieces), width))
            pieces, width = [], 0
            i += 1
            continue
        if c == _QUESTION:
            pieces.append(b"[\x00-\xff]")
            i += 1
        elif c == _OPEN:
            piece, i = _class(pattern, i + 1)
            pieces.append(piece)
        elif c == _BACKSLASH and n - i >= 2:
            pieces.append(re.escape(pattern[i + 1 : i + 2]))
            i += 2
        else:
            pieces.append(re.escape(pattern[i : i + 1]))
            i += 1
        width += 1
    parts.append((b"".join(pieces), width))
    return parts


def compile_glob(pattern: bytes) -> Callable[[bytes], bool]:
    """A test of keys against ``pattern`` (Redis's glob; see the module docstring)."""
    parts = _parts(pattern)
    if len(parts) == 1:  # no star: the whole key, one part
        whole = re.compile(parts[0][0], re.DOTALL).fullmatch
        return lambda key: whole(key) is not None
    head_expr, head_width = parts[0]
    tail_expr, tail_width = parts[-1]
    # Runs of stars (adjacent ones leave empty parts between them), less a trailing one.
    nesting = 1 + sum(1 for _, width in parts[1:-1] if width) - (tail_width == 0)
    if nesting > MAX_NESTING:
        return lambda key: False
    head = re.compile(head_expr, re.DOTALL).match
    tail = re.compile(tail_expr, re.DOTALL).fullmatch
    middle = [(re.compile(expr, re.DOTALL).search, width) for expr, width in parts[1:-1] if width]
    if not middle and not head_width and not tail_width:
        return bool  # only stars: any key but the empty one

    def matches(key: bytes) -> bool:
        end = len(key) - tail_width
        if not key or end < head_width or head(key) is None:
            return False
        pos = head_width
        for search, width in middle:
            found = search(key, pos, end)
            if found is None:
                return False
            pos = found.start() + width
        return tail(key, end) is not None

    return matches


__all__ = ["MAX_NESTING", "compile_glob"]
