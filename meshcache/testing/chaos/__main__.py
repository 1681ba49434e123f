"""``python -m meshcache.testing.chaos``: the soak, a replay, the sweeper, and the workload
worker the harness starts (see docs/chaos.md)."""

from __future__ import annotations

import sys

from meshcache.testing.chaos.cli import main

if __name__ == "__main__":
    sys.exit(main())
