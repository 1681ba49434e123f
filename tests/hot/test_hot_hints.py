"""What the owner's answer to a write says about the hot keys it wrote (``HotKeys.ack_hint``)."""

from __future__ import annotations

import time
from typing import Any

from meshcache.hlc import HLC
from meshcache.node.data.hot.keys import HotKey, HotKeys
from meshcache.ring import Ring
from meshcache.store.hotpolicy import HotKeyPolicy
from meshcache.store.policy import NamespacePolicy
from meshcache.store.store import Store

NS = "hot"


def _hot_keys(now: float) -> tuple[Store, HotKeys]:
    store = Store(
        clock=lambda: now,
        hlc=HLC(lambda: int(now * 1000)),
        policies={NS: NamespacePolicy(hot=HotKeyPolicy())},
        tombstone_grace_s=None,  # a delete leaves no record
    )

    async def call(*_: Any) -> Any:
        raise AssertionError("no call expected")

    hot = HotKeys(
        store,
        "n0",
        ring=lambda: (Ring([], 0), 0),
        alive=lambda _: True,
        call=call,
        wall_clock=lambda: now,
        clock=lambda: now,
    )
    return store, hot


def test_a_delete_that_leaves_no_record_answers_a_version_the_next_write_passes() -> None:
    store, hot = _hot_keys(time.time())
    store.execute(NS, "SET", [b"k", b"v", {}])
    before = store.last_version
    hot.hot[NS] = {b"k": HotKey(since=0.0, share=0.5, rate=100.0, holders=("n1",))}
    store.execute(NS, "DELETE", [b"k"])
    deleted = hot.ack_hint(NS, "DELETE", [b"k"])
    # every copy from before the delete is older than the version demanded
    assert deleted is not None and before < deleted["version"] == store.last_version + 1
    store.execute(NS, "SET", [b"k", b"w", {}])
    written = hot.ack_hint(NS, "SET", [b"k"])
    assert written is not None and written["version"] >= deleted["version"]


def test_a_key_not_hot_and_not_cooled_lately_answers_no_version() -> None:
    store, hot = _hot_keys(time.time())
    store.execute(NS, "SET", [b"k", b"v", {}])
    assert hot.ack_hint(NS, "SET", [b"k"]) is hot.hint
    hot.cooled[NS] = {b"k": float("inf")}
    answer = hot.ack_hint(NS, "SET", [b"k"])
    assert answer is not None and answer["version"] == store.last_version
