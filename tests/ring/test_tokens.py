"""Token functions are a cross-process, cross-language contract: pinned by golden values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshcache.ring import TOKEN_SPACE, TokenRange, key_token, vnode_token
from meshcache.ring.tokens import BUCKET_SHIFT, RangeSet, label_runs


def test_key_token_golden_values() -> None:
    assert [key_token(k) for k in (b"", b"hello", b"user:42")] == [0, 907060870, 1684999558]


def test_vnode_token_golden_values() -> None:
    assert vnode_token("node-1", 0) == 2460884507
    assert vnode_token("node-1", 1) == 3287992960
    assert vnode_token("n\u00e9", 7) == 1672100027


@given(st.binary(max_size=64))
def test_key_token_in_token_space(key: bytes) -> None:
    assert 0 <= key_token(key) < TOKEN_SPACE


def test_token_range_plain_and_wrapping() -> None:
    plain = TokenRange(10, 20)
    assert 10 not in plain and 11 in plain and 20 in plain and 21 not in plain
    assert plain.size == 10 and not plain.wraps
    wrapping = TokenRange(TOKEN_SPACE - 5, 3)
    assert TOKEN_SPACE - 1 in wrapping and 0 in wrapping and 3 in wrapping
    assert TOKEN_SPACE - 5 not in wrapping and 4 not in wrapping
    assert wrapping.size == 8 and wrapping.wraps
    whole = TokenRange(7, 7)
    assert all(t in whole for t in (0, 7, TOKEN_SPACE - 1)) and whole.size == TOKEN_SPACE
    assert "x" not in plain


def test_label_runs_merges_across_the_wrap() -> None:
    bounds = [10, 20, 30, 40]
    # (40, 10] and (30, 40] share label "a": one run (30, 10].
    runs = label_runs(bounds, ["a", "b", "b", "a"])
    assert runs == [(TokenRange(10, 30), "b"), (TokenRange(30, 10), "a")]
    assert label_runs(bounds, ["x"] * 4) == [(TokenRange(40, 40), "x")]
    assert label_runs([], []) == []


@given(st.lists(st.integers(0, 2), min_size=1, max_size=12))
def test_label_runs_cover_each_elementary_range_once(labels: list[int]) -> None:
    bounds = [100 * (i + 1) for i in range(len(labels))]
    runs = label_runs(bounds, labels)
    for i, bound in enumerate(bounds):
        # A token inside the elementary range ending at ``bound``.
        token = bound - 1 if bound - 1 not in bounds else bound
        found = [label for r, label in runs if token in r]
        assert found == [labels[i]]
    if len(set(labels)) > 1:
        assert all(a[1] != b[1] for a, b in zip(runs, runs[1:] + runs[:1], strict=True))


tokens = st.integers(0, TOKEN_SPACE - 1)


@given(
    st.lists(st.builds(TokenRange, tokens, tokens), max_size=8),
    st.lists(tokens, min_size=1, max_size=50),
)
def test_range_set_membership_is_the_union_of_its_ranges(
    ranges: list[TokenRange], probes: list[int]
) -> None:
    rs = RangeSet(ranges)
    edges = [t for r in ranges for t in (r.start, r.end, (r.end + 1) % TOKEN_SPACE)]
    for token in probes + edges:
        assert (token in rs) == any(token in r for r in ranges)
    assert bool(rs) == bool(ranges)


@given(
    st.lists(st.builds(TokenRange, tokens, tokens), max_size=8),
    st.lists(st.binary(max_size=12), max_size=60),
)
def test_range_set_mask_and_select_agree_with_membership(
    ranges: list[TokenRange], keys: list[bytes]
) -> None:
    rs = RangeSet(ranges)
    expected = [key_token(k) in rs for k in keys]
    assert rs.mask(keys) == expected
    assert rs.select(keys) == [k for k, inside in zip(keys, expected, strict=True) if inside]


def test_range_set_mask_refuses_keys_that_are_not_bytes() -> None:
    for rs in (RangeSet([TokenRange(1, 1)]), RangeSet([TokenRange(1, 5)])):
        with pytest.raises(TypeError):
            rs.mask([b"ok", "text"])  # type: ignore[list-item]


bucket_edges = st.builds(
    lambda bucket, offset: (bucket * (1 << BUCKET_SHIFT) + offset) % TOKEN_SPACE,
    st.integers(0, (TOKEN_SPACE >> BUCKET_SHIFT) - 1),
    st.sampled_from([-2, -1, 0, 1, 2]),
)
edge_or_any = st.one_of(bucket_edges, tokens)


@given(
    st.lists(st.builds(TokenRange, edge_or_any, edge_or_any), max_size=8),
    st.lists(edge_or_any, max_size=40),
)
def test_range_set_mask_tokens_is_membership_at_bucket_edges(
    ranges: list[TokenRange], probes: list[int]
) -> None:
    """The bucket table must not misjudge ranges that start or end on a bucket's edge."""
    rs = RangeSet(ranges)
    near = [(t + d) % TOKEN_SPACE for r in ranges for t in (r.start, r.end) for d in (-1, 0, 1)]
    for token, inside in zip(probes + near, rs.mask_tokens(probes + near), strict=True):
        assert inside == any(token in r for r in ranges), hex(token)
