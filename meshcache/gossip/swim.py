"""The sans-I/O SWIM + Lifeguard membership node.

:class:`SwimNode` implements :class:`meshcache.gossip.endpoint.Endpoint`: feed it packets,
stream payloads and the time; call :meth:`SwimNode.tick` by :meth:`SwimNode.next_deadline`;
send what :meth:`SwimNode.take_outgoing` returns. It never raises on bad input (bad packets are
dropped and counted in :attr:`SwimNode.stats`), never reads a clock and draws all randomness
from the ``rng`` it is given, so one seed replays a whole simulated run.

Member-state changes all go through ``state.decide``/``state.decide_self``; this module only
does the bookkeeping around them (timers, broadcasts, events).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from meshcache.gossip.awareness import Awareness
from meshcache.gossip.broadcast import BroadcastQueue, retransmit_limit
from meshcache.gossip.codec import (
    MAX_INCARNATION,
    Ack,
    Alive,
    Dead,
    DecodeError,
    Envelope,
    Left,
    MemberRecord,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    decode_envelope,
    encode_envelope,
    encode_message,
    envelope_overhead,
)
from meshcache.gossip.config import GossipConfig
from meshcache.gossip.endpoint import Address, Datagram, Outgoing, StreamRequest
from meshcache.gossip.keyring import Keyring
from meshcache.gossip.member import EventKind, Member, MemberEvent, MemberState, NodeMeta
from meshcache.gossip.replay import ReplayGuard
from meshcache.gossip.state import Claim, SelfAction, decide, decide_self
from meshcache.gossip.suspicion import Suspicion, suspicion_bounds

ALIVE, SUSPECT, DEAD, LEFT = (
    MemberState.ALIVE,
    MemberState.SUSPECT,
    MemberState.DEAD,
    MemberState.LEFT,
)
# The claim a member record of a push/pull makes; a remote "dead" only makes us suspect
# (memberlist's rule), so a member alive on our side gets the chance to refute.
_MERGED_CLAIM = {ALIVE: Claim.ALIVE, SUSPECT: Claim.SUSPECT, DEAD: Claim.SUSPECT, LEFT: Claim.LEFT}
_MAX_RELAYS = 1024  # pending ping-req relays kept at once (bounds memory under abuse)
_REAP_CHECK_EVERY = 1.0


@dataclass(slots=True)
class _Record:
    name: str
    address: Address
    state: MemberState
    incarnation: int
    meta: NodeMeta
    since: float
    suspicion: Suspicion | None = None

    def snapshot(self) -> Member:
        return Member(self.name, self.address, self.state, self.incarnation, self.meta, self.since)


@dataclass(slots=True)
class _Probe:
    target: str
    seq: int
    indirect_at: float
    deadline: float
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    requester: Address
    requester_seq: int
    nack_at: float


@dataclass(slots=True)
class _Stream:
    purpose: str  # "join", "push_pull" or "reconnect"
    dst: Address


class SwimNode:
    """One cluster member's view of the membership, driven entirely by its caller.

    Args:
        config: protocol settings (``GossipConfig.lan()`` or ``.local()``).
        name: unique, stable node name (a restarted node reuses it).
        address: the UDP/TCP address others reach this node at.
        meta: initial metadata gossiped with this node's alive updates.
        keyring: shared, mutable keyring; empty = no authentication.
        rng: the only source of randomness.
        now: current time on the caller's monotonic clock.
    """

    def __init__(
        self,
        config: GossipConfig,
        name: str,
        address: Address,
        meta: NodeMeta,
        *,
        keyring: Keyring,
        rng: random.Random,
        now: float,
    ) -> None:
        self.config = config
        self.name = name
        self.address = address
        self.keyring = keyring
        self.stats: Counter[str] = Counter()
        """Counts of dropped inputs by reason and of notable protocol events (docs/gossip.md)."""
        self._rng = rng
        self._awareness = Awareness(config.awareness_max)
        self._broadcasts = BroadcastQueue()
        self._replay = ReplayGuard(config.replay_window, config.max_replay_senders)
        self._boot = rng.getrandbits(62)
        self._counter = 0
        self._seq = rng.getrandbits(31)
        self._tag = 0
        self._me = _Record(name, address, ALIVE, 0, meta, now)
        self._members: dict[str, _Record] = {name: self._me}
        self._outgoing: list[Outgoing] = []
        self._events: list[MemberEvent] = []
        self._probe_order: list[str] = []
        self._probe_index = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._streams: dict[int, _Stream] = {}
        self._suspects: set[str] = set()
        self._dead_notice_at: dict[str, float] = {}
        self._next_probe = now + rng.uniform(0, config.probe_interval)
        self._next_gossip = now + rng.uniform(0, config.gossip_interval)
        self._next_push_pull = now + config.push_pull_interval * rng.uniform(0.5, 1.0)
        self._next_reconnect = now + config.reconnect_interval * rng.uniform(0.5, 1.0)
        self._next_reap_check = now + _REAP_CHECK_EVERY
        self._last_tick = now
        self._join_seeds: list[Address] = []
        self._join_pending: set[int] = set()
        self._join_backoff = config.join_retry_interval
        self._next_join: float | None = None
        self._joined = False
        self._live_cache: int | None = None  # reset whenever a state changes

    # --- public API -------------------------------------------------------------------

    @property
    def incarnation(self) -> int:
        return self._me.incarnation

    @property
    def health_score(self) -> int:
        """Lifeguard local health: 0 = healthy, up to ``config.awareness_max``."""
        return self._awareness.score

    @property
    def joined(self) -> bool:
        """True once a join push/pull was answered (or no seeds were given)."""
        return self._joined

    @property
    def has_left(self) -> bool:
        return self._me.state is LEFT

    def members(self) -> list[Member]:
        """Snapshots of every known member (this node included), sorted by name."""
        return [self._members[n].snapshot() for n in sorted(self._members)]

    def member(self, name: str) -> Member | None:
        rec = self._members.get(name)
        return None if rec is None else rec.snapshot()

    def state_of(self, name: str) -> MemberState | None:
        """``member(name).state`` without the snapshot (asked for every forwarded request)."""
        rec = self._members.get(name)
        return None if rec is None else rec.state

    def take_events(self) -> list[MemberEvent]:
        """Drain the membership events observed since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def pending_broadcasts(self) -> int:
        """Updates still waiting to be gossiped (a leaving node may wait for 0)."""
        return len(self._broadcasts)

    def join(self, seeds: list[Address], now: float) -> None:
        """Exchange full state with every seed; retry with backoff until one answers."""
        self._join_seeds = [s for s in seeds if s != self.address]
        self._join_backoff = self.config.join_retry_interval
        if not self._join_seeds:
            self._joined = True
            return
        self._joined = False
        self._send_join_round(now)

    def join_also(self, seeds: list[Address], now: float) -> None:
        """Exchange full state with ``seeds`` as well, keeping a join still under way: for
        members the node knows of by other means (its config's ring) that gossip has not heard
        of, such as a node restarted without seeds."""
        fresh = [s for s in seeds if s != self.address and s not in self._join_seeds]
        if not fresh or self._me.state is LEFT:
            return
        self.join(fresh if self._joined else [*self._join_seeds, *fresh], now)

    def leave(self, now: float) -> None:
        """Announce a graceful leave; the node stops probing but keeps answering."""
        if self._me.state is LEFT:
            return
        self._me.state = LEFT
        self._live_cache = None
        self._me.since = now
        self._probe = None
        self._next_join = None
        self._queue_broadcast(self.name, Left(self.name, self._me.incarnation))
        self._gossip_round(now)

    def update_meta(self, meta: NodeMeta, now: float) -> None:
        """Change this node's metadata; spreads as a new alive update (incarnation + 1)."""
        if self._me.state is LEFT or meta == self._me.meta:
            return
        self._me.meta = meta
        self._raise_incarnation(self._me.incarnation + 1)

    # --- Endpoint ---------------------------------------------------------------------

    def handle_datagram(self, src: Address, data: bytes, now: float) -> None:
        env = self._open(data, stream=False)
        if env is None:
            return
        self.stats["packets_in"] += 1
        for msg in env.messages:
            self._dispatch(src, env.sender, msg, now)
        self._maybe_tell_dead(src, env.sender, now)

    def handle_stream_request(self, src: Address, data: bytes, now: float) -> bytes | None:
        env = self._open(data, stream=True)
        if env is None:
            return None
        if len(env.messages) != 1 or not isinstance(env.messages[0], PushPull):
            self.stats["unexpected_message"] += 1
            return None
        self.stats["push_pull_served"] += 1
        # Merge first, so a reply already carries our refutation if they had us as dead:
        # that is what lets two healed halves accept each other.
        self._merge(env.sender, env.messages[0].members, now)
        return self._push_pull_payload(join=False)

    def handle_stream_reply(self, tag: int, data: bytes | None, now: float) -> None:
        stream = self._streams.pop(tag, None)
        if stream is None:
            self.stats["unknown_stream_tag"] += 1
            return
        env = None if data is None else self._open(data, stream=True)
        ok = env is not None and len(env.messages) == 1 and isinstance(env.messages[0], PushPull)
        if env is not None and not ok:
            self.stats["unexpected_message"] += 1
        if ok and env is not None:
            msg = env.messages[0]
            assert isinstance(msg, PushPull)
            self._merge(env.sender, msg.members, now, join=stream.purpose == "join")
            self.stats["push_pull_ok"] += 1
        else:
            self.stats["push_pull_failed"] += 1
        if stream.purpose == "join":
            self._join_pending.discard(tag)
            if ok:
                self._joined = True
                self._next_join = None
            elif not self._join_pending and not self._joined and self._me.state is not LEFT:
                self._next_join = now + self._join_backoff
                self._join_backoff = min(
                    self._join_backoff * 2, self.config.join_retry_max_interval
                )

    def tick(self, now: float) -> None:
        # The gossip timer is re-armed at every tick and never moved by input: a tick far past
        # it means this node did not run meanwhile (a held loop, a starved process), since
        # about its last tick.
        lost = now - self._last_tick
        self._last_tick = now
        if now - self._next_gossip >= self.config.local_stall_after:
            self._stalled(lost)
        if self._me.state is not LEFT:
            self._probe_tick(now)
        self._relay_tick(now)
        self._suspicion_tick(now)
        if now >= self._next_gossip:
            self._next_gossip = now + self.config.gossip_interval
            self._gossip_round(now)
        if self._me.state is not LEFT:
            self._push_pull_tick(now)
            if self._next_join is not None and now >= self._next_join:
                self._send_join_round(now)
        if now >= self._next_reap_check:
            self._next_reap_check = now + _REAP_CHECK_EVERY
            self._reap(now)

    def next_deadline(self) -> float:
        times = [self._next_gossip, self._next_reap_check]
        if self._me.state is not LEFT:
            times += [self._next_probe, self._next_push_pull, self._next_reconnect]
            if self._next_join is not None:
                times.append(self._next_join)
        if self._probe is not None:
            times.append(self._probe.deadline)
            if not self._probe.indirect_sent:
                times.append(self._probe.indirect_at)
        if self._relays:
            times.append(min(r.nack_at for r in self._relays.values()))
        for name in self._suspects:
            suspicion = self._members[name].suspicion
            if suspicion is not None:
                times.append(suspicion.deadline)
        return min(times)

    def take_outgoing(self) -> list[Outgoing]:
        out, self._outgoing = self._outgoing, []
        return out

    def _stalled(self, lost: float) -> None:
        """This node did not run for about ``lost`` seconds. Lifeguard: that is evidence
        that we are the slow one, so the health score rises; and what we did not see while
        stalled is not held against others — a probe in flight and every suspicion we hold
        get the time back (the acks and refutations that came meanwhile were handed to us
        first by the driver, or are still on their way)."""
        self.stats["local_stalls"] += 1
        self._awareness.apply_delta(1)
        probe = self._probe
        if probe is not None:
            probe.indirect_at += lost
            probe.deadline += lost
            # The next probe starts once this one is over, as when it was started.
            self._next_probe = max(self._next_probe, probe.deadline)
        for name in self._suspects:
            suspicion = self._members[name].suspicion
            if suspicion is not None:
                suspicion.start += lost

    # --- input ------------------------------------------------------------------------

    def _open(self, data: bytes, *, stream: bool) -> Envelope | None:
        """Authenticate and decode; count and return None for anything unacceptable."""
        limit = self.config.max_stream_payload if stream else self.config.packet_size
        try:
            env = decode_envelope(self.keyring, data, stream=stream, max_size=limit)
        except DecodeError as exc:
            self.stats[exc.reason] += 1
            return None
        if env.sender == self.name:
            self.stats["from_self" if env.boot == self._boot else "name_conflict"] += 1
            return None
        if not self._replay.accept(env.sender, env.boot, env.counter):
            self.stats["replay"] += 1
            return None
        return env

    def _dispatch(self, src: Address, sender: str, msg: Message, now: float) -> None:
        if isinstance(msg, Ping):
            if msg.target != self.name:
                self.stats["misdirected_ping"] += 1
                return
            self._send(src, [Ack(msg.seq)])
        elif isinstance(msg, PingReq):
            self._start_relay(src, msg, now)
        elif isinstance(msg, Ack):
            self._on_ack(msg.seq)
        elif isinstance(msg, Nack):
            if self._probe is not None and msg.seq == self._probe.seq:
                self._probe.nacks += 1
        elif isinstance(msg, Alive):
            self._on_alive(msg, now)
        elif isinstance(msg, Suspect):
            self._on_claim(msg.name, Claim.SUSPECT, msg.incarnation, msg.sender, now, src)
        elif isinstance(msg, Dead):
            self._on_claim(msg.name, Claim.DEAD, msg.incarnation, msg.sender, now, src)
        elif isinstance(msg, Left):
            self._on_claim(msg.name, Claim.LEFT, msg.incarnation, msg.name, now)
        else:  # PushPull over UDP
            self.stats["unexpected_message"] += 1

    def _implausible(self, rec: _Record | None, inc: int) -> bool:
        """An update about someone else from too far in their future is nonsense."""
        if rec is not None and inc - rec.incarnation > self.config.max_incarnation_jump:
            self.stats["future_incarnation"] += 1
            return True
        return False

    def _on_alive(self, msg: Alive, now: float) -> None:
        if msg.name == self.name:
            self._about_self(Claim.ALIVE, msg.incarnation)
            return
        rec = self._members.get(msg.name)
        if self._implausible(rec, msg.incarnation):
            return
        rule = decide(
            None if rec is None else rec.state,
            None if rec is None else rec.incarnation,
            Claim.ALIVE,
            msg.incarnation,
        )
        if rule is None:
            return
        if rec is None:
            rec = _Record(msg.name, msg.address, ALIVE, msg.incarnation, msg.meta, now)
            self._members[msg.name] = rec
            self._live_cache = None
            changed = True
        else:
            changed = rec.state is not ALIVE or rec.address != msg.address or rec.meta != msg.meta
            if rec.state is not ALIVE:
                rec.since = now
            rec.address, rec.meta, rec.incarnation = msg.address, msg.meta, msg.incarnation
            self._set_state(rec, ALIVE)
        self._queue_broadcast(msg.name, msg)
        if rule.event is not None and changed:
            self._emit(rule.event, rec, now)

    def _on_claim(
        self,
        name: str,
        claim: Claim,
        inc: int,
        sender: str,
        now: float,
        src: Address | None = None,
    ) -> None:
        """Suspect / dead / left claims about ``name``; ``src`` = who sent it over UDP."""
        if name == self.name:
            stale = inc < self._me.incarnation
            self._about_self(claim, inc)
            if (
                stale
                and src is not None
                and claim in (Claim.SUSPECT, Claim.DEAD)
                and self._me.state is ALIVE
            ):
                # The sender missed our refutation (gossip is probabilistic): answer it
                # directly, or it may declare us dead and never hear otherwise.
                me = self._me
                self.stats["stale_claims_answered"] += 1
                self._send(src, [Alive(me.name, me.incarnation, me.address, me.meta)])
            return
        rec = self._members.get(name)
        if self._implausible(rec, inc):
            return
        rule = decide(
            None if rec is None else rec.state, None if rec is None else rec.incarnation, claim, inc
        )
        if rule is None or rec is None:
            return
        if rule.confirm:
            # Lifeguard: an independent suspicion shortens the timer; pass it on so others
            # can count it too.
            if rec.suspicion is not None and rec.suspicion.confirm(sender):
                self._queue_broadcast(name, Suspect(name, rec.incarnation, sender))
            return
        assert rule.to is not None
        rec.incarnation = inc
        rec.since = now
        self._set_state(rec, rule.to)
        if rule.to is SUSPECT:
            rec.suspicion = self._new_suspicion(sender, now)
            self._queue_broadcast(name, Suspect(name, inc, sender))
        elif rule.to is DEAD:
            self._queue_broadcast(name, Dead(name, inc, sender))
        else:
            self._queue_broadcast(name, Left(name, inc))
        if rule.event is not None:
            self._emit(rule.event, rec, now)

    def _about_self(self, claim: Claim, inc: int, *, any_jump: bool = False) -> None:
        """Refute what needs refuting. A claim more than ``max_incarnation_jump`` ahead of our
        incarnation is ignored (``future_incarnation``) unless ``any_jump``: every peer that
        knows us drops an update that far ahead of what it knows (:meth:`_implausible`), so a
        refutation above it would silence us for good."""
        if not any_jump and inc - self._me.incarnation > self.config.max_incarnation_jump:
            self.stats["future_incarnation"] += 1
            return
        if decide_self(self._me.state, self._me.incarnation, claim, inc) is SelfAction.REFUTE:
            self.stats["refutations"] += 1
            if claim is not Claim.ALIVE:
                # Being suspected is evidence that we may be the slow one (Lifeguard).
                self._awareness.apply_delta(1)
            self._raise_incarnation(max(self._me.incarnation, inc) + 1)

    def _raise_incarnation(self, inc: int) -> None:
        self._me.incarnation = min(inc, MAX_INCARNATION)
        me = self._me
        self._queue_broadcast(me.name, Alive(me.name, me.incarnation, me.address, me.meta))

    def _merge(
        self, sender: str, records: tuple[MemberRecord, ...], now: float, *, join: bool = False
    ) -> None:
        """Merge a peer's full state; ``join``: it is the answer to our join."""
        for rec in records:
            if rec.name == self.name:
                # The answer to our join is how a restarted node learns its previous life's
                # incarnation, however far ahead of its new one: our seed's view, which peers
                # accept our refutation of.
                self._about_self(_MERGED_CLAIM[rec.state], rec.incarnation, any_jump=join)
                continue
            if rec.state is ALIVE:
                self._on_alive(Alive(rec.name, rec.incarnation, rec.address, rec.meta), now)
            elif rec.state is LEFT:
                self._on_claim(rec.name, Claim.LEFT, rec.incarnation, rec.name, now)
            else:
                # memberlist's rule: a remote "dead" only makes us suspect, so a member alive
                # on our side gets the chance to refute (this also heals partitions).
                if rec.name not in self._members and rec.state is SUSPECT:
                    self._on_alive(Alive(rec.name, rec.incarnation, rec.address, rec.meta), now)
                self._on_claim(rec.name, Claim.SUSPECT, rec.incarnation, sender, now)

    def _maybe_tell_dead(self, src: Address, sender: str, now: float) -> None:
        """Someone we hold dead talks to us: tell it, so it refutes (heals partitions)."""
        rec = self._members.get(sender)
        if rec is None or rec.state is not DEAD:
            return
        last = self._dead_notice_at.get(sender)
        if last is not None and now - last < self.config.probe_interval:
            return
        self._dead_notice_at[sender] = now
        self.stats["dead_notices"] += 1
        self._send(src, [Dead(sender, rec.incarnation, self.name)], piggyback=False)

    # --- probing ----------------------------------------------------------------------

    def _probe_tick(self, now: float) -> None:
        probe = self._probe
        if probe is not None:
            if not probe.indirect_sent and now >= probe.indirect_at:
                self._send_indirect(probe)
            if now >= probe.deadline:
                self._probe = None
                self._probe_failed(probe, now)
        if self._probe is None and now >= self._next_probe:
            interval = self._awareness.scale(self.config.probe_interval)
            self._next_probe = now + interval
            target = self._next_target()
            if target is not None:
                self._start_probe(target, now, interval)

    def _next_target(self) -> _Record | None:
        for _ in range(2):
            while self._probe_index < len(self._probe_order):
                rec = self._members.get(self._probe_order[self._probe_index])
                self._probe_index += 1
                if rec is not None and rec is not self._me and rec.state in (ALIVE, SUSPECT):
                    return rec
            self._probe_order = [
                n
                for n, r in self._members.items()
                if r is not self._me and r.state in (ALIVE, SUSPECT)
            ]
            self._rng.shuffle(self._probe_order)
            self._probe_index = 0
        return None

    def _start_probe(self, target: _Record, now: float, interval: float) -> None:
        seq = self._next_seq()
        timeout = self._awareness.scale(self.config.probe_timeout)
        self._probe = _Probe(target.name, seq, now + timeout, now + interval)
        msgs: list[Message] = [Ping(seq, target.name)]
        if target.state is SUSPECT:
            # Buddy system: tell a suspect directly, so it can refute without waiting for gossip.
            msgs.insert(0, Suspect(target.name, target.incarnation, self.name))
        self._send(target.address, msgs)

    def _send_indirect(self, probe: _Probe) -> None:
        probe.indirect_sent = True
        target = self._members.get(probe.target)
        if target is None:
            return
        relays = [
            r
            for r in self._members.values()
            if r.state is ALIVE and r is not self._me and r is not target
        ]
        chosen = self._rng.sample(relays, min(self.config.indirect_checks, len(relays)))
        probe.expected_nacks = len(chosen)
        for relay in chosen:
            self._send(relay.address, [PingReq(probe.seq, target.name, target.address)])

    def _on_ack(self, seq: int) -> None:
        relay = self._relays.pop(seq, None)
        if relay is not None:
            self._send(relay.requester, [Ack(relay.requester_seq)])
            return
        if self._probe is not None and seq == self._probe.seq:
            self._probe = None
            self._awareness.apply_delta(-1)
            return
        self.stats["late_ack"] += 1

    def _probe_failed(self, probe: _Probe, now: float) -> None:
        self.stats["probes_failed"] += 1
        # Missing nacks mean our own network or CPU may be the problem (Lifeguard).
        if probe.expected_nacks > 0:
            self._awareness.apply_delta(probe.expected_nacks - probe.nacks)
        else:
            self._awareness.apply_delta(1)
        rec = self._members.get(probe.target)
        if rec is not None and rec.state in (ALIVE, SUSPECT):
            self._on_claim(rec.name, Claim.SUSPECT, rec.incarnation, self.name, now)

    def _start_relay(self, src: Address, req: PingReq, now: float) -> None:
        if len(self._relays) >= _MAX_RELAYS:
            self.stats["relay_overflow"] += 1
            return
        seq = self._next_seq()
        nack_at = now + self.config.nack_fraction * self.config.probe_timeout
        self._relays[seq] = _Relay(src, req.seq, nack_at)
        self._send(req.target_addr, [Ping(seq, req.target)])

    def _relay_tick(self, now: float) -> None:
        for seq, relay in list(self._relays.items()):
            if now >= relay.nack_at:
                del self._relays[seq]
                self._send(relay.requester, [Nack(relay.requester_seq)])

    # --- suspicion, reaping -------------------------------------------------------------

    def _new_suspicion(self, by: str, now: float) -> Suspicion:
        n = self._live_count()
        k = self.config.suspicion_mult - 2
        if n - 2 < k:
            k = 0
        low, high = suspicion_bounds(
            self.config.suspicion_mult,
            self.config.suspicion_max_timeout_mult,
            n,
            self.config.probe_interval,
        )
        return Suspicion(start=now, k=k, min_timeout=low, max_timeout=high, by=by)

    def _suspicion_tick(self, now: float) -> None:
        for name in sorted(self._suspects):
            rec = self._members[name]
            if rec.suspicion is None or now < rec.suspicion.deadline:
                continue
            rule = decide(rec.state, rec.incarnation, Claim.SUSPICION_EXPIRED, rec.incarnation)
            if rule is None or rule.to is None:
                continue
            rec.since = now
            self._set_state(rec, rule.to)
            self._queue_broadcast(name, Dead(name, rec.incarnation, self.name))
            if rule.event is not None:
                self._emit(rule.event, rec, now)

    def _reap(self, now: float) -> None:
        for name, rec in list(self._members.items()):
            keep = self.config.dead_reap_after if rec.state is DEAD else self.config.left_reap_after
            if rec is self._me or rec.state not in (DEAD, LEFT) or now - rec.since < keep:
                continue
            rule = decide(rec.state, rec.incarnation, Claim.REAP, rec.incarnation)
            if rule is None:
                continue
            del self._members[name]
            self._live_cache = None
            self._dead_notice_at.pop(name, None)
            if rule.event is not None:
                self._emit(rule.event, rec, now)

    # --- dissemination and anti-entropy -----------------------------------------------

    def _gossip_round(self, now: float) -> None:
        if not self._broadcasts:
            return
        candidates = [
            r
            for r in self._members.values()
            if r is not self._me
            and (
                r.state in (ALIVE, SUSPECT)
                or (r.state is DEAD and now - r.since < self.config.gossip_to_the_dead)
            )
        ]
        for target in self._rng.sample(candidates, min(self.config.gossip_nodes, len(candidates))):
            if not self._send(target.address, [], require_payload=True):
                break

    def _push_pull_tick(self, now: float) -> None:
        if now >= self._next_push_pull:
            n = self._live_count()
            interval = self.config.push_pull_interval
            if n > 32:  # memberlist's pushPullScale: keep total push/pull traffic bounded
                interval *= math.ceil(math.log2(n) - math.log2(32)) + 1
            self._next_push_pull = now + interval * self._rng.uniform(0.75, 1.25)
            live = [r for r in self._members.values() if r is not self._me and r.state is ALIVE]
            if live:
                self._start_stream(self._rng.choice(live).address, "push_pull")
        if now >= self._next_reconnect:
            self._next_reconnect = now + self.config.reconnect_interval * self._rng.uniform(
                0.75, 1.25
            )
            dead = [r for r in self._members.values() if r.state is DEAD]
            if dead:
                self._start_stream(self._rng.choice(dead).address, "reconnect")

    def _send_join_round(self, now: float) -> None:
        self._next_join = None
        for seed in self._join_seeds:
            self._join_pending.add(self._start_stream(seed, "join", join=True))

    def _start_stream(self, dst: Address, purpose: str, *, join: bool = False) -> int:
        self._tag += 1
        self._streams[self._tag] = _Stream(purpose, dst)
        self._outgoing.append(StreamRequest(dst, self._push_pull_payload(join=join), self._tag))
        return self._tag

    def _push_pull_payload(self, *, join: bool) -> bytes:
        records = tuple(
            MemberRecord(r.name, r.address, r.incarnation, r.state, r.meta)
            for r in self._members.values()
        )
        self._counter += 1
        return encode_envelope(
            self.keyring,
            self.name,
            self._boot,
            self._counter,
            [encode_message(PushPull(join, records))],
            stream=True,
        )

    # --- helpers ----------------------------------------------------------------------

    def _send(
        self,
        dst: Address,
        msgs: list[Message],
        *,
        piggyback: bool = True,
        require_payload: bool = False,
    ) -> bool:
        """Queue one packet with ``msgs`` plus as many pending updates as fit."""
        parts = [encode_message(m) for m in msgs]
        space = (
            self.config.packet_size
            - envelope_overhead(self.name, signed=self.keyring.enabled)
            - sum(len(p) for p in parts)
        )
        if piggyback:
            limit = retransmit_limit(self.config.retransmit_mult, self._live_count())
            parts += self._broadcasts.take(space, limit, carried=parts)
        if not parts or (require_payload and len(parts) == len(msgs)):
            return False
        self._counter += 1
        data = encode_envelope(self.keyring, self.name, self._boot, self._counter, parts)
        self._outgoing.append(Datagram(dst, data))
        self.stats["packets_out"] += 1
        return True

    def _queue_broadcast(self, name: str, msg: Message) -> None:
        self._broadcasts.queue(name, encode_message(msg))

    def _set_state(self, rec: _Record, state: MemberState) -> None:
        rec.state = state
        self._live_cache = None
        if state is SUSPECT:
            self._suspects.add(rec.name)
        else:
            self._suspects.discard(rec.name)
            rec.suspicion = None

    def _emit(self, kind: EventKind, rec: _Record, now: float) -> None:
        self._events.append(MemberEvent(kind, rec.snapshot(), now))

    def _live_count(self) -> int:
        """Alive + suspect members, self included (the ``n`` of every formula)."""
        if self._live_cache is None:
            self._live_cache = sum(1 for r in self._members.values() if r.state in (ALIVE, SUSPECT))
        return self._live_cache

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq
