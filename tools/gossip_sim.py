"""Gossip figures from the deterministic simulator (meshcache.testing.simnet).

Usage::

    python tools/gossip_sim.py dissemination [--seed N] [--sizes 10,100,1000] [--losses 0,0.5]
    python tools/gossip_sim.py false-positives [--seed N] [--hours 1] [--nodes 20]
    python tools/gossip_sim.py load [--seed N] [--sizes 10,100,1000]
    python tools/gossip_sim.py all [--seed N] [--write /tmp/gossip-figures.md]

Every run is reproducible from its seed: the whole cluster (network, clocks, every node's
randomness) lives on one simulated clock in this process. Each command prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from meshcache.gossip.broadcast import BroadcastQueue
from meshcache.gossip.codec import (
    MemberRecord,
    PushPull,
    encode_envelope,
    encode_message,
)
from meshcache.gossip.config import GossipConfig
from meshcache.gossip.endpoint import Address, Endpoint, Outgoing, StreamRequest
from meshcache.gossip.keyring import Keyring
from meshcache.gossip.member import EventKind, MemberEvent, MemberState, NodeMeta
from meshcache.gossip.swim import SwimNode
from meshcache.testing.faults import LinkFaults
from meshcache.testing.simnet import SimNetwork

BOOTSTRAP_SEED = Address("192.0.2.1", 7946)  # TEST-NET-1: never a node
KEY = b"meshcache-sim-key-0123456789abcd"

# Serf's convergence-simulator estimates as quoted in the issue (gossip interval 200 ms,
# fanout 3, 1000 nodes): time to reach 99 % / 99.99 % of the nodes, and 99.99 % at 50 % loss.
SERF_1000 = {(0.0, 0.99): 1.5, (0.0, 0.9999): 2.15, (0.5, 0.9999): 4.3}


DOC_HEADER = """\
## Gossip figures from the simulator

Produced by `tools/gossip_sim.py` on `meshcache.testing.simnet`: every node is a real
`SwimNode` (HMAC-signed packets, the real codec), all of them in one process on one simulated
clock; the network is a seeded discrete-event simulator (per-link loss, delay 1 ms). The seed
replays a run exactly. Profile `GossipConfig.lan()`: probe 1 s, probe timeout 500 ms,
3 indirect checks, suspicion multiplier 4 (Lifeguard: max 6x, awareness 8), gossip every
200 ms to 3 nodes, retransmit multiplier 4, push/pull 30 s scaled above 32 members.

Clusters start converged and quiet: every node is handed the full membership through the
push/pull join path and its queue of join rumours is emptied (a real 1000-node simultaneous
join is O(n^2) gossip and takes minutes of CPU; `build_cluster(..., bootstrap="join")` does it).
"CPU time" is the process time of the row on the shared 2-core machine (wall time there
depends on the other jobs).

"""


def address_of(i: int) -> Address:
    return Address(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 7946)


@dataclass
class Observer:
    """Collects every node's membership events (the simulator does not look inside nodes)."""

    on_event: Callable[[str, MemberEvent], None] | None = None
    # observer name -> member name -> last event kind about it
    view: dict[str, dict[str, EventKind]] = field(default_factory=dict)
    dead_events: list[tuple[float, str, str]] = field(default_factory=list)
    suspect_events: int = 0

    def alive_count(self, name: str) -> int:
        return sum(
            1
            for kind in self.view.get(name, {}).values()
            if kind not in (EventKind.DEAD, EventKind.LEFT, EventKind.REAPED)
        )

    def record(self, observer: str, events: list[MemberEvent]) -> None:
        view = self.view.setdefault(observer, {})
        for event in events:
            view[event.member.name] = event.kind
            if event.kind is EventKind.DEAD:
                self.dead_events.append((event.at, observer, event.member.name))
            elif event.kind is EventKind.SUSPECT:
                self.suspect_events += 1
            if self.on_event is not None:
                self.on_event(observer, event)


class Watched:
    """An Endpoint that forwards to a SwimNode and reports its events to an Observer."""

    __slots__ = ("name", "node", "observer")

    def __init__(self, name: str, node: SwimNode, observer: Observer) -> None:
        self.name = name
        self.node = node
        self.observer = observer

    def _events(self) -> None:
        events = self.node.take_events()
        if events:
            self.observer.record(self.name, events)

    def handle_datagram(self, src: Address, data: bytes, now: float) -> None:
        self.node.handle_datagram(src, data, now)
        self._events()

    def handle_stream_request(self, src: Address, data: bytes, now: float) -> bytes | None:
        reply = self.node.handle_stream_request(src, data, now)
        self._events()
        return reply

    def handle_stream_reply(self, tag: int, data: bytes | None, now: float) -> None:
        self.node.handle_stream_reply(tag, data, now)
        self._events()

    def tick(self, now: float) -> None:
        self.node.tick(now)
        self._events()

    def next_deadline(self) -> float:
        return self.node.next_deadline()

    def take_outgoing(self) -> list[Outgoing]:
        return self.node.take_outgoing()


@dataclass
class Cluster:
    net: SimNetwork
    observer: Observer
    names: list[str]
    addresses: list[Address]

    def swim(self, i: int) -> SwimNode:
        endpoint = self.net.endpoint(self.addresses[i])
        assert isinstance(endpoint, Watched)
        return endpoint.node


def build_cluster(
    n: int,
    config: GossipConfig,
    seed: int,
    link: LinkFaults,
    *,
    bootstrap: str = "snapshot",
    timeout: float = 600.0,
) -> tuple[Cluster, float]:
    """Start ``n`` nodes and bring them to a converged cluster; then apply ``link``.

    ``bootstrap="join"``: staggered real joins through random earlier members (lossless links),
    run until every node sees all ``n``; the returned float is the simulated time that took.
    It is O(n^2) gossip (every join is rebroadcast by everyone), minutes of wall time at 1000.

    ``bootstrap="snapshot"``: the state of a long-running quiet cluster — every node is handed
    the full membership through its public push/pull handler (from a synthetic peer) and its
    broadcast queue, full of those n "alive" rumours nobody needs any more, is emptied.
    Returns 0.0 for the time.
    """
    net = SimNetwork(seed, default_link=LinkFaults(delay=link.delay, jitter=link.jitter))
    observer = Observer()
    keyring = Keyring([KEY])
    names = [f"node-{i}" for i in range(n)]
    addresses = [address_of(i) for i in range(n)]
    metas = [NodeMeta(zone=f"z{i % 3}") for i in range(n)]
    for i in range(n):

        def factory(now: float, rng: random.Random, i: int = i) -> Watched:
            node = SwimNode(
                config, names[i], addresses[i], metas[i], keyring=keyring, rng=rng, now=now
            )
            return Watched(names[i], node, observer)

        net.add_node(addresses[i], factory)
    cluster = Cluster(net, observer, names, addresses)
    if bootstrap == "snapshot":
        records = tuple(
            MemberRecord(names[i], addresses[i], 0, MemberState.ALIVE, metas[i]) for i in range(n)
        )
        payload = encode_envelope(
            keyring, "sim-bootstrap", 1, 1, [encode_message(PushPull(False, records))], stream=True
        )
        for address in addresses:
            net.apply(address, lambda ep, now: _install_snapshot(ep, payload, now))
        if not all(observer.alive_count(name) >= n - 1 for name in names):
            raise RuntimeError("snapshot bootstrap did not give every node every member")
        converged_after = 0.0
    elif bootstrap == "join":
        join_rng = random.Random(seed ^ 0x5EED)
        for i in range(1, n):
            seeds = [addresses[join_rng.randrange(i)]]
            net.call_at(i * 0.002, functools.partial(net.apply, addresses[i], _join(seeds)))
        converged = net.run_until_condition(
            lambda: all(observer.alive_count(name) >= n - 1 for name in names),
            timeout,
            poll_interval=0.5,
        )
        if not converged:
            raise RuntimeError(f"{n} nodes did not converge in {timeout} s (seed={seed})")
        converged_after = net.now
    else:
        raise ValueError(f"unknown bootstrap {bootstrap!r}")
    net.default_link = link
    return cluster, converged_after


def _install_snapshot(endpoint: object, payload: bytes, now: float) -> None:
    assert isinstance(endpoint, Watched)
    node = endpoint.node
    # Join through a seed that is never contacted and hand the node that seed's answer: the
    # public join path, without encoding a full-state request and reply per node.
    node.join([BOOTSTRAP_SEED], now)
    (request,) = [o for o in node.take_outgoing() if isinstance(o, StreamRequest)]
    endpoint.handle_stream_reply(request.tag, payload, now)
    # No public API empties the rumour queue; a quiet cluster has none left.
    node._broadcasts = BroadcastQueue()
    assert node.joined and node.pending_broadcasts() == 0 and node.incarnation == 0


def _join(seeds: list[Address]) -> Callable[[Endpoint, float], None]:
    def action(endpoint: Endpoint, now: float) -> None:
        assert isinstance(endpoint, Watched)
        endpoint.node.join(seeds, now)

    return action


# ----------------------------------------------------------------------------- dissemination


@dataclass
class DisseminationResult:
    n: int
    loss: float
    trials: list[dict[float, float | None]]  # per trial: fraction -> seconds (None: not reached)
    trial_timeout: float
    wall: float

    def summary(self, fraction: float) -> str:
        """Median over trials and the worst; a trial that never got there counts as infinite."""
        times = sorted(_or_inf(t[fraction]) for t in self.trials)
        median = statistics.median_high(times)
        missed = sum(1 for t in times if t == math.inf)
        text = f"{_secs(median)} (max {_secs(times[-1])})"
        if missed:
            text += f", {missed}/{len(times)} not reached in {self.trial_timeout:g} s"
        return text


TRIAL_TIMEOUT = 60.0


def dissemination(
    n: int,
    loss: float,
    seed: int,
    *,
    trials: int = 5,
    probing: bool = True,
    trial_timeout: float = TRIAL_TIMEOUT,
    fractions: Sequence[float] = (0.99, 0.9999),
) -> DisseminationResult:
    """Time for a metadata change on one node to reach ``fractions`` of the other nodes.

    ``trials`` updates, each from a different random node, one after the other in the same
    cluster (each waits until everyone has it or ``TRIAL_TIMEOUT``, then 5 quiet seconds).
    ``probing=False`` switches the failure detector off (the gossip layer alone, the model of
    Serf's convergence simulator): no suspicions compete for packet space, and no updates
    ride on pings and acks.
    """
    start = time.process_time()
    config = GossipConfig.lan()
    if not probing:
        config = dataclasses.replace(config, probe_interval=1e9, probe_timeout=1e8)
    cluster, _ = build_cluster(n, config, seed, LinkFaults(loss=loss, delay=0.001, jitter=0.0))
    net = cluster.net
    scenario = random.Random(seed ^ 0xD155)
    results: list[dict[float, float | None]] = []
    for trial in range(1, trials + 1):
        origin = scenario.randrange(n)
        target = cluster.names[origin]
        tracker = _UpdateTracker(net, target, float(trial))
        cluster.observer.on_event = tracker.on_event
        t0 = net.now
        origin_meta = cluster.swim(origin).member(target)
        assert origin_meta is not None
        meta = dataclasses.replace(origin_meta.meta, load=float(trial))
        net.apply(cluster.addresses[origin], _update_meta(meta))
        net.run_until_condition(tracker.reached(n - 1), trial_timeout, poll_interval=0.01)
        learned = tracker.learned
        others = n - 1
        times = sorted(learned.values())
        reach: dict[float, float | None] = {}
        for f in fractions:
            k = max(1, math.ceil(f * others))
            reach[f] = times[k - 1] - t0 if len(times) >= k else None
        results.append(reach)
        cluster.observer.on_event = None
        net.run_for(5.0)
    return DisseminationResult(n, loss, results, trial_timeout, time.process_time() - start)


