"""The fault model the simulators share: what one link does to messages, and how a run fails.

:class:`LinkFaults` describes one directed link of a simulated network for both the gossip
simulator (:mod:`meshcache.testing.simnet`) and the data-plane simulator
(:mod:`meshcache.testing.simdata`); :class:`SimulationError` is what either raises when a run
fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LinkFaults:
    """Behaviour of one directed link. Probabilities in [0, 1], times in seconds.

    * ``delay``, ``jitter``: a message takes ``delay + uniform(0, jitter)`` one way.
    * ``loss``: the probability that a message is lost.
    * ``duplicate``: the probability that a message arrives twice.

    Each simulator documents what a message is and what losing or duplicating one does to its
    transport: :mod:`~meshcache.testing.simnet` applies all four to datagrams and only
    ``delay`` to stream exchanges; :mod:`~meshcache.testing.simdata` breaks a connection on a
    loss and duplicates only replication frames. The defaults model a quiet LAN (0.5 ms plus up
    to 2 ms, nothing lost or duplicated); a simulator may use another link for one it was
    given none for.

    Raises:
        ValueError: a probability outside [0, 1], or a negative or non-finite time.
    """

    delay: float = 0.0005
    jitter: float = 0.002
    loss: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.loss <= 1.0 and 0.0 <= self.duplicate <= 1.0):
            raise ValueError(f"loss and duplicate must be in [0, 1]: {self}")
        if not (0.0 <= self.delay < math.inf and 0.0 <= self.jitter < math.inf):
            raise ValueError(f"delay and jitter must be finite and >= 0: {self}")


class SimulationError(Exception):
    """A simulation run failed: a condition was not reached in time, or the scenario or an
    endpoint broke a rule of the simulator (e.g. a tick loop). The message names the seed when
    the failure depends on it, so the run can be replayed."""


__all__ = ["LinkFaults", "SimulationError"]
