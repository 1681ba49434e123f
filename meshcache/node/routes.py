"""Op routes: the handler of every op that is not a data op, named by the op table.

Each row of :data:`meshcache.wire.ops.OPS` names its handler: :data:`~meshcache.wire.ops.
DATA_HANDLER` for data ops (the coordinator routes them to the key's owners and the store runs
them), :data:`~meshcache.wire.ops.SESSION_HANDLER` for ``AUTH`` (the connection's session
answers it in the dispatcher), :data:`~meshcache.wire.ops.RELAY_HANDLER` for ``RELAY`` (the
dispatcher answers each request frame it carries), or the name of a method of :class:`Routes`.
:meth:`Routes.table` resolves every row
once, when the node is assembled, so a row naming a missing method fails at start-up (and in
``tests/node/test_routes.py``), never on a request. Every handler is called as
``handler(namespace, args)`` with arguments already checked against the op's signature, and
returns the result, a coroutine (the dispatcher awaits it) or raises
:class:`~meshcache.errors.CommandError`.

Adding an op: a row in ``wire/ops.py``; for a node op, a method here with the name the row
gives; for a data op, its implementation in the store (``store/ops_plain.py`` or
``store/ops_typed.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import trio

from meshcache.errors import CommandError, ErrorCode
from meshcache.node.admin.info import describe_ring
from meshcache.node.contracts import ConfigSource, MembershipView
from meshcache.node.data.antientropy import AE_DIGEST, AE_KEYS, AE_PULL, AE_PUSH, AntiEntropy
from meshcache.node.data.coordinator import Coordinator
from meshcache.node.data.handoff import HandOff
from meshcache.node.data.hot import HotKeys
from meshcache.node.data.scan import KeyScan, ScanFilter
from meshcache.ring import RingState
from meshcache.wire.ops import DATA_HANDLER, OPS, RELAY_HANDLER, SESSION_HANDLER

Handler = Callable[[str, list[Any]], Any]

#: How long a LEAVE or JOIN waits for the hand-off unless the request says.
LEAVE_TIMEOUT = 600.0
#: How often a JOIN looks whether the node became active.
JOIN_POLL = 0.05


class RoutedParts(Protocol):
    """The parts the routes call (an :class:`~meshcache.node.assembly.Assembly`)."""

    node_id: str
    coordinator: Coordinator
    handoff: HandOff
    antientropy: AntiEntropy
    hot: HotKeys
    scan: KeyScan
    membership: MembershipView

    @property
    def config_source(self) -> ConfigSource: ...

    def mesh_figures(self) -> dict[str, Any]: ...


class Routes:
    """The node ops of one assembled node.

    Args:
        parts: the node's assembled parts.
        info: answers INFO (the node's whole description); None: the data parts' figures.
    """

    def __init__(self, parts: RoutedParts, *, info: Callable[[], dict[str, Any]] | None) -> None:
        self._parts = parts
        self._info = info
        self._ring_answer: tuple[int, dict[str, Any]] | None = None

    def table(self) -> dict[str, Handler]:
        """``op -> handler`` for every op of the table that is not a data op.

        Raises:
            LookupError: a row names a handler this class does not have.
        """
        table: dict[str, Handler] = {}
        for name, spec in OPS.items():
            if spec.handler in (DATA_HANDLER, SESSION_HANDLER, RELAY_HANDLER):
                continue
            handler = getattr(self, spec.handler, None)
            if handler is None or spec.handler.startswith("_") or spec.handler == "table":
                raise LookupError(f"op {name}: no route {spec.handler!r}")
            table[name] = handler
        return table

    # --- this node -----------------------------------------------------------------------------

    def ping(self, namespace: str, args: list[Any]) -> str:
        return "PONG"

    def info(self, namespace: str, args: list[Any]) -> dict[str, Any]:
        if self._info is not None:
            return self._info()
        return {"node_id": self._parts.node_id, "mesh": self._parts.mesh_figures()}

    def dbsize(self, namespace: str, args: list[Any]) -> Any:
        """DBSIZE: the namespace's live keys on this node, copies of other members' keys
        included (an int).

        With option ``owned``: ``{"count": n, "ring_version": v}``, ``n`` the keys whose first
        read owner by the ring this node routes by (config version ``v``) is this node; every
        key when that ring has no read owner (a node outside a mesh coordinates them all). The
        owned counts of a ring's read members at one version add up to the namespace's keys.

        With option ``mesh``: the namespace's keys on the whole mesh (an int), each counted
        once: the owned counts of every read member, asked of each, at one ring version
        (:meth:`~meshcache.node.data.scan.KeyScan.mesh_count`).

        Raises:
            CommandError: ``NO_SUCH_NAMESPACE``; with ``mesh``, ``UNAVAILABLE`` (a member did
                not answer, or the ring kept changing while counting).
        """
        if args[0].get("mesh"):
            return self._parts.scan.mesh_count(namespace)
        if args[0].get("owned"):
            return self._parts.scan.owned_count(namespace)
        return self._parts.coordinator.store.execute(namespace, "DBSIZE", [])

    async def scan(self, namespace: str, args: list[Any]) -> list[Any]:
        """SCAN: one step of a walk over the namespace's keys on every member, ``[next cursor
        (0: the walk is over), keys]`` (:mod:`meshcache.node.data.scan`).

        Raises:
            CommandError: ``BAD_REQUEST`` (a count below 1), ``UNAVAILABLE`` (a member did not
                answer: the same cursor can be tried again), ``NO_SUCH_NAMESPACE``.
        """
        cursor, keys = await self._parts.scan.step(
            namespace, args[0], ScanFilter.from_options(args[1])
        )
        return [cursor, keys]

    async def scan_part(self, namespace: str, args: list[Any]) -> list[Any]:
        """SCAN_PART: this node's part of another member's SCAN step, ``[next position (-1: no
        more), keys]``."""
        options = args[1]
        aim = options.get("aim")
        following, keys = await self._parts.scan.part(
            namespace,
            args[0],
            ScanFilter.from_options(options),
            aim if type(aim) is int else None,
        )
        return [following, keys]

    def members(self, namespace: str, args: list[Any]) -> list[dict[str, Any]]:
        return self._parts.membership.members()

    def gossip(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.membership.handle_push_pull(args[0])

    # --- the cluster config ----------------------------------------------------------------------

    def config_get(self, namespace: str, args: list[Any]) -> dict[str, Any]:
        return self._parts.config_source.config.to_mapping()

    def ns_list(self, namespace: str, args: list[Any]) -> dict[str, Any]:
        config = self._parts.config_source.config
        return {name: p.to_mapping() for name, p in config.namespaces.items()}

    def ring(self, namespace: str, args: list[Any]) -> dict[str, Any]:
        # Smart clients and tools poll it: one answer per config version, from the data
        # plane's ring when it is that version's.
        config = self._parts.config_source.config
        if self._ring_answer is None or self._ring_answer[0] != config.version:
            ring = self._parts.coordinator.ring
            self._ring_answer = (config.version, describe_ring(config, ring))
        return self._ring_answer[1]

    def config_propose(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.config_source.handle_propose(args[0])

    def ns_set(self, namespace: str, args: list[Any]) -> Any:
        loader = self._parts.coordinator.loader
        if loader is None or not isinstance(args[1], dict) or args[1].get("loader") is None:
            return self._parts.config_source.set_namespace(args[0], args[1])
        return self._ns_set_checked(args[0], args[1])

    async def _ns_set_checked(self, name: str, fields: dict[str, Any]) -> Any:
        """NS_SET of a read-through loader: refused unless its query prepares on this node's
        source (the node that receives the change checks it)."""
        loader = self._parts.coordinator.loader
        assert loader is not None
        await loader.check_fields(fields)
        return await self._parts.config_source.set_namespace(name, fields)

    def ns_drop(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.config_source.drop_namespace(args[0])

    def raft_status(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.config_source.raft("status")

    def raft_add(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.config_source.raft("add", args[0])

    def raft_remove(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.config_source.raft("remove", args[0])

    # --- the data plane between nodes ------------------------------------------------------------

    def forwarded(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.coordinator.execute_forwarded(namespace, args)

    def replicated(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.coordinator.apply_replicated(namespace, args[0])

    def bulk(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.coordinator.apply_bulk(namespace, args[0])

    def records(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.coordinator.records(namespace, args[0])

    def clock(self, namespace: str, args: list[Any]) -> int:
        return self._parts.coordinator.clock_reading()

    def handoff(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.handoff.handle_handoff(namespace, args[0])

    def ae_digest(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.antientropy.handle(AE_DIGEST, namespace, args)

    def ae_keys(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.antientropy.handle(AE_KEYS, namespace, args)

    def ae_pull(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.antientropy.handle(AE_PULL, namespace, args)

    def ae_push(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.antientropy.handle(AE_PUSH, namespace, args)

    def hot_push(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.hot.handle_push(namespace, args)

    def hot_drop(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.hot.handle_drop(namespace, args)

    def hotkeys(self, namespace: str, args: list[Any]) -> Any:
        return self._parts.hot.describe()

    def leave(self, namespace: str, args: list[Any]) -> Any:
        return self._leave(float(args[0].get("timeout") or LEAVE_TIMEOUT))

    def join(self, namespace: str, args: list[Any]) -> Any:
        return self._join(float(args[0].get("timeout") or LEAVE_TIMEOUT))

    async def _join(self, timeout: float) -> dict[str, Any]:
        """Put a node that left the ring (drained) back on it: it pulls every range it will own
        afresh, as a restarted node does, and answers once it is ``active``."""
        parts = self._parts
        source = parts.config_source
        if source.config.member(parts.node_id) is not None:
            raise CommandError(
                ErrorCode.INVALID_TRANSITION,
                f"{parts.node_id} is on the ring already; JOIN puts back a node that left it",
            )
        parts.handoff.held = None  # what it held before it left is gone: pull everything
        pulled = parts.handoff.stats["records_pulled"]
        try:
            with trio.fail_after(timeout):
                await source.register_self()
                while True:
                    me = source.config.member(parts.node_id)
                    if me is not None and me.state is RingState.ACTIVE:
                        break
                    await trio.sleep(JOIN_POLL)
        except trio.TooSlowError:
            raise CommandError(
                ErrorCode.UNAVAILABLE, f"the join did not finish in {timeout}s; run JOIN again"
            ) from None
        return {
            "node_id": parts.node_id,
            "state": str(me.state),
            "pulled": parts.handoff.stats["records_pulled"] - pulled,
            "ring_version": source.config.version,
        }

    async def _leave(self, timeout: float) -> dict[str, Any]:
        try:
            with trio.fail_after(timeout):
                return await self._parts.handoff.leave()
        except trio.TooSlowError:
            raise CommandError(
                ErrorCode.UNAVAILABLE, f"the drain did not finish in {timeout}s; run LEAVE again"
            ) from None


__all__ = ["LEAVE_TIMEOUT", "Handler", "RoutedParts", "Routes"]
