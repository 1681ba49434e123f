"""The key glob against a direct transcription of Redis's ``stringmatchlen`` (recursive, as
Redis's is), and on patterns that make a backtracking matcher run for ever. redis-server itself
is the other oracle (tests/resp/test_scan.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.store.keyglob import compile_glob


def _signed(c: int) -> int:
    return c - 256 if c > 127 else c


def stringmatch(p: bytes, s: bytes) -> bool:
    """Redis's matcher, step by step (case-sensitive)."""
    pi, si = 0, 0
    while pi < len(p) and si < len(s):
        c = p[pi]
        if c == ord("*"):
            while pi + 1 < len(p) and p[pi + 1] == ord("*"):
                pi += 1
            if pi + 1 == len(p):
                return True
            return any(stringmatch(p[pi + 1 :], s[k:]) for k in range(si, len(s)))
        if c == ord("?"):
            si += 1
        elif c == ord("["):
            pi += 1
            negate = pi < len(p) and p[pi] == ord("^")
            if negate:
                pi += 1
            matched = False
            while True:
                if pi < len(p) and p[pi] == ord("\\") and len(p) - pi >= 2:
                    pi += 1
                    matched |= p[pi] == s[si]
                elif pi < len(p) and p[pi] == ord("]"):
                    break
                elif pi >= len(p):
                    pi -= 1
                    break
                elif len(p) - pi >= 3 and p[pi + 1] == ord("-"):
                    lo, hi = sorted((_signed(p[pi]), _signed(p[pi + 2])))
                    matched |= lo <= _signed(s[si]) <= hi
                    pi += 2
                else:
                    matched |= p[pi] == s[si]
                pi += 1
            if matched == negate:
                return False
            si += 1
        else:
            if c == ord("\\") and len(p) - pi >= 2:
                pi += 1
            if p[pi] != s[si]:
                return False
            si += 1
        pi += 1
        if si == len(s):
            while pi < len(p) and p[pi] == ord("*"):
                pi += 1
            break
    return pi >= len(p) and si == len(s)


ALPHABET = st.sampled_from(list(b"ab*?[]^\\-\x00\xff"))


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(ALPHABET, max_size=9).map(bytes),
    st.lists(st.sampled_from(list(b"ab*?[]^\\-\x00\x80\xff")), max_size=7).map(bytes),
)
def test_the_glob_matches_as_redis_does(pattern: bytes, key: bytes) -> None:
    assert compile_glob(pattern)(key) == stringmatch(pattern, key), (pattern, key)


def test_known_answers() -> None:
    cases = [
        (b"user:*", b"user:1", True),
        (b"user:*", b"user", False),
        (b"h?llo", b"hello", True),
        (b"h[ae]llo", b"hallo", True),
        (b"h[^e]llo", b"hello", False),
        (b"h[a-b]llo", b"hbllo", True),
        (b"h[b-a]llo", b"hbllo", True),  # ends in either order
        (b"a\\*", b"a*", True),
        (b"a\\*", b"ab", False),
        (b"a\\", b"a\\", True),  # a trailing backslash is itself
        (b"[abc", b"b", True),  # an open class ends with the pattern
        (b"*", b"", False),  # only KEYS * and MATCH * (no matcher) give the empty key
        (b"", b"", True),
    ]
    for pattern, key, expected in cases:
        assert compile_glob(pattern)(key) is expected, (pattern, key)


def test_patterns_that_backtrack_forever_elsewhere_end_at_once() -> None:
    """``*a*a*...*b`` against a long run of ``a``: a backtracking matcher tries every way to
    split the run (Redis had to cap its recursion for it); each part here is looked for once."""
    key = b"a" * 20_000
    for stars in (10, 30, 100):
        assert not compile_glob(b"*a" * stars + b"*b")(key)
        assert compile_glob(b"*a" * stars + b"*")(key)
        assert not compile_glob(b"?" * stars + b"*[b]")(key)
