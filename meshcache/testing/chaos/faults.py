"""Network faults as data: which frames between which endpoints are dropped, and how often.

A :class:`NetFaults` is a set of :class:`Drop` rules over endpoint names (``n0``, ``c1``, ...);
:func:`nft_script` renders it as one nftables table for the hub's bridge (family ``bridge``,
hook ``forward``: only traffic *between* endpoints, never the harness's own). ``p = 1`` drops
every frame (a partition), ``p < 1`` drops frames at random (``numgen random``: loss); a drop
with ``proto="tcp"`` takes only TCP (data port, Raft) and lets gossip's UDP through: a cut the
failure detector does not see. The
constructors name the classic shapes: :func:`partition` (symmetric, any number of sides),
:func:`one_way`, :func:`bridge` (two sides that both see a middle: overlapping majorities),
:func:`isolate`, :func:`lossy`; :func:`combine` overlays several.

Nothing here touches the system, so the fault model and its reachability answers are tested
without root.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from meshcache.testing.chaos.netns import NFT_TABLE

#: ``numgen`` draws from 0..SCALE-1; a drop probability is a whole number of these steps.
SCALE = 10_000


@dataclass(frozen=True, slots=True)
class Drop:
    """Frames from any endpoint of ``src`` to any of ``dst`` are dropped with probability
    ``p`` (each frame on its own); an endpoint's frames to itself never are. ``proto``: only
    frames of that transport (``"tcp"``; None: every frame). :meth:`NetFaults.blocked` and
    the reachability answers built on it speak of TCP (client, data and Raft connections)."""

    src: frozenset[str]
    dst: frozenset[str]
    p: float = 1.0
    proto: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.p <= 1.0:
            raise ValueError(f"drop probability {self.p} not in (0, 1]")
        if self.proto not in (None, "tcp"):
            raise ValueError(f"a drop takes every frame or only tcp, not {self.proto!r}")

    def covers(self, a: str, b: str) -> bool:
        return a != b and a in self.src and b in self.dst


@dataclass(frozen=True, slots=True)
class NetFaults:
    """The network's faults at one moment. ``label`` names them in histories and reports."""

    drops: tuple[Drop, ...] = ()
    label: str = "healthy"

    @property
    def healthy(self) -> bool:
        return not self.drops

    def loss(self, a: str, b: str) -> float:
        """The probability that a frame from ``a`` to ``b`` is dropped."""
        keep = 1.0
        for drop in self.drops:
            if drop.covers(a, b):
                keep *= 1.0 - drop.p
        return 1.0 - keep

    def blocked(self, a: str, b: str) -> bool:
        """True when no frame from ``a`` reaches ``b``."""
        return self.loss(a, b) >= 1.0

    def connected(self, a: str, b: str) -> bool:
        """True when frames pass both ways (a TCP connection can be made)."""
        return not self.blocked(a, b) and not self.blocked(b, a)

    @property
    def one_way(self) -> bool:
        """True when some direction is blocked while its reverse is not."""
        return any(
            drop.p >= 1.0 and not self.blocked(b, a)
            for drop in self.drops
            for a in drop.src
            for b in drop.dst
            if a != b
        )

    def majority(self, node: str, voters: Collection[str]) -> bool:
        """True when ``node`` belongs to a group of mutually connected voters (with ``node``
        connected to all of them) that is a majority of ``voters``: a config change made
        through ``node`` can commit."""
        group = [v for v in voters if v == node or self.connected(node, v)]
        # Greedy clique: keep voters connected to every voter kept so far.
        clique: list[str] = []
        for v in sorted(group, key=lambda v: (v != node, v)):
            if all(self.connected(v, w) for w in clique):
                clique.append(v)
        return len(clique) * 2 > len(voters)

    def describe(self) -> str:
        if not self.drops:
            return "healthy"
        parts = []
        for d in self.drops:
            arrow = "-x->" if d.p >= 1.0 else f"-{d.p:.0%} loss->"
            if d.proto is not None:
                arrow = f"{arrow[:-2]} {d.proto}->"
            parts.append(f"{{{','.join(sorted(d.src))}}} {arrow} {{{','.join(sorted(d.dst))}}}")
        return f"{self.label}: " + "; ".join(parts)