class _UpdateTracker:
    """Records when each node first sees ``target`` with ``meta.load == marker``."""

    def __init__(self, net: SimNetwork, target: str, marker: float) -> None:
        self.net = net
        self.target = target
        self.marker = marker
        self.learned: dict[str, float] = {}

    def on_event(self, observer: str, event: MemberEvent) -> None:
        member = event.member
        if (
            member.name == self.target
            and member.meta.load == self.marker
            and observer not in self.learned
        ):
            self.learned[observer] = self.net.now

    def reached(self, count: int) -> Callable[[], bool]:
        return lambda: len(self.learned) >= count


def _update_meta(meta: NodeMeta) -> Callable[[Endpoint, float], None]:
    def action(endpoint: Endpoint, now: float) -> None:
        assert isinstance(endpoint, Watched)
        endpoint.node.update_meta(meta, now)

    return action


def dissemination_table(
    sizes: Sequence[int], losses: Sequence[float], seed: int, trials: int
) -> str:
    rows = [
        f"| nodes | packet loss | protocol | 99 % of nodes: median of {trials} (max) "
        f"| 99.99 % of nodes: median of {trials} (max) | Serf's estimate 99 % / 99.99 % "
        f"| CPU time |",
        "|---:|---:|---|---:|---:|---|---:|",
    ]
    for n in sizes:
        for loss in losses:
            for probing in (False, True):
                # The full protocol under heavy loss at 1000 nodes costs ~30 CPU s per
                # simulated second (in SwimNode, not the simulator): one short trial only.
                heavy = probing and n >= 1000 and loss >= 0.5
                r = dissemination(
                    n,
                    loss,
                    seed,
                    trials=1 if heavy else trials,
                    probing=probing,
                    trial_timeout=20.0 if heavy else TRIAL_TIMEOUT,
                )
                serf = ""
                if n == 1000 and not probing:
                    serf = " / ".join(
                        f"{SERF_1000[(loss, f)]} s" if (loss, f) in SERF_1000 else "n/a"
                        for f in (0.99, 0.9999)
                    )
                mode = "full SWIM + Lifeguard" if probing else "gossip only (no probes)"
                if heavy:
                    mode += " (1 trial)"
                rows.append(
                    f"| {n} | {loss:.0%} | {mode} | {r.summary(0.99)} | {r.summary(0.9999)} "
                    f"| {serf} | {r.wall:.0f} s |"
                )
                print(rows[-1], file=sys.stderr, flush=True)
    return "\n".join(rows)


def _or_inf(t: float | None) -> float:
    return math.inf if t is None else t


def _secs(t: float) -> str:
    return "never" if t == math.inf else f"{t:.2f} s"


# ----------------------------------------------------------------------------- false positives


@dataclass
class FalsePositiveResult:
    label: str
    dead_events: int
    members_declared_dead: int
    suspect_events: int
    pauses: int
    wall: float


def lifeguard_off(config: GossipConfig) -> GossipConfig:
    """No local health awareness (score stays 0) and a fixed suspicion timeout (max = min)."""
    return dataclasses.replace(config, awareness_max=0, suspicion_max_timeout_mult=1)


def false_positives(
    label: str,
    config: GossipConfig,
    *,
    n: int,
    duration: float,
    loss: float,
    seed: int,
    max_pause: float = 0.0,
    pause_every: float = 60.0,
) -> FalsePositiveResult:
    """Run ``n`` healthy nodes for ``duration`` seconds and count DEAD declarations.

    No node ever crashes, so every DEAD event is a false positive. With ``max_pause`` > 0 each
    node is paused for ``uniform(0.1, max_pause)`` seconds at exponentially distributed
    intervals averaging ``pause_every`` seconds (from a scenario RNG derived from the seed, so
    runs with different configs see the same pauses).
    """
    start = time.process_time()
    cluster, _ = build_cluster(n, config, seed, LinkFaults(loss=loss, delay=0.001, jitter=0.001))
    net = cluster.net
    observer = cluster.observer
    observer.dead_events.clear()
    observer.suspect_events = 0
    t0 = net.now
    pauses = 0
    if max_pause > 0:
        scenario = random.Random(seed ^ 0xFA05E)
        for address in cluster.addresses:
            t = t0 + scenario.expovariate(1 / pause_every)
            while t < t0 + duration:
                length = scenario.uniform(0.1, max_pause)
                net.call_at(t, functools.partial(net.pause, address, length))
                pauses += 1
                t += length + scenario.expovariate(1 / pause_every)
    net.run_until(t0 + duration)
    return FalsePositiveResult(
        label,
        len(observer.dead_events),
        len({member for _, _, member in observer.dead_events}),
        observer.suspect_events,
        pauses,
        time.process_time() - start,
    )


