"""A reply that waits: how a node's ports pipeline requests whose answers are not ready.

Shared by the msgpack data port (:mod:`meshcache.node.net.dispatch`) and the RESP door
(:mod:`meshcache.resp.session`), so both follow one ordering rule.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Any


class Later:
    """A result that arrives later, delivered by a callback rather than awaited: a forwarded
    request waits on its peer's answer this way, with no task of its own.

    It is settled once, with :meth:`resolve` or :meth:`fail`; :meth:`then` registers the one
    callback, ``callback(value, error)`` with ``error`` None on success, called at settlement
    (at once if it is already settled). A callback must not raise.
    """

    __slots__ = ("_callback", "_error", "_value", "done")

    def __init__(self) -> None:
        self._callback: Callable[[Any, BaseException | None], None] | None = None
        self._value: Any = None
        self._error: BaseException | None = None
        self.done = False

    def then(self, callback: Callable[[Any, BaseException | None], None]) -> None:
        if self.done:
            callback(self._value, self._error)
        else:
            self._callback = callback

    def resolve(self, value: Any) -> None:
        # _settle's body, inline: this is on the path of every forwarded request's answer.
        if self.done:
            return
        self.done = True
        callback = self._callback
        if callback is None:
            self._value = value
        else:
            self._callback = None
            callback(value, None)

    def fail(self, error: BaseException) -> None:
        self._settle(None, error)

    def _settle(self, value: Any, error: BaseException | None) -> None:
        if self.done:
            return
        self.done = True
        callback = self._callback
        if callback is None:
            self._value, self._error = value, error
        else:
            self._callback = None
            callback(value, error)

    async def wait(self) -> Any:
        """Await it from a task (for callers that have one): its value, or raise its error."""
        value, error = await self.settlement()
        if error is not None:
            raise error
        return value

    async def settlement(self) -> tuple[Any, BaseException | None]:
        """Await it from a task: ``(value, error)`` as a callback would be given them."""
        import trio

        event = trio.Event()
        box: list[tuple[Any, BaseException | None]] = []

        def settled(value: Any, error: BaseException | None) -> None:
            box.append((value, error))
            event.set()

        self.then(settled)
        await event.wait()
        return box[0]


class Relayed(Later):
    """The :class:`Later` of a read a node passed on to the key's owner as its client sent
    it (``meshcache.node.net.relay``): settled with the owner's response frame (bytes), or
    with :class:`FailedOver` when the owner did not answer it and it was forwarded again."""

    __slots__ = ()


class FailedOver:
    """The value of a relayed read that was forwarded again after its batch failed: a
    relayed one settles with its owner's response frame (bytes), this with the op's value."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Parts:
    """An answer written in parts: ``first`` now, and each part of ``rest``, made once the part
    before it is in the kernel's hands, so the bytes of a large answer are never all held at
    once (a ``RELAY``'s answer over many large values). The connection's later requests wait
    until its last part."""

    __slots__ = ("first", "rest")

    def __init__(self, first: bytes, rest: Iterator[bytes]) -> None:
        self.first = first
        self.rest = rest

    def whole(self) -> bytes:
        """Every part at once (for a caller that holds the answer anyway: the simulation)."""
        return b"".join([self.first, *self.rest])


class Pending:
    """A request whose answer waits on a node op (a forward, a quorum's acks, a Raft commit),
    on either door of a node: the data port (msgpack frames) or the RESP port.

    ``answer`` produces the complete reply bytes (or, for a large answer, its :class:`Parts`)
    and never raises for a failed op (a :class:`CommandError` or a node bug becomes an error
    reply); it must be awaited exactly once.

    ``fans_out`` is True for ops that start work on other nodes after they first wait (a
    many-key split, ``FLUSH`` on every node, a config change): the caller must run nothing
    after them on the same connection until ``answer`` is done, or later requests could
    overtake them. Otherwise, by the time ``answer`` first suspends, the op has done its local
    part and handed its one peer request (if any) to the peer connection, which sends in order.

    ``later``, when not None, replaces ``answer``: the reply arrives by callback
    (:class:`Later`), with no task to run. Its op did its part when the ``Pending`` was made
    (a forward handed to the peer connection, which sends in order; a read-through miss
    joined to its load). With ``finish``, ``later`` is settled with the op's result and
    ``finish(value, error)`` makes the reply bytes of it (it never raises: a failed op becomes
    an error reply), called once, inside the settling callback; without, ``later``'s value is
    the reply bytes. :meth:`reply` awaits either kind.

    ``key`` is ``(namespace, key)`` for a single-key op: a later op of the same key must not
    start before this one's first suspension (so a forwarded SET reaches the owner before the
    GET behind it). None when nothing has to wait for it: a fan-out op (which holds everything
    anyway) or ``FWD``, which this node coordinates itself and never forwards again, so its
    effect is applied before ``answer`` is even returned.
    """

    __slots__ = ("answer", "fans_out", "finish", "key", "later")

    def __init__(
        self,
        answer: Coroutine[Any, Any, bytes | Parts] | None,
        *,
        fans_out: bool = False,
        key: tuple[str, bytes] | None = None,
        later: Later | None = None,
        finish: Callable[[Any, BaseException | None], bytes] | None = None,
    ) -> None:
        self.answer = answer
        self.fans_out = fans_out
        self.key = key
        self.later = later
        self.finish = finish

    async def reply(self) -> bytes | Parts:
        """The reply bytes, from a task: ``answer`` awaited, or ``later`` waited for."""
        if self.answer is not None:
            return await self.answer
        assert self.later is not None
        if self.finish is not None:
            return self.finish(*await self.later.settlement())
        data: bytes = await self.later.wait()
        return data


__all__ = ["FailedOver", "Later", "Parts", "Pending", "Relayed"]