def _set(names: Iterable[str]) -> frozenset[str]:
    result = frozenset(names)
    if not result:
        raise ValueError("a fault needs at least one endpoint on each side")
    return result


def healthy() -> NetFaults:
    return NetFaults()


def partition(
    *sides: Iterable[str], label: str = "partition", proto: str | None = None
) -> NetFaults:
    """Symmetric partition: no frame (of ``proto``, when given) crosses between any two of
    ``sides``."""
    groups = [_set(side) for side in sides]
    drops = tuple(
        Drop(a, b, proto=proto)
        for i, a in enumerate(groups)
        for j, b in enumerate(groups)
        if i != j
    )
    return NetFaults(drops, label)


def one_way(src: Iterable[str], dst: Iterable[str], label: str = "one-way") -> NetFaults:
    """Frames from ``src`` to ``dst`` are dropped; the other direction passes."""
    return NetFaults((Drop(_set(src), _set(dst)),), label)


def bridge(
    left: Iterable[str], middle: Iterable[str], right: Iterable[str], label: str = "bridge"
) -> NetFaults:
    """``left`` and ``right`` cannot talk; ``middle`` talks to both (with 2+1+2 nodes, both
    ``left+middle`` and ``middle+right`` are majorities that overlap in ``middle``)."""
    a, b = _set(left), _set(right)
    _set(middle)
    return NetFaults((Drop(a, b), Drop(b, a)), label)


def isolate(node: str, others: Iterable[str], label: str = "isolate") -> NetFaults:
    """``node`` cannot talk to any of ``others``."""
    return partition([node], [o for o in others if o != node], label=label)


def lossy(endpoints: Iterable[str], p: float, label: str = "loss") -> NetFaults:
    """Every frame between two of ``endpoints`` is dropped with probability ``p``."""
    group = _set(endpoints)
    return NetFaults((Drop(group, group, p),), label)


def combine(*faults: NetFaults, label: str | None = None) -> NetFaults:
    drops = tuple(d for f in faults for d in f.drops)
    return NetFaults(drops, label or "+".join(f.label for f in faults if f.drops) or "healthy")


def nft_script(faults: NetFaults, addresses: Mapping[str, str]) -> str:
    """The nftables script that makes the hub's bridge apply ``faults`` (and only them).

    One transaction: the table is created if missing, deleted, and defined again, so the
    previous faults are replaced atomically. ``addresses`` maps endpoint names to IPv4
    addresses; every endpoint a drop names must be in it.
    """
    rules = []
    for drop in faults.drops:
        src = ", ".join(sorted(addresses[n] for n in drop.src))
        dst = ", ".join(sorted(addresses[n] for n in drop.dst))
        match = f"ip saddr {{ {src} }} ip daddr {{ {dst} }}"
        if drop.proto is not None:
            match += f" meta l4proto {drop.proto}"
        if drop.p >= 1.0:
            rules.append(f"{match} drop")
        else:
            steps = max(1, round(drop.p * SCALE))
            rules.append(f"{match} numgen random mod {SCALE} < {steps} drop")
    body = "".join(f"\t\t{rule}\n" for rule in rules)
    return (
        f"table bridge {NFT_TABLE}\n"
        f"delete table bridge {NFT_TABLE}\n"
        f"table bridge {NFT_TABLE} {{\n"
        "\tchain forward {\n"
        "\t\ttype filter hook forward priority 0; policy accept;\n"
        f"{body}"
        "\t}\n"
        "}\n"
    )


__all__ = [
    "Drop",
    "NetFaults",
    "bridge",
    "combine",
    "healthy",
    "isolate",
    "lossy",
    "nft_script",
    "one_way",
    "partition",
]
