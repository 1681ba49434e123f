"""The node's membership plane: a SWIM node on UDP, push/pull over the data port.

Gossip datagrams use UDP on ``gossip_port`` (by default the data port's number). The TCP
push/pull exchange of SWIM rides on the data port itself as the ``GOSSIP`` op, so a node needs
one TCP port, not two, and ``--join`` takes the seeds' data addresses as they are.

Cluster keys come from ``cluster_key_file``: one base64 key (16 to 64 bytes once decoded) per
line, the first being the primary (signing) key; ``#`` starts a comment. On SIGHUP the node
reads the file again, which is how keys are rotated without downtime (docs/operations.md).
"""

from __future__ import annotations

import base64
import binascii
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import trio

from meshcache.errors import ConfigError, MeshcacheError
from meshcache.gossip import (
    Address,
    EventKind,
    GossipConfig,
    Keyring,
    Member,
    NodeMeta,
    SwimNode,
)
from meshcache.gossip.transport import run_endpoint
from meshcache.node.net.oneshot import call_once
from meshcache.security.tls import NodeTls
from meshcache.settings import NodeSettings, bind_error
from meshcache.wire.address import parse_address

log = structlog.get_logger("meshcache.membership")

EXCHANGE_TIMEOUT = 5.0


def read_key_file(path: Path) -> list[bytes]:
    """The keys in ``path``, primary first.

    Raises:
        ConfigError: the file cannot be read, or a line is not base64 of 16 to 64 bytes.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cluster key file {path}: {exc.strerror or exc}") from None
    keys: list[bytes] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            key = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"cluster key file {path}:{number}: not base64") from None
        if not 16 <= len(key) <= 64:
            raise ConfigError(f"cluster key file {path}:{number}: a key is 16 to 64 bytes")
        keys.append(key)
    if not keys:
        raise ConfigError(f"cluster key file {path}: no key in it")
    return keys


def _apply_keys(keyring: Keyring, keys: list[bytes]) -> None:
    """Make ``keyring`` hold exactly ``keys`` with ``keys[0]`` primary, without a gap."""
    for key in keys:
        keyring.install(key)
    keyring.use(keys[0])
    installed = keyring.keys()
    for key in installed:
        if key not in keys:
            keyring.remove(key)


def member_view(member: Member) -> dict[str, Any]:
    """One member as MEMBERS answers it (msgpack- and JSON-able)."""
    meta = member.meta
    return {
        "name": member.name,
        "address": f"{member.address[0]}:{member.address[1]}",
        "state": member.state.name.lower(),
        "incarnation": member.incarnation,
        "zone": meta.zone,
        "data_port": meta.data_port,
        "admin_port": meta.admin_port,
        "raft_port": meta.raft_port,
        "config_version": meta.config_version,
        "load": meta.load,
    }


class Membership:
    """Runs this node's :class:`SwimNode` and answers push/pull exchanges sent to the data port.

    ``on_event`` is called (on trio's thread, never blocking) for every membership event.
    """

    def __init__(
        self,
        settings: NodeSettings,
        node_id: str,
        data_address: tuple[str, int],
        admin_port: int,
        *,
        rng: random.Random | None = None,
        on_event: Callable[[EventKind, Member], None] | None = None,
    ) -> None:
        self.settings = settings
        self.node_id = node_id
        self.data_address = data_address
        self.config = GossipConfig.local() if settings.profile == "local" else GossipConfig.lan()
        #: The node's TLS: push/pull and the config plane's calls use its peer context.
        self.tls: NodeTls | None = None
        self.keyring = Keyring(
            read_key_file(settings.cluster_key_file) if settings.cluster_key_file else ()
        )
        self.meta = NodeMeta(zone=settings.zone, data_port=data_address[1], admin_port=admin_port)
        self.events: Counter[str] = Counter()
        self._rng = rng or random.Random()
        self._on_event = on_event
        self._swim: SwimNode | None = None
        self._poke: Callable[[], None] = lambda: None
        self._known: list[tuple[str, str]] = []  # join_members before gossip ran

    @property
    def running(self) -> bool:
        return self._swim is not None

    @property
    def swim(self) -> SwimNode:
        assert self._swim is not None, "membership is not running"
        return self._swim

    def members(self) -> list[dict[str, Any]]:
        return [member_view(m) for m in self.swim.members()] if self._swim else []

    def stats(self) -> dict[str, int]:
        return dict(self._swim.stats) if self._swim else {}

    async def run(
        self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind UDP, join the seeds (retrying until one answers), gossip until cancelled.

        Raises:
            OSError: the gossip port cannot be bound; the message names it and its setting.
        """
        host = self.data_address[0]
        port = self.settings.gossip_port
        udp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with udp:
            if port is None:
                port = self.data_address[1]
            try:
                await udp.bind((host, port))
            except OSError as exc:
                # Named with the number tried (the data port's when the data port was 0).
                tried = replace(self.settings, gossip_port=port)
                raise bind_error(tried, "gossip_port", exc) from None
            address: Address = udp.getsockname()[:2]
            self._swim = SwimNode(
                self.config,
                self.node_id,
                address,
                self.meta,
                keyring=self.keyring,
                rng=self._rng,
                now=trio.current_time(),
            )
            async with trio.open_nursery() as nursery:
                self._poke = await nursery.start(
                    partial(
                        run_endpoint,
                        self._swim,
                        udp,
                        None,
                        exchange=self._exchange,
                        on_progress=self._drain_events,
                    )
                )
                seeds = [parse_address(s, default_port=None) for s in self.settings.join]
                seeds = [s for s in seeds if s != self.data_address]
                self._swim.join(seeds, trio.current_time())
                self.join_members(self._known)
                self._poke()
                task_status.started(address)

    def handle_push_pull(self, payload: bytes) -> bytes | None:
        """Answer a ``GOSSIP`` request that arrived on the data port."""
        if self._swim is None:
            return None
        reply = self._swim.handle_stream_request(Address("", 0), payload, trio.current_time())
        self._poke()
        return reply

    def update_meta(self, **changes: Any) -> None:
        """Change this node's gossiped metadata (e.g. ``config_version``)."""
        self.meta = replace(self.meta, **changes)
        if self._swim is not None:
            self._swim.update_meta(self.meta, trio.current_time())
            self._poke()

    def join_members(self, members: Iterable[tuple[str, str]]) -> None:
        """Join through the members the node knows of from its config, as ``(node id, data
        address)``, that gossip has not heard of. A node restarted without ``--join`` (the
        first node of a cluster, say) knows nobody; without this it would wait until a peer's
        periodic push/pull happened to pick it, up to a few push/pull intervals."""
        if self._swim is None:
            self._known = list(members)
            return
        swim = self._swim
        unknown = []
        for node_id, address in members:
            if node_id == self.node_id or swim.state_of(node_id) is not None:
                continue
            try:
                unknown.append(parse_address(address, default_port=None))
            except ConfigError:
                continue  # the ring was validated when committed; nothing to join through
        if unknown:
            swim.join_also(unknown, trio.current_time())
            self._poke()

    def leave(self) -> None:
        if self._swim is not None:
            self._swim.leave(trio.current_time())
            self._poke()

    def pending_broadcasts(self) -> int:
        return self._swim.pending_broadcasts() if self._swim else 0

    def reload_keys(self) -> None:
        """Re-read the cluster key file (SIGHUP); a bad file changes nothing."""
        path = self.settings.cluster_key_file
        if path is None:
            return
        try:
            _apply_keys(self.keyring, read_key_file(path))
        except ConfigError as exc:
            log.error("cluster_keys_not_reloaded", error=str(exc))
            return
        log.info("cluster_keys_reloaded", keys=len(self.keyring.keys()))

    def _data_address_of(self, dst: Address) -> Address:
        """Push/pull goes to the data port: map a member's gossip address to it."""
        for member in self.swim.members():
            if member.address == dst and member.meta.data_port:
                return Address(dst[0], member.meta.data_port)
        return dst  # a seed: --join names data addresses

    async def _exchange(self, dst: Address, payload: bytes) -> bytes | None:
        """One push/pull over the peer's data port; None on any failure."""
        peer = self._data_address_of(dst)
        try:
            reply = await call_once(
                peer,
                "GOSSIP",
                [payload],
                timeout=EXCHANGE_TIMEOUT,
                max_frame=self.config.max_stream_payload + 1024,
                keyring=self.keyring,
                tls=self.tls,
            )
        except MeshcacheError as exc:  # a peer that fails or answers garbage must not stop gossip
            log.debug("push_pull_failed", peer=f"{peer[0]}:{peer[1]}", error=str(exc))
            return None
        return reply if isinstance(reply, bytes) else None

    def _drain_events(self) -> None:
        if self._swim is None:
            return
        for event in self._swim.take_events():
            self.events[event.kind.value] += 1
            m = event.member
            log.info(
                f"member_{event.kind.value}",
                member=m.name,
                address=f"{m.address[0]}:{m.address[1]}",
                incarnation=m.incarnation,
            )
            if self._on_event is not None:
                self._on_event(event.kind, m)
