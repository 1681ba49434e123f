"""The Hot keys view's figures: HOTKEYS answers merged, garbage tolerated, the policy shown.

Model-level tests (no terminal, no cluster) and pilot tests of the view on recorded polls.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.tui import text
from meshcache.tui.app import TopApp
from meshcache.tui.hotkeys import describe_policy, merge, policy_state, printable
from meshcache.tui.model import ClusterModel, Snapshot
from meshcache.tui.source import Poll, RecordedSource
from meshcache.tui.views import HotKeysView
from tests.tui.helpers import run, screen_text, wait_screen, wait_true
from tests.tui.recording import NODES, POLICIES, recorded_polls

HOT_VIEW = "5"


def replay(polls: list[Poll]) -> Snapshot:
    model = ClusterModel(NODES[0], refresh=1.0)
    snapshot = None
    for poll in polls:
        snapshot = model.update(poll)
    assert snapshot is not None
    return snapshot


def with_hotkeys(polls: list[Poll], answers: dict[str, Any]) -> list[Poll]:
    """``polls`` with the HOTKEYS answer of the nodes named in ``answers`` replaced."""
    out = []
    for poll in polls:
        replies = {
            a: replace(r, hotkeys=answers[a]) if a in answers and r.ok else r
            for a, r in poll.replies.items()
        }
        out.append(Poll(poll.at, poll.wall, replies))
    return out


def with_policies(polls: list[Poll], policies: dict[str, Any]) -> list[Poll]:
    out = []
    for poll in polls:
        replies = {
            a: replace(r, config={**r.config, "namespaces": policies}) if r.config else r
            for a, r in poll.replies.items()
        }
        out.append(Poll(poll.at, poll.wall, replies))
    return out


def test_recording_merges_every_owners_hot_keys_hottest_first() -> None:
    snapshot = replay(recorded_polls())
    hot = snapshot.hot
    assert [(r.namespace, r.key, r.owner) for r in hot.rows] == [
        ("sessions", "user:42:profile", NODES[0]),
        ("sessions", "cart:7", NODES[1]),
    ]
    top = hot.rows[0]
    assert top.holders == (NODES[1], NODES[2], NODES[3])
    assert top.rate == pytest.approx(2560.0)
    assert top.share == pytest.approx(0.211)
    # The dead node 5 is not asked: four answers, five copies among them.
    assert hot.answered == tuple(NODES[:4])
    assert hot.unreadable == ()
    assert hot.copies == 5
    assert hot.area_bytes == 5 * 2_600
    assert snapshot.hot_namespaces == ("sessions",)


def test_namespace_rows_show_the_hot_key_policy() -> None:
    snapshot = replay(recorded_polls())
    by_name = {n.name: n.hot for n in snapshot.namespaces}
    assert by_name == {
        "default": "off",
        "pages": "off",
        "sessions": "on 2.0% 200/s all copies 2s",
    }
    # The node's applied policy (with its hot table) still counts as the committed one.
    assert all(n.applied == n.nodes == 4 for n in snapshot.namespaces)


@pytest.mark.parametrize(
    ("policy", "shown", "state"),
    [
        ({"eviction": "lru"}, "off", False),
        ({"hot": None}, "off", False),
        ({"hot": {}}, "on 1.0% 100/s all copies 2s", True),
        ({"hot": {"enabled": False, "copies": 3}}, "off", False),
        ({"hot": {"copies": 3, "lease": 0.5, "share": 0.25, "rate": 5}}, None, True),
        ({"hot": "yes"}, text.UNKNOWN, None),
        ({"hot": {"enabled": "sometimes"}}, text.UNKNOWN, None),
        ({"hot": {"share": 7}}, text.UNKNOWN, True),  # out of range
        ({"hot": {"bogus": 1}}, text.UNKNOWN, True),
        ("garbage", text.UNKNOWN, None),
    ],
)
def test_policy_in_short(policy: Any, shown: str | None, state: bool | None) -> None:
    assert policy_state(policy) is state
    if shown is None:
        assert describe_policy(policy) == "on 25% 5.0/s 3 copies 0.5s"
    else:
        assert describe_policy(policy) == shown


GARBAGE_ANSWERS: list[Any] = [
    "not a map",
    b"\x00\xff",
    42,
    ["hot"],
    {"hot": "many"},
    {"hot": None},
    {},
]


@pytest.mark.parametrize("garbage", GARBAGE_ANSWERS, ids=repr)
def test_a_node_answering_garbage_is_unreadable_and_harms_no_other(garbage: Any) -> None:
    snapshot = replay(with_hotkeys(recorded_polls(), {NODES[1]: garbage}))
    assert snapshot.hot.unreadable == (NODES[1],)
    assert NODES[1] not in snapshot.hot.answered
    # Node 1's key is still there; node 2's is not (its answer could not be read).
    assert [r.key for r in snapshot.hot.rows] == ["user:42:profile"]


def test_garbage_fields_are_unknown() -> None:
    answer = {
        "hot": [
            {
                "namespace": 7,
                "key": b"bin\x00\xff",
                "rate": "fast",
                "share": 3.5,
                "holders": "everyone",
                "hot_for": -1,
            },
            {"namespace": "ns", "key": None, "rate": float("nan"), "holders": [1, 2]},
            {"namespace": "ns", "key": "ok", "rate": True, "share": -0.1, "holders": []},
            "not a row",
            None,
        ],
        "copies": "some",
        "area_bytes": -5,
    }
    hot = merge({"n1": answer, "n2": None})
    assert hot.answered == ("n1",)
    assert hot.copies == 0
    assert hot.area_bytes is None
    first, second, third = hot.rows
    assert (first.namespace, first.key) == (None, "bin\x00\\xff")
    assert (first.rate, first.share, first.holders, first.hot_for) == (None, None, None, None)
    assert (second.key, second.rate, second.holders) == (None, None, None)
    assert (third.key, third.rate, third.share, third.holders) == ("ok", None, None, ())
    assert printable(first.key) == "bin\\x00\\xff"
    assert printable(None) == text.UNKNOWN
    assert printable("k" * 100).endswith("\u2026")
    assert len(printable("k" * 100)) == 48


ANSWER_FIELDS = ["hot", "copies", "area_bytes", "namespace", "key", "rate", "share", "holders"]


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(ANSWER_FIELDS) | st.text(max_size=3),
                    inner,
                    max_size=6,
                )
            ),
            max_leaves=20,
        ),
        max_size=4,
    )
)
def test_merge_never_fails_on_any_answer(answers: dict[str, Any]) -> None:
    hot = merge(answers)
    assert set(hot.answered) | set(hot.unreadable) <= set(answers)
    for row in hot.rows:
        assert row.rate is None or row.rate >= 0
        assert row.share is None or 0 <= row.share <= 1
        for cell in HotKeysView.cells(row):
            assert isinstance(str(cell), str)


def _hot_screen(polls: list[Poll], size: tuple[int, int] = (100, 30)) -> str:
    async def body() -> str:
        app = TopApp(RecordedSource(polls, entry=NODES[0]), refresh=1.0, utc=True)
        async with app.run_test(size=size) as pilot:
            await wait_true(
                lambda: app.snapshot is not None and app.snapshot.polls == len(polls),
                30,
                "the replay",
            )
            await pilot.press(HOT_VIEW)
            await pilot.pause()
            return screen_text(app)

    return run(body())


def test_view_empty_states() -> None:
    polls = recorded_polls()
    quiet = with_hotkeys(polls, {n: {"hot": [], "copies": []} for n in NODES})
    assert "no hot keys · on in sessions" in _hot_screen(quiet)
    off = {n: {**p, "hot": None} for n, p in POLICIES.items()}
    assert "hot keys are off in every namespace" in _hot_screen(with_policies(quiet, off))


def test_view_shows_a_dash_for_garbage_and_names_the_node() -> None:
    answers = {
        NODES[1]: {"hot": [{"namespace": "sessions", "key": "cart:7", "rate": "x"}]},
        NODES[2]: "garbage",
    }
    screen = _hot_screen(with_hotkeys(recorded_polls(), answers))
    assert f"unreadable answer from {NODES[2]}" in screen
    cart = next(line for line in screen.splitlines() if "cart:7" in line)
    assert text.UNKNOWN in cart
    assert "user:42:profile" in screen


def test_view_sorts_and_filters_inside_tmux_keys() -> None:
    """``s`` cycles the sort column, ``r`` flips it, ``/`` filters (no Shift+arrows)."""

    async def body() -> None:
        polls = recorded_polls()
        app = TopApp(RecordedSource(polls, entry=NODES[0]), refresh=1.0, utc=True)
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_true(
                lambda: app.snapshot is not None and app.snapshot.polls == len(polls),
                30,
                "the replay",
            )
            await pilot.press(HOT_VIEW)

            def order() -> list[str]:
                lines = screen_text(app).splitlines()
                return [k for line in lines for k in ("user:42:profile", "cart:7") if k in line]

            await wait_true(lambda: order() == ["user:42:profile", "cart:7"], 10, "rate order")
            await pilot.press("r")  # ascending rate
            await wait_true(lambda: order() == ["cart:7", "user:42:profile"], 10, "reversed")
            await pilot.press("/")
            await pilot.press(*"cart")
            await pilot.press("enter")
            await wait_screen(
                app, lambda s: "user:42:profile" not in s and "cart:7" in s, 10, "the filter"
            )

    run(body())
