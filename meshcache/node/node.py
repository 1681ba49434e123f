"""A meshcache node process: its assembled parts plus sockets, gossip, Raft and signals.

``serve(settings)`` is the structured-concurrency entry point (tests start nodes with it inside
their own nursery); ``run(settings)`` is the blocking one the CLI calls, with SIGTERM/SIGINT
handled as a graceful shutdown.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import trio
from prometheus_client import CollectorRegistry

from meshcache._version import __version__
from meshcache.control.raft import RaftStartError
from meshcache.errors import ConfigError
from meshcache.gossip import EventKind, Member, MemberState
from meshcache.node.admin.http import AdminHandler
from meshcache.node.admin.info import describe
from meshcache.node.admin.looplag import HELD_AFTER, LoopMonitor
from meshcache.node.admin.metrics import NodeCollector, NodeCounters, make_registry
from meshcache.node.admin.resp_metrics import RespCollector
from meshcache.node.assembly import Assembly
from meshcache.node.cluster.config import ConfigService
from meshcache.node.cluster.membership import Membership
from meshcache.node.loader.bridge import AsyncioBridge
from meshcache.node.loader.source import PgSource, Source
from meshcache.node.net.dataport import DataPort, open_listener
from meshcache.node.net.peer_pool import PeerPool
from meshcache.node.net.resp_port import RespPort
from meshcache.node.net.resp_port import figures as resp_figures
from meshcache.security.guard import Guard
from meshcache.security.tls import NodeTls
from meshcache.settings import NodeSettings, bind_error
from meshcache.wire.address import format_address

log = structlog.get_logger("meshcache.node")

READY_FILE = "node.json"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Where a started node can be reached; handed to ``task_status.started``."""

    node_id: str
    data_address: tuple[str, int]
    admin_address: tuple[str, int]
    pid: int
    resp_address: tuple[str, int] | None = None  # None: the RESP port is off


