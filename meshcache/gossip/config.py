"""Every number the gossip layer uses, as one frozen dataclass with two profiles.

``GossipConfig.lan()`` follows hashicorp/memberlist's LAN defaults; ``GossipConfig.local()`` is
tuned for loopback and a single rack (a ``kill -9`` is declared dead in under 2 s). Use
``dataclasses.replace(cfg, field=value)`` to override single fields; :meth:`GossipConfig.validate`
is run on construction and raises :class:`meshcache.errors.ConfigError` on nonsense.

All durations are seconds. See docs/gossip.md for how each one enters the formulas.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshcache.errors import ConfigError


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Settings of one SWIM node. Frozen: a node's config never changes while it runs."""

    # Failure detection (SWIM).
    probe_interval: float = 1.0
    """Time between two probes of one member (scaled by local health)."""
    probe_timeout: float = 0.5
    """Wait for a direct ack before asking others (scaled by local health)."""
    indirect_checks: int = 3
    """How many members are asked to ping-req a member that missed its direct ack."""
    nack_fraction: float = 0.8
    """A relay sends a nack after ``nack_fraction * probe_timeout`` without an ack."""

    # Lifeguard.
    suspicion_mult: int = 4
    """Minimum suspicion timeout = mult * log10(max(1, n)) * probe_interval."""
    suspicion_max_timeout_mult: int = 6
    """Maximum suspicion timeout = this * minimum timeout."""
    awareness_max: int = 8
    """Local health score runs 0..awareness_max; timeouts scale by (score + 1)."""
    local_stall_after: float = 0.25
    """A tick this much later than the gossip timer means this node itself did not run (its
    loop was held, its process starved): the local health score rises by one, and the time
    lost does not count against a probe in flight or a suspicion it holds."""

    # Dissemination.
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    retransmit_mult: int = 4
    """Each update is sent about retransmit_mult * ceil(log10(n + 1)) times."""
    packet_size: int = 1400
    """Upper bound of one UDP packet, envelope and MAC included."""
    gossip_to_the_dead: float = 30.0
    """Dead members still receive gossip this long after death, so they can refute."""

    # Anti-entropy and repair.
    push_pull_interval: float = 30.0
    """Full-state exchange with a random live member; scaled up above 32 members."""
    reconnect_interval: float = 30.0
    """Full-state exchange with a random dead member, so that healed partitions merge."""
    join_retry_interval: float = 1.0
    join_retry_max_interval: float = 30.0
    dead_reap_after: float = 86400.0
    """Dead members are forgotten this long after they died."""
    left_reap_after: float = 3600.0
    """Members that left are forgotten this long after they left."""

    # Input limits.
    max_stream_payload: int = 4 * 1024 * 1024
    max_incarnation_jump: int = 65536
    """An update about another member more than this far ahead of what we know is dropped."""
    replay_window: int = 1024
    """Per-sender sliding window of envelope counters (see docs/gossip.md, Replay)."""
    max_replay_senders: int = 8192

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError when a setting is out of range."""
        positive = (
            "probe_interval",
            "probe_timeout",
            "gossip_interval",
            "push_pull_interval",
            "reconnect_interval",
            "join_retry_interval",
            "join_retry_max_interval",
            "dead_reap_after",
            "left_reap_after",
            "local_stall_after",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"gossip.{name} must be > 0")
        if self.probe_timeout >= self.probe_interval:
            raise ConfigError("gossip.probe_timeout must be shorter than gossip.probe_interval")
        if not 0 < self.nack_fraction <= 1:
            raise ConfigError("gossip.nack_fraction must be in (0, 1]")
        counts = (
            ("indirect_checks", 0),
            ("suspicion_mult", 1),
            ("suspicion_max_timeout_mult", 1),
            ("awareness_max", 0),
            ("gossip_nodes", 1),
            ("retransmit_mult", 1),
            ("max_incarnation_jump", 1),
            ("replay_window", 1),
            ("max_replay_senders", 1),
        )
        for name, low in counts:
            if getattr(self, name) < low:
                raise ConfigError(f"gossip.{name} must be >= {low}")
        if self.gossip_to_the_dead < 0:
            raise ConfigError("gossip.gossip_to_the_dead must be >= 0")
        if not 512 <= self.packet_size <= 65000:
            raise ConfigError("gossip.packet_size must be in 512..65000")
        if self.max_stream_payload < self.packet_size:
            raise ConfigError("gossip.max_stream_payload must be >= packet_size")

    @classmethod
    def lan(cls) -> GossipConfig:
        """memberlist's LAN profile: tolerant of a busy data-centre network."""
        return cls()

    @classmethod
    def local(cls) -> GossipConfig:
        """Loopback / one rack: fast detection (p50 < 2 s for a crash), still no false alarms on
        a saturated 2-core machine, where a node process can wait hundreds of milliseconds for
        a CPU (docs/gossip.md, Settings)."""
        return cls(
            probe_interval=0.3,
            probe_timeout=0.15,
            indirect_checks=3,
            suspicion_mult=3,
            suspicion_max_timeout_mult=6,
            awareness_max=8,
            local_stall_after=0.075,
            gossip_interval=0.05,
            gossip_nodes=3,
            retransmit_mult=4,
            packet_size=1400,
            gossip_to_the_dead=5.0,
            push_pull_interval=5.0,
            reconnect_interval=2.0,
            join_retry_interval=0.5,
            join_retry_max_interval=5.0,
            dead_reap_after=3600.0,
            left_reap_after=600.0,
        )
