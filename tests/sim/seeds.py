"""The seeds a simulation test runs: ``default`` of them (0, 1, …) unless the environment says.

``MESHCACHE_SIM_SEEDS`` runs another count (``200``: seeds 0..199) or a list (``5,17``);
``MESHCACHE_SIM_SEED=17`` replays one seed.
"""

from __future__ import annotations

import os


def sim_seeds(default: int) -> list[int]:
    one = os.environ.get("MESHCACHE_SIM_SEED")
    if one:
        return [int(one, 0)]
    many = os.environ.get("MESHCACHE_SIM_SEEDS", "").strip()
    if not many:
        return list(range(default))
    if "," in many:
        return [int(s, 0) for s in many.split(",") if s.strip()]
    return list(range(int(many, 0)))