class Node:
    """One node process's state. Build it, then ``await node.serve()``; it owns nothing until
    then. Its data parts are an :class:`~meshcache.node.assembly.Assembly` (``node.parts``),
    built once the data port is bound; the node adds the sockets, gossip, Raft and the admin
    port around them."""

    def __init__(self, settings: NodeSettings, *, wall_clock: Callable[[], float] = time.time):
        self.settings = settings
        self.node_id = settings.node_id
        self.info: NodeInfo | None = None
        self.parts: Assembly | None = None
        self.membership: Membership | None = None
        self.config_service: ConfigService | None = None
        self.registry: CollectorRegistry | None = None
        self._wall_clock = wall_clock
        self._started = 0.0
        self._dataport: DataPort | None = None
        self.resp: RespPort | None = None
        self.tls: NodeTls | None = None  # the node's TLS contexts, when it serves TLS
        self.loop = LoopMonitor(watch=HELD_AFTER)
        #: The asyncio loop the database driver runs on (started when the node has sources).
        self.bridge = AsyncioBridge()

    @property
    def counters(self) -> NodeCounters:
        assert self.parts is not None, "the node is not serving"
        return self.parts.counters

    def uptime(self) -> float:
        return trio.current_time() - self._started if self._started else 0.0

    async def serve(
        self, *, task_status: trio.TaskStatus[NodeInfo] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind the data, admin and (when set) RESP ports, report where they are, serve until
        cancelled, then release all."""
        s = self.settings
        sources = self._sources()  # before any socket: a DSN file that cannot be read stops here
        self.tls = tls = node_tls(s)  # so are certificate files that cannot be read
        try:
            listener = open_listener(s.host, s.port)
        except OSError as exc:
            raise bind_error(s, "port", exc) from None
        resp_listener = None
        try:
            if s.resp_port is not None:
                try:
                    resp_listener = open_listener(s.host, s.resp_port)
                except OSError as exc:
                    raise bind_error(s, "resp_port", exc) from None
            try:
                admin_listeners = await trio.open_tcp_listeners(s.admin_port, host=s.admin_host)
            except OSError as exc:
                raise bind_error(s, "admin_port", exc) from None
        except BaseException:
            listener.close()
            if resp_listener is not None:
                resp_listener.close()
            raise
        data_address = listener.getsockname()[:2]
        admin_address = admin_listeners[0].socket.getsockname()[:2]
        self.node_id = s.node_id or format_address(data_address[0], data_address[1])
        self._started = trio.current_time()
        self.membership = membership = Membership(
            s, self.node_id, data_address, admin_address[1], on_event=self._member_event
        )
        membership.tls = tls
        self.parts = parts = Assembly(
            s,
            self.node_id,
            pool=PeerPool(max_frame=s.limits.max_frame_bytes, keyring=membership.keyring, tls=tls),
            liveness=self,
            config=None,
            membership=membership,
            wall_clock=self._wall_clock,
            info=self.describe,
            sources=sources,
        )
        self.config_service = ConfigService(
            s, parts.store, membership, self.node_id, data_address, on_install=parts.install
        )
        parts.bind_config(self.config_service, is_voter=self.config_service.is_voter)
        # Who may send what: the node's users, and the cluster key its peers authenticate with.
        guard = parts.dispatcher.guard = Guard(s.users, keyring=membership.keyring)
        self._dataport = DataPort(listener, parts.dispatcher, s.limits, tls=tls, peers=parts.pool)
        if resp_listener is not None:
            self.resp = RespPort.for_parts(
                resp_listener, parts, wall_clock=self._wall_clock, tls=tls
            )
        self.registry = make_registry(
            NodeCollector(
                parts.counters,
                parts.store.stats,
                self.uptime,
                gossip=self._gossip_figures,
                mesh=parts.mesh_figures,
            )
        )
        self.registry.register(self.loop.collector())
        self.registry.register(guard.collector())
        if self.resp is not None:
            self.registry.register(RespCollector(self.resp))
        admin = AdminHandler(self.registry, self._health)
        resp_address = self.resp.address if self.resp is not None else None
        self.info = NodeInfo(self.node_id, data_address, admin_address, os.getpid(), resp_address)
        ready_file: Path | None = None
        try:
            if sources:
                self.bridge.start()
            async with trio.open_nursery() as nursery:
                await nursery.start(self.loop.run)
                await nursery.start(parts.run)
                await nursery.start(self._dataport.serve)
                if self.resp is not None:
                    await nursery.start(self.resp.serve)
                gossip_address = await nursery.start(membership.run)
                await nursery.start(self.config_service.run)
                await nursery.start(
                    trio.serve_listeners, self._admin_handler(admin, tls), admin_listeners
                )
                log.info(
                    "node_ready",
                    node_id=self.node_id,
                    data=format_address(*data_address),
                    admin=format_address(*admin_address),
                    resp=format_address(*resp_address) if resp_address else None,
                    gossip=format_address(*gossip_address[:2]),
                    join=",".join(s.join) or None,
                    version=__version__,
                )
                ready_file = _write_ready_file(s.data_dir, self.info)
                task_status.started(self.info)
        finally:
            await self.bridge.aclose()
            if ready_file is not None:
                ready_file.unlink(missing_ok=True)
            if resp_listener is not None:
                resp_listener.close()  # already closed when its port served
            for al in admin_listeners:
                await trio.aclose_forcefully(al)

    def _admin_handler(
        self, admin: AdminHandler, tls: NodeTls | None
    ) -> Callable[[trio.SocketStream], Awaitable[None]]:
        """The admin port's connection handler: HTTPS with ``tls_admin`` (the server context
        read per connection, so a reload applies), else plain HTTP."""
        if tls is None or not tls.admin:
            return admin.handle_stream

        async def handle(stream: trio.SocketStream) -> None:
            wrapped = trio.SSLStream(stream, tls.server, server_side=True, https_compatible=True)
            try:
                with trio.move_on_after(10) as slow:
                    await wrapped.do_handshake()
            except trio.BrokenResourceError:
                self.counters.bad_input["admin_tls_handshake_failed"] += 1
                slow = None
            if slow is None or slow.cancelled_caught:
                await trio.aclose_forcefully(stream)
                return
            await admin.handle_stream(wrapped)

        return handle

    def _sources(self) -> dict[str, Source]:
        """The node's read-through sources, built from its settings (DSNs resolved now)."""
        s = self.settings
        return {
            name: PgSource(name, source, self.bridge, max_value_bytes=s.limits.max_value_bytes)
            for name, source in s.sources.items()
        }

    # --- liveness, from gossip (the assembly's Liveness) --------------------------------------

    def _gossip_state(self, node_id: str) -> MemberState | None:
        membership = self.membership
        if membership is None or not membership.running:
            return None
        return membership.swim.state_of(node_id)

    def alive(self, node_id: str) -> bool:
        """Worth sending to: alive or suspect by gossip, or not known to gossip yet."""
        if node_id == self.node_id:
            return True
        return self._gossip_state(node_id) not in (MemberState.DEAD, MemberState.LEFT)

    def dead(self, node_id: str) -> bool:
        return self._gossip_state(node_id) in (MemberState.DEAD, MemberState.LEFT)

    def config_version_of(self, node_id: str) -> int:
        """The config version ``node_id`` gossips that it runs (0: not known yet)."""
        membership = self.membership
        if membership is None or not membership.running:
            return 0
        member = membership.swim.member(node_id)
        return 0 if member is None else member.meta.config_version

    def describe(self) -> dict[str, Any]:
        """What INFO answers: identity, uptime, connections and every namespace's figures."""
        parts = self.parts
        assert parts is not None
        return describe(
            node_id=self.node_id,
            uptime=self.uptime(),
            connections=self._dataport.connection_count if self._dataport else 0,
            store=parts.store,
            gossip=self._gossip_figures(),
            mesh=parts.mesh_figures(),
            counters=parts.counters,
            extra={"loop": self.loop.figures(), **self._resp_section()},
        )

    def _resp_section(self) -> dict[str, Any]:
        """INFO's ``resp`` section: the RESP port's address, connections and counters."""
        if self.resp is None:
            return {}
        return {"resp": {"address": format_address(*self.resp.address), **resp_figures(self.resp)}}

    def _member_event(self, kind: EventKind, member: Member) -> None:
        if self.config_service is not None:
            self.config_service.on_member_event(kind, member)
        if kind in (EventKind.ALIVE, EventKind.JOINED) and self.parts is not None:
            self.parts.member_alive(member.name)

    async def leave(self, timeout: float = 1.0) -> None:
        """Tell the cluster this node is leaving, and give the news ``timeout`` to spread."""
        membership = self.membership
        if membership is None or not membership.running:
            return
        membership.leave()
        if not [m for m in self._alive() if m["name"] != self.node_id]:
            return  # nobody to tell
        with trio.move_on_after(timeout):
            while membership.pending_broadcasts():
                await trio.sleep(0.05)
            # The last round is queued, not yet on the wire: let two gossip rounds go out.
            await trio.sleep(2 * membership.config.gossip_interval)

    def _alive(self) -> list[dict[str, Any]]:
        members = self.membership.members() if self.membership else []
        return [m for m in members if m["state"] == "alive"]

    def _gossip_figures(self) -> dict[str, Any]:
        if self.membership is None:
            return {}
        states: Counter[str] = Counter(m["state"] for m in self.membership.members())
        return {
            "members": dict(states),
            "stats": self.membership.stats(),
            "events": dict(self.membership.events),
        }

    def _health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "node_id": self.node_id,
            "uptime_s": round(self.uptime(), 3),
            "members_alive": len(self._alive()),
        }


