"""A write's update of its hot keys' copies by callback: every holder answered, refused, timed
out or unreachable, the write's answer waits for all of them and no longer than its wait."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from meshcache.errors import ErrorCode, MeshcacheConnectionError, MeshcacheTimeout
from meshcache.node.data.hot.update import CopyUpdate
from meshcache.node.net.peer_pool import PeerUnreachable
from meshcache.wire.frame import Response

CALLS: list[tuple[str, list[Any]]] = [("HOT_PUSH", ["n0", 3, 2.0, [[b"k", b"v", 7, None]]])]


class Holders:
    """Stands in for the peer pool: what each holder does with a submitted call, and the
    calls sent in tasks instead."""

    def __init__(self, nursery: trio.Nursery, behaviour: dict[str, list[str]]) -> None:
        self.nursery = nursery
        self.behaviour = behaviour  # holder -> what its next submits and resends do, in turn
        self.submitted: list[str] = []
        self.resent: list[str] = []
        self.pushed: list[tuple[str, Any]] = []

    def submit(
        self, peer: str, op: str, ns: str, args: list[Any], timeout: float, lane: str, answered: Any
    ) -> bool:
        assert lane == "hot" and ns == "default"
        what = self.behaviour[peer].pop(0)
        if what == "closed":
            return False
        self.submitted.append(peer)

        async def later() -> None:
            await trio.sleep(0.01)  # the holder's answer arrives by callback, later
            if what == "ok":
                answered(Response(1, True, [0], 3))
            elif what == "refused":
                answered(Response(1, False, [ErrorCode.BAD_REQUEST.value, "no"], 3))
            elif what == "broken":
                answered(MeshcacheConnectionError("reset"))
            elif what == "unreachable":
                answered(PeerUnreachable("down"))
            else:
                await trio.sleep(timeout)
                answered(MeshcacheTimeout("no answer"))

        self.nursery.start_soon(later)
        return True

    async def resend(self, holder: str, op: str, args: list[Any], timeout: float) -> Any:
        self.resent.append(holder)
        what = self.behaviour[holder].pop(0)
        if what == "hang":
            await trio.sleep_forever()
        if what == "broken":
            raise MeshcacheConnectionError("reset again")
        await trio.sleep(0.01)
        return [0]


async def _update(holders: Holders, nursery: trio.Nursery, wait: float = 0.5) -> CopyUpdate:
    return CopyUpdate(
        "default",
        dict.fromkeys(holders.behaviour, CALLS),
        submit=holders.submit,
        resend=holders.resend,
        spawn=nursery.start_soon,
        pushed=lambda holder, answer: holders.pushed.append((holder, answer)),
        lane="hot",
        wait=wait,
        clock=trio.current_time,
    )


async def _settled(update: CopyUpdate) -> float:
    started = trio.current_time()
    await update.done.wait()
    return trio.current_time() - started


@pytest.mark.trio
async def test_every_holder_answers_and_the_update_settles_after_the_last(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        holders = Holders(nursery, {"a": ["ok"], "b": ["ok"]})
        update = await _update(holders, nursery)
        assert not update.done.done  # nothing is answered from inside the submit
        await _settled(update)
    assert holders.submitted == ["a", "b"] and holders.resent == []
    assert sorted(h for h, _ in holders.pushed) == ["a", "b"]
    assert update.missed == set()


@pytest.mark.trio
async def test_a_holder_without_an_open_connection_is_sent_to_in_a_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        holders = Holders(nursery, {"a": ["ok"], "b": ["closed", "ok"]})
        update = await _update(holders, nursery)
        await _settled(update)
    assert holders.submitted == ["a"] and holders.resent == ["b"]
    assert update.missed == set()


@pytest.mark.trio
async def test_a_broken_connection_gets_one_more_try_and_then_counts_as_missed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        holders = Holders(nursery, {"a": ["broken", "ok"], "b": ["broken", "broken"]})
        update = await _update(holders, nursery)
        await _settled(update)
    assert sorted(holders.resent) == ["a", "b"]
    assert update.missed == {"b"}
    assert [h for h, _ in holders.pushed] == ["a"]


@pytest.mark.trio
async def test_refused_unreachable_and_silent_holders_are_missed_within_the_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        holders = Holders(
            nursery,
            {"a": ["refused"], "b": ["unreachable"], "c": ["silent"], "d": ["closed", "hang"]},
        )
        update = await _update(holders, nursery, wait=0.5)
        took = await _settled(update)
    assert update.missed == {"a", "b", "c", "d"}
    assert holders.resent == ["d"]  # an unreachable holder is not tried again
    assert took <= 0.5 + 0.02
    assert holders.pushed == []


@pytest.mark.trio
async def test_no_holder_settles_at_once() -> None:
    async with trio.open_nursery() as nursery:
        holders = Holders(nursery, {})
        update = await _update(holders, nursery)
        assert update.done.done
