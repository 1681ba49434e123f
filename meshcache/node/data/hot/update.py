"""A write's update of the copies of the hot keys it wrote, answered by callback (no task).

The owner of a hot key acknowledges a write to it once every holder answered the update
(``HOT_PUSH`` of the new value, or ``HOT_DROP``), or :data:`~.keys.WRITE_WAIT` passed. Like a
forward (:meth:`~meshcache.node.data.coordinator.Coordinator._forward_now`), an update is
*submitted* to the holder's kept connection (:meth:`PeerPool.submit` on the update lane) with
a callback, so the write costs no task, no nursery and no cancel scope: its answer leaves when
the last holder's answer lands (:attr:`CopyUpdate.done`, a :class:`Later`).

A call that cannot be submitted (no open connection to that holder yet, its outbox full) or
whose connection broke is sent in a task instead (``resend``: it connects, and a broken
connection gets one more try), within what is left of the same wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from meshcache.errors import MeshcacheConnectionError, MeshcacheError
from meshcache.node.net.peer_pool import PeerUnreachable
from meshcache.wire.frame import Response
from meshcache.wire.pending import Later

Submit = Callable[[str, str, str, list[Any], float, str, Callable[[Any], None]], bool]
"""``submit(peer, op, namespace, args, timeout, lane, answered)``: :meth:`PeerPool.submit` to
a node by id; False when it cannot be submitted (then nothing was sent)."""

Resend = Callable[[str, str, list[Any], float], Awaitable[Any]]
"""``await resend(holder, op, args, timeout)``: the call in a task; its result, or raises."""

_MISSED: Any = object()  # what a call in a task that did not land answered


class CopyUpdate:
    """One write's calls to every holder; :attr:`done` settles (with None) when each call was
    answered, refused, failed or timed out. :attr:`missed`: the holders one of whose calls did
    not land (their copies are covered by their leases).

    Args:
        namespace: the keys' namespace.
        plan: each holder's calls, ``(op, args)`` in order.
        submit: see :data:`Submit`.
        resend: see :data:`Resend`; started with ``spawn``.
        spawn: starts a task (the hot-key layer's nursery).
        pushed: ``pushed(holder, answer)``, a ``HOT_PUSH``'s answer from ``holder``.
        lane: the peer pool's lane of the updates.
        wait: seconds the whole update may take.
        clock: trio's clock.
    """

    __slots__ = (
        "_clock",
        "_deadline",
        "_left",
        "_namespace",
        "_pushed",
        "_resend",
        "_spawn",
        "_submit",
        "done",
        "lane",
        "missed",
    )

    def __init__(
        self,
        namespace: str,
        plan: dict[str, list[tuple[str, list[Any]]]],
        *,
        submit: Submit,
        resend: Resend,
        spawn: Callable[..., None],
        pushed: Callable[[str, Any], None],
        lane: str,
        wait: float,
        clock: Callable[[], float],
    ) -> None:
        self._namespace = namespace
        self._submit = submit
        self._resend = resend
        self._spawn = spawn
        self._pushed = pushed
        self._clock = clock
        self._deadline = clock() + wait
        self.lane = lane
        self.done = Later()
        self.missed: set[str] = set()
        self._left = sum(len(calls) for calls in plan.values())
        if not self._left:
            self.done.resolve(None)
            return
        for holder, calls in plan.items():
            for op, args in calls:
                self._send(holder, op, args, wait, retried=False)

    def _send(self, holder: str, op: str, args: list[Any], timeout: float, retried: bool) -> None:
        def answered(response: Response | BaseException) -> None:
            if isinstance(response, Response):
                if response.ok:
                    if op == "HOT_PUSH":
                        self._pushed(holder, response.value)
                else:
                    self.missed.add(holder)
                self._settle()
            elif (
                isinstance(response, MeshcacheConnectionError)
                and not isinstance(response, PeerUnreachable)
                and not retried
            ):
                # The kept connection broke (the holder closed it, a reset): once more, on a
                # new one; an update is idempotent, so one that did arrive does no harm.
                self._in_task(holder, op, args, retried=True)
            else:
                self.missed.add(holder)
                self._settle()

        if not self._submit(holder, op, self._namespace, args, timeout, self.lane, answered):
            self._in_task(holder, op, args, retried)

    def _in_task(self, holder: str, op: str, args: list[Any], retried: bool) -> None:
        left = self._deadline - self._clock()
        if left <= 0:
            self.missed.add(holder)
            self._settle()
            return
        self._spawn(self._call_in_task, holder, op, args, left, retried)

    async def _call_in_task(
        self, holder: str, op: str, args: list[Any], timeout: float, retried: bool
    ) -> None:
        answer: Any = _MISSED
        # Connecting first included, the call waits no longer than the update has left.
        with trio.move_on_after(timeout):
            try:
                answer = await self._resend(holder, op, args, timeout)
            except PeerUnreachable:
                pass
            except MeshcacheConnectionError:
                if not retried:
                    self._in_task(holder, op, args, retried=True)
                    return
            except (MeshcacheError, OSError):  # refused, timed out
                pass
        if answer is _MISSED:
            self.missed.add(holder)
        elif op == "HOT_PUSH":
            self._pushed(holder, answer)
        self._settle()

    def _settle(self) -> None:
        self._left -= 1
        if self._left == 0:
            self.done.resolve(None)


__all__ = ["CopyUpdate", "Resend", "Submit"]
