"""Splitting a batch by node and merging the answers back: sans-I/O, shared by every front end.

A smart client sends each command to its key's first owner. A pipeline whose keys live on
several nodes, and a command of a many-key op (``OpSpec.multi_key`` in the op table: ``MGET``,
``MSET``, ``DELETE``, ``EXISTS``) whose keys do, become one
:class:`Group` of commands per node (a multi-key command is cut into one part per node);
the front end sends the groups in parallel and :meth:`Plan.merge` puts the results back in the
caller's order: an ``MGET`` list in key order, ``DELETE`` and ``EXISTS`` counts summed, ``MSET``
True when every part was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshcache.client.core import Command
from meshcache.errors import MeshcacheError, RemoteProtocolError
from meshcache.wire import Address


@dataclass(slots=True)
class Group:
    """The commands of a batch bound for one node, in the caller's order.

    ``key`` routes the group (None: any node, for meta ops); ``retryable`` is True when every
    command is idempotent, so the group may be sent again on a broken connection.
    """

    key: bytes | None
    commands: list[Command[Any]] = field(default_factory=list)
    retryable: bool = True

    def add(self, command: Command[Any]) -> int:
        """Append ``command``; its position in the group."""
        self.commands.append(command)
        if not command.spec.idempotent:
            self.retryable = False
        return len(self.commands) - 1


# Where one part of a caller's command was sent: (group index, position in the group, the
# positions of the part's keys among the command's keys — None when the command was not cut).
_Piece = tuple[int, int, list[int] | None]


@dataclass(slots=True)
class Plan:
    """Groups to send, and for each of the caller's commands, where its pieces went."""

    groups: list[Group]
    commands: Sequence[Command[Any]]
    pieces: list[list[_Piece]]

    def merge(self, group_results: Sequence[Sequence[Any]]) -> list[Any]:
        """The result of every caller's command, in order, from each group's results.

        A group's results are values, or exception objects where a command failed (as
        ``Exchange.results(raise_on_error=False)`` gives them). A command with a failed part
        gets that part's exception.
        """
        out: list[Any] = []
        for command, pieces in zip(self.commands, self.pieces, strict=True):
            parts = [(group_results[g][pos], where) for g, pos, where in pieces]
            failed = next((r for r, _ in parts if isinstance(r, MeshcacheError)), None)
            if failed is not None:
                out.append(failed)
            elif len(parts) == 1 and parts[0][1] is None:
                out.append(parts[0][0])
            else:
                out.append(_merge(command, parts))
        return out

    def results(self, group_results: Sequence[Sequence[Any]], *, raise_on_error: bool) -> list[Any]:
        """:meth:`merge`, raising the first error in the caller's order if ``raise_on_error``."""
        out = self.merge(group_results)
        if raise_on_error:
            for item in out:
                if isinstance(item, MeshcacheError):
                    raise item
        return out


def _merge_values(parts: list[tuple[Any, list[int]]], count: int) -> Any:
    """``MGET``: each part's values put back at its keys' positions."""
    values: list[Any] = [None] * count
    for result, where in parts:
        if len(result) != len(where):
            return RemoteProtocolError(f"MGET of {len(where)} keys answered {len(result)} values")
        for i, value in zip(where, result, strict=True):
            values[i] = value
    return values


def _merge_all(parts: list[tuple[Any, list[int]]], count: int) -> Any:
    """``MSET``: True when every part was."""
    return all(result for result, _ in parts)


def _merge_sum(parts: list[tuple[Any, list[int]]], count: int) -> Any:
    """``DELETE``, ``EXISTS``: the parts' counts added up."""
    return sum(result for result, _ in parts)


MERGE: dict[str, Callable[[list[tuple[Any, list[int]]], int], Any]] = {
    "MGET": _merge_values,
    "MSET": _merge_all,
    "DELETE": _merge_sum,
    "EXISTS": _merge_sum,
}
"""How the parts of each many-key op (``OpSpec.multi_key``) are put back together."""


def _merge(command: Command[Any], parts: list[tuple[Any, list[int] | None]]) -> Any:
    cut = [(result, where) for result, where in parts if where is not None]
    return MERGE[command.spec.name](cut, _key_count(command))


def _width(command: Command[Any]) -> int:
    """Arguments per key: a many-key op's signature repeats a group that starts with its key."""
    return len(command.spec.repeat)


def _key_count(command: Command[Any]) -> int:
    return len(command.args) // _width(command)


def _keys(command: Command[Any]) -> list[bytes]:
    args = command.args
    width = _width(command)
    return args if width == 1 else args[::width]


def _part(command: Command[Any], where: list[int]) -> Command[Any]:
    args = command.args
    width = _width(command)
    if width == 1:
        part = [args[i] for i in where]
    else:
        part = [item for i in where for item in args[width * i : width * (i + 1)]]
    # Arguments were checked and normalized when the caller's command was built.
    return Command(command.spec, command.namespace, part, command.decode)


def plan(
    commands: Sequence[Command[Any]], primary: Callable[[bytes], Address | None]
) -> Plan | None:
    """Group ``commands`` by the node ``primary`` gives each key; None when all go to one node.

    Commands without a key (meta ops) form their own group, routed to any node.
    """
    groups: list[Group] = []
    index: dict[Address | None, int] = {}
    pieces: list[list[_Piece]] = []
    split_any = False

    def group_of(place: Address | None, key: bytes | None) -> int:
        g = index.get(place)
        if g is None:
            g = index[place] = len(groups)
            groups.append(Group(key))
        return g

    for command in commands:
        key = command.key
        if key is not None and command.spec.multi_key and _key_count(command) > 1:
            by_place: dict[Address | None, list[int]] = {}
            keys = _keys(command)
            for i, k in enumerate(keys):
                by_place.setdefault(primary(k), []).append(i)
            if len(by_place) > 1:
                split_any = True
                mine: list[_Piece] = []
                for place, where in by_place.items():
                    g = group_of(place, keys[where[0]])
                    mine.append((g, groups[g].add(_part(command, where)), where))
                pieces.append(mine)
                continue
            place = next(iter(by_place))
        else:
            place = None if key is None else primary(key)
        g = group_of(place, key)
        pieces.append([(g, groups[g].add(command), None)])
    if len(groups) == 1 and not split_any:
        return None
    return Plan(groups, commands, pieces)


__all__ = ["MERGE", "Group", "Plan", "plan"]