def _write_ready_file(data_dir: Path, info: NodeInfo) -> Path:
    """Write ``data_dir/node.json`` atomically so tools and tests can find the bound ports."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / READY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "node_id": info.node_id,
                "pid": info.pid,
                "data": format_address(*info.data_address),
                "admin": format_address(*info.admin_address),
                **({"resp": format_address(*info.resp_address)} if info.resp_address else {}),
            }
        )
    )
    tmp.replace(path)
    return path


async def serve(
    settings: NodeSettings, *, task_status: trio.TaskStatus[NodeInfo] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a node until cancelled. ``task_status.started`` receives its :class:`NodeInfo`."""
    await Node(settings).serve(task_status=task_status)


async def _main(settings: NodeSettings, reload: Callable[[], NodeSettings] | None) -> None:
    node = Node(settings)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            await nursery.start(node.serve)
            # What start-up built (modules, settings, the assembled parts) lives as long as the
            # process: move it out of the collector's reach, so full collections under load
            # traverse only what came after. A process-wide act, hence here and not in serve().
            gc.freeze()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    if node.membership is not None:
                        node.membership.reload_keys()
                    if reload is not None:
                        _reload_users(node, reload)
                    reload_tls(node, reload)
                    continue
                log.info("node_stopping", signal=signal.Signals(signum).name)
                with trio.CancelScope(shield=True):
                    await node.leave()
                nursery.cancel_scope.cancel()
                break


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in ``group`` and in the groups nested in it (a failure inside a part's
    nursery arrives wrapped once more)."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _reload_users(node: Node, reload: Callable[[], NodeSettings]) -> None:
    """SIGHUP: read the settings again and take their users; a bad file changes nothing."""
    try:
        users = reload().users
    except ConfigError as exc:
        log.error("users_not_reloaded", error=str(exc))
        return
    if node.parts is not None:
        node.parts.dispatcher.guard.set_users(users)
        log.info("users_reloaded", users=len(users))