def false_positive_table(
    seeds: Sequence[int],
    *,
    n: int,
    hours: float,
    pause_every: float,
    runs: Sequence[tuple[str, GossipConfig, float, float]],
) -> str:
    rows = [
        "| scenario | runs x simulated | pauses | SUSPECT events | DEAD events "
        "| members ever declared dead | CPU time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, config, loss, max_pause in runs:
        results = [
            false_positives(
                label,
                config,
                n=n,
                duration=hours * 3600,
                loss=loss,
                seed=seed,
                max_pause=max_pause,
                pause_every=pause_every,
            )
            for seed in seeds
        ]
        rows.append(
            f"| {label} | {len(seeds)} x {hours:g} h | {sum(r.pauses for r in results)} "
            f"| {sum(r.suspect_events for r in results)} "
            f"| {sum(r.dead_events for r in results)} "
            f"| {sum(r.members_declared_dead for r in results)} "
            f"| {sum(r.wall for r in results):.0f} s |"
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return "\n".join(rows)


# ----------------------------------------------------------------------------- load


@dataclass
class Window:
    """Traffic per member per protocol period over one measuring window."""

    packets: float
    bytes: float
    streams: float


@dataclass
class LoadResult:
    n: int
    quiet: Window
    busy: Window
    push_pull_interval: float
    push_pull_bytes: float  # request + reply of one full-state exchange, at this size
    wall: float


def push_pull_interval(config: GossipConfig, n: int) -> float:
    """Mean time between two push/pulls a member starts (memberlist's pushPullScale)."""
    scale = math.ceil(math.log2(n) - math.log2(32)) + 1 if n > 32 else 1
    return config.push_pull_interval * scale


def _measure(cluster: Cluster, window: float, period: float) -> Window:
    net = cluster.net
    before = [dataclasses.replace(net.node_stats(a)) for a in cluster.addresses]
    net.run_for(window)
    after = [net.node_stats(a) for a in cluster.addresses]
    pairs = list(zip(after, before, strict=True))
    per = len(cluster.addresses) * window / period
    return Window(
        sum(a.datagrams_sent - b.datagrams_sent for a, b in pairs) / per,
        sum(a.datagram_bytes_sent - b.datagram_bytes_sent for a, b in pairs) / per,
        sum(a.streams_sent - b.streams_sent for a, b in pairs) / per,
    )


def load(n: int, seed: int, *, window: float = 30.0, updates_per_second: float = 1.0) -> LoadResult:
    """What each member sends per protocol period (probe interval, 1 s), lossless links.

    Quiet: a converged cluster where nothing changes (probes only; push/pull is reported
    apart, from the configured interval and the measured size of one exchange). Busy: the
    same cluster while ``updates_per_second`` metadata changes (e.g. load reports) start on
    random members, cluster-wide, so gossip rounds always have something to carry.
    """
    start = time.process_time()
    config = GossipConfig.lan()
    cluster, _ = build_cluster(n, config, seed, LinkFaults(delay=0.001, jitter=0.0))
    net = cluster.net
    net.run_for(5.0)
    quiet = _measure(cluster, window, config.probe_interval)
    scenario = random.Random(seed ^ 0x10AD)
    t0 = net.now
    for k in range(int((window + 10) * updates_per_second)):
        origin = scenario.randrange(n)
        meta = NodeMeta(zone=f"z{origin % 3}", load=float(k + 1))
        net.call_at(
            t0 + k / updates_per_second,
            functools.partial(net.apply, cluster.addresses[origin], _update_meta(meta)),
        )
    net.run_for(10.0)  # reach the steady state of rumours in flight
    busy = _measure(cluster, window, config.probe_interval)
    streams = sum(net.node_stats(a).streams_sent for a in cluster.addresses)
    stream_bytes = sum(net.node_stats(a).stream_bytes_sent for a in cluster.addresses)
    return LoadResult(
        n,
        quiet,
        busy,
        push_pull_interval(config, n),
        stream_bytes / streams if streams else math.nan,
        time.process_time() - start,
    )


def load_table(sizes: Sequence[int], seed: int) -> str:
    rows = [
        "| nodes | quiet: packets | quiet: bytes | busy: packets | busy: bytes "
        "| push/pull: every | push/pull: bytes each | push/pull: bytes / member / period "
        "| CPU time |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        r = load(n, seed)
        rows.append(
            f"| {n} | {r.quiet.packets:.2f} | {r.quiet.bytes:.0f} | {r.busy.packets:.2f} "
            f"| {r.busy.bytes:.0f} | {r.push_pull_interval:.0f} s | {r.push_pull_bytes:.0f} "
            f"| {r.push_pull_bytes / r.push_pull_interval:.0f} | {r.wall:.0f} s |"
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return "\n".join(rows)


# ----------------------------------------------------------------------------- CLI


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="figure", required=True)
    for name in ("dissemination", "false-positives", "load", "all"):
        p = sub.add_parser(name)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--sizes", type=_ints, default=[10, 100, 1000])
        p.add_argument("--losses", type=_floats, default=[0.0, 0.5])
        p.add_argument("--trials", type=int, default=5, help="updates per dissemination run")
        p.add_argument("--nodes", type=int, default=20, help="false-positives cluster size")
        p.add_argument("--hours", type=float, default=1.0, help="false-positives duration")
        p.add_argument("--runs", type=int, default=1, help="false-positives: seeds per row")
        p.add_argument(
            "--pause-every", type=float, default=30.0, help="mean seconds between pauses"
        )
        p.add_argument("--write", type=Path, help="also write the tables to this markdown file")
    args = parser.parse_args(argv)
    command = "python tools/gossip_sim.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    sections: list[str] = []
    if args.figure in ("dissemination", "all"):
        sections.append(
            "### Dissemination of one update (gossip every 200 ms to 3 nodes)\n\n"
            + dissemination_table(args.sizes, args.losses, args.seed, args.trials)
        )
    if args.figure in ("false-positives", "all"):
        lan = GossipConfig.lan()
        off = lifeguard_off(lan)
        runs = [
            ("10 % loss, Lifeguard on", lan, 0.1, 0.0),
            ("10 % loss, Lifeguard off", off, 0.1, 0.0),
            ("10 % loss + pauses ≤ 2 s, Lifeguard on", lan, 0.1, 2.0),
            ("10 % loss + pauses ≤ 2 s, Lifeguard off", off, 0.1, 2.0),
        ]
        seeds = list(range(args.seed, args.seed + args.runs))
        sections.append(
            f"### False positives: {args.nodes} healthy nodes, nobody ever fails, so every DEAD "
            f"is false\n\nPauses: each node is paused for uniform(0.1 s, 2 s) at exponential "
            f"intervals averaging {args.pause_every:g} s. Lifeguard off = `awareness_max=0, "
            f"suspicion_max_timeout_mult=1`. Events are counted at every observer.\n\n"
            + false_positive_table(
                seeds, n=args.nodes, hours=args.hours, pause_every=args.pause_every, runs=runs
            )
        )
    if args.figure in ("load", "all"):
        sections.append(
            "### Message load per member per protocol period (1 s)\n\n"
            "UDP packets and bytes each member sends per period, averaged over all members and "
            "30 s; busy = one metadata change per second somewhere in the cluster. Push/pull "
            "(TCP full-state exchange) is listed apart: each member starts one every so often "
            "(memberlist's pushPullScale) and its size grows with the cluster.\n\n"
            + load_table(args.sizes, args.seed)
        )
    text = f"Command: `{command}`\n\n" + "\n\n".join(sections) + "\n"
    print(text)
    if args.write is not None:
        args.write.write_text(DOC_HEADER + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
