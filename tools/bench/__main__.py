"""Entry point: ``python -m tools.bench ...`` or ``python tools/bench/__main__.py ...``."""

from __future__ import annotations

import sys

if not __package__:
    # Run as a script: make the repository root importable so ``tools.bench`` resolves.
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