def node_tls(settings: NodeSettings) -> NodeTls | None:
    """The node's TLS contexts from its settings' files (None: it serves plaintext)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return NodeTls(
        settings.tls_cert_file,
        settings.tls_key_file,
        settings.tls_ca_file,
        require_client_cert=settings.tls_client_auth,
        admin=settings.tls_admin,
    )


def reload_tls(node: Node, reload: Callable[[], NodeSettings] | None = None) -> bool:
    """SIGHUP: read the certificate, key and CA files again, at the paths of the settings
    ``reload`` reads (the same paths without it); connections accepted after it use them. A
    file that does not load, settings that do not, or settings without a certificate and key
    change nothing: logged and counted (``meshcache_bad_input_total{kind="tls_reload_failed"}``).
    TLS is turned on or off only by a restart."""
    if node.tls is None:
        return False
    try:
        files = None
        if reload is not None:
            settings = reload()
            cert_file, key_file = settings.tls_cert_file, settings.tls_key_file
            if cert_file is None or key_file is None:
                raise ConfigError(
                    "tls_cert_file and tls_key_file are no longer set: TLS is turned off only "
                    "by a restart"
                )
            files = (cert_file, key_file, settings.tls_ca_file)
        node.tls.reload(files)
    except ConfigError as exc:
        log.error("tls_not_reloaded", error=str(exc))
        if node.parts is not None:
            node.parts.counters.bad_input["tls_reload_failed"] += 1
        return False
    log.info("tls_reloaded", cert=str(node.tls.cert_file))
    return True


def run(settings: NodeSettings, *, reload: Callable[[], NodeSettings] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; return the process exit code. ``reload`` reads the
    settings again on SIGHUP (the node takes their users; the cluster keys are re-read too)."""
    failed: list[str] = []
    try:
        trio.run(_main, settings, reload)
    # e.g. a port in use, a DSN file that cannot be read: one line, no traceback
    except* (OSError, RaftStartError, ConfigError) as group:
        failed.extend(str(exc) for exc in _leaves(group))
    if failed:
        log.error("node_failed", error="; ".join(failed))
        return 1
    log.info("node_stopped")
    return 0
